"""What a serving-mode policy sees: one :class:`ServingContext` per tier.

A :class:`ServingContext` is a :class:`~kvgym.sim.context.SimContext` of the hierarchy seen
from one tier: ``tiers[0]`` is that tier, then the tiers below it. **Sizes are in blocks**:
``page_bytes`` is 1 for every block and a tier's ``capacity_bytes`` is its capacity in blocks
(``None`` unbounded), so size-based rules (S3-FIFO's small queue, ARC's target) count blocks as
libcachesim counts unit objects and vLLM counts chunks; ``tier_of[b]`` is 0 when block ``b`` is resident in that tier and -1 otherwise;
``last_access``, ``freq``, ``insert_step``, ``evict_step`` and ``regret`` count that tier's
own events. Pages are blocks: ``pages`` is a page table of the blocks (``seq`` = first request that used
the block, token span = its place in the chain, ``fp16_bytes`` = the block's fp16 bytes).
So every decode policy runs per tier unchanged. Serving adds:

- ``tier``: the tier's index in the serving hierarchy; ``req``: the request being served
  (-1 none); ``block_pos``: chain position of the block being handled (-1 none, e.g. a
  demotion); ``session_of_request``: the session key of each request (its session id, or
  ``-(r + 2)`` for a request without one, so it is its own session);
- ``parent``, ``position``, ``block_tokens``: per block (from the trace's block table);
- ``kids``: per block, how many of its children are resident in this tier (a block with none
  is a leaf of the tier's radix tree);
- :meth:`refetch_us`: what losing a block from this tier would cost the next request that needs
  it in tier 0: the load time from the fastest tier below holding a copy, else the time of an
  iteration that recomputes just that block at its chain position. ``refetch_cost_us(pages,
  tier)``, which decode policies call (``cost_aware_tiered``), answers the same: in serving a
  lost block is loaded or recomputed whatever tier a decode engine would have demoted it to.
"""

from __future__ import annotations

import numpy as np

from kvgym.sim.context import SimContext
from kvgym.sim.serving.compute import prefill_terms
from kvgym.sim.serving.links import transfer_us


class ServingContext(SimContext):
    """Tier ``tier``'s view. ``engine`` provides ``trace``, ``kids`` and ``in_tier`` (tiers x
    blocks), ``session_key``, ``links``, ``block_bytes``, ``n_tiers`` and ``compute``; ``state``:
    the tier's per-block records (new if omitted; the compiled engine passes its own)."""

    def __init__(self, setup, tier: int, engine, state: np.ndarray | None = None):
        super().__init__(setup, state=state)
        bt = engine.trace.block_table
        self.tier = tier
        self.req = -1
        self.block_pos = -1
        self.parent = bt.parent
        self.position = bt.position
        self.block_tokens = bt.tokens
        self.kids = engine.kids[tier]
        self.session_of_request = engine.session_key
        self._engine = engine

    def refetch_cost_us(self, pages: np.ndarray, tier=None) -> np.ndarray:
        return self.refetch_us(pages)

    def refetch_us(self, blocks: np.ndarray) -> np.ndarray:
        e = self._engine
        out = np.empty(len(blocks), np.float64)
        for i, b in enumerate(np.asarray(blocks, np.int64).tolist()):
            below = [u for u in range(self.tier + 1, e.n_tiers) if e.in_tier[u, b]]
            if below:
                out[i] = transfer_us(e.links[below[0]], e.block_bytes, 1)
            else:
                out[i] = recompute_us(e.compute, e.trace.block_tokens, int(self.position[b]),
                                      int(self.block_tokens[b]))
        return out


def recompute_us(compute, block_tokens: int, position: int, tokens: int) -> float:
    """µs of the iteration that recomputes just one block: ``tokens`` tokens at chain position
    ``position`` (``block_tokens`` per block), nothing sampled."""
    s = position * block_tokens
    n, a, k = prefill_terms(s, s + tokens)
    return compute.iteration_us(n, a, 0, k)
