"""``radix_lru``: SGLang's radix-cache eviction: least recently used *leaf* first.

Rule (SGLang ``RadixCache.evict``, ``python/sglang/srt/mem_cache/radix_cache.py``): every block
reference (a prefix match or an insert walking the tree) sets the block's last-access time
(``lru``'s serial number of use); only
leaves (blocks with no child resident in this tier, ``ctx.kids == 0``) are evicted, least
recently used first; evicting a leaf may make its parent a leaf. Score = last access, plus
``2**41`` for a block with a resident child, so an inner block goes only when no leaf can
(SGLang would refuse to evict then; kvgym must place the incoming block). Ties: the earliest
inserted. In the decode engine (no radix tree) every page is a leaf: plain LRU. No parameters.
"""

from __future__ import annotations

import numpy as np

from kvgym.baselines.common import LEVEL
from kvgym.baselines.lru import LRU
from kvgym.sim.policy import register_policy


@register_policy("radix_lru", serving_only=True)
class RadixLRU(LRU):
    """LRU's recency (its own serial numbers of use), leaves first."""

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        kids = getattr(self.ctx, "kids", None)
        inner = (kids[cands] > 0) if kids is not None else np.zeros(len(cands), bool)
        return self.last[cands] + inner * (2 * LEVEL)
