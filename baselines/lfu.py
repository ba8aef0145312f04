"""``lfu``: least frequently used goes first; among equals, the one that reached its count earliest.

Rule: each page counts its accesses since it last entered tier 0 (1 at insertion, +1 per
tier-0 hit; the count is forgotten on eviction). Score = ``count * 2**40 + touch``, where
``touch`` orders the page's latest insertion or hit: among equal counts the page that reached
its count first goes first (FIFO within a frequency, i.e. LRU tie-breaking). In tiers below 0
it scores LRU.
Source: the classic policy; libcachesim ``LFU`` (O(1) frequency lists, FIFO within a
frequency), which it matches exactly on single-tier traces. No parameters.
"""

from __future__ import annotations

import numpy as np

from kvgym.baselines.common import LEVEL, in_tier0, lower_tier_scores
from kvgym.sim.policy import Policy, register_policy


@register_policy("lfu")
class LFU(Policy):
    compiled = "lfu"

    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.count = np.zeros(ctx.n_pages, np.int64)
        self.touch = np.zeros(ctx.n_pages, np.int64)
        self.clock = 0

    def on_access(self, page: int, tier: int, step: int) -> None:
        if tier == 0:
            self.clock += 1
            self.count[page] += 1
            self.touch[page] = self.clock

    def on_insert(self, page: int, tier: int, step: int) -> None:
        if tier == 0:
            self.clock += 1
            self.count[page] = 1
            self.touch[page] = self.clock

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        if not in_tier0(self.ctx, cands):
            return lower_tier_scores(self.ctx, cands)
        return self.count[cands] * LEVEL + self.touch[cands]
