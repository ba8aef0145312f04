"""``sequential`` prefetcher: fetch the next token blocks of the same sequence and layer.

Rule: the *successor* of page p is the page of the same sequence and layer whose token span
starts where p's ends (``token_start == p.token_end``); when several pages share a span (head
groups) the one of the same rank by page id is taken. After a step, for each page it accessed
(in access order), propose its successor, then the successor's successor, up to ``depth``
levels (all first successors before any second one), skipping pages the step accessed, pages
already in tier 0 and repeats. The engine cuts the list to the scenario's ``max_prefetch``.
Source: one-block lookahead / sequential prefetching (Smith, "Sequential program prefetching in
memory hierarchies", IEEE Computer 1978), applied per (sequence, layer) as in prefill/readback
of paged KV caches.
Parameters: ``depth`` (int >= 1, default 1): successors per accessed page.
"""

from __future__ import annotations

import numpy as np

from kvgym.baselines.common import int_param
from kvgym.sim.policy import Prefetcher, register_prefetcher


def successors(pages) -> np.ndarray:
    """Per page id, the next page of its (sequence, layer) in token order, or -1."""
    n = len(pages)
    if n == 0:
        return np.zeros(0, np.int64)
    own = np.stack([pages.seq.astype(np.int64), pages.layer.astype(np.int64), pages.token_start.astype(np.int64)], 1)
    tgt = np.stack([own[:, 0], own[:, 1], pages.token_end.astype(np.int64)], 1)
    _, inv = np.unique(np.concatenate([own, tgt]), axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    gid, want = inv[:n], inv[n:]
    order = np.lexsort((np.arange(n), gid))  # by group, then page id
    n_groups = int(inv.max()) + 1
    count = np.bincount(gid, minlength=n_groups)
    start = np.concatenate(([0], np.cumsum(count)[:-1]))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - start[gid[order]]
    has = count[want] > 0
    out = np.full(n, -1, np.int64)
    idx = start[want[has]] + np.minimum(rank[has], count[want[has]] - 1)
    out[has] = order[idx]
    return out


@register_prefetcher("sequential")
class Sequential(Prefetcher):
    compiled = "sequential"

    def __init__(self, depth: int = 1):
        self.depth = int_param("sequential", "depth", depth, 1)

    def compiled_args(self, setup):
        return (self.depth,), successors(setup.pages)

    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.next = successors(ctx.pages)

    def propose(self, step: int, pages: np.ndarray) -> list[int]:
        here = set(pages.tolist())
        cur = np.asarray(list(dict.fromkeys(pages.tolist())), np.int64)
        out: list[int] = []
        for _ in range(self.depth):
            cur = self.next[cur]
            cur = cur[cur >= 0]
            if not len(cur):
                break
            for q in cur[self.ctx.tier_of[cur] != 0].tolist():
                if q not in here:
                    here.add(q)
                    out.append(q)
        return out
