"""``heavy_hitter``: the most frequently accessed pages stay; among equals, least recent goes.

Rule: score = ``freq(p) * 10,000 + last_access_step(p)`` (``freq``: lifetime accesses, counted
in ``on_access`` before the access's own evictions); the lowest score is evicted (ties:
earliest inserted). Scores do not depend on the tier.
Source: kv-hierarchy-lab v0.1 ``HeavyHitterPolicy`` (``../shared/parity/README.md`` §3.3), itself
after the "heavy hitter" idea of H2O (Zhang et al., NeurIPS 2023) with access counts standing in
for attention mass. No parameters.
"""

from __future__ import annotations

import numpy as np

from kvgym.sim.policy import Policy, register_policy

FREQ_MULTIPLIER = 10_000


@register_policy("heavy_hitter")
class HeavyHitter(Policy):
    compiled = "heavy_hitter"
    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.freq = np.zeros(ctx.n_pages, np.int64)
        self.last = np.full(ctx.n_pages, -1, np.int64)

    def on_access(self, page: int, tier: int, step: int) -> None:
        self.freq[page] += 1
        self.last[page] = step

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        return self.freq[cands] * FREQ_MULTIPLIER + self.last[cands]
