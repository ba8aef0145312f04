"""``h2o``: Heavy-Hitter Oracle: keep a recent window plus the pages with the most attention.

Rule: pages overlapping their sequence's last ``window_tokens`` tokens (as in ``streaming_llm``)
are kept; among the others the page with the least accumulated attention weight (the trace's
``weight`` column summed over the page's accesses so far, ``ctx.weight_sum``) goes first
(ties: earliest inserted). If the trace has no ``weight`` column, the access count stands in for
attention mass. Recent pages, if one must go, leave farthest from their sequence's end first
(ties: earliest inserted). Score = attention mass, or ``2**52 - distance to the end`` for recent
pages (exact in float64, and above any mass). The score is the same in every tier; the
accumulation is lifetime (a page that comes back keeps its history).
Source: H2O, Zhang et al., "H2O: Heavy-Hitter Oracle for Efficient Generative Inference of
Large Language Models" (NeurIPS 2023): heavy hitters by accumulated attention plus recent tokens.
Parameters: ``window_tokens`` (int in [0, 2**40], default 256).
"""

from __future__ import annotations

import numpy as np

from kvgym.baselines.common import int_param
from kvgym.sim.policy import Policy, register_policy

RECENT = 2.0**52  # above any attention sum or access count; RECENT - distance is exact


@register_policy("h2o")
class H2O(Policy):
    compiled = "h2o"

    def __init__(self, window_tokens: int = 256):
        self.window_tokens = int_param("h2o", "window_tokens", window_tokens, 0, 1 << 40)

    def compiled_args(self, setup):
        return (), (self.window_tokens,)

    def bind(self, ctx) -> None:
        super().bind(ctx)
        pg = ctx.pages
        self.seq = pg.seq.astype(np.int64)
        self.end = pg.token_end.astype(np.int64)
        self.length = np.zeros(int(self.seq.max()) + 1 if len(self.seq) else 0, np.int64)

    def on_access(self, page: int, tier: int, step: int) -> None:
        q = self.seq[page]
        self.length[q] = max(self.length[q], self.end[page])

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        ctx = self.ctx
        mass = ctx.weight_sum[cands] if ctx.has_weights else ctx.freq[cands].astype(np.float64)
        dist = self.length[self.seq[cands]] - self.end[cands]
        return np.where(dist < self.window_tokens, RECENT - dist, mass)
