"""Run the reference engine with eyes on it: per-access outcome, tier-0 evictions and decisions.

:func:`observe` runs :class:`kvgym.sim.engine.Engine` exactly as a normal run or as an env agent
would (tier-0 victims answered from outside through ``Engine.simulate``'s :class:`Decision`
objects), and records what the regret analysis needs:

- ``loc[i]``: where the page of access ``i`` was just before it (0 = tier-0 hit, ``t >= 1`` = a
  lower tier, -1 = nowhere), read from the engine's ``on_access`` hook;
- every tier-0 eviction, in order (victim, access index, step, step the victim last entered
  tier 0), from ``on_evict``; cold inserts into the backing tier, from ``on_insert``;
- per decision: the candidates' next uses (from the privileged :class:`~kvgym.sim.context.Future`)
  and whether the victim's next use is no sooner than the farthest one (Belady's choice).

The observer is a :class:`~kvgym.sim.policy.Policy` passed as the engine's ``lower_policy``: it
forwards ``scores`` (for tiers below 0) and the hooks to the lower-tier policy the scenario asks
for, so the run is the same run (metrics are tested equal to ``Engine.run``). A policy's own
decisions are taken with the engine's rule: the candidate with the lowest score, ties to the
earliest inserted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kvgym.errors import ConfigError
from kvgym.oracle.nextuse import future as make_future
from kvgym.sim.context import Future
from kvgym.sim.engine import ArrivalOrder, Decision, Engine
from kvgym.sim.metrics import Metrics
from kvgym.sim.policy import Policy, Prefetcher, make_policy
from kvgym.sim.scenario import Setup
from kvgym.traces.format import Trace

#: ``decider(decision, engine) -> page id``: an agent answering tier-0 evictions.
Decider = Callable[[Decision, Engine], int]


class _Tap(Policy):
    """Lower-tier policy wrapper that records what the engine does (see the module docstring)."""

    name = "observer"

    def __init__(self, inner: Policy, own: Policy | None, n_accesses: int):
        self.inner = inner
        self.forward = inner is not own  # ``own``'s hooks are called by the engine itself
        self.loc = np.full(n_accesses, -2, np.int8)
        self.ev_page: list[int] = []
        self.ev_pos: list[int] = []
        self.ev_step: list[int] = []
        self.ev_insert: list[int] = []
        self.cold_inserts = 0

    def bind(self, ctx) -> None:
        super().bind(ctx)
        if self.forward:
            self.inner.bind(ctx)
        self.last_pos = np.full(ctx.n_pages, -1, np.int64)
        self.backing = ctx.setup.backing

    def on_access(self, page: int, tier: int, step: int) -> None:
        pos = self.ctx.pos
        self.loc[pos] = tier
        self.last_pos[page] = pos
        if self.forward and self.inner.on_access is not None:
            self.inner.on_access(page, tier, step)

    def on_insert(self, page: int, tier: int, step: int) -> None:
        if tier != 0 and tier == self.backing:
            self.cold_inserts += 1
        if self.forward and self.inner.on_insert is not None:
            self.inner.on_insert(page, tier, step)

    def on_evict(self, page: int, tier: int, step: int) -> None:
        if tier == 0:
            self.ev_page.append(page)
            self.ev_pos.append(self.ctx.pos)
            self.ev_step.append(step)
            self.ev_insert.append(int(self.ctx.insert_step[page]))
        if self.forward and self.inner.on_evict is not None:
            self.inner.on_evict(page, tier, step)

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        return self.inner.scores(cands, step)


@dataclass(eq=False)
class Observed:
    """What :func:`observe` saw. Arrays over accesses (``loc``) or over tier-0 evictions, in order.

    Eviction arrays: ``evict_page``, ``evict_pos`` (access being served), ``evict_step``,
    ``insert_step`` (step the victim last entered tier 0), and, when decisions were recorded,
    ``next_use`` (the victim's next access index, ``n`` = never), ``oracle_next_use`` (the
    farthest next use among the same candidates), ``candidates`` (how many) and ``good``
    (``next_use >= oracle_next_use``).
    """

    metrics: Metrics
    loc: np.ndarray
    evict_page: np.ndarray
    evict_pos: np.ndarray
    evict_step: np.ndarray
    insert_step: np.ndarray
    next_use: np.ndarray | None
    oracle_next_use: np.ndarray | None
    candidates: np.ndarray | None
    cold_inserts: int
    engine: Engine

    @property
    def hits(self) -> np.ndarray:
        return self.loc == 0

    @property
    def good(self) -> np.ndarray | None:
        return None if self.next_use is None else self.next_use >= self.oracle_next_use

    @property
    def decisions(self) -> int:
        return 0 if self.next_use is None else len(self.next_use)


def policy_decider(policy: Policy) -> Decider:
    """A decider that answers with ``policy``'s choice (lowest score, ties to the earliest inserted)."""
    def decide(d: Decision, engine: Engine) -> int:
        return int(d.candidates[int(np.argmin(policy.scores(d.candidates, engine.ctx.step)))])
    return decide


def observe(trace: Trace, setup: Setup, policy: Policy | str | None = None, *, decider: Decider | None = None,
            prefetcher: Prefetcher | None = None, future: Future | None = None,
            decisions: bool = True) -> Observed:
    """Run ``trace`` under ``setup`` and record it (see the module docstring).

    Give ``policy`` (name or object) for a policy, or ``decider`` for an agent (then lower tiers
    use their arrival order, as :class:`Engine` does without a policy). ``decisions=False`` skips the decision
    log (a plain policy-driven run, faster).
    """
    if isinstance(policy, str):
        policy = make_policy(policy)
    if policy is None and decider is None:
        raise ConfigError("observe: give a policy or a decider")
    n = len(trace)
    if future is None:
        future = make_future(trace.page, len(setup.page_bytes))
    same = setup.scenario.lower_policy == "same" and policy is not None
    tap = _Tap(policy if same else ArrivalOrder(), policy, n)
    external = decider is not None or decisions
    eng = Engine(setup, policy, prefetcher, lower_policy=tap, future=future, external=external and policy is not None)
    if not external:
        eng.run(trace)
        return _result(eng, tap, None)
    if decider is None:
        decider = policy_decider(policy)
    next_pos, first_pos = future.next_pos, future.first_pos
    nu_v, nu_o, n_c = [], [], []
    gen = eng.simulate([(trace.step, trace.page, trace.weight)])
    try:
        d = next(gen)
        while True:
            v = int(decider(d, eng))
            c = d.candidates
            lp = tap.last_pos[c]
            nu = np.where(lp >= 0, next_pos[np.maximum(lp, 0)], first_pos[c])
            k = np.flatnonzero(c == v)
            nu_v.append(int(nu[k[0]]) if len(k) else -1)
            nu_o.append(int(nu.max()))
            n_c.append(len(c))
            d = gen.send(v)
    except StopIteration:
        pass
    return _result(eng, tap, (np.array(nu_v, np.int64), np.array(nu_o, np.int64), np.array(n_c, np.int64)))


def _result(eng: Engine, tap: _Tap, dec) -> Observed:
    arr = lambda x: np.array(x, np.int64)
    return Observed(eng.m, tap.loc, arr(tap.ev_page), arr(tap.ev_pos), arr(tap.ev_step), arr(tap.ev_insert),
                    dec[0] if dec else None, dec[1] if dec else None, dec[2] if dec else None,
                    tap.cold_inserts, eng)
