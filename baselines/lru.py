"""``lru``: least recently used goes first.

Rule: each page's key is the serial number of its most recent use, counting every access and every
insertion (into tier 0, or a cold insertion into the backing tier) as one event in the order they
happen; the lowest key is evicted. A prefetched or cold-inserted page counts as just used, and
pages used in one decode step are ordered by their order of use (an access's serial is later than
the previous access's). With one access per step, as in kv-hierarchy-lab's traces and block
streams, this is the original's "step of the last use, ties to the earliest inserted".
Source: the classic policy; kv-hierarchy-lab v0.1's ``LRUPolicy``; libcachesim ``LRU`` (an exact
match on single-tier traces, ``tests/test_libcachesim.py``). No parameters.
"""

from __future__ import annotations

import numpy as np

from kvgym.sim.policy import Policy, register_policy


@register_policy("lru")
class LRU(Policy):
    compiled = "lru"

    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.last = np.full(ctx.n_pages, -1, np.int64)
        self.clock = 0

    def on_access(self, page: int, tier: int, step: int) -> None:
        self.clock += 1
        self.last[page] = self.clock

    def on_insert(self, page: int, tier: int, step: int) -> None:
        self.clock += 1
        self.last[page] = self.clock

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        return self.last[cands]
