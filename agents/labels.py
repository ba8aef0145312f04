"""The oracle's privileged view, for labelling decisions (training only, never at evaluation).

At an eviction decision of ``kvgym/Evict-v0`` the env shows candidate pages
(``env.candidate_pages()``) while the access at position ``pos`` of the episode waits for room.
:class:`FutureView` answers, for each candidate, the position of its next access after ``pos``
(``n`` = never again): Belady's MIN evicts the candidate whose next use is farthest, and with
uniform page sizes that is optimal for tier-0 misses (:mod:`kvgym.oracle.belady`). Candidates
are never accessed between the step's start and ``pos`` (every page of the step is pinned), so
"after ``pos``" is "after now".

:class:`OracleAgent` acts on these labels through the env; with every eligible page shown it
reproduces the ``belady`` policy's misses exactly (tested).
"""

from __future__ import annotations

import numpy as np


class FutureView:
    """Next-use look-ups on one trace's page sequence, O(log n) per page, vectorized."""

    def __init__(self, page: np.ndarray):
        page = np.ascontiguousarray(page, np.int64)
        self.n = n = len(page)
        order = np.argsort(page, kind="stable").astype(np.int64)
        # Sorted by (page, position): one searchsorted finds a page's first access after pos.
        self.keys = page[order] * (n + 1) + order

    def next_use(self, pages: np.ndarray, pos: int) -> np.ndarray:
        """Position of each page's first access after ``pos`` (``n`` if none)."""
        pages = np.asarray(pages, np.int64)
        n = self.n
        i = np.searchsorted(self.keys, pages * (n + 1) + pos + 1)
        ok = i < len(self.keys)
        k = self.keys[np.minimum(i, len(self.keys) - 1)]
        ok &= (k // (n + 1)) == pages
        return np.where(ok, k % (n + 1), n)


def decision_pos(env) -> int:
    """Episode position (trace row) of the access waiting for the pending eviction."""
    u = env.unwrapped
    return int(u.window[0] + u.position)


def candidate_next_use(env, future: FutureView) -> tuple[np.ndarray, np.ndarray]:
    """``(next_use, valid)`` per action slot of the pending eviction decision.

    ``next_use[i] - pos`` is the distance (accesses) to candidate ``i``'s next use; invalid
    slots get -1. Reads the env's internals (candidate pages and the current position): this is
    the privileged view and must only serve labelling.
    """
    u = env.unwrapped
    pages = u.candidate_pages()
    valid = pages >= 0
    nxt = np.full(len(pages), -1, np.int64)
    nxt[valid] = future.next_use(pages[valid], decision_pos(env))
    return nxt, valid


def oracle_slot(next_use: np.ndarray, valid: np.ndarray) -> int:
    """Belady's choice among the shown candidates: farthest next use, ties to the lowest slot."""
    nu = np.where(valid, next_use, -1)
    return int(np.argmax(nu))


class OracleAgent:
    """Belady restricted to the shown candidates (privileged; a labeller and a reference)."""

    privileged = True

    def __init__(self, trace):
        self.future = FutureView(trace.page)
        self.env = None

    def attach(self, env) -> None:
        self.env = env

    def reset(self) -> None:
        pass

    def act(self, obs, info) -> int:
        nu, valid = candidate_next_use(self.env, self.future)
        return oracle_slot(nu, valid)


def relaxed_boundary(victim_distances, quantile: float) -> float:
    """The relaxed-Belady boundary (LRB, Song et al., NSDI 2020) of one trace: the ``quantile`` of the
    next-use distances (accesses) of the candidates Belady's MIN would choose at its decisions. With a large cache many
    candidates are reused only beyond it; MIN would evict any of them, so their order among
    themselves is not learned (:func:`kvgym.agents.imitation.loss_fn`). ``inf`` without victims."""
    d = np.asarray(victim_distances, np.float64)
    return float(np.quantile(d, quantile)) if len(d) else float("inf")
