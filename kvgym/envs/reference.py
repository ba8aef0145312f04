"""The reference env backend: :class:`kvgym.sim.engine.Engine` driven through its generator.

Used when Python objects must see every engine hook: a baseline policy wrapped as an agent
(:class:`kvgym.envs.agents.PolicyAgent`), or a Python prefetcher on Evict-v0 (a scenario with
``prefetch`` on). The engine yields a :class:`~kvgym.sim.engine.Decision` whenever tier 0 needs
a victim; this class selects and describes the candidates with the same kernels as the compiled
core (defined in :mod:`kvgym.envs.core`, specified in :mod:`kvgym.envs.kernels`), so observations
are identical on both backends. Prefetch
*decisions* (EvictPrefetch-v0) exist only on the compiled core.
"""

from __future__ import annotations

from itertools import islice

import numpy as np

from kvgym.envs.core import (
    DONE,
    EVICT,
    belady_covered,
    decision_seed,
    fill_context,
    fill_features,
    sample_slots,
    sort_pages,
)
from kvgym.sim.context import Future
from kvgym.sim.engine import Engine
from kvgym.sim.metrics import Metrics
from kvgym.sim.policy import Policy, Prefetcher
from kvgym.sim.scenario import Setup
from kvgym.sim.tiers import transfer_alpha_beta


class ReferenceSim:
    """One episode on the reference engine; same interface as :class:`kvgym.envs.core.CompiledSim`."""

    def __init__(self, setup: Setup, step: np.ndarray, page: np.ndarray, weight, *, k: int, sample: int,
                 seed: int, regret_horizon: int, diagnostics: bool, obs_shapes, policy: Policy | None = None,
                 prefetcher: Prefetcher | None = None):
        self.setup = setup
        tiers = setup.tiers
        nt = len(tiers)
        n = len(setup.page_bytes)
        self.step_arr = np.asarray(step, np.int64)
        self.page_arr = np.asarray(page, np.int64)
        privileged = (policy is not None and policy.privileged) or getattr(prefetcher, "privileged", False)
        future = Future(self.page_arr, n) if privileged else None
        self.engine = Engine(setup, policy, prefetcher, future=future, external=True)
        self.engine.ctx.regret_horizon = regret_horizon
        self.policy = policy
        self.gen = self.engine.simulate([(self.step_arr, self.page_arr, weight)])
        self.k, self.sample, self.seed = k, sample, seed
        self.diagnostics = diagnostics
        if diagnostics:
            from kvgym.envs.core import occurrences

            self.occ, self.occ_start = occurrences(self.page_arr, n)
        self.n_acc = len(self.page_arr)
        # Step bounds, to find the current step's pages from ctx.pos.
        self.bounds = np.r_[0, np.flatnonzero(np.diff(self.step_arr)) + 1, self.n_acc].astype(np.int64)
        self.alpha = np.array([0.0] + [transfer_alpha_beta(t, tiers[0])[0] for t in tiers[1:]])
        self.beta = np.array([np.inf] + [transfer_alpha_beta(t, tiers[0])[1] for t in tiers[1:]])
        self.caps = np.array([t.capacity_bytes if t.capacity_bytes is not None else -1 for t in tiers], np.float64)
        self.max_size = float(setup.page_bytes.max()) if n else 1.0
        self.max_layer = float(max(1, int(setup.pages.layer.max()) if n else 1))
        self.serial = setup.scenario.cost_model == "serial"
        self.free = np.zeros((nt, max(t.channels for t in tiers)))
        self.pending = np.zeros(n, bool)
        self._pend_list = np.zeros(0, np.int64)
        (kk, f), g = obs_shapes
        self.obs_c = np.zeros((kk, f), np.float32)
        self.obs_g = np.zeros(g, np.float32)
        self.mask = np.zeros(kk, np.int8)
        self.sel = np.zeros(k, np.int64)
        self.rank = np.zeros(max(n, 1), np.int64)  # tier-0 insertion rank of each eligible page
        self.mark = np.zeros(max(n, 1), np.int64)
        self._stamp = 0
        self._ka = np.zeros(max(n, k, 1), np.int64)
        self._kb = np.zeros(max(n, k, 1), np.int64)
        # Tier 0's slots in the compiled core's order (append on entry, swap-remove on eviction), so
        # that both backends draw the same sample. Between two decisions the engine removes only the
        # victim sent and appends pages at the end of its insertion-ordered dict.
        self.slots = np.zeros(max(n, 1), np.int64)
        self.slot_of = np.zeros(max(n, 1), np.int64)
        self.n_slots = 0
        self._victim = -1
        self.decision = None
        self.decisions = 0
        self.status = None
        self._bel = -1
        self._n_sel = 0

    def start(self) -> int:
        return self._next(lambda: next(self.gen))

    def act(self, a: int) -> int:
        v = int(self.sel[a])
        self.decisions += 1
        self._victim = v
        return self._next(lambda: self.gen.send(v))

    def _sync_slots(self) -> None:
        slots, slot_of = self.slots, self.slot_of
        v = self._victim
        if v >= 0:
            i, last = slot_of[v], self.n_slots - 1
            slots[i] = slots[last]
            slot_of[slots[i]] = i
            self.n_slots = last
            self._victim = -1
        res0 = self.engine.res[0]
        new = len(res0) - self.n_slots
        if new > 0:
            added = list(islice(reversed(res0), new))[::-1]
            slots[self.n_slots:self.n_slots + new] = added
            slot_of[added] = np.arange(self.n_slots, self.n_slots + new)
            self.n_slots += new

    def _next(self, resume) -> int:
        try:
            self.decision = resume()
        except StopIteration:
            self.decision = None
            self.status = DONE
            return DONE
        self._observe()
        self.status = EVICT
        return EVICT

    def _observe(self) -> None:
        self._sync_slots()
        d, eng = self.decision, self.engine
        ctx = eng.ctx
        elig = np.ascontiguousarray(d.candidates, np.int64)
        n = len(elig)
        k, sample, sel = self.k, self.sample, self.sel
        self.rank[elig] = np.arange(n)  # Decision.candidates come in tier-0 insertion order
        if n <= k:
            m = n
            sel[:n] = elig
        else:
            key = np.maximum(ctx.last_access[elig], ctx.insert_step[elig])
            order = np.lexsort((np.arange(n), key))
            tail = k - sample
            sel[:tail] = elig[order[:tail]]
            self._stamp += 1
            self.mark[sel[:tail]] = self._stamp
            dseed = np.uint64(decision_seed(self.seed, self.decisions))
            got = sample_slots(self.slots, self.n_slots, sample, dseed, eng.pinned, True, self.mark, self._stamp,
                               sel, tail)
            m = tail + got
            if got < sample:  # too few eligible among the residents: extend the LRU tail
                rest = elig[order[tail:]]
                rest = rest[self.mark[rest] != self._stamp][: sample - got]
                sel[m:m + len(rest)] = rest
                m += len(rest)
        sort_pages(sel, m, ctx.last_access, ctx.insert_step, self.rank, self._ka, self._kb)
        self._n_sel = m
        self._elig = elig
        if self.diagnostics:
            self._bel = belady_covered(elig, n, self.sel, m, ctx.pos, self.occ, self.occ_start, self.n_acc)
        self.mask[:] = 0
        self.mask[:m] = 1
        self.pending[self._pend_list] = False
        self._pend_list = np.fromiter(eng.pending, np.int64, len(eng.pending))
        self.pending[self._pend_list] = True
        nt = len(self.setup.tiers)
        fill_features(self.obs_c, self.sel, m, 0, 0, ctx.step, ctx.last_access, ctx.insert_step, ctx.freq,
                      ctx.weight_sum, ctx.evict_step, ctx.regret, ctx.tier_of, self.pending, self.setup.page_bytes,
                      self.setup.pages.layer, self.setup.decode_us, self.alpha, self.beta, self.max_size,
                      self.max_layer, self.setup.backing)
        now = 0.0
        if not self.serial:
            cost = eng.cost
            now = cost.now
            for t in range(1, nt):
                self.free[t, : len(cost.free[t])] = cost.free[t]
        b = int(np.searchsorted(self.bounds, ctx.pos, side="right"))
        step_pages = np.unique(self.page_arr[self.bounds[b - 1]:self.bounds[b]])
        step_bytes = int(self.setup.page_bytes[step_pages].sum())
        fill_context(self.obs_g, np.asarray(eng.used, np.int64), self.caps, self.free, now, self.serial, ctx.pos,
                     self.n_acc, step_bytes, eng.m.misses, eng.m.accesses, n, self.k, 0,
                     1 if d.kind == "prefetch" else 0)

    # -- reads for the env ----------------------------------------------------------------
    @property
    def n_sel(self) -> int:
        return self._n_sel

    @property
    def n_eligible(self) -> int:
        return 0 if self.decision is None else len(self.decision.candidates)

    @property
    def step(self) -> int:
        return int(self.engine.ctx.step)

    @property
    def pos(self) -> int:
        return int(self.engine.ctx.pos)

    def eligible(self) -> np.ndarray:
        """Every eligible victim, in tier-0 insertion order (the engine's Decision.candidates)."""
        return np.asarray(self.decision.candidates, np.int64).copy()

    def belady_covered(self) -> int:
        return int(self._bel)

    def totals(self) -> list[float]:
        m = self.engine.m
        return [float(m.stall_us), float(m.misses), float(m.bytes_moved)]

    @property
    def accesses(self) -> int:
        return int(self.engine.m.accesses)

    def metrics(self) -> Metrics:
        return self.engine.m

    def used(self) -> np.ndarray:
        return np.asarray(self.engine.used, np.int64)

    def residents(self, t: int) -> np.ndarray:
        return self.engine.residents(t)
