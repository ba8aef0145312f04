"""``session_aware``: keep whole chains of active sessions; evict idle sessions' chains tail first.

Rule: each block belongs to the session of the last request that referenced it (serving mode:
``ctx.session_of_request[ctx.req]``, a request without a session being its own; decode engine:
the page's ``seq``); a session's activity is the step of its latest block reference or insert.
Score = ``activity * 2**24 + (2**24 - 1 - min(token_start, 2**24 - 1))``: the least recently
active session goes first, and within it the deepest block first, so what stays of its chain is
still a usable prefix (ties: earliest inserted). Shared blocks (a system prompt) follow the
session that used them last. No parameters.
"""

from __future__ import annotations

import numpy as np

from kvgym.sim.policy import Policy, register_policy

_DEPTH = np.int64(1) << np.int64(24)


@register_policy("session_aware", serving_only=True)
class SessionAware(Policy):
    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.block_session = np.zeros(ctx.n_pages, np.int64)
        self.activity: dict[int, int] = {}
        self.depth = _DEPTH - 1 - np.minimum(ctx.pages.token_start, _DEPTH - 1)

    def _touch(self, page: int, step: int) -> None:
        req = getattr(self.ctx, "req", -1)
        s = int(self.ctx.session_of_request[req]) if req >= 0 else int(self.ctx.pages.seq[page])
        self.block_session[page] = s
        self.activity[s] = step

    def on_access(self, page: int, tier: int, step: int) -> None:
        self._touch(page, step)

    def on_insert(self, page: int, tier: int, step: int) -> None:
        self._touch(page, step)

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        act = np.fromiter((self.activity.get(int(s), -1) for s in self.block_session[cands]), np.int64, len(cands))
        return act * _DEPTH + self.depth[cands]
