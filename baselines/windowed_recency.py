"""``windowed_recency``: pages seen often in the last W accesses stay; then least recent goes.

Rule: score = ``count(p in the last W accesses) * 1,000,000 + last_access_step(p)``; the
lowest score is evicted (ties: earliest inserted). The window holds the ids of the last
``window_size`` accesses, the current one included (it is appended in ``on_access``, before
any eviction the access causes). Scores do not depend on the tier.
Source: kv-hierarchy-lab v0.1 ``WindowedRecencyPolicy`` (``../shared/parity/README.md`` §3.2).
Parameters: ``window_size`` (int >= 1, default 32): accesses in the window.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from kvgym.baselines.common import int_param
from kvgym.sim.policy import Policy, register_policy

COUNT_MULTIPLIER = 1_000_000


@register_policy("windowed_recency")
class WindowedRecency(Policy):
    compiled = "windowed_recency"

    def __init__(self, window_size: int = 32):
        self.window_size = int_param("windowed_recency", "window_size", window_size, 1)

    def compiled_args(self, setup):
        return (), (self.window_size,)

    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.window: deque[int] = deque()
        self.count = np.zeros(ctx.n_pages, np.int64)
        self.last = np.full(ctx.n_pages, -1, np.int64)

    def on_access(self, page: int, tier: int, step: int) -> None:
        self.last[page] = step
        self.window.append(page)
        self.count[page] += 1
        if len(self.window) > self.window_size:
            self.count[self.window.popleft()] -= 1

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        return self.count[cands] * COUNT_MULTIPLIER + self.last[cands]
