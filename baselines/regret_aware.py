"""``regret_aware``: frequency and recency plus a bonus for pages regretted after an eviction.

Rule (kv-hierarchy-lab's, ``../shared/parity/README.md`` §3.6): every eviction of p, at any tier,
records ``evicted_at[p] = step``. On each access of p, in this order: ``freq += 1``;
``last = step``; ``regret[p] *= decay``; then if ``evicted_at[p]`` is set it is consumed, and
if ``gap = step - evicted_at[p] <= regret_horizon`` the regret grows by
``(regret_horizon - gap + 1) / regret_horizon``. Score = ``((freq_weight * freq) +
((recency_weight * last) / max(step, 1))) + (regret_weight * regret)`` in double precision;
the lowest score is evicted (ties: earliest inserted). The regret decays per access of that
page, not per step.
Source: kv-hierarchy-lab v0.1 ``RegretAwarePolicy``.
Parameters: ``regret_horizon`` (int >= 1, default 24, steps), ``regret_weight`` (6.0),
``freq_weight`` (1.5), ``recency_weight`` (1.0): numbers with ``|w| <= 1e6``, ``recency_weight``
0 or ``|w| >= 1e-6`` (as ``cost_aware``); ``decay`` (0.98): a finite number >= 0.
"""

from __future__ import annotations

import numpy as np

from kvgym.baselines.common import int_param, num_param, weight_param
from kvgym.sim.policy import Policy, register_policy


@register_policy("regret_aware")
class RegretAware(Policy):
    compiled = "regret_aware"

    def __init__(self, regret_horizon: int = 24, regret_weight: float = 6.0, freq_weight: float = 1.5,
                 recency_weight: float = 1.0, decay: float = 0.98):
        own = "regret_aware"
        self.regret_horizon = int_param(own, "regret_horizon", regret_horizon, 1)
        self.regret_weight = weight_param(own, "regret_weight", regret_weight)
        self.freq_weight = weight_param(own, "freq_weight", freq_weight)
        self.recency_weight = weight_param(own, "recency_weight", recency_weight, recency=True)
        self.decay = num_param(own, "decay", decay, 0.0)

    def compiled_args(self, setup):
        return (self.freq_weight, self.recency_weight, self.regret_weight, self.decay), (self.regret_horizon,)

    def bind(self, ctx) -> None:
        super().bind(ctx)
        n = ctx.n_pages
        self.freq = np.zeros(n, np.int64)
        self.last = np.full(n, -1, np.int64)
        self.evicted_at = np.full(n, -1, np.int64)  # -1: none (steps are >= 0)
        # An absent regret behaves as 0.0 under both the decay and the bonus, so no presence flag.
        self.regret = np.zeros(n, np.float64)

    def on_evict(self, page: int, tier: int, step: int) -> None:
        self.evicted_at[page] = step

    def on_access(self, page: int, tier: int, step: int) -> None:
        self.freq[page] += 1
        self.last[page] = step
        r = float(self.regret[page]) * self.decay
        e = int(self.evicted_at[page])
        if e >= 0:
            self.evicted_at[page] = -1
            gap = step - e
            h = self.regret_horizon
            if gap <= h:
                r = r + (h - gap + 1) / h
        self.regret[page] = r

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        return ((self.freq_weight * self.freq[cands]) + ((self.recency_weight * self.last[cands]) / max(step, 1))) \
            + (self.regret_weight * self.regret[cands])
