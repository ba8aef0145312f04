"""``cost_aware_tiered``: keep the pages that would cost the most to bring back, per byte held.

Rule: a victim of tier ``t`` falls to tier ``t + 1`` (from the last tier it is dropped and comes
back from the backing tier); bringing it back to tier 0 then costs ``refetch_us`` = the link's
α + bytes/β plus its dequantization (``ctx.refetch_cost_us``, with the page's stored bytes under
its quantization). The page's value is

    ``(1 + freq) ** freq_weight * (refetch_us + min_cost_us)
      / ((1 + age) ** recency_weight * bytes ** size_weight)``

(``freq``: lifetime accesses; ``age``: steps since its latest access; ``bytes``: stored size).
The lowest value is evicted (ties: earliest inserted): rarely and long-ago used pages that are
cheap to refetch and large go first; a page that would fall to a slow tier, or is small, stays.
Source: GreedyDual-Size-Frequency (Cherkasova, HP Labs 1998) and cost-aware GreedyDual-Size
(Cao & Irani, USITS 1997), with the cost taken from the tier the page would fall to.
Parameters: ``freq_weight`` (>= 0, default 1.0), ``recency_weight`` (>= 0, 1.0), ``size_weight``
(>= 0, 1.0): exponents; ``min_cost_us`` (> 0, 1.0 µs): floor on the cost so that frequency and
recency still rank pages when moves are free.
"""

from __future__ import annotations

import numpy as np

from kvgym.baselines.common import num_param
from kvgym.sim.policy import Policy, register_policy


@register_policy("cost_aware_tiered")
class CostAwareTiered(Policy):
    def __init__(self, freq_weight: float = 1.0, recency_weight: float = 1.0, size_weight: float = 1.0,
                 min_cost_us: float = 1.0):
        own = "cost_aware_tiered"
        self.freq_weight = num_param(own, "freq_weight", freq_weight, 0.0)
        self.recency_weight = num_param(own, "recency_weight", recency_weight, 0.0)
        self.size_weight = num_param(own, "size_weight", size_weight, 0.0)
        self.min_cost_us = num_param(own, "min_cost_us", min_cost_us, 0.0, open_min=True)

    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.n_tiers = len(ctx.tiers)
        self.backing = ctx.setup.backing
        self.log_bytes = np.log(ctx.page_bytes.astype(np.float64))

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        ctx = self.ctx
        t = int(ctx.tier_of[cands[0]])
        fall = t + 1 if t + 1 < self.n_tiers else self.backing
        cost = ctx.refetch_cost_us(cands, fall) + self.min_cost_us
        age = np.maximum(step - ctx.last_access[cands], 0)
        # In logs: products of powers stay finite and the order is the same.
        return (self.freq_weight * np.log1p(ctx.freq[cands]) + np.log(cost)
                - self.recency_weight * np.log1p(age) - self.size_weight * self.log_bytes[cands])
