"""``lru``: least recently used goes first.

Rule: score = step of the page's most recent access or insertion into tier 0 (a prefetched or
cold-inserted page counts as just used); lowest score is evicted, ties to the earliest
inserted. Source: the classic policy; kv-hierarchy-lab v0.1's ``LRUPolicy``. No parameters.
"""

from __future__ import annotations

import numpy as np

from kvgym.sim.policy import Policy, register_policy


@register_policy("lru")
class LRU(Policy):
    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.last = np.full(ctx.n_pages, -1, np.int64)

    def on_access(self, page: int, tier: int, step: int) -> None:
        self.last[page] = step

    def on_insert(self, page: int, tier: int, step: int) -> None:
        self.last[page] = step

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        return self.last[cands]
