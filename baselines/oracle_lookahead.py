"""``oracle_lookahead`` prefetcher: fetch the next pages the trace will need (oracle).

Rule: after a step, scan the next ``horizon`` accesses of the trace and propose, in order of
first need, the first ``depth`` distinct pages that are not in tier 0 (and not the step's own).
An upper reference for prefetch benefit at a given prefetch budget, not an optimum (what it
evicts to make room is the eviction policy's choice). Reads the privileged ``ctx.future`` (the
trace's page column) and is labelled ``privileged``.
Source: the "perfect lookahead" prefetchers of Cao et al., "A Study of Integrated Prefetching
and Caching Strategies" (SIGMETRICS 1995).
Parameters: ``depth`` (int >= 1, default 2): pages proposed per step; ``horizon`` (int >= 1,
default 256): accesses looked ahead.
"""

from __future__ import annotations

import numpy as np

from kvgym.baselines.belady import require_future
from kvgym.baselines.common import int_param
from kvgym.sim.policy import Prefetcher, register_prefetcher


@register_prefetcher("oracle_lookahead")
class OracleLookahead(Prefetcher):
    privileged = True
    compiled = "oracle_lookahead"

    def __init__(self, depth: int = 2, horizon: int = 256):
        self.depth = int_param("oracle_lookahead", "depth", depth, 1)
        self.horizon = int_param("oracle_lookahead", "horizon", horizon, 1)

    def compiled_args(self, setup):
        return (self.depth, self.horizon), None

    def bind(self, ctx) -> None:
        super().bind(ctx)
        require_future(self, ctx)
        self.page = ctx.future.page

    def propose(self, step: int, pages: np.ndarray) -> list[int]:
        pos = self.ctx.pos + 1
        ahead = self.page[pos:pos + self.horizon]
        ahead = ahead[self.ctx.tier_of[ahead] != 0]
        here = set(pages.tolist())
        out: list[int] = []
        for q in dict.fromkeys(ahead.tolist()):
            if q not in here:
                out.append(q)
                if len(out) == self.depth:
                    break
        return out
