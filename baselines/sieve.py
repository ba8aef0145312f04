"""``sieve``: SIEVE: a hand moves from old to new pages, evicting the first one not visited.

Rule (Zhang et al., NSDI 2024; libcachesim ``Sieve``): tier-0 pages keep their insertion order
(new pages at the head, nothing ever moves); a hit sets the page's ``visited`` bit. To evict, the
hand (starting at the oldest page, or where it stopped last time) moves toward newer pages,
clearing ``visited`` bits, and evicts the first page whose bit is clear; it wraps to the oldest
page past the newest, and then rests on the page newer than the victim (or restarts at the
oldest when the victim was the newest).
Score form: score = cyclic distance from the hand in insertion order, plus ``2**41`` for visited
pages (if every page is visited, the sweep clears them all and evicts the page at the hand).
``on_evict`` clears the bits the hand passed and moves it; ``scores`` has no side effects. Pages
pinned by the current step are passed over (their bit is cleared as for any page). In tiers
below 0 it scores LRU.
Source: SIEVE (NSDI 2024); matches libcachesim ``Sieve`` exactly on single-tier traces.
No parameters.
"""

from __future__ import annotations

import numpy as np

from kvgym.baselines.common import LEVEL, in_tier0, lower_tier_scores
from kvgym.sim.policy import Policy, register_policy


@register_policy("sieve")
class Sieve(Policy):
    compiled = "sieve"
    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.visited = np.zeros(ctx.n_pages, bool)
        self.key = np.zeros(ctx.n_pages, np.int64)
        self.queue: dict[int, None] = {}  # oldest first
        self.clock = 0
        self.hand = 0  # key at which the hand rests; 0 = the oldest page

    def on_access(self, page: int, tier: int, step: int) -> None:
        if tier == 0:
            self.visited[page] = True

    def on_insert(self, page: int, tier: int, step: int) -> None:
        if tier == 0:
            self.clock += 1
            self.key[page] = self.clock
            self.visited[page] = False
            self.queue[page] = None

    def on_evict(self, page: int, tier: int, step: int) -> None:
        if tier != 0:
            return
        res = np.fromiter(self.queue, np.int64, len(self.queue))
        k, kv = self.key[res], int(self.key[page])
        if self.visited[page]:  # a full sweep: every bit was cleared
            self.visited[res] = False
        elif self.hand <= kv:
            self.visited[res[(k >= self.hand) & (k < kv)]] = False
        else:
            self.visited[res[(k >= self.hand) | (k < kv)]] = False
        del self.queue[page]
        newest = next(reversed(self.queue)) if self.queue else None
        self.hand = kv + 1 if newest is not None and self.key[newest] > kv else 0

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        if not in_tier0(self.ctx, cands):
            return lower_tier_scores(self.ctx, cands)
        k = self.key[cands]
        return np.where(k >= self.hand, k, k + LEVEL) + self.visited[cands] * (2 * LEVEL)
