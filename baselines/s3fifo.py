"""``s3fifo``: S3-FIFO: a small probationary FIFO, a main FIFO with reinsertion, a ghost FIFO.

Rule (Yang et al., SOSP 2023, as implemented by libcachesim ``S3FIFO``): new pages enter the
small queue (``small_size_ratio`` of tier 0's capacity) unless their id is in the ghost queue, in
which case they enter the main queue; before the first eviction a page that finds the small
queue full also enters main. Hits raise a page's counter. To evict: if main holds more than its
share (capacity minus the small share) or small is empty, evict from main, else from small.
From small: the oldest page moves to main (counter reset to 0) if its counter is at least
``move_to_main_threshold``, else it is evicted and its id enters the ghost queue (a FIFO of ids
holding up to ``ghost_size_ratio`` of the capacity in bytes); this repeats until one page is
evicted, and if small empties that way main evicts instead. From main: the oldest page, if its
counter is >= 1, is reinserted at main's head with counter ``min(counter, 3) - 1``; the first
with counter 0 is evicted.
Score form: ``scores`` works out the victim of that procedure without changing anything (victim
0, others 1); ``on_evict`` applies its moves. Pages pinned by the current step are passed over
(left where they are in small; moved like referenced pages in main). A victim chosen by someone
else (an agent) is simply removed (to the ghost queue if it was in small).
Documented difference from libcachesim: a page at least as large as the small queue is not cached
at all by libcachesim; kvgym must place it and puts it in main. With sizes in bytes and the page
sizes of a trace, this only happens when the small share holds less than one page.
Source: S3-FIFO (SOSP 2023); matches libcachesim ``S3FIFO`` exactly on single-tier uniform-size
traces (``tests/test_libcachesim.py``).
Queue shares are whole *units*, a unit being the greatest common divisor of the page sizes (one
page when all pages are the same size): small = ``int(capacity_units * small_size_ratio)`` units,
main = the rest, ghost = ``int(capacity_units * ghost_size_ratio)`` units, with
``capacity_units = capacity // unit``. So the policy does not depend on the page size: a tier of
N uniform pages behaves as libcachesim's S3-FIFO of N unit objects, whatever the bytes per page.
Parameters: ``small_size_ratio`` (0 < r < 1, default 0.1), ``ghost_size_ratio`` (>= 0, 0.9),
``move_to_main_threshold`` (int >= 1, 2).
"""

from __future__ import annotations

import numpy as np

from kvgym.baselines.common import in_tier0, int_param, lower_tier_scores, num_param
from kvgym.sim.policy import Policy, check_param, register_policy


def size_unit(page_bytes: np.ndarray) -> int:
    """Greatest common divisor of the stored page sizes (1 for an empty table)."""
    sizes = np.unique(page_bytes)
    return int(np.gcd.reduce(sizes)) if len(sizes) else 1


def queue_caps(capacity: int | None, page_bytes: np.ndarray, small_ratio: float,
               ghost_ratio: float) -> tuple[int, int, int]:
    """(small, main, ghost) capacities in bytes of a tier of ``capacity`` bytes, in whole units."""
    cap = int(capacity) if capacity is not None else int(page_bytes.sum())
    unit = size_unit(page_bytes)
    units = cap // unit
    small = int(units * small_ratio) * unit  # the integer truncations of libcachesim, in units
    return small, cap - small, int(units * ghost_ratio) * unit


@register_policy("s3fifo")
class S3FIFO(Policy):
    compiled = "s3fifo"

    def __init__(self, small_size_ratio: float = 0.1, ghost_size_ratio: float = 0.9, move_to_main_threshold: int = 2):
        own = "s3fifo"
        self.small_size_ratio = num_param(own, "small_size_ratio", small_size_ratio, 0.0, open_min=True)
        check_param(own, "small_size_ratio", small_size_ratio, small_size_ratio < 1, "a number in (0, 1)")
        self.ghost_size_ratio = num_param(own, "ghost_size_ratio", ghost_size_ratio, 0.0)
        self.move_to_main_threshold = int_param(own, "move_to_main_threshold", move_to_main_threshold, 1)

    def compiled_args(self, setup):
        return (self.small_size_ratio, self.ghost_size_ratio), (self.move_to_main_threshold, size_unit(setup.page_bytes))

    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.size = ctx.page_bytes
        self.small_cap, self.main_cap, self.ghost_cap = queue_caps(ctx.tiers[0].capacity_bytes, ctx.page_bytes,
                                                                   self.small_size_ratio, self.ghost_size_ratio)
        self.freq = np.zeros(ctx.n_pages, np.int64)
        self.small: dict[int, None] = {}  # oldest first
        self.main: dict[int, None] = {}
        self.ghost: dict[int, int] = {}  # oldest first, page -> bytes
        self.small_b = self.main_b = self.ghost_b = 0
        self.has_evicted = False
        self.ghost_hit: int | None = None
        self.version = 0
        self._plan = None

    # -- hooks ------------------------------------------------------------------------
    def on_access(self, page: int, tier: int, step: int) -> None:
        self.version += 1
        self.ghost_hit = None
        if tier == 0:
            self.freq[page] += 1
        elif page in self.ghost:
            self.ghost_b -= self.ghost.pop(page)
            self.ghost_hit = page

    def on_insert(self, page: int, tier: int, step: int) -> None:
        if tier != 0:
            return
        self.version += 1
        s = int(self.size[page])
        self.freq[page] = 0
        if self.ghost_hit == page:
            self.ghost_hit = None
            self._to_main(page)
        elif s >= self.small_cap or (not self.has_evicted and self.small_b >= self.small_cap):
            self._to_main(page)
        else:
            self.small[page] = None
            self.small_b += s

    def _to_main(self, page: int) -> None:
        self.main[page] = None
        self.main_b += int(self.size[page])

    def _to_ghost(self, page: int) -> None:
        s = int(self.size[page])
        if self.ghost_cap <= 0 or page in self.ghost or s > self.ghost_cap:
            return
        while self.ghost_b + s > self.ghost_cap:
            g = next(iter(self.ghost))
            self.ghost_b -= self.ghost.pop(g)
        self.ghost[page] = s
        self.ghost_b += s

    def on_evict(self, page: int, tier: int, step: int) -> None:
        if tier != 0:
            return
        plan = self._plan if self._plan is not None and self._plan[0] == self.version else None
        if plan is None or plan[1] != page:
            plan = (self.version, *self._choose(None))
        self.has_evicted = True
        _, victim, moved, passed, rounds = plan
        if victim != page:  # chosen from outside
            moved, passed, rounds = [], [], 0
        for p in moved:  # small -> main, counter reset
            del self.small[p]
            self.small_b -= int(self.size[p])
            self.freq[p] = 0
            self._to_main(p)
        if page in self.small:
            del self.small[page]
            self.small_b -= int(self.size[page])
            self._to_ghost(page)
        else:
            if rounds:  # full passes over main: every counter drops, the order is kept
                res = np.fromiter(self.main, np.int64, len(self.main))
                self.freq[res] = np.maximum(np.minimum(self.freq[res], 3) - rounds, 0)
            for p in passed:  # passed once more before the victim: reinserted at the head
                f = int(self.freq[p])
                self.freq[p] = max(min(f, 3) - 1, 0)
                del self.main[p]
                self.main[p] = None
            del self.main[page]
            self.main_b -= int(self.size[page])
        self.version += 1
        self._plan = None

    # -- victim choice ----------------------------------------------------------------
    def _choose(self, ok):
        """(victim, pages moved small->main, main pages passed before the victim, full main rounds)."""
        from_small = not (self.main_b > self.main_cap or self.small_b == 0)
        moved: list[int] = []
        if from_small:
            victim = self._small_walk(ok, moved)
            if victim is not None:
                return victim, moved, [], 0
        got = self._main_walk(ok, moved)
        if got is None and not from_small:  # main has only pinned pages: small after all
            victim = self._small_walk(ok, moved)
            if victim is not None:
                return victim, moved, [], 0
            got = self._main_walk(ok, moved)
        if got is None:
            raise AssertionError("s3fifo: no candidate")  # the engine never asks with none
        victim, passed, rounds = got
        return victim, moved, passed, rounds

    def _small_walk(self, ok, moved: list[int]) -> int | None:
        """Oldest small page under the threshold; the ones above it go to ``moved``."""
        thr = self.move_to_main_threshold
        for p in self.small:
            if ok is not None and p not in ok:
                continue
            if self.freq[p] >= thr:
                moved.append(p)
            else:
                return p
        return None

    def _main_walk(self, ok, moved: list[int]):
        """(victim, pages passed before it, full rounds): the first page with the smallest
        ``min(counter, 3)`` in main's order (pages just moved from small sit at the head, counter 0)."""
        order = list(self.main) + moved
        if not order:
            return None
        c = np.minimum(self.freq[order], 3)
        if moved:
            c[len(self.main):] = 0
        if ok is None:
            m = int(c.min())
            i = int(np.argmax(c == m))
        else:
            good = np.fromiter((p in ok for p in order), bool, len(order))
            if not good.any():
                return None
            m = int(c[good].min())
            i = int(np.argmax(good & (c == m)))
        return order[i], order[:i], m

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        if not in_tier0(self.ctx, cands):
            return lower_tier_scores(self.ctx, cands)
        ok = None if len(cands) == len(self.small) + len(self.main) else set(cands.tolist())
        victim, moved, passed, rounds = self._choose(ok)
        self._plan = (self.version, victim, moved, passed, rounds)
        return (cands != victim).astype(np.int64)
