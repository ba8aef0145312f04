"""``vllm_lru``: vLLM's CPU-offload LRU (``vllm/v1/kv_offload/cpu/policies/lru.py``, vLLM 0.33.0).

Rule (mirrors ``LRUCachePolicy``): every resident block has a rank ``(R, -position)`` compared
lexicographically; the lowest rank is evicted (ranks are unique, so ties never happen).
``R`` values come from one counter. A request gets its own ``R`` (the counter's next value) the
first time it touches this tier's policy (a store insert, or a request access). Then:

- insert (a store) of a block at chain position ``j``: rank ``(R_req, -j)``; an insert without a
  position (a write-back demotion): ``(next, 0)``;
- request access (``on_request_load`` / ``on_request_offer``, vLLM's ``on_request_access``): a
  resident block's rank rises to ``(R_req, -j)`` if that is higher (tails rank below heads);
- request finished: the request's blocks, from tail to head, each get a fresh ``(next, 0)``, so
  its prefix head ends up most recent (``on_request_finished`` re-touches tail to head);
- lookups change nothing; ``touch`` is never called by vLLM's connector (0.33).

As tier 0 (with pinning) it gives vLLM's GPU prefix-cache order too: a request's blocks are freed
tail first, so its head is evicted last. In the decode engine (no request hooks) every insert takes
a fresh rank: FIFO. Encoding: ``R * 2**32 + 2**31 - j``. No parameters.
"""

from __future__ import annotations

import numpy as np

from kvgym.sim.policy import Policy, register_policy

_SHIFT = np.int64(1) << np.int64(32)
_MID = np.int64(1) << np.int64(31)


@register_policy("vllm_lru", serving_only=True)
class VllmLRU(Policy):
    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.rank = np.zeros(ctx.n_pages, np.int64)
        self.next_rank = 0
        self.req_rank: dict[int, int] = {}

    def _fresh(self) -> np.int64:
        self.next_rank += 1
        return np.int64(self.next_rank) * _SHIFT + _MID

    def _request_rank(self, req: int) -> int:
        if req not in self.req_rank:
            self.next_rank += 1
            self.req_rank[req] = self.next_rank
        return self.req_rank[req]

    def on_insert(self, page: int, tier: int, step: int) -> None:
        if tier != 0:
            return
        req, pos = getattr(self.ctx, "req", -1), getattr(self.ctx, "block_pos", -1)
        if req < 0 or pos < 0:
            self.rank[page] = self._fresh()
        else:
            self.rank[page] = np.int64(self._request_rank(req)) * _SHIFT + _MID - pos

    def _request_access(self, req: int, blocks: np.ndarray, positions: np.ndarray, step: int) -> None:
        base = np.int64(self._request_rank(req)) * _SHIFT + _MID
        for b, p in zip(blocks.tolist(), positions.tolist()):
            if self.ctx.tier_of[b] == 0 and self.rank[b] < base - p:
                self.rank[b] = base - p

    on_request_load = _request_access
    on_request_offer = _request_access

    def on_request_finished(self, req, blocks, positions, inserted, reused, step) -> None:
        for b in reversed(blocks.tolist()):
            if self.ctx.tier_of[b] == 0:
                self.rank[b] = self._fresh()
        self.req_rank.pop(req, None)

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        return self.rank[cands]
