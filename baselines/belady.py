"""``belady``: Belady's MIN: evict the page whose next use is farthest in the future (oracle).

Rule: score = ``-(position of the page's next access)`` in the trace (pages never accessed again
score ``-n`` and go first, earliest inserted first). With uniform page sizes and one cache this
is the optimal offline policy: no policy has fewer misses (``tests/test_baselines_oracle.py``
checks it against exhaustive search). It reads the future through the privileged view
``ctx.future`` (:class:`kvgym.sim.context.Future`: next-use arrays computed once in O(n)) and is
labelled ``privileged``; ``kvgym.sim.engine.simulate`` builds that view automatically, an
``Engine`` must be given ``future=Future(trace.page, len(trace.pages))``.
Source: L. A. Belady, "A study of replacement algorithms for a virtual-storage computer", IBM
Systems Journal 5(2), 1966. (libcachesim's Belady is not a reference here: without next-access
times in its input it silently behaves like LRU.) No parameters.
"""

from __future__ import annotations

import numpy as np

from kvgym.errors import ConfigError
from kvgym.sim.policy import Policy, register_policy


def require_future(owner, ctx) -> None:
    """Raise a clear error when an oracle runs without the privileged future view."""
    if ctx.future is None:
        raise ConfigError(f"{owner.name!r} is an oracle and needs the privileged future view: "
                          "build the Engine with future=Future(trace.page, len(trace.pages)) "
                          "or run it through kvgym.sim.run / kvgym.sim.engine.simulate")


def next_use_tracker(policy, ctx) -> np.ndarray:
    """Per-page next access position, to be refreshed in ``on_access`` (first use before that)."""
    require_future(policy, ctx)
    return ctx.future.first_pos.copy()


@register_policy("belady")
class Belady(Policy):
    compiled = "belady"
    privileged = True

    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.next = next_use_tracker(self, ctx)
        self.next_pos = ctx.future.next_pos

    def on_access(self, page: int, tier: int, step: int) -> None:
        self.next[page] = self.next_pos[self.ctx.pos]

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        return -self.next[cands]
