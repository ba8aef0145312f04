"""The reference engine: exact, readable, one page at a time, with decision points.

Semantics (kv-hierarchy-lab's, with its fixes F1 and F2 generalised to multi-access steps):

Per decode step t with accesses S_t (in trace order), every page of S_t is **pinned** for the
whole step: it is never chosen as a victim in any tier. For each access of page P:

1. ``on_access`` hooks run (before any placement or eviction caused by this access).
2. P in tier 0: a hit. Else a miss: P in tier i > 0 is promoted straight to tier 0 (a lower-tier
   hit); P resident nowhere (a full miss: first touch, or dropped from the coldest tier) is first
   cold-inserted into the backing tier (free: no time, no bytes), then promoted from there.
   With ``first_touch="create"`` a first touch is instead placed straight into tier 0 (room is
   made as for a promotion; no transfer, no bytes; ``on_insert(P, 0)``).
3. A promotion first removes P from its source tier (F1: so it is never its own victim and its
   bytes are free at once), then makes room in tier 0, adds P, charges the transfer, and calls
   ``on_insert(P, 0)``.
4. Making room in tier T for X: while X does not fit, evict the lowest-scored unpinned resident
   of T (ties: the earliest inserted). Tier 0 uses the eviction policy (or the agent); lower tiers
   use ``lower_policy``: ``lru`` (default), each lower tier is an LRU of its own in which a page's
   use of the tier is its arrival (a demotion or cold insertion; reading it promotes it out), so
   the page that arrived first leaves first, as demoted blocks enter the MRU end of an exclusive
   lower cache (Wong & Wilkes, "My cache or yours?", USENIX ATC 2002); or ``same``, the tier-0
   policy's own scores. Evicting V from tier i calls ``on_evict(V, i)``; if tier i+1 exists V is
   demoted: room is made in tier i+1 first (recursively), then V is added there and the demotion
   charged; from the last tier V is dropped.

After the step's accesses, if prefetch is on, the prefetcher proposes pages (at most
``max_prefetch``): those already in tier 0 are skipped, those resident nowhere are cold-inserted,
the rest are promoted as prefetches (kind ``prefetch``). A pending prefetch is *useful* when
demanded, *wasted* when evicted from tier 0 first or still pending at the end.

The engine is written as generators: when tier-0 victims are chosen externally (the Gym env),
``simulate`` yields a :class:`Decision` and expects the chosen page id to be sent back. For
speed, :mod:`kvgym.sim.compiled` runs the same rules in C (held equal by the property tests).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from kvgym.errors import SimulationError
from kvgym.sim.context import Future, SimContext
from kvgym.sim.costs import COST_MODELS
from kvgym.sim.metrics import Metrics
from kvgym.sim.policy import Policy, Prefetcher
from kvgym.sim.scenario import Setup
from kvgym.traces.format import Trace


@dataclass
class Decision:
    """A tier-0 eviction to decide: pick one page of ``candidates`` (insertion order).

    ``incoming``: the page room is being made for; ``need_bytes``: bytes still to free;
    ``kind``: ``demand`` or ``prefetch``.
    """

    candidates: np.ndarray
    incoming: int
    need_bytes: int
    kind: str


class ArrivalOrder(Policy):
    """Lower tiers' default order (``lower_policy="lru"``): the earliest arrival in the tier goes first."""

    name = "arrival"

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        return np.zeros(len(cands), np.int64)  # all tie: the earliest inserted is evicted


class Engine:
    """Simulate a trace under a scenario setup with a policy (and optional prefetcher).

    Args:
        setup: ``Scenario.build(pages)``.
        policy: tier-0 eviction policy, or ``None`` when an agent decides (``simulate`` yields).
        prefetcher: used when the scenario has ``prefetch`` on.
        lower_policy: policy for tiers below 0 (default per scenario: LRU or the same policy).
        future: privileged next-use view; built automatically when a privileged policy needs it.
        external: tier-0 victims come from outside (``simulate`` yields) even though ``policy``
            is given; the policy still receives every hook (and serves lower tiers under
            ``lower_policy="same"``), so an agent wrapping it sees a normal run's state.
    """

    def __init__(self, setup: Setup, policy: Policy | None, prefetcher: Prefetcher | None = None, *,
                 lower_policy: Policy | None = None, future: Future | None = None, external: bool = False):
        self.setup = setup
        self.external = external or policy is None
        n_t = len(setup.tiers)
        self.ctx = ctx = SimContext(setup)
        ctx.future = future
        self.policy = policy
        if lower_policy is None:
            lower_policy = policy if setup.scenario.lower_policy == "same" and policy is not None else ArrivalOrder()
        self.lower = lower_policy
        self.prefetcher = prefetcher if setup.scenario.prefetch else None
        self.caps = [t.capacity_bytes if t.capacity_bytes is not None else np.iinfo(np.int64).max for t in setup.tiers]
        self.size = setup.page_bytes
        self.res: list[dict[int, None]] = [{} for _ in range(n_t)]
        self.used = [0] * n_t
        self.pinned = np.zeros(ctx.n_pages, bool)
        self.seen = np.zeros(ctx.n_pages, bool)
        self.pending: set[int] = set()
        self.m = Metrics(n_t)
        self.cost = COST_MODELS[setup.scenario.cost_model](setup, self.m)
        self.backing = setup.backing
        self.create = setup.scenario.first_touch == "create"
        self.max_prefetch = setup.scenario.max_prefetch
        objs = []
        for o in (policy, lower_policy, self.prefetcher):
            if o is not None and all(o is not x for x in objs):
                objs.append(o)
        for o in objs:
            o.bind(ctx)
        self._on_access = [o.on_access for o in objs if o.on_access is not None]
        self._on_insert = [o.on_insert for o in objs if o.on_insert is not None]
        self._on_evict = [o.on_evict for o in objs if o.on_evict is not None]
        self.finished = False

    # -- running ------------------------------------------------------------------------
    def run(self, trace: Trace) -> Metrics:
        """Simulate a whole in-memory trace with the built-in policy; return the metrics."""
        return self.run_chunks([(trace.step, trace.page, trace.weight)])

    def run_chunks(self, chunks: Iterable) -> Metrics:
        if self.external:
            raise SimulationError("Engine.run needs a policy; agents drive Engine.simulate")
        for _ in self.simulate(chunks):
            raise SimulationError("internal: a decision was requested from a policy-driven run")
        return self.m

    def simulate(self, chunks: Iterable) -> Iterator[Decision]:
        """Generator over ``(step, page, weight)`` chunks; yields :class:`Decision` when the policy is external."""
        pos = 0
        carry = None
        for step, page, weight in chunks:
            if carry is not None:  # a step may straddle chunks: finish it with the next one
                step, page = np.concatenate([carry[0], step]), np.concatenate([carry[1], page])
                weight = None if weight is None else np.concatenate([carry[2], weight])
            if len(step) == 0:
                continue
            if pos == 0:
                self.ctx.has_weights = weight is not None
            bounds = np.flatnonzero(np.diff(step)) + 1
            last = int(bounds[-1]) if len(bounds) else 0
            starts = np.r_[0, bounds[:-1]] if len(bounds) else np.zeros(0, np.int64)
            for a, b in zip(starts, bounds):
                yield from self._step(int(step[a]), page[a:b], None if weight is None else weight[a:b], pos)
                pos += b - a
            carry = (step[last:], page[last:], None if weight is None else weight[last:])
        if carry is not None and len(carry[0]):
            yield from self._step(int(carry[0][0]), carry[1], carry[2], pos)
        self.finish()

    def finish(self) -> None:
        if not self.finished:
            self.m.prefetch_wasted += len(self.pending)
            self.pending.clear()
            self.finished = True

    # -- one step -------------------------------------------------------------------------
    def _step(self, s: int, pages: np.ndarray, weights, pos0: int):
        ctx, m, cost = self.ctx, self.m, self.cost
        ctx.step = s
        self.pinned[pages] = True
        cost.begin_step(s, pages)
        m.steps += 1
        m.tokens += len(np.unique(ctx.pages.seq[pages]))
        for j in range(len(pages)):
            p = int(pages[j])
            ctx.pos = pos0 + j
            loc = int(ctx.tier_of[p])
            for h in self._on_access:
                h(p, loc, s)
            if ctx.evict_step[p] >= 0 and s - ctx.evict_step[p] <= ctx.regret_horizon and loc != 0:
                ctx.regret[p] += 1
            ctx.last_access[p] = s
            ctx.freq[p] += 1
            if weights is not None:
                ctx.weight_sum[p] += weights[j]
            m.accesses += 1
            if loc == 0:
                m.hits += 1
                m.tier_hits[0] += 1
                if cost.hit(p):
                    m.prefetch_late += 1
            else:
                m.misses += 1
                if loc < 0:
                    m.full_misses += 1
                    first = not self.seen[p]
                    m.first_touch_misses += first
                    if first and self.create:
                        yield from self._create(p)
                    else:
                        yield from self._cold_insert(p)
                        yield from self._promote(p, self.backing, "demand")
                else:
                    m.tier_hits[loc] += 1
                    yield from self._promote(p, loc, "demand")
            self.seen[p] = True
            if p in self.pending:
                self.pending.discard(p)
                m.prefetch_useful += 1
        if self.prefetcher is not None and self.max_prefetch:
            cost.begin_prefetch()
            yield from self._prefetch(s, pages)
        self.pinned[pages] = False
        cost.end_step()

    def _prefetch(self, s: int, pages: np.ndarray):
        ctx = self.ctx
        ids = list(self.prefetcher.propose(s, pages))[: self.max_prefetch]
        for c in ids:
            c = int(c)
            if not 0 <= c < ctx.n_pages or ctx.tier_of[c] == 0:
                continue
            if ctx.tier_of[c] < 0:
                yield from self._cold_insert(c)
            if c in self.pending:
                continue
            self.pending.add(c)
            self.m.prefetch_issued += 1
            yield from self._promote(c, int(ctx.tier_of[c]), "prefetch")

    # -- placement ------------------------------------------------------------------------
    def _add(self, p: int, t: int) -> None:
        self.res[t][p] = None
        self.ctx.tier_of[p] = t
        self.used[t] += int(self.size[p])
        self.m.peak_bytes[t] = max(self.m.peak_bytes[t], self.used[t])

    def _remove(self, p: int, t: int) -> None:
        del self.res[t][p]
        self.ctx.tier_of[p] = -1
        self.used[t] -= int(self.size[p])

    def _cold_insert(self, p: int):
        b = self.backing
        yield from self._make_room(b, p)
        self._add(p, b)
        for h in self._on_insert:
            h(p, b, self.ctx.step)

    def _create(self, p: int):
        """A first touch under ``first_touch="create"``: new KV placed in tier 0, nothing moved."""
        yield from self._make_room(0, p)
        self._add(p, 0)
        self.ctx.insert_step[p] = self.ctx.step
        for h in self._on_insert:
            h(p, 0, self.ctx.step)

    def _promote(self, p: int, src: int, kind: str):
        self._remove(p, src)
        yield from self._make_room(0, p, kind)
        self._add(p, 0)
        self.ctx.insert_step[p] = self.ctx.step
        self.cost.transfer(src, 0, p, kind)
        link = self.m.link_bytes_demand if kind == "demand" else self.m.link_bytes_prefetch
        link[src] += int(self.size[p])
        for h in self._on_insert:
            h(p, 0, self.ctx.step)

    def candidates(self, t: int) -> np.ndarray:
        """Unpinned residents of tier ``t``, in insertion order."""
        r = self.res[t]
        c = np.fromiter(r, np.int64, len(r))
        return c[~self.pinned[c]]

    def _make_room(self, t: int, incoming: int, kind: str = "demand"):
        need = int(self.size[incoming])
        while self.used[t] + need > self.caps[t]:
            cands = self.candidates(t)
            if len(cands) == 0:
                raise SimulationError(
                    f"tier {t} ({self.setup.tiers[t].name!r}) cannot make room for page {incoming} at step "
                    f"{self.ctx.step}: every resident is pinned by this step")
            if t == 0 and self.external:
                v = yield Decision(cands, incoming, self.used[t] + need - self.caps[t], kind)
                v = int(v)
                if self.ctx.tier_of[v] != 0 or self.pinned[v]:
                    raise SimulationError(f"victim {v} is not an unpinned tier-0 resident")
            else:
                pol = self.policy if t == 0 else self.lower
                v = int(cands[int(np.argmin(pol.scores(cands, self.ctx.step)))])
            yield from self._evict(v, t)

    def _evict(self, v: int, t: int):
        ctx, m = self.ctx, self.m
        self._remove(v, t)
        m.evictions[t] += 1
        for h in self._on_evict:
            h(v, t, ctx.step)
        if t == 0:
            ctx.evict_step[v] = ctx.step
            self.cost.forget(v)
            if v in self.pending:
                self.pending.discard(v)
                m.prefetch_wasted += 1
        if t + 1 < len(self.res):
            yield from self._make_room(t + 1, v)
            self._add(v, t + 1)
            self.cost.transfer(t, t + 1, v, "demotion")
            m.link_bytes_demotion[t + 1] += int(self.size[v])

    # -- inspection -----------------------------------------------------------------------
    def residents(self, t: int) -> np.ndarray:
        r = self.res[t]
        return np.fromiter(r, np.int64, len(r))

    def check_invariants(self) -> None:
        """Assert the engine's invariants (used by property tests)."""
        seen: set[int] = set()
        for t, r in enumerate(self.res):
            assert not (seen & r.keys()), "a page is resident in two tiers"
            seen |= r.keys()
            assert self.used[t] == int(self.size[list(r)].sum()) if r else self.used[t] == 0
            assert self.used[t] <= self.caps[t], f"tier {t} over capacity"
        assert self.pending <= self.res[0].keys()


def simulate(trace: Trace, scenario, policy: Policy | str = "lru", prefetcher: Prefetcher | str | None = None,
             **policy_params) -> Metrics:
    """Run ``trace`` under ``scenario`` in this reference engine: :func:`kvgym.sim.run` with ``engine="reference"``."""
    from kvgym.sim import run

    return run(trace, scenario, policy, prefetcher, engine="reference", **policy_params)
