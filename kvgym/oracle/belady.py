"""Exact Belady MIN for one cache of uniform pages, compiled (an indexed max-heap keyed by next use).

Problem: a cache of ``capacity`` pages; on every access the page must be in the cache (demand
paging: a miss inserts it, no bypass); on a miss with a full cache one resident is evicted. MIN
evicts the resident whose next use is farthest (never = farthest); no policy has fewer misses.

Two semantics:

- **flat** (``step=None``): every access is its own step, the classic setting of the stack pass
  (:mod:`kvgym.oracle.stack`).
- **pinned steps** (``step`` given): the engine's semantics (:mod:`kvgym.sim.engine`): all pages of
  a decode step are needed at once and are never victims during that step. MIN then evicts the
  unpinned resident with the farthest next use. This is still optimal: replacing each step
  ``S_t`` by its accesses followed by a re-access of every page of ``S_t`` gives a flat sequence
  on which plain MIN never evicts a pinned page (their next use is inside the step, every other
  page's is after it), and any engine policy is a policy on that sequence without extra misses.
  A step whose distinct pages alone exceed the capacity raises :class:`SimulationError` (the
  engine does the same).

Misses include first touches (compulsory misses), as the engine's ``Metrics.misses`` does. Ties
between pages never used again do not change the miss count. Cost: O(n log capacity) time,
O(n + pages) memory; 10M accesses take a few seconds (``benchmarks/bench_oracle.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from kvgym.errors import ConfigError, SimulationError
from kvgym.oracle.nextuse import next_use


@numba.njit(cache=True, inline="always")
def _up(h, key, hpos, i):
    p = h[i]
    k = key[p]
    while i > 0:
        par = (i - 1) >> 1
        q = h[par]
        if key[q] >= k:
            break
        h[i] = q
        hpos[q] = i
        i = par
    h[i] = p
    hpos[p] = i


@numba.njit(cache=True, inline="always")
def _down(h, key, hpos, i, size):
    p = h[i]
    k = key[p]
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        r = c + 1
        if r < size and key[h[r]] > key[h[c]]:
            c = r
        q = h[c]
        if key[q] <= k:
            break
        h[i] = q
        hpos[q] = i
        i = c
    h[i] = p
    hpos[p] = i


@numba.njit(cache=True)
def _belady(page, nxt, n_pages, cap, starts, record):
    """MIN over steps ``[starts[s], starts[s+1])`` (flat when every step has one access).

    Returns ``(misses, bad_pos, hits, ev_page, ev_pos, n_ev)``; ``bad_pos >= 0`` names an access
    whose step cannot fit (every resident pinned).
    """
    n = page.shape[0]
    h = np.empty(max(cap, 1), np.int64)
    hpos = np.full(n_pages, -1, np.int64)
    key = np.zeros(n_pages, np.int64)
    m = n if record else 0
    hits = np.zeros(m, np.bool_)
    ev_page = np.empty(m, np.int64)
    ev_pos = np.empty(m, np.int64)
    n_ev = 0
    size = 0
    misses = 0
    n_steps = starts.shape[0] - 1
    flat = n_steps == n
    for s in range(n_steps):
        a = starts[s]
        b = starts[s + 1]
        for i in range(a, b):
            p = page[i]
            # Pinned pages get a key below every unpinned page's next use (>= b) for the step.
            kk = nxt[i] if flat else b - 1
            j = hpos[p]
            if j >= 0:
                if record:
                    hits[i] = True
                key[p] = kk
                _up(h, key, hpos, j)
                _down(h, key, hpos, hpos[p], size)
                continue
            misses += 1
            if size >= cap:
                v = h[0]
                if key[v] < b and not flat:
                    return misses, i, hits, ev_page, ev_pos, n_ev
                size -= 1
                hpos[v] = -1
                if size > 0:
                    h[0] = h[size]
                    hpos[h[0]] = 0
                    _down(h, key, hpos, 0, size)
                if record:
                    ev_page[n_ev] = v
                    ev_pos[n_ev] = i
                    n_ev += 1
            key[p] = kk
            h[size] = p
            hpos[p] = size
            size += 1
            _up(h, key, hpos, size - 1)
        if not flat:
            # End of the step: each page gets back its real next use (that of its last access).
            for i in range(a, b):
                if nxt[i] >= b:
                    p = page[i]
                    key[p] = nxt[i]
                    _up(h, key, hpos, hpos[p])
    return misses, -1, hits, ev_page, ev_pos, n_ev


@dataclass(frozen=True, eq=False)
class BeladyResult:
    """Outcome of :func:`belady`.

    ``misses``: misses including first touches. With ``record``: ``hits`` (bool per access) and
    the evictions in order, ``evict_page`` / ``evict_pos`` (victim and the access index that
    caused the eviction).
    """

    capacity: int
    accesses: int
    misses: int
    hits: np.ndarray | None = None
    evict_page: np.ndarray | None = None
    evict_pos: np.ndarray | None = None

    @property
    def miss_ratio(self) -> float:
        return self.misses / self.accesses if self.accesses else 0.0


def step_starts(step) -> np.ndarray:
    """Start offsets of each run of equal ``step`` values, plus ``len(step)`` at the end."""
    step = np.asarray(step)
    if len(step) == 0:
        return np.zeros(1, np.int64)
    return np.concatenate(([0], np.flatnonzero(np.diff(step)) + 1, [len(step)])).astype(np.int64)


def belady(page, capacity: int, *, step=None, n_pages: int | None = None, next_pos=None,
           record: bool = False) -> BeladyResult:
    """Belady MIN misses of ``page`` (int ids) for a cache of ``capacity`` pages.

    Args:
        step: per-access decode step (non-decreasing) for the engine's pinned-step semantics;
            ``None`` for the flat sequence.
        n_pages: page-id bound (default ``max(page) + 1``).
        next_pos: precomputed next-use array (:func:`kvgym.oracle.nextuse.next_use`).
        record: also return per-access hits and the evictions.
    """
    page = np.ascontiguousarray(page, dtype=np.int64)
    if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 1:
        raise ConfigError(f"belady: capacity must be an int >= 1 (pages), got {capacity!r}")
    n = len(page)
    if n_pages is None:
        n_pages = int(page.max()) + 1 if n else 0
    if next_pos is None:
        next_pos, _ = next_use(page, n_pages)
    if step is None:
        starts = np.arange(n + 1, dtype=np.int64)
    else:
        if len(step) != n:
            raise ConfigError(f"belady: step has {len(step)} entries for {n} accesses")
        starts = step_starts(step)
    misses, bad, hits, ev_page, ev_pos, n_ev = _belady(page, np.ascontiguousarray(next_pos, np.int64),
                                                         int(n_pages), int(capacity), starts, bool(record))
    if bad >= 0:
        s = int(step[bad]) if step is not None else bad
        raise SimulationError(f"belady: step {s} needs more than {capacity} distinct pages at once")
    if not record:
        return BeladyResult(int(capacity), n, int(misses))
    return BeladyResult(int(capacity), n, int(misses), hits, ev_page[:n_ev].copy(), ev_pos[:n_ev].copy())
