"""``lmcache_lru``: LMCache's local CPU backend with its LRU policy.

Rule (LMCache ``LocalCPUBackend`` with ``cache_policy=LRU``,
``lmcache/v1/storage_backend/local_cpu_backend.py`` and ``cache_policy/lru.py``): the cache is
an ordered dict, least recent first; a new put goes to the most recent end (a put of a key
already present changes nothing); the prefix hits of a lookup are remembered and touched after
the retrieval in **reverse** order (``touch_cache``), so the prefix head ends up most recent;
eviction takes the least recent evictable entry. Here: ``on_insert`` appends,
``on_request_load`` re-touches the loaded blocks tail to head; nothing else moves. In the
decode engine (no request hooks) it is FIFO. No parameters.
"""

from __future__ import annotations

from kvgym.baselines.fifo import FIFO
from kvgym.sim.policy import register_policy


@register_policy("lmcache_lru", serving_only=True)
class LMCacheLRU(FIFO):
    """FIFO order of puts (``fifo``'s insertion keys), plus the reversed touch of a loaded prefix."""

    def on_request_load(self, req, blocks, positions, step) -> None:
        for b in reversed(blocks.tolist()):
            self.clock += 1
            self.key[b] = self.clock
