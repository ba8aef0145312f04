"""Scoring agents and baselines by the fraction of the LRU-to-Belady miss gap they close.

For a trace, ``gap closed = 100 * (misses_LRU - misses) / (misses_LRU - misses_Belady)``: LRU
scores 0, Belady's MIN (the optimal offline policy for tier-0 misses with uniform page sizes)
100; negative means worse than LRU. A trace on which LRU is already optimal has no gap (``None``,
left out of averages and said so in the report).

Agents run through :func:`kvgym.envs.evaluate.evaluate` (the harness's one path for agents),
on ``kvgym/Evict-v0`` with the task's ``k`` and ``sample``; baselines through
:func:`kvgym.sim.run` (the engine every harness sweep uses; the env gives identical metrics for
a policy run as an agent, tested by the env's own suite).
"""

from __future__ import annotations

import numpy as np

from kvgym.agents.task import TaskArgs, gap_closed, policy_misses


def baseline_names() -> list[str]:
    """Every registered non-privileged eviction policy (the heuristics a learned agent must beat)."""
    from kvgym.sim.policy import _POLICIES, policy_names

    return [n for n in policy_names() if not getattr(_POLICIES[n], "privileged", False)]


def refs(task: TaskArgs, lt) -> tuple[int, int]:
    """(LRU misses, Belady misses) on a labelled trace."""
    return policy_misses(task.scenario, lt.trace, "lru"), policy_misses(task.scenario, lt.trace, "belady")


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


def score_agent(agent, task: TaskArgs, lt, seed: int = 0) -> dict:
    """One agent on one labelled trace: misses, gap closed, and its good-decision ratio (the share
    of its evictions whose victim has the farthest next use among the shown candidates, as in
    :mod:`kvgym.oracle.regret`)."""
    from kvgym.envs.evaluate import evaluate

    audited = Audited(agent, lt.trace)
    m = evaluate(audited, task.scenario, lt.trace, k=task.k, sample=task.sample, seed=seed)
    lru, bel = refs(task, lt)
    return {"trace": lt.label, "misses": int(m.misses), "lru": lru, "belady": bel,
            "gap_closed": gap_closed(m.misses, lru, bel), "decisions": audited.decisions,
            "good_decision_ratio": audited.agree / audited.decisions if audited.decisions else None}


def score_policy(name: str, task: TaskArgs, lt) -> dict:
    m = policy_misses(task.scenario, lt.trace, name)
    lru, bel = refs(task, lt)
    return {"trace": lt.label, "misses": int(m), "lru": lru, "belady": bel, "gap_closed": gap_closed(m, lru, bel)}


def heldout(agent, task: TaskArgs) -> dict:
    """An agent on every test-split trace of ``task`` (called after training, never during)."""
    rows = []
    for lt in task.traces("test"):
        r = score_agent(agent, task, lt)
        r.update(workload=lt.workload, seed=lt.seed, unseen_workload=lt.holdout)
        rows.append(r)
    gaps = [r["gap_closed"] for r in rows if r["gap_closed"] is not None]
    return {"task": task.task_dict(), "traces": rows,
            "mean_gap_closed": float(np.mean(gaps)) if gaps else None,
            "traces_without_gap": [r["trace"] for r in rows if r["gap_closed"] is None]}


def baselines_heldout(task: TaskArgs, names: list[str] | None = None) -> dict:
    """Every baseline (and Belady, LRU) on the test split: ``{policy: [row per trace]}``."""
    names = baseline_names() if names is None else names
    out: dict[str, list[dict]] = {}
    traces = task.traces("test")
    for n in [*names, "belady"]:
        out[n] = []
        for lt in traces:
            r = score_policy(n, task, lt)
            r.update(workload=lt.workload, seed=lt.seed, unseen_workload=lt.holdout)
            out[n].append(r)
    return out
