"""``markov`` prefetcher: fetch the pages that most often followed the page just accessed.

Rule (kv-hierarchy-lab's predictive prefetch, ``../shared/parity/README.md`` §3.5): count
``next[a][b]``, the times an access to ``b`` immediately followed an access to ``a`` over the whole
access stream (repeats ``a == b`` included), remembering the order in which each ``a``'s
successors were first seen. After a step, for each page ``P`` it accessed (in access order):
take ``P``'s ``max_prefetches`` successors with the highest counts (ties: the one first seen
earlier), then keep those whose count is >= ``min_confidence`` (the filter comes after the cut,
so 0, 1 or ``max_prefetches`` ids remain). The step's lists are concatenated without repeats and
without the step's own pages (they are already in tier 0). The transitions into ``P`` are
counted before the proposal, those out of ``P`` only at the next access. With one access per
step this is exactly the original's list; the engine then cuts it to ``max_prefetch``.
Source: kv-hierarchy-lab v0.1 ``PredictivePrefetchPolicy.prefetch_candidates``; first-order
Markov prefetching after Joseph & Grunwald (ISCA 1997).
Parameters: ``min_confidence`` (int >= 1, default 2): transitions needed; ``max_prefetches``
(int >= 0, default 2): successors considered per accessed page.
"""

from __future__ import annotations

from heapq import nlargest
from operator import itemgetter

import numpy as np

from kvgym.baselines.common import int_param
from kvgym.sim.policy import Prefetcher, register_prefetcher


@register_prefetcher("markov")
class Markov(Prefetcher):
    compiled = "markov"

    def __init__(self, min_confidence: int = 2, max_prefetches: int = 2):
        self.min_confidence = int_param("markov", "min_confidence", min_confidence, 1)
        self.max_prefetches = int_param("markov", "max_prefetches", max_prefetches, 0)

    def compiled_args(self, setup):
        return (self.min_confidence, self.max_prefetches), None

    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.prev: int | None = None
        # a -> {b: count}; dicts keep the order in which each successor was first recorded.
        self.next: dict[int, dict[int, int]] = {}

    def on_access(self, page: int, tier: int, step: int) -> None:
        if self.prev is not None:
            succ = self.next.setdefault(self.prev, {})
            succ[page] = succ.get(page, 0) + 1
        self.prev = page

    def successors(self, page: int) -> list[int]:
        """The original's prefetch list for ``page``: top counts first, then the confidence filter."""
        succ = self.next.get(page)
        if not succ:
            return []
        # nlargest is stable (equal counts keep first-recorded order), like sorted(...)[:k].
        top = nlargest(self.max_prefetches, succ.items(), key=itemgetter(1))
        return [b for b, c in top if c >= self.min_confidence]

    def propose(self, step: int, pages: np.ndarray) -> list[int]:
        if len(pages) == 1:
            p = int(pages[0])
            return [b for b in self.successors(p) if b != p]
        here = set(pages.tolist())
        out: list[int] = []
        for p in dict.fromkeys(pages.tolist()):
            for b in self.successors(p):
                if b not in here:
                    here.add(b)
                    out.append(b)
        return out
