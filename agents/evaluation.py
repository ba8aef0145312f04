"""Scoring agents, baselines and references on benchmark cases, per trace and per family.

Per case: tier-0 misses, LRU's and Belady's misses, and the gap closed (the one definition,
:mod:`kvgym.oracle.gap`). Agents run through :func:`kvgym.envs.evaluate.evaluate` (the harness's
one path for agents) with their own ``k`` and ``sample``; registered policies through
:func:`kvgym.sim.run` (the env gives identical metrics for a policy run as an agent).

:func:`heldout` scores an agent on the **test** split of every family; it is the only reader of
test cases and runs inside ``LEDGER.evaluation()``. Training and validation use
:func:`score_cases` on validation cases, inside ``LEDGER.development()``.
"""

from __future__ import annotations

import numpy as np

from kvgym.oracle.gap import gap_closed, mean_gap_closed, pooled_gap_closed


def sample_std(xs) -> float | None:
    """The sample standard deviation (ddof 1) of the values that are not ``None``; ``None`` below two."""
    xs = [x for x in xs if x is not None]
    return float(np.std(xs, ddof=1)) if len(xs) > 1 else None


def pct(x) -> str:
    """A percentage for log lines ("-" for None)."""
    return "-" if x is None else f"{x:.1f}%"


def baseline_names() -> list[str]:
    """Every registered non-privileged eviction policy (the heuristics a learned agent must beat)."""
    from kvgym.sim.policy import make_policy, policy_names

    return [n for n in policy_names() if not make_policy(n).privileged]


_MISSES: dict[tuple, int] = {}


def policy_misses(case, policy: str) -> int:
    """Tier-0 misses of a registered policy (or ``"reference"``, the case's generator-aware
    reference, :mod:`kvgym.agents.references`) on a case, cached by the case's trace and scenario."""
    key = (case.label, case.digest, policy)
    if key not in _MISSES:
        from kvgym.sim import run

        if policy == "reference":
            from kvgym.agents.references import reference_policy

            pol = reference_policy(case)
            if pol is None:
                raise ValueError(f"case {case.label} has no generator-aware reference")
            _MISSES[key] = int(run(case.trace, case.scenario, pol).misses)
        else:
            _MISSES[key] = int(run(case.trace, case.scenario, policy).misses)
    return _MISSES[key]


def refs(case) -> tuple[int, int]:
    """(LRU misses, Belady misses) of a case."""
    return policy_misses(case, "lru"), policy_misses(case, "belady")


class Audited:
    """Forwards to an agent and counts how often its victim is one Belady would pick among the
    shown candidates (farthest next use). Reads the future: for scoring only, never for acting."""

    def __init__(self, agent, trace):
        from kvgym.agents.labels import FutureView

        self.agent, self.future = agent, FutureView(trace.page)
        self.env = None
        self.decisions = self.agree = 0

    def attach(self, env) -> None:
        self.env = env
        if hasattr(self.agent, "attach"):
            self.agent.attach(env)

    def reset(self) -> None:
        if callable(getattr(self.agent, "reset", None)):
            self.agent.reset()

    def act(self, obs, info) -> int:
        from kvgym.agents.labels import candidate_next_use
        from kvgym.envs.agents import choose

        a = choose(self.agent, obs, info, self.env)
        if self.env.unwrapped.phase == "evict":
            nu, valid = candidate_next_use(self.env, self.future)
            self.decisions += 1
            self.agree += int(nu[a] == nu[valid].max())
        return a


def case_info(case) -> dict:
    return {"case": case.label, "family": case.family, "variant": case.variant, "workload": case.workload,
            "seed": case.seed, "capacity": case.capacity, "digest": case.digest}


def score_agent(agent, case, env_kwargs: dict, seed: int = 0) -> dict:
    """One agent on one case: misses, gap closed, and its good-decision ratio (the share of its
    evictions whose victim has the farthest next use among the shown candidates)."""
    from kvgym.envs.evaluate import evaluate

    audited = Audited(agent, case.trace)
    m = evaluate(audited, case.scenario, case.trace, seed=seed, reward="misses", **env_kwargs)
    lru, bel = refs(case)
    return {**case_info(case), "misses": int(m.misses), "lru": lru, "belady": bel,
            "gap_closed": gap_closed(m.misses, lru, bel), "decisions": audited.decisions,
            "good_decision_ratio": audited.agree / audited.decisions if audited.decisions else None}


def score_cases(agent, cases, env_kwargs: dict) -> list[dict]:
    return [score_agent(agent, c, env_kwargs) for c in cases]


def by_family(rows: list[dict]) -> dict[str, dict]:
    """Per family: mean and pooled gap closed (:mod:`kvgym.oracle.gap`), traces, traces with a gap."""
    out: dict[str, dict] = {}
    for letter in dict.fromkeys(r["family"] for r in rows):
        rs = [(r["misses"], r["lru"], r["belady"]) for r in rows if r["family"] == letter]
        out[letter] = {"mean_gap_closed": mean_gap_closed(rs), "pooled_gap_closed": pooled_gap_closed(rs),
                       "traces": len(rs), "with_gap": sum(lru > bel for _, lru, bel in rs)}
    return out


def selection_score(rows: list[dict]) -> float | None:
    """Model selection on validation: the mean over families of the pooled gap closed (each family
    counts once, whatever its number of traces or misses)."""
    vals = [f["pooled_gap_closed"] for f in by_family(rows).values() if f["pooled_gap_closed"] is not None]
    return float(np.mean(vals)) if vals else None


def heldout(agent, task, env_kwargs: dict) -> dict:
    """An agent on the test split of every family of the benchmark (after training, never during)."""
    from kvgym.agents.benchmark import LEDGER

    bench = task.bench()
    with LEDGER.evaluation():
        rows = score_cases(agent, bench.cases("test"), env_kwargs)
    return {"task": task.task_dict(), "env": dict(env_kwargs), "traces": rows, "families": by_family(rows)}
