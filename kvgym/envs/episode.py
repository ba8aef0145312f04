"""One env episode on the compiled engine: run to each decision, expose its observation.

:class:`Episode` is the only link between the Gymnasium glue (:mod:`kvgym.envs.evict`) and the
simulator: a :class:`kvgym.sim.compiled.CompiledEngine` with external choosers and observations on
(:mod:`kvgym.envs.observation` specifies them). An attached policy (``PolicyAgent``) keeps all its
state in the same engine and answers :meth:`policy_choice`.
"""

from __future__ import annotations

import numpy as np

from kvgym.envs.observation import N_FEATURES, n_context
from kvgym.sim.compiled import DONE, EVICT, PREFETCH, CompiledEngine
from kvgym.sim.context import Future
from kvgym.sim.metrics import Metrics
from kvgym.sim.scenario import Setup

__all__ = ["DONE", "EVICT", "PREFETCH", "Episode", "next_blocks", "occurrences"]


def next_blocks(pages) -> np.ndarray:
    """``next[p]``: the page holding the token block right after ``p`` (same sequence and layer), or -1."""
    n = len(pages)
    nxt = np.full(n, -1, np.int64)
    if n == 0:
        return nxt
    order = np.lexsort((pages.token_start, pages.layer, pages.seq))
    a, b = order[:-1], order[1:]
    same = (pages.seq[a] == pages.seq[b]) & (pages.layer[a] == pages.layer[b]) & (pages.token_end[a] == pages.token_start[b])
    nxt[a[same]] = b[same]
    return nxt


def occurrences(page: np.ndarray, n_pages: int) -> tuple[np.ndarray, np.ndarray]:
    """Each page's access indices, sorted, packed as ``(occ, starts)`` (for next-use look-ups)."""
    order = np.argsort(page, kind="stable").astype(np.int64)
    starts = np.zeros(n_pages + 1, np.int64)
    np.cumsum(np.bincount(page, minlength=n_pages), out=starts[1:])
    return order, starts


class Episode:
    """An episode's engine and the observation of its pending decision.

    ``obs_c``, ``obs_g``, ``mask`` hold the pending decision's observation; ``sel[:n_sel]`` the pages
    behind the slots (prefetch decisions: slot ``i >= 1`` is ``sel[i - 1]``).
    """

    def __init__(self, setup: Setup, step: np.ndarray, page: np.ndarray, weight, *, k: int, sample: int,
                 prefetch_decisions: bool, seed: int, regret_horizon: int, diagnostics: bool, policy=None,
                 prefetcher=None, buffers: tuple | None = None):
        self.setup = setup
        self.step_arr = np.ascontiguousarray(step, np.int64)
        self.page_arr = np.ascontiguousarray(page, np.int64)
        self.weight = weight
        n = len(setup.page_bytes)
        privileged = (policy is not None and policy.privileged) or getattr(prefetcher, "privileged", False)
        future = Future(self.page_arr, n) if privileged else None
        self.engine = CompiledEngine(setup, policy, prefetcher, future=future, external=True,
                                     pf_external=prefetch_decisions, regret_horizon=regret_horizon,
                                     trace_page=self.page_arr, track_order=True)
        nt = len(setup.tiers)
        if buffers is None:  # (a vector env passes views of its batch arrays instead)
            buffers = (np.zeros((k, N_FEATURES), np.float32), np.zeros(n_context(nt), np.float32), np.zeros(k, np.int8))
        self.obs_c, self.obs_g, self.mask = buffers
        self.sel = np.zeros(k, np.int64)
        self._view = np.zeros(8, np.int64)
        self._fview = np.zeros(1, np.float64)
        nb = next_blocks(setup.pages) if prefetch_decisions else np.full(n, -1, np.int64)
        occ, occ_start = occurrences(self.page_arr, n) if diagnostics else (None, None)
        max_size = float(setup.page_bytes.max()) if n else 1.0
        max_layer = float(max(1, int(setup.pages.layer.max()) if n else 1))
        self.engine.enable_obs(k, sample, int(seed) & 0xFFFFFFFFFFFFFFFF, self.obs_c, self.obs_g, self.mask, self.sel,
                               self._view, self._fview, nb, occ, occ_start, max_size, max_layer)
        self.status = None
        self._elig = np.zeros(max(n, 1), np.int64)

    def start(self) -> int:
        self.status = self.engine.start(self.step_arr, self.page_arr, self.weight)
        return self.status

    def act(self, a: int) -> int:
        """Apply slot ``a`` (already checked against the mask) to the pending decision: the victim, or
        for a prefetch decision slot 0 = none and slot ``i >= 1`` = ``sel[i - 1]``."""
        self.status = self.engine.act_slot(a)
        return self.status

    # -- reads --------------------------------------------------------------------------------
    @property
    def n_sel(self) -> int:
        return int(self._view[0])

    @property
    def n_eligible(self) -> int:
        return int(self._view[1])

    @property
    def step(self) -> int:
        return int(self._view[2])

    @property
    def pos(self) -> int:
        return int(self._view[3])

    @property
    def accesses(self) -> int:
        return int(self._view[5])

    def belady_covered(self) -> int:
        return int(self._view[4])

    def totals(self) -> tuple[float, int, int]:
        """(stall µs, misses, bytes moved) so far, for rewards."""
        v = self._view
        return float(self._fview[0]), int(v[6]), int(v[7])

    def eligible(self) -> np.ndarray:
        """Every eligible victim of the pending eviction decision, in tier-0 insertion order."""
        n = self.engine.residents(0, self._elig, unpinned=True)
        return self._elig[:n].copy()

    def policy_choice(self) -> int:
        return self.engine.policy_choice()

    def metrics(self) -> Metrics:
        return self.engine.metrics()

    def used(self) -> np.ndarray:
        return np.asarray(self.engine.used(), np.int64)
