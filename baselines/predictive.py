"""``predictive``: frequency first, then recency (kv-hierarchy-lab's predictive policy, eviction half).

Rule: score = ``freq(p) * 100 + last_access_step(p)``; the lowest score is evicted (ties:
earliest inserted). The original also prefetched the likely successors of each access; in
kvgym that half is the separate prefetcher ``markov`` (``baselines/markov.py``), and the parity
run of ``predictive`` pairs the two (``kvgym parity``).
Source: kv-hierarchy-lab v0.1 ``PredictivePrefetchPolicy`` (``../shared/parity/README.md`` §3.5).
No parameters (the original's ``min_confidence`` and ``max_prefetches`` belong to ``markov``).
"""

from __future__ import annotations

import numpy as np

from kvgym.sim.policy import Policy, register_policy

FREQ_MULTIPLIER = 100


@register_policy("predictive")
class Predictive(Policy):
    compiled = "predictive"
    #: Sweeps pair it with its original prefetch half unless told otherwise.
    default_prefetcher = "markov"

    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.freq = np.zeros(ctx.n_pages, np.int64)
        self.last = np.full(ctx.n_pages, -1, np.int64)

    def on_access(self, page: int, tier: int, step: int) -> None:
        self.freq[page] += 1
        self.last[page] = step

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        return self.freq[cands] * FREQ_MULTIPLIER + self.last[cands]
