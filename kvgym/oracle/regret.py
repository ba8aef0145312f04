"""Regret analysis: how far a policy (or agent) is from the oracle on one trace, and where it loses.

Figures, all on **tier-0 misses** (first touches included, as ``Metrics.misses``):

- **gap closed** (Parrot's normalised hit rate): ``100 * (misses_lru - misses) / (misses_lru -
  misses_oracle)``: LRU = 0, oracle = 100 (negative: worse than LRU; ``None`` when LRU does not
  miss more than the oracle); defined once, in :func:`kvgym.oracle.gap.gap_closed`. The oracle
  is Belady's MIN under pinned steps (:func:`kvgym.oracle.belady.belady`), exact for uniform page sizes and no prefetch; with
  variable sizes it is the achievable ``belady_size`` heuristic run through the engine (so the
  gap can exceed 100); with a prefetcher the policy may beat MIN's demand misses (also > 100).
- **good-decision ratio**: of the tier-0 evictions, the share whose victim's next use is no
  sooner than the farthest next use among the same candidates (Belady's victim). Candidates are
  the unpinned tier-0 residents of each decision, taken from the engine's
  :class:`~kvgym.sim.engine.Decision` (:mod:`kvgym.oracle.observe`).
- **windowed regret**: per window of ``window`` steps, the policy's misses minus the oracle's
  (and LRU's, for reference); the cumulative sum is the regret over time.
- **attribution**: every tier-0 eviction with what it cost later: when the victim came back
  (its next access), from which tier, and the cost of that return: one miss and the nominal time
  to bring it back to tier 0 (``SimContext.refetch_cost_us``: α + bytes/β of the link it comes
  back over, plus dequantization; queueing not included). A victim that came back through a
  prefetch before its access, or never came back, cost nothing. Top N by cost and summaries by
  layer, by age (steps since the victim last entered tier 0, power-of-two buckets) and by the
  tier it came back from. Ties in cost are listed by how soon the victim came back.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kvgym.errors import ConfigError
from kvgym.oracle.belady import belady
from kvgym.oracle.gap import gap_closed
from kvgym.oracle.nextuse import future as make_future
from kvgym.oracle.observe import Decider, Observed, observe
from kvgym.sim.policy import Policy, Prefetcher, make_policy, make_prefetcher
from kvgym.sim.scenario import Scenario, Setup
from kvgym.traces.format import Trace


@dataclass(eq=False)
class OracleRun:
    """The oracle's tier-0 outcome on a trace: ``kind`` (``belady`` or ``belady_size``), per-access hits."""

    kind: str
    misses: int
    hits: np.ndarray
    capacity_pages: int | None


def oracle_run(trace: Trace, setup: Setup) -> OracleRun:
    """Belady MIN (pinned steps) for uniform sizes; the ``belady_size`` policy through the engine otherwise."""
    touched = np.unique(trace.page)
    sizes = setup.page_bytes[touched]
    cap = setup.tiers[0].capacity_bytes
    if len(touched) == 0 or (sizes == sizes[0]).all():
        s = int(sizes[0]) if len(touched) else 1
        k = None if cap is None else cap // s
        if k is None or k >= len(touched):
            hits = np.zeros(len(trace), bool)
            first = np.unique(trace.page, return_index=True)[1] if len(trace) else np.zeros(0, np.int64)
            hits[:] = True
            hits[first] = False
            return OracleRun("belady", int((~hits).sum()), hits, k)
        r = belady(trace.page, int(k), step=trace.step, n_pages=len(setup.page_bytes), record=True)
        return OracleRun("belady", r.misses, r.hits, int(k))
    obs = observe(trace, setup, make_policy("belady_size"), decisions=False)
    return OracleRun("belady_size", obs.metrics.misses, obs.hits, None)


def _age_bucket(age: np.ndarray) -> np.ndarray:
    """Power-of-two buckets of steps: 0, 1, 2-3, 4-7, ..."""
    out = np.empty(len(age), object)
    for i, a in enumerate(age):
        if a <= 0:
            out[i] = "0"
        else:
            lo = 1 << (int(a).bit_length() - 1)
            out[i] = "1" if lo == 1 else f"{lo}-{2 * lo - 1}"
    return out


def attribution(trace: Trace, setup: Setup, obs: Observed) -> pd.DataFrame:
    """One row per tier-0 eviction: the victim, when it was evicted, when and from where it came back, its cost."""
    n = len(trace)
    pt = setup.pages
    v = obs.evict_page
    if obs.next_use is not None:
        ret = obs.next_use.copy()
    else:  # recompute the victims' next uses from the trace
        f = make_future(trace.page, len(setup.page_bytes))
        ret = _next_after(trace.page, v, obs.evict_pos, f)
    ret_tier = np.where(ret < n, obs.loc[np.minimum(ret, n - 1)] if n else 0, 0).astype(np.int64)
    # Evicted again before that access: the first eviction's page came back by prefetch.
    order = np.lexsort((np.arange(len(v)), v))
    again = np.zeros(len(v), bool)
    same = v[order][1:] == v[order][:-1]
    later_pos = obs.evict_pos[order][1:]
    again[order[:-1]] = same & (later_pos < ret[order[:-1]])
    ret_tier[again] = 0
    back = (ret < n) & (ret_tier != 0)
    src = np.where(ret_tier < 0, setup.backing, np.maximum(ret_tier, 1))
    ctx = obs.engine.ctx
    cost = np.where(back, ctx.refetch_cost_us(v, src) if len(v) else np.zeros(0), 0.0)
    age = obs.evict_step - obs.insert_step
    names = [t.name for t in setup.tiers]
    tier_name = np.array(["-" if not b else ("nowhere" if t < 0 else names[t]) for b, t in zip(back, ret_tier)], object)
    df = pd.DataFrame({
        "page": v, "seq": pt.seq[v].astype(np.int64), "layer": pt.layer[v].astype(np.int64),
        "token_start": pt.token_start[v], "evict_pos": obs.evict_pos, "evict_step": obs.evict_step,
        "insert_step": obs.insert_step, "age_steps": age, "age_bucket": _age_bucket(age),
        "return_pos": np.where(ret < n, ret, -1),
        "return_step": np.where(ret < n, trace.step[np.minimum(ret, n - 1)] if n else 0, -1),
        "return_tier": tier_name, "miss": back.astype(np.int64), "cost_us": cost,
    })
    if obs.next_use is not None:
        df["good"] = obs.good
    return df


def _next_after(page, victims, pos, fut) -> np.ndarray:
    """Next access index of each victim strictly after ``pos`` (``n`` if none)."""
    n = len(page)
    order = np.argsort(page, kind="stable")
    key = page[order] * (n + 1) + order
    q = np.searchsorted(key, victims * (n + 1) + pos, side="right")
    ok = q < n
    out = np.full(len(victims), n, np.int64)
    out[ok] = np.where(page[order][q[ok]] == victims[ok], order[q[ok]], n)
    return out


def summarize(df: pd.DataFrame, by: str) -> pd.DataFrame:
    """Evictions, misses they caused, µs they cost and bad decisions, grouped by ``by``."""
    if len(df) == 0:
        return pd.DataFrame(columns=[by, "evictions", "misses", "cost_us", "bad"])
    g = df.groupby(by, sort=True)
    out = pd.DataFrame({"evictions": g.size(), "misses": g["miss"].sum(), "cost_us": g["cost_us"].sum()})
    if "good" in df:
        out["bad"] = g["good"].apply(lambda s: int((~s.astype(bool)).sum()))
    out = out.reset_index()
    if by == "age_bucket":
        out["_k"] = [int(str(x).split("-")[0]) for x in out[by]]
        out = out.sort_values("_k").drop(columns="_k").reset_index(drop=True)
    return out


@dataclass(eq=False)
class RegretResult:
    """One policy (or agent) on one trace under one scenario. See the module docstring."""

    label: str
    trace_label: str
    scenario: Scenario
    accesses: int
    steps: int
    misses: int
    misses_lru: int
    misses_oracle: int
    oracle_kind: str
    decisions: int
    good_decisions: int
    metrics: dict
    lru_metrics: dict
    windows: pd.DataFrame
    evictions: pd.DataFrame
    window_steps: int
    top: int = 20
    extra: dict = field(default_factory=dict)

    @property
    def gap_closed(self) -> float | None:
        return gap_closed(self.misses, self.misses_lru, self.misses_oracle)

    @property
    def good_ratio(self) -> float | None:
        return self.good_decisions / self.decisions if self.decisions else None

    def top_evictions(self, n: int | None = None) -> pd.DataFrame:
        df = self.evictions
        if len(df) == 0:
            return df
        # Costliest first; among equal costs, the victims that came back soonest (the clearest regrets).
        gap = np.where(df["return_pos"] >= 0, df["return_pos"] - df["evict_pos"], np.iinfo(np.int64).max)
        return (df.assign(_gap=gap).sort_values(["cost_us", "_gap", "evict_pos"], ascending=[False, True, True])
                .drop(columns="_gap").head(n or self.top))

    def summary(self) -> dict:
        gc = self.gap_closed
        return {"policy": self.label, "trace": self.trace_label, "scenario": self.scenario.name,
                "accesses": self.accesses, "misses": self.misses, "misses_lru": self.misses_lru,
                "misses_oracle": self.misses_oracle, "oracle": self.oracle_kind,
                "gap_closed": None if gc is None else round(gc, 3), "decisions": self.decisions,
                "good_decisions": self.good_decisions,
                "good_ratio": None if self.good_ratio is None else round(self.good_ratio, 6),
                "hit_rate": round(self.metrics["hit_rate"], 6),
                "stall_ms": round(self.metrics["stall_us"] / 1e3, 3),
                "total_ms": round(self.metrics["total_time_us"] / 1e3, 3),
                "regret_misses": self.misses - self.misses_oracle,
                "attributed_cost_ms": round(float(self.evictions["cost_us"].sum()) / 1e3, 3) if len(self.evictions) else 0.0}


def _windows(trace: Trace, window: int, series: dict[str, np.ndarray]) -> pd.DataFrame:
    if len(trace) == 0:
        return pd.DataFrame(columns=["window", "start_step", "accesses", *series])
    s0 = int(trace.step[0])
    w = (trace.step - s0) // window
    nw = int(w[-1]) + 1
    cols = {"window": np.arange(nw), "start_step": s0 + np.arange(nw) * window,
            "accesses": np.bincount(w, minlength=nw)}
    for k, miss in series.items():
        cols[k] = np.bincount(w, weights=miss.astype(np.float64), minlength=nw).astype(np.int64)
    df = pd.DataFrame(cols)
    df = df[df["accesses"] > 0].reset_index(drop=True)
    df["regret"] = df["misses"] - df["oracle_misses"]
    df["cumulative_regret"] = df["regret"].cumsum()
    df["lru_regret"] = df["lru_misses"] - df["oracle_misses"]
    df["cumulative_lru_regret"] = df["lru_regret"].cumsum()
    return df


def analyze(trace: Trace, scenario: Scenario, policy: Policy | str | None = "lru", *,
            decider: Decider | None = None, label: str | None = None, trace_label: str | None = None,
            prefetcher: Prefetcher | str | None = None, window: int | None = None, top: int = 20,
            cache: dict | None = None) -> RegretResult:
    """Regret analysis of ``policy`` (or an agent's ``decider``) on ``trace`` under ``scenario``.

    Args:
        window: steps per window (default: about 50 windows over the trace).
        prefetcher: used when the scenario has prefetch on (name or object; default none).
        cache: optional dict reused across calls on the same trace and scenario (holds the
            oracle and LRU runs, which do not depend on the policy analysed).
    """
    setup = scenario.build(trace.pages, [(trace.step, trace.page)])
    setup.check_steps(trace.step, trace.page)
    if isinstance(policy, str):
        label = label or policy
        policy = make_policy(policy)
    if label is None:
        label = policy.name if policy is not None else "agent"
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
        raise ConfigError(f"regret: window must be an int >= 1 (steps), got {window!r}")
    steps = len(np.unique(trace.step))
    if window is None:
        span = int(trace.step[-1] - trace.step[0]) + 1 if len(trace) else 1
        window = max(1, math.ceil(span / 50))
    cache = {} if cache is None else cache
    fut = cache.get("future")
    if fut is None:
        fut = cache["future"] = make_future(trace.page, len(setup.page_bytes))

    def pre(fresh: bool = False):
        if not scenario.prefetch or prefetcher is None:
            return None
        if isinstance(prefetcher, str):
            return make_prefetcher(prefetcher)
        return copy.deepcopy(prefetcher) if fresh else prefetcher  # the LRU run gets its own copy

    if "oracle" not in cache:
        cache["oracle"] = oracle_run(trace, setup)
    orc = cache["oracle"]
    if "lru" not in cache:
        cache["lru"] = observe(trace, setup, make_policy("lru"), prefetcher=pre(fresh=True), future=fut,
                               decisions=False)
    lru = cache["lru"]
    obs = observe(trace, setup, policy, decider=decider, prefetcher=pre(), future=fut, decisions=True)
    ev = attribution(trace, setup, obs)
    win = _windows(trace, window, {"misses": ~obs.hits, "oracle_misses": ~orc.hits, "lru_misses": ~lru.hits})
    good = int(obs.good.sum()) if obs.good is not None else 0
    return RegretResult(
        label=label, trace_label=trace_label or str(trace.meta.get("generator", "trace")), scenario=scenario,
        accesses=len(trace), steps=steps, misses=obs.metrics.misses, misses_lru=lru.metrics.misses,
        misses_oracle=orc.misses, oracle_kind=orc.kind, decisions=obs.decisions, good_decisions=good,
        metrics=obs.metrics.to_dict(), lru_metrics=lru.metrics.to_dict(), windows=win, evictions=ev,
        window_steps=window, top=top)
