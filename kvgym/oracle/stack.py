"""Miss-ratio curves of OPT (Belady MIN) and LRU for every cache size, in one compiled pass.

Both policies are *stack algorithms* (Mattson, Gecsei, Slutz and Traiger, "Evaluation
techniques for storage hierarchies", IBM Systems Journal 9(2), 1970): each access has a stack
distance ``d`` (the smallest cache, in pages, in which it hits; a first touch misses at every
size), and a cache of ``c`` pages misses ``first touches + #{accesses with d > c}`` times. One
pass over the flat sequence (one access per step) computes both distances of every access:

**LRU** (reuse distance): ``d = 1 + distinct pages accessed since the previous access of the
same page``, counted with a Fenwick tree holding a 1 at each page's latest access: O(log n).

**OPT**: Mattson's priority stack, with priority = next use (sooner = higher). The top ``c``
entries are MIN's cache of ``c`` pages. On an access to ``x`` at depth ``d`` (or a new page),
``x`` goes on top and the old top is carried down: at each depth ``k < d`` the carried page and
the one at ``k`` are compared, the sooner-used stays, the later-used is carried on; the carry
lands at depth ``d`` (or at the bottom for a new page). The priorities of all pages but ``x`` do
not change at an access, which is what makes this exact. Cost O(d) per access: a tight compiled
loop reading the stack and its next-use column sequentially (1M accesses take 2-10 s on the
traces of ``benchmarks/bench_oracle.py``; worst case O(n x distinct pages)). Ties (pages never
used again) keep their place: any tie-break gives MIN's miss count. Tested equal to
:func:`kvgym.oracle.belady.belady` at every capacity and to the engine's ``belady`` and ``lru``.

Multi-access steps: the curves are for the flat sequence. The engine pins a step's pages for
the whole step and its ``lru`` ranks by step; with one access per step both agree exactly; with
several, the flat OPT curve is a lower bound of the pinned optimum (fewer constraints) and
:func:`kvgym.oracle.belady.belady` with ``step=`` gives the exact pinned MIN at one capacity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from kvgym.oracle.nextuse import next_use


@numba.njit(cache=True)
def _distances(page, nxt, n_pages):
    n = page.shape[0]
    opt = np.zeros(n, np.int64)  # 0 = first touch (infinite distance)
    lru = np.zeros(n, np.int64)
    # LRU: Fenwick tree over access positions (position q at index q + 1), 1 at each page's
    # latest access.
    fen = np.zeros(n + 1, np.int64)
    last = np.full(n_pages, -1, np.int64)
    # OPT: the priority stack (page ids, top at 0) with each entry's next use kept beside it (so
    # the scan reads memory sequentially), and each page's depth.
    stack = np.empty(max(n_pages, 1), np.int64)
    snu = np.empty(max(n_pages, 1), np.int64)
    depth = np.full(n_pages, -1, np.int64)
    size = 0
    for j in range(n):
        p = page[j]
        i = last[p]
        if i >= 0:
            s = 0
            k = j
            while k > 0:
                s += fen[k]
                k -= k & (-k)
            k = i + 1
            while k > 0:
                s -= fen[k]
                k -= k & (-k)
            lru[j] = s + 1
            k = i + 1
            while k <= n:
                fen[k] -= 1
                k += k & (-k)
        k = j + 1
        while k <= n:
            fen[k] += 1
            k += k & (-k)
        last[p] = j
        d = depth[p]
        if d == 0:
            opt[j] = 1
        elif size == 0:
            stack[0] = p
            depth[p] = 0
            size = 1
        else:
            carry = stack[0]
            ck = snu[0]
            stack[0] = p
            end = d if d > 0 else size
            for k in range(1, end):
                qk = snu[k]
                if qk > ck:  # the page at k is used later than the carry: the carry stays, it goes down
                    q = stack[k]
                    stack[k] = carry
                    snu[k] = ck
                    depth[carry] = k
                    carry = q
                    ck = qk
            if d > 0:
                stack[d] = carry
                snu[d] = ck
                depth[carry] = d
                opt[j] = d + 1
            else:
                stack[size] = carry
                snu[size] = ck
                depth[carry] = size
                size += 1
        depth[p] = 0
        snu[0] = nxt[j]
    return opt, lru


def stack_distances(page, n_pages: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-access OPT and LRU stack distances of the flat sequence (0 marks a first touch)."""
    page = np.ascontiguousarray(page, dtype=np.int64)
    if n_pages is None:
        n_pages = int(page.max()) + 1 if len(page) else 0
    nxt, _ = next_use(page, n_pages)
    return _distances(page, nxt, int(n_pages))


@dataclass(frozen=True, eq=False)
class MissRatioCurves:
    """OPT and LRU misses for every cache size (in pages) of one trace.

    ``opt_hist[d]`` / ``lru_hist[d]``: accesses with stack distance ``d`` (``d >= 1``; index 0
    unused); ``cold``: first touches (a miss at every size); ``distinct``: pages touched, the size
    beyond which only first touches miss.
    """

    accesses: int
    distinct: int
    cold: int
    opt_hist: np.ndarray
    lru_hist: np.ndarray

    def _misses(self, hist: np.ndarray, capacity) -> np.ndarray:
        # misses(c) = cold + #{d > c}; tail[c] = #{d > c}.
        tail = np.concatenate((np.cumsum(hist[::-1])[::-1], [0]))[1:]
        c = np.clip(np.asarray(capacity, np.int64), 0, len(hist) - 1)
        out = self.cold + tail[c]
        return out if np.ndim(capacity) else int(out)

    def opt_misses(self, capacity):
        """Belady MIN misses at ``capacity`` pages (int or array)."""
        return self._misses(self.opt_hist, capacity)

    def lru_misses(self, capacity):
        """LRU misses at ``capacity`` pages (int or array)."""
        return self._misses(self.lru_hist, capacity)

    def capacities(self) -> np.ndarray:
        """1 .. distinct: every size where the curves can still change."""
        return np.arange(1, max(self.distinct, 1) + 1)

    def to_dict(self) -> dict:
        c = self.capacities()
        return {"accesses": self.accesses, "distinct": self.distinct, "cold": self.cold,
                "capacity_pages": c.tolist(), "opt_misses": self.opt_misses(c).tolist(),
                "lru_misses": self.lru_misses(c).tolist()}


def miss_ratio_curves(page, n_pages: int | None = None) -> MissRatioCurves:
    """OPT and LRU miss curves of the flat page sequence ``page`` for every cache size."""
    opt, lru = stack_distances(page, n_pages)
    cold = int((opt == 0).sum())
    distinct = cold
    top = distinct + 2
    oh = np.bincount(opt[opt > 0], minlength=top)[:top] if len(opt) else np.zeros(top, np.int64)
    lh = np.bincount(lru[lru > 0], minlength=top)[:top] if len(lru) else np.zeros(top, np.int64)
    return MissRatioCurves(len(opt), distinct, cold, oh.astype(np.int64), lh.astype(np.int64))
