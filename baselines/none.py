"""``none`` prefetcher: never prefetches (the reference for prefetch benefit). No parameters.

Rule: proposes nothing, so a scenario with ``prefetch`` on behaves as with it off.
Source: the baseline of every prefetching study.
"""

from __future__ import annotations

import numpy as np

from kvgym.sim.policy import Prefetcher, register_prefetcher


@register_prefetcher("none")
class NoPrefetch(Prefetcher):
    compiled = "none"

    def propose(self, step: int, pages: np.ndarray) -> list[int]:
        return []
