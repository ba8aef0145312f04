"""``hits_per_token``: size-aware value per byte: GreedyDual-Size-Frequency on tokens saved.

Rule (GDSF, Cherkasova 1998, with the value of a hit = the prefill tokens it saves): a resident
block's priority is ``H = L + (f * tokens) / bytes``, float64 in that association, where ``f``
counts its references since it entered the tier (1 at insert, +1 per hit), ``tokens`` is the
block's token count (a partial block saves fewer) and ``bytes`` its fp16 size; ``H`` is set at
insert and at each hit. The lowest ``H`` is evicted (ties: earliest inserted) and the inflation
``L`` becomes the victim's ``H``, which ages blocks that stopped being used. With uniform full
blocks it is LFU with aging. No parameters.
"""

from __future__ import annotations

import numpy as np

from kvgym.sim.policy import Policy, register_policy


@register_policy("hits_per_token", serving_only=True)
class HitsPerToken(Policy):
    def bind(self, ctx) -> None:
        super().bind(ctx)
        pg = ctx.pages
        self.value = (pg.token_end - pg.token_start).astype(np.float64)
        self.size = ctx.pages.fp16_bytes.astype(np.float64) if ctx.pages.bytes is None else ctx.pages.bytes.astype(np.float64)
        self.f = np.zeros(ctx.n_pages, np.int64)
        self.h = np.zeros(ctx.n_pages, np.float64)
        self.inflation = 0.0

    def _set(self, page: int) -> None:
        self.h[page] = self.inflation + (self.f[page] * self.value[page]) / self.size[page]

    def on_access(self, page: int, tier: int, step: int) -> None:
        if tier == 0:
            self.f[page] += 1
            self._set(page)

    def on_insert(self, page: int, tier: int, step: int) -> None:
        if tier == 0:
            self.f[page] = 1
            self._set(page)

    def on_evict(self, page: int, tier: int, step: int) -> None:
        if tier == 0:
            self.inflation = float(self.h[page])

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        return self.h[cands]
