"""``clock``: second chance: a hand sweeps the pages in queue order, sparing referenced ones.

Rule (libcachesim ``Clock``, i.e. FIFO-reinsertion): tier-0 pages sit in a FIFO queue; a new
page enters at the head with counter 0; a hit raises its counter by 1 up to ``2**bits - 1``. To
evict, the hand looks at the tail: a page with counter > 0 loses one and moves to the head; the
first page found with counter 0 is evicted.
Score form: the victim of that sweep is the page with the smallest counter, first in queue order
among equals, so score = ``counter * 2**40 + queue key`` (the key orders the queue). The sweep's
side effects (counters lowered, passed pages moved to the head in order) are applied in
``on_evict``, so ``scores`` has no side effects; a victim chosen by someone else (an agent) is
treated as the point where the hand stopped. Pages pinned by the current step are passed over
like referenced pages. In tiers below 0 it scores LRU.
Source: Corbató's CLOCK (1968); libcachesim ``Clock`` (``n-bit-counter``), which it matches
exactly on single-tier traces.
Parameters: ``bits`` (int 1..16, default 1): counter width.
"""

from __future__ import annotations

import numpy as np

from kvgym.baselines.common import LEVEL, in_tier0, int_param, lower_tier_scores
from kvgym.sim.policy import Policy, register_policy


@register_policy("clock")
class Clock(Policy):
    compiled = "clock"

    def __init__(self, bits: int = 1):
        self.bits = int_param("clock", "bits", bits, 1, 16)
        self.max_count = (1 << self.bits) - 1

    def compiled_args(self, setup):
        return (), (self.max_count,)

    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.count = np.zeros(ctx.n_pages, np.int64)
        self.key = np.zeros(ctx.n_pages, np.int64)
        self.queue: dict[int, None] = {}  # tail (next to examine) first
        self.clock = 0

    def _to_head(self, page: int) -> None:
        self.clock += 1
        self.key[page] = self.clock
        self.queue[page] = None

    def on_access(self, page: int, tier: int, step: int) -> None:
        if tier == 0 and self.count[page] < self.max_count:
            self.count[page] += 1

    def on_insert(self, page: int, tier: int, step: int) -> None:
        if tier == 0:
            self.count[page] = 0
            self._to_head(page)

    def on_evict(self, page: int, tier: int, step: int) -> None:
        if tier != 0:
            return
        rounds = int(self.count[page])
        if rounds:  # every page was passed `rounds` full times: counters drop, order is kept
            res = np.fromiter(self.queue, np.int64, len(self.queue))
            self.count[res] = np.maximum(self.count[res] - rounds, 0)
        q = self.queue
        while True:  # the pages before the victim are passed once more and move to the head
            p = next(iter(q))
            del q[p]
            if p == page:
                break
            if self.count[p] > 0:
                self.count[p] -= 1
            self._to_head(p)

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        if not in_tier0(self.ctx, cands):
            return lower_tier_scores(self.ctx, cands)
        return self.count[cands] * LEVEL + self.key[cands]
