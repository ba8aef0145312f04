"""``vllm_arc``: vLLM's CPU-offload ARC (``vllm/v1/kv_offload/cpu/policies/arc.py``, vLLM 0.33.0).

Rule (mirrors ``ARCCachePolicy``; sizes in blocks, capacity = the tier's blocks): T1 (seen once)
and T2 (reused) hold residents, LRU end first; ghosts B1, B2 hold recently evicted ids, each
trimmed to the capacity (oldest first); ``target`` (float, starts at 0) is T1's target size.

- insert (a store): the block joins T1's MRU end and leaves the ghosts;
- store miss (``on_store_miss``, once per request and block, in reverse order): a B1 ghost
  raises ``target`` by ``max(1, |B2| / |B1|)`` (at most the capacity), a B2 ghost lowers it by
  ``max(1, |B1| / |B2|)`` (at least 0); the ghost moves to its list's MRU end;
- request finished, tail to head: a block only inserted by the request moves to the MRU end of
  its list; a block the request reused moves T1 -> T2 (once per request) or to T2's MRU end;
- eviction: if ``|T1| >= int(target)``, T1's least recent evictable block, else T2's, else T1's;
  the victim becomes a ghost of its list. vLLM evicts ``n`` at once with the same choice
  repeated (its ``virtual_t1_size`` is ``|T1|`` after each choice), so one at a time is equal;
- lookups and loads change nothing (vLLM's ARC has no request-access hook).

In the decode engine (no request hooks) blocks stay in T1: FIFO. No parameters.
"""

from __future__ import annotations

import numpy as np

from kvgym.sim.policy import Policy, register_policy


@register_policy("vllm_arc", serving_only=True)
class VllmARC(Policy):
    def bind(self, ctx) -> None:
        super().bind(ctx)
        cap = ctx.tiers[0].capacity_bytes  # serving views count in blocks
        self.cap = int(cap) if cap is not None else ctx.n_pages
        self.t1: dict[int, None] = {}
        self.t2: dict[int, None] = {}
        self.b1: dict[int, None] = {}
        self.b2: dict[int, None] = {}
        self.target = 0.0

    def on_insert(self, page: int, tier: int, step: int) -> None:
        if tier != 0:
            return
        self.t1[page] = None
        self.b1.pop(page, None)
        self.b2.pop(page, None)

    def on_store_miss(self, req, blocks, positions, step) -> None:
        for b in reversed(blocks.tolist()):
            if b in self.b1:
                delta = max(1, len(self.b2) / len(self.b1))
                self.target = min(self.target + delta, self.cap)
                del self.b1[b]
                self.b1[b] = None
            elif b in self.b2:
                delta = max(1, len(self.b1) / len(self.b2))
                self.target = max(self.target - delta, 0)
                del self.b2[b]
                self.b2[b] = None

    def on_request_finished(self, req, blocks, positions, inserted, reused, step) -> None:
        only_inserted = inserted - reused
        for b in reversed(blocks.tolist()):
            if b in only_inserted:
                for lst in (self.t1, self.t2):
                    if b in lst:
                        del lst[b]
                        lst[b] = None
                        break
                continue
            if b in reused and b in self.t1:
                del self.t1[b]
                self.t2[b] = None
            elif b in reused and b in self.t2:
                del self.t2[b]
                self.t2[b] = None

    def on_evict(self, page: int, tier: int, step: int) -> None:
        if tier != 0:
            return
        if page in self.t1:
            del self.t1[page]
            self.b1[page] = None
        elif page in self.t2:
            del self.t2[page]
            self.b2[page] = None
        for ghost in (self.b1, self.b2):
            while len(ghost) > self.cap:
                del ghost[next(iter(ghost))]

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        ok = set(cands.tolist())
        first = lambda lst: next((b for b in lst if b in ok), None)
        victim = first(self.t1) if len(self.t1) >= int(self.target) else None
        if victim is None:
            victim = first(self.t2)
        if victim is None:
            victim = first(self.t1)
        if victim is None:  # a block the lists never saw (inserted outside this policy): oldest candidate
            victim = int(cands[0])
        return (cands != victim).astype(np.int64)
