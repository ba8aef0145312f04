"""``fifo``: first in, first out: the page that entered tier 0 earliest goes first.

Rule: score = order of the page's latest insertion into tier 0 (a counter); hits change
nothing. Lowest score is evicted. In tiers below 0 (``lower_policy="same"``) it scores LRU.
Source: the classic policy (Belady 1966); libcachesim ``FIFO``, against which it is
cross-checked (``tests/test_libcachesim.py``). No parameters.
"""

from __future__ import annotations

import numpy as np

from kvgym.baselines.common import in_tier0, lower_tier_scores
from kvgym.sim.policy import Policy, register_policy


@register_policy("fifo")
class FIFO(Policy):
    compiled = "fifo"
    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.key = np.zeros(ctx.n_pages, np.int64)
        self.clock = 0

    def on_insert(self, page: int, tier: int, step: int) -> None:
        if tier == 0:
            self.clock += 1
            self.key[page] = self.clock

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        if not in_tier0(self.ctx, cands):
            return lower_tier_scores(self.ctx, cands)
        return self.key[cands]
