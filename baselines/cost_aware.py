"""``cost_aware``: frequency and recency, minus a penalty for big pages (kv-hierarchy-lab's).

Rule: score = ``((freq_weight * freq) + ((recency_weight * last) / max(step, 1)))
- (size_penalty * (bytes / 1024.0))`` in double precision, in exactly this association
(``freq``: lifetime accesses; ``last``: step of the latest access; ``bytes``: the page's stored
size under its quantization); the lowest score is evicted (ties: earliest inserted). The tier
costs play no role (see ``cost_aware_tiered`` for a policy that weighs them).
Source: kv-hierarchy-lab v0.1 ``CostAwarePolicy`` (``../shared/parity/README.md`` §3.4).
Parameters: ``size_penalty`` (default 0.4, per KiB), ``freq_weight`` (2.0), ``recency_weight``
(1.0): numbers with ``|w| <= 1e6``; ``recency_weight`` is 0 or ``|w| >= 1e-6`` (so that one step
of recency always changes the score: the compiled engine orders pages of equal frequency and size
by their last access, see :mod:`kvgym.sim.compiled`).
"""

from __future__ import annotations

import numpy as np

from kvgym.baselines.common import weight_param
from kvgym.sim.policy import Policy, register_policy


@register_policy("cost_aware")
class CostAware(Policy):
    compiled = "cost_aware"

    def __init__(self, size_penalty: float = 0.4, freq_weight: float = 2.0, recency_weight: float = 1.0):
        self.size_penalty = weight_param("cost_aware", "size_penalty", size_penalty)
        self.freq_weight = weight_param("cost_aware", "freq_weight", freq_weight)
        self.recency_weight = weight_param("cost_aware", "recency_weight", recency_weight, recency=True)

    def compiled_args(self, setup):
        return (self.freq_weight, self.recency_weight, self.size_penalty), ()

    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.freq = np.zeros(ctx.n_pages, np.int64)
        self.last = np.full(ctx.n_pages, -1, np.int64)
        self.kib = ctx.page_bytes.astype(np.float64) / 1024.0

    def on_access(self, page: int, tier: int, step: int) -> None:
        self.freq[page] += 1
        self.last[page] = step

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        # Elementwise float64 in the original's association: bit-identical to its Python floats.
        return ((self.freq_weight * self.freq[cands]) + ((self.recency_weight * self.last[cands]) / max(step, 1))) \
            - (self.size_penalty * self.kib[cands])
