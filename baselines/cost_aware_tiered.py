"""``cost_aware_tiered``: GreedyDual-Size-Frequency, valuing a page by what bringing it back would cost.

Rule: every page carries a priority ``H``, set when it is accessed and when it enters tier 0:

    ``H = L + ((1 + freq) ** freq_weight * (refetch_us + min_cost_us)) / bytes ** size_weight``

(in this association; ``freq``: the page's accesses so far, the current one included;
``refetch_us``: µs to bring it back to tier 0 from tier 1, where a tier-0 victim falls: one copy on
an idle link plus its dequantization, ``ctx.refetch_cost_us``; ``bytes``: its stored size).
``L`` is the inflation value: the priority of the latest tier-0 victim (0 at the start). The lowest
``H`` is evicted (ties: earliest inserted). Inflation ages pages: a page not used since ``L`` rose
past its priority goes before any page touched since, and pages cheap to refetch, rarely used or
large go first. In tiers below 0 (``lower_policy="same"``) a page keeps the priority it had in
tier 0. Priorities only change at a page's own events, so the compiled engine keeps them in a heap
(O(log n) per decision).
Source: GreedyDual-Size-Frequency (Cherkasova, HP Labs 1998) and cost-aware GreedyDual-Size (Cao &
Irani, USITS 1997), with the cost of the tier below.
Parameters: ``freq_weight`` (>= 0, default 1.0) and ``size_weight`` (>= 0, 1.0): exponents;
``min_cost_us`` (> 0, 1.0 µs): floor on the cost so that frequency still ranks pages when moves are
free.
"""

from __future__ import annotations

import numpy as np

from kvgym.baselines.common import num_param
from kvgym.sim.policy import Policy, register_policy


@register_policy("cost_aware_tiered")
class CostAwareTiered(Policy):
    compiled = "cost_aware_tiered"

    def __init__(self, freq_weight: float = 1.0, size_weight: float = 1.0, min_cost_us: float = 1.0):
        own = "cost_aware_tiered"
        self.freq_weight = num_param(own, "freq_weight", freq_weight, 0.0, 100.0)
        self.size_weight = num_param(own, "size_weight", size_weight, 0.0, 100.0)
        self.min_cost_us = num_param(own, "min_cost_us", min_cost_us, 0.0, open_min=True)

    def compiled_args(self, setup):
        return (self.freq_weight, self.size_weight, self.min_cost_us), ()

    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.freq = np.zeros(ctx.n_pages, np.int64)
        self.H = np.zeros(ctx.n_pages, np.float64)
        self.inflation = 0.0

    def _priority(self, page: int) -> float:
        cost = float(self.ctx.refetch_cost_us(np.array([page]), 1)[0]) + self.min_cost_us
        size = float(self.ctx.page_bytes[page])
        return self.inflation + (float(1 + self.freq[page]) ** self.freq_weight * cost) / size ** self.size_weight

    def on_access(self, page: int, tier: int, step: int) -> None:
        self.freq[page] += 1
        self.H[page] = self._priority(page)

    def on_insert(self, page: int, tier: int, step: int) -> None:
        if tier == 0:
            self.H[page] = self._priority(page)

    def on_evict(self, page: int, tier: int, step: int) -> None:
        if tier == 0:
            self.inflation = float(self.H[page])

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        return self.H[cands]
