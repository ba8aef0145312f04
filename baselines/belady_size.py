"""``belady_size``: size-aware Belady: evict the page with the largest next-use distance x size (oracle).

Rule: value = ``(next access position - current position) * stored bytes``; the largest value
goes first (score = ``-value``). Pages never accessed again go before all others, the largest
first. A heuristic, not an optimum, for variable page sizes (the exact problem is NP-hard); with
uniform sizes it is ``belady``. Reads the privileged ``ctx.future`` like ``belady``.
Source: the size-aware MIN variants of offline caching, e.g. Berger et al., "Practical Bounds on
Optimal Caching with Variable Object Sizes" (SIGMETRICS 2018), and libcachesim ``BeladySize``.
No parameters.
"""

from __future__ import annotations

import numpy as np

from kvgym.baselines.belady import next_use_tracker
from kvgym.sim.policy import Policy, register_policy


@register_policy("belady_size")
class BeladySize(Policy):
    compiled = "belady_size"
    privileged = True

    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.next = next_use_tracker(self, ctx)
        self.next_pos = ctx.future.next_pos
        self.n = ctx.future.n
        self.bytes = ctx.page_bytes.astype(np.float64)
        # Above any distance x size of a page that is used again (exact in float64 below 2**53).
        self.never = float(self.n + 1) * float(self.bytes.max() if len(self.bytes) else 1.0)

    def on_access(self, page: int, tier: int, step: int) -> None:
        self.next[page] = self.next_pos[self.ctx.pos]

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        nxt = self.next[cands]
        size = self.bytes[cands]
        value = np.where(nxt >= self.n, self.never + size, (nxt - self.ctx.pos) * size)
        return -value
