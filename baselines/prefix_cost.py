"""``prefix_cost``: cost-aware GreedyDual: keep the blocks that are dear to get back.

Rule (GreedyDual, Young 1994 / Cao & Irani 1997): a resident block's priority is
``H = L + cost`` (float64), set at insert and at each hit, where ``cost`` is what losing it from
this tier costs the next request that needs it in tier 0: in serving mode
``ctx.refetch_us(block)`` (the load time from the fastest lower tier holding a copy, else the
time to recompute the block at its chain position: attention over the prefix makes deep blocks
dear), in the decode engine ``ctx.refetch_cost_us`` from tier 1 (or 0 with one tier). The lowest
``H`` is evicted (ties: earliest inserted) and ``L`` becomes the victim's ``H``. The cost is
taken when ``H`` is set (a copy below may appear or vanish later). No parameters.
"""

from __future__ import annotations

import numpy as np

from kvgym.sim.policy import Policy, register_policy


@register_policy("prefix_cost", serving_only=True)
class PrefixCost(Policy):
    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.h = np.zeros(ctx.n_pages, np.float64)
        self.inflation = 0.0

    def _cost(self, page: int) -> float:
        one = np.array([page], np.int64)
        if hasattr(self.ctx, "refetch_us"):
            return float(self.ctx.refetch_us(one)[0])
        return float(self.ctx.refetch_cost_us(one, min(1, len(self.ctx.tiers) - 1))[0])

    def on_access(self, page: int, tier: int, step: int) -> None:
        if tier == 0:
            self.h[page] = self.inflation + self._cost(page)

    def on_insert(self, page: int, tier: int, step: int) -> None:
        if tier == 0:
            self.h[page] = self.inflation + self._cost(page)

    def on_evict(self, page: int, tier: int, step: int) -> None:
        if tier == 0:
            self.inflation = float(self.h[page])

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        return self.h[cands]
