"""``mru``: most recently used goes first.

Rule: each page's key is the serial number of its most recent use (every access and every
insertion counts, in the order they happen: ``lru``'s key, from its class); the **highest** key
is evicted (score = minus the key; the lowest score goes first). Pages pinned by the current
decode step are never candidates, so the victim is the most recently used page *outside* the
step. In tiers below 0 (``lower_policy="same"``) it scores LRU.
Source: the classic MRU (Chou & DeWitt, VLDB 1985): optimal among recency rules for a cyclic
scan larger than the cache, where LRU misses every access. No parameters.

Compiled as a heap on minus the last use (``cengine/policy.c``, O(log n) per decision; pinned
pages leave the heap for their step like every heap-ordered policy's).
"""

from __future__ import annotations

import numpy as np

from kvgym.baselines.common import in_tier0, lower_tier_scores
from kvgym.baselines.lru import LRU
from kvgym.sim.policy import register_policy


@register_policy("mru")
class MRU(LRU):
    compiled = "mru"

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        if not in_tier0(self.ctx, cands):
            return lower_tier_scores(self.ctx, cands)
        return -self.last[cands]
