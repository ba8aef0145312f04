"""``arc``: Adaptive Replacement Cache: recency list T1, frequency list T2, ghosts that tune the split.

Rule (Megiddo & Modha, FAST 2003, as implemented by libcachesim ``ARC``): T1 holds pages seen
once since they entered tier 0, T2 pages hit again (a hit moves a page to T2's MRU end); B1 and
B2 remember (ids and sizes only) pages recently evicted from T1 and T2. A miss on a B1 ghost
raises the target size ``p`` of T1 by ``max(|B2|/|B1|, 1)`` pages (at most the capacity), a
miss on a B2 ghost lowers it by ``max(|B1|/|B2|, 1)`` (at least 0); such a page then enters T2,
any other miss enters T1. REPLACE evicts T1's LRU page into B1 if T1 is non-empty and larger
than ``p`` (or equal to ``p`` on a B2 hit), or T2 is empty; otherwise T2's LRU page into B2.
On a miss that hit no ghost, first (case IV): if ``|T1| + |B1| + incoming`` exceeds the
capacity, drop B1's LRU ghost and REPLACE, or, when B1 is empty, evict T1's LRU page with no
ghost; else, if all four lists together reach twice the capacity, drop B2's LRU ghost, then
REPLACE. Sizes are bytes (``p`` moves by the size of the requested page times the ratio, so a
uniform-size trace behaves as the paper's page-count ARC at any page size).
Score form: ``scores`` works out the victim of that procedure without changing anything (the
victim scores 0, every other page 1); ``on_evict`` then applies it (ghost drops, victim to its
ghost list). Pages pinned by the current step are skipped (the next page of the same list is
taken; if that list has none, the other list's LRU). A victim chosen by someone else (an agent)
just moves to its list's ghost. In tiers below 0 it scores LRU.
Source: ARC (FAST 2003); matches libcachesim ``ARC`` exactly on single-tier uniform-size
traces (``tests/test_libcachesim.py``). No parameters.
"""

from __future__ import annotations

import numpy as np

from kvgym.baselines.common import in_tier0, lower_tier_scores
from kvgym.sim.policy import Policy, register_policy


@register_policy("arc")
class ARC(Policy):
    compiled = "arc"
    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.size = ctx.page_bytes
        cap = ctx.tiers[0].capacity_bytes
        self.cap = int(cap) if cap is not None else int(ctx.page_bytes.sum())
        # LRU end first in every list; ghosts map page -> bytes.
        self.t1: dict[int, None] = {}
        self.t2: dict[int, None] = {}
        self.b1: dict[int, int] = {}
        self.b2: dict[int, int] = {}
        self.t1b = self.t2b = self.b1b = self.b2b = 0
        self.p = 0.0
        self.ghost_hit: tuple[int, int] | None = None  # (page, 1 or 2) for the access being served
        self.incoming = 0
        self.version = 0
        self._plan = None

    # -- hooks ------------------------------------------------------------------------
    def on_access(self, page: int, tier: int, step: int) -> None:
        self.version += 1
        self.ghost_hit = None
        s = int(self.size[page])
        if tier == 0:
            if page in self.t1:
                del self.t1[page]
                self.t1b -= s
                self.t2[page] = None
                self.t2b += s
            elif page in self.t2:
                del self.t2[page]
                self.t2[page] = None
            return
        self.incoming = s
        if page in self.b1:
            delta = max(self.b2b / self.b1b, 1.0) * s
            self.p = min(self.p + delta, float(self.cap))
            self.b1b -= self.b1.pop(page)
            self.ghost_hit = (page, 1)
        elif page in self.b2:
            delta = max(self.b1b / self.b2b, 1.0) * s
            self.p = max(self.p - delta, 0.0)
            self.b2b -= self.b2.pop(page)
            self.ghost_hit = (page, 2)

    def on_insert(self, page: int, tier: int, step: int) -> None:
        if tier != 0:
            return
        self.version += 1
        s = int(self.size[page])
        # A ghost brought in without a demand miss (a prefetch) stops being a ghost, unadapted.
        if page in self.b1:
            self.b1b -= self.b1.pop(page)
        elif page in self.b2:
            self.b2b -= self.b2.pop(page)
        if self.ghost_hit is not None and self.ghost_hit[0] == page:
            self.t2[page] = None
            self.t2b += s
            self.ghost_hit = None
        else:
            self.t1[page] = None
            self.t1b += s

    def on_evict(self, page: int, tier: int, step: int) -> None:
        if tier != 0:
            return
        plan = self._plan if self._plan is not None and self._plan[0] == self.version else None
        if plan is None or plan[1] != page:
            plan = (self.version, *self._choose(None))
        _, victim, ghost, drop = plan
        if victim != page:  # chosen from outside: it simply becomes a ghost of its list
            ghost, drop = (1 if page in self.t1 else 2), None
        if drop == 1:
            g = next(iter(self.b1))
            self.b1b -= self.b1.pop(g)
        elif drop == 2:
            g = next(iter(self.b2))
            self.b2b -= self.b2.pop(g)
        s = int(self.size[page])
        if page in self.t1:
            del self.t1[page]
            self.t1b -= s
        else:
            del self.t2[page]
            self.t2b -= s
        if ghost == 1:
            self.b1[page] = s
            self.b1b += s
        elif ghost == 2:
            self.b2[page] = s
            self.b2b += s
        self.version += 1
        self._plan = None

    # -- victim choice ----------------------------------------------------------------
    @staticmethod
    def _first(lst: dict, ok) -> int | None:
        for p in lst:
            if ok is None or p in ok:
                return p
        return None

    def _replace(self, ok):
        """REPLACE: (victim, ghost list 1/2)."""
        in_b2 = self.ghost_hit is not None and self.ghost_hit[1] == 2
        t1_first = (self.t1b > 0 and (self.t1b > self.p or (self.t1b == self.p and in_b2))) or self.t2b == 0
        order = ((self.t1, 1), (self.t2, 2)) if t1_first else ((self.t2, 2), (self.t1, 1))
        for lst, g in order:
            v = self._first(lst, ok)
            if v is not None:
                return v, g
        raise AssertionError("arc: no candidate")  # the engine never asks with no candidate

    def _choose(self, ok):
        """(victim, ghost list or 0 for none, ghost list to drop an LRU entry from or None)."""
        if self.ghost_hit is not None:
            return (*self._replace(ok), None)
        if self.t1b + self.b1b + self.incoming > self.cap:
            if self.b1b > 0:
                return (*self._replace(ok), 1)
            v = self._first(self.t1, ok)
            if v is not None:
                return v, 0, None
            return (*self._replace(ok), None)
        drop = 2 if self.t1b + self.b1b + self.t2b + self.b2b >= 2 * self.cap and self.b2b > 0 else None
        return (*self._replace(ok), drop)

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        if not in_tier0(self.ctx, cands):
            return lower_tier_scores(self.ctx, cands)
        ok = None if len(cands) == len(self.t1) + len(self.t2) else set(cands.tolist())
        victim, ghost, drop = self._choose(ok)
        self._plan = (self.version, victim, ghost, drop)
        return (cands != victim).astype(np.int64)
