"""``streaming_llm``: keep the attention sinks and a recent window of every sequence.

Rule: a page is a *sink* if it holds one of its sequence's first ``sink_tokens`` tokens
(``token_start < sink_tokens``), *recent* if it overlaps the sequence's last ``window_tokens``
tokens (``token_end > length - window_tokens``, where a sequence's ``length`` is the largest
``token_end`` of its pages accessed so far), and *middle* otherwise. Middle pages go first, then
recent ones, sinks last; within a class the page farthest from its sequence's end goes first
(ties: earliest inserted). Score = ``class * 2**40 - (length - token_end)``. Access history plays
no role beyond the sequence lengths; the score is the same in every tier.
Source: StreamingLLM, Xiao et al., "Efficient Streaming Language Models with Attention Sinks"
(ICLR 2024): 4 sink tokens plus a rolling window. kvgym has no accuracy model: evicting a page
here only costs its refetch, never quality.
Parameters: ``sink_tokens`` (int >= 0, default 4), ``window_tokens`` (int in [0, 2**40], default 1024).
"""

from __future__ import annotations

import numpy as np

from kvgym.baselines.common import LEVEL, int_param
from kvgym.sim.policy import Policy, register_policy


@register_policy("streaming_llm")
class StreamingLLM(Policy):
    compiled = "streaming_llm"

    def __init__(self, sink_tokens: int = 4, window_tokens: int = 1024):
        self.sink_tokens = int_param("streaming_llm", "sink_tokens", sink_tokens, 0)
        self.window_tokens = int_param("streaming_llm", "window_tokens", window_tokens, 0, 1 << 40)

    def compiled_args(self, setup):
        return (), (self.sink_tokens, self.window_tokens)

    def bind(self, ctx) -> None:
        super().bind(ctx)
        pg = ctx.pages
        self.seq = pg.seq.astype(np.int64)
        self.end = pg.token_end.astype(np.int64)
        self.sink = pg.token_start < self.sink_tokens
        self.length = np.zeros(int(self.seq.max()) + 1 if len(self.seq) else 0, np.int64)

    def on_access(self, page: int, tier: int, step: int) -> None:
        q = self.seq[page]
        self.length[q] = max(self.length[q], self.end[page])

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        dist = self.length[self.seq[cands]] - self.end[cands]
        cls = np.where(self.sink[cands], 2, (dist < self.window_tokens).astype(np.int64))
        return cls * LEVEL - dist
