"""What policies, prefetchers and the env may read about a running simulation.

:class:`SimContext` holds the setup (tiers, per-page bytes and decode cost) and per-page
engine state as numpy arrays indexed by page id, kept current by the engine:

- ``tier_of``: tier holding the page, -1 if none.
- ``last_access``: step of the most recent access (-1 never); ``freq``: accesses so far;
  ``weight_sum``: accumulated attention weight.
- ``insert_step``: step the page last entered tier 0 (-1 never).
- ``evict_step``: step it was last evicted from tier 0 (-1 never); ``regret``: times it was
  accessed again within ``regret_horizon`` steps of a tier-0 eviction (the regret signal).
- ``pos``: index of the access being processed; ``step``: its step.

``future`` is the privileged view (:class:`Future`), present only when a privileged policy or
prefetcher runs; ordinary policies must not read it.
"""

from __future__ import annotations

import numpy as np

from kvgym.sim.scenario import Setup
from kvgym.sim.tiers import transfer_alpha_beta


class Future:
    """Next-use arrays of a whole trace, computed once in O(n).

    ``next_pos[i]``: index of the next access to the page of access ``i`` (``n`` if none);
    ``first_pos[p]``: index of page ``p``'s first access (``n`` if never).
    """

    def __init__(self, page: np.ndarray, n_pages: int):
        from kvgym.sim.fast import next_use  # compiled; imported here to keep this module light

        self.n = len(page)
        self.page = page
        self.next_pos, self.first_pos = next_use(np.ascontiguousarray(page, dtype=np.int64), int(n_pages))


class SimContext:
    def __init__(self, setup: Setup, regret_horizon: int = 32):
        n = len(setup.page_bytes)
        self.setup = setup
        self.n_pages = n
        self.tiers = setup.tiers
        self.page_bytes = setup.page_bytes
        self.decode_us = setup.decode_us
        self.pages = setup.pages
        self.regret_horizon = regret_horizon
        self.tier_of = np.full(n, -1, np.int8)
        self.last_access = np.full(n, -1, np.int64)
        self.freq = np.zeros(n, np.int64)
        self.weight_sum = np.zeros(n, np.float64)
        self.insert_step = np.full(n, -1, np.int64)
        self.evict_step = np.full(n, -1, np.int64)
        self.regret = np.zeros(n, np.int64)
        self.pos = 0
        self.step = 0
        self.future: Future | None = None
        # µs to bring a page of each tier back to tier 0 (α + bytes/β + decode), per tier.
        self._alpha = np.array([0.0] + [transfer_alpha_beta(t, setup.tiers[0])[0] for t in setup.tiers[1:]])
        self._beta = np.array([np.inf] + [transfer_alpha_beta(t, setup.tiers[0])[1] for t in setup.tiers[1:]])

    def refetch_cost_us(self, pages: np.ndarray, tier) -> np.ndarray:
        """µs to promote ``pages`` from ``tier`` (scalar or per-page array) back to tier 0."""
        tier = np.asarray(tier)
        return self._alpha[tier] + self.page_bytes[pages] / self._beta[tier] + self.decode_us[pages]
