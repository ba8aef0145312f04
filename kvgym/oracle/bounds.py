"""Every oracle figure of one trace under one scenario, in one call (what ``kvgym oracle`` prints).

- tier 0 alone: Belady MIN under pinned steps at tier 0's capacity (exact for uniform page
  sizes: no policy has fewer tier-0 misses without prefetch); the flat-sequence OPT and LRU
  miss curves for every size (:mod:`kvgym.oracle.stack`); with variable page sizes the LP bound
  (:mod:`kvgym.oracle.lp`, traces up to ``lp_max`` accesses) and the achievable ``belady_size``
  policy run through the engine;
- the hierarchy: :func:`kvgym.oracle.hierarchy.hierarchy_bounds`;
- prefetch references: Cao et al.'s schedules at tier 0's capacity
  (:mod:`kvgym.oracle.prefetch`).

:func:`oracle_columns` is the small subset a leaderboard or a sweep summary adds per
(trace, scenario): the oracle's misses and which oracle it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kvgym.oracle.belady import belady
from kvgym.oracle.hierarchy import LP_MAX, HierarchyBounds, hierarchy_bounds
from kvgym.oracle.lp import LPBound, lp_bound
from kvgym.oracle.prefetch import PrefetchSchedule, fetch_time_units, prefetch_schedules
from kvgym.oracle.stack import MissRatioCurves, miss_ratio_curves
from kvgym.sim.scenario import Scenario
from kvgym.traces.format import Trace


@dataclass(eq=False)
class OracleReport:
    """See the module docstring. Misses include first touches; times in µs."""

    trace_label: str
    scenario: Scenario
    accesses: int
    steps: int
    distinct: int
    uniform: bool
    page_bytes: int
    tier0_pages: int | None
    belady_misses: int
    opt_flat_misses: int
    lru_flat_misses: int
    lp: LPBound | None
    belady_size_misses: int | None
    hierarchy: HierarchyBounds
    fetch_time: float
    prefetch: dict[str, PrefetchSchedule]
    curves: MissRatioCurves
    tier_names: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "trace": self.trace_label, "scenario": self.scenario.to_dict(), "accesses": self.accesses,
            "steps": self.steps, "distinct_pages": self.distinct, "uniform_sizes": self.uniform,
            "page_bytes": self.page_bytes, "tier0_pages": self.tier0_pages,
            "belady_misses": self.belady_misses, "opt_flat_misses": self.opt_flat_misses,
            "lru_flat_misses": self.lru_flat_misses, "lp": None if self.lp is None else self.lp.to_dict(),
            "belady_size_misses": self.belady_size_misses, "hierarchy": self.hierarchy.to_dict(),
            "tiers": list(self.tier_names), "fetch_time": self.fetch_time, "prefetch": {k: v.to_dict() for k, v in self.prefetch.items()},
            "notes": list(self.notes),
        }

    def lines(self) -> list[str]:
        """Human-readable summary, one figure per line."""
        h = self.hierarchy
        a = max(self.accesses, 1)
        size = f"{'uniform' if self.uniform else 'variable'} page size ({self.page_bytes} bytes" + \
            ("" if self.uniform else " smallest") + ")"
        head = f"trace {self.trace_label}: {self.accesses} accesses, {self.steps} steps, {self.distinct} pages touched"
        out = [f"{head}, {size}"]
        out.append(f"scenario {self.scenario.name}: profile {self.scenario.profile}, {self.scenario.cost_model} "
                   f"costs, prefetch {'on' if self.scenario.prefetch else 'off'}; tier 0 holds {self.tier0_pages} pages")
        out.append(f"tier-0 misses, Belady MIN (pinned steps){'' if self.uniform else ', smallest-page capacity'}: "
                   f"{self.belady_misses} ({self.belady_misses / a:.4f} of accesses)")
        out.append(f"flat-sequence curves at that size: OPT {self.opt_flat_misses}, LRU {self.lru_flat_misses}")
        if self.lp is not None:
            out.append(f"LP lower bound (variable sizes): {self.lp.bound:g} misses ({self.lp.intervals} intervals)")
        if self.belady_size_misses is not None:
            out.append(f"belady_size (achievable reference): {self.belady_size_misses} misses")
        out.append("hierarchy lower bounds (any policy, any prefetcher):")
        for j, (k, e, m) in enumerate(zip(h.capacity_pages, h.entry_lb, h.entry_method)):
            names = "+".join(self.tier_names[: j + 1])
            out.append(f"  pages entering {names} (holds {'unbounded' if k is None else k}): >= {e} [{m}]")
        out.append(f"  promotions >= {h.promotion_lb} ({h.bytes_up_lb} bytes), demotions >= {h.demotion_lb} "
                   f"({h.bytes_down_lb} bytes), link time >= {h.transfer_us_lb / 1e3:.3f} ms")
        if h.cost_model == "overlap":
            out.append(f"  stall >= {h.stall_us_lb / 1e3:.3f} ms; total >= {h.total_us_lb / 1e3:.3f} ms "
                       f"(compute {h.compute_us / 1e3:.3f} ms)")
        else:
            out.append(f"  total (serial) >= {h.total_us_lb / 1e3:.3f} ms")
        if self.prefetch:
            out.append(f"prefetch references (Cao et al. 1995), fetch time F = {self.fetch_time:.3g} accesses, "
                       f"cache {self.tier0_pages} pages:")
            for k, v in self.prefetch.items():
                out.append(f"  {k:12s} fetches {v.fetches}, stall {v.stall:.1f} ({v.stall_per_access:.3f} per access)")
        out += [f"note: {n}" for n in self.notes + h.notes]
        return out


def oracle_bounds(trace: Trace, scenario: Scenario, *, label: str = "trace", lp_max: int = LP_MAX,
                  fetch_time: float | None = None, prefetch_max: int = 5_000_000) -> OracleReport:
    """Compute every figure of :class:`OracleReport` (see the module docstring)."""
    setup = scenario.build(trace.pages, [(trace.step, trace.page)])
    setup.check_steps(trace.step, trace.page)
    n_pages = len(setup.page_bytes)
    touched = np.unique(trace.page)
    sizes = setup.page_bytes[touched] if len(touched) else np.array([1])
    uniform = bool((sizes == sizes[0]).all())
    s = int(sizes.min())
    cap0 = setup.tiers[0].capacity_bytes
    k0 = None if cap0 is None else cap0 // s
    notes = []
    curves = miss_ratio_curves(trace.page, n_pages)
    kk = len(touched) if k0 is None else min(k0, max(len(touched), 1))
    bel = belady(trace.page, max(int(kk), 1), step=trace.step, n_pages=n_pages).misses if len(trace) else 0
    lp = None
    bsize = None
    if not uniform:
        if len(trace) <= lp_max and cap0 is not None:
            lp = lp_bound(trace.page, trace.step, setup.page_bytes, cap0, max_accesses=lp_max)
        elif cap0 is not None:
            notes.append(f"LP bound skipped: {len(trace)} accesses > lp_max={lp_max}")
        from kvgym.oracle.observe import observe

        bsize = observe(trace, setup, "belady_size", decisions=False).metrics.misses
    hb = hierarchy_bounds(trace, setup, lp_max=lp_max)
    F = fetch_time_units(setup, trace) if fetch_time is None else float(fetch_time)
    pre = {}
    if len(trace) and len(trace) <= prefetch_max and np.isfinite(F):
        pre = prefetch_schedules(trace.page, max(int(kk), 1), F, n_pages)
    elif len(trace) > prefetch_max:
        notes.append(f"prefetch references skipped: {len(trace)} accesses > {prefetch_max}")
    return OracleReport(
        trace_label=label, scenario=scenario, accesses=len(trace), steps=len(np.unique(trace.step)),
        distinct=len(touched), uniform=uniform, page_bytes=s, tier0_pages=k0, belady_misses=int(bel),
        opt_flat_misses=int(curves.opt_misses(kk)), lru_flat_misses=int(curves.lru_misses(kk)), lp=lp,
        belady_size_misses=bsize, hierarchy=hb, fetch_time=F, prefetch=pre, curves=curves,
        tier_names=[t.name for t in setup.tiers], notes=notes)


def oracle_columns(trace: Trace, scenario: Scenario) -> dict:
    """``{"oracle_misses", "oracle"}`` for a leaderboard row: Belady MIN (uniform sizes) or
    ``belady_size`` (variable sizes), on tier-0 misses; gap closed then follows from
    :func:`kvgym.oracle.regret.gap_closed` with the row's and LRU's misses."""
    from kvgym.oracle.regret import oracle_run

    setup = scenario.build(trace.pages, [(trace.step, trace.page)])
    setup.check_steps(trace.step, trace.page)
    r = oracle_run(trace, setup)
    return {"oracle_misses": int(r.misses), "oracle": r.kind}
