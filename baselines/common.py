"""Helpers shared by the built-in policies and prefetchers (no policy is registered here).

- Parameter checks that raise :class:`kvgym.errors.ConfigError` naming the parameter.
- :func:`lower_tier_scores`: what a tier-0 policy scores when the engine asks it about a lower
  tier (``Scenario.lower_policy == "same"``): LRU on the engine's last-access steps.
- :func:`cache_setup`: a one-cache hierarchy (one bounded tier over an unbounded backing store,
  free transfers), the setting of classic cache studies and of the libcachesim cross-check.
"""

from __future__ import annotations

import numpy as np

from kvgym.params import check, need_int, need_num

#: Spacing of score levels: keys, counters and steps stay far below it (2**40 ~ 1.1e12).
LEVEL = np.int64(1) << np.int64(40)


def int_param(owner: str, name: str, value, minimum: int = 0, maximum: int | None = None) -> int:
    """An int (not a bool) in ``[minimum, maximum]`` (:func:`kvgym.params.need_int`)."""
    return need_int(owner, name, value, minimum, maximum)


def num_param(owner: str, name: str, value, minimum: float | None = None, maximum: float | None = None,
              open_min: bool = False) -> float:
    """A finite real number in range (:func:`kvgym.params.need_num`)."""
    return need_num(owner, name, value, minimum, maximum, lo_open=open_min)


def weight_param(owner: str, name: str, value, recency: bool = False) -> float:
    """A score weight: a finite number with ``|w| <= 1e6``; a recency weight is 0 or ``|w| >= 1e-6``.

    The bounds keep every term of a frequency/recency score resolvable in float64, which the
    compiled engine relies on to order pages of one frequency by their last access.
    """
    w = num_param(owner, name, value, -1e6, 1e6)
    if recency:
        check(owner, name, value, w == 0 or abs(w) >= 1e-6, "0, or a number with |w| >= 1e-6")
    return w


def lower_tier_scores(ctx, cands: np.ndarray) -> np.ndarray:
    """Scores for candidates of a tier below 0: least recently accessed first (LRU)."""
    return ctx.last_access[cands]


def in_tier0(ctx, cands: np.ndarray) -> bool:
    """True when the engine asks about tier-0 residents (all candidates share one tier)."""
    return int(ctx.tier_of[cands[0]]) == 0


def cache_setup(pages, capacity_bytes: int, *, name: str = "cache"):
    """A :class:`~kvgym.sim.scenario.Setup` with one bounded cache tier over a backing store.

    Tier 0 holds ``capacity_bytes``; tier 1 is unbounded, so a tier-0 victim is demoted there
    and never dropped, and every tier-0 miss is a miss of the single cache. Transfers cost
    nothing (``serial`` cost model, zero latencies): only counts matter. Page bytes are the
    page table's ``bytes`` if given, else its ``fp16_bytes``.
    """
    from kvgym.sim.scenario import Scenario, Setup
    from kvgym.sim.tiers import ComputeModel, Tier
    from kvgym.traces.quant import quantization

    size = np.asarray(pages.bytes if pages.bytes is not None else pages.fp16_bytes, np.int64)
    scen = Scenario(name=name, profile="seed-toy", cost_model="serial", description="one cache tier over a store")
    need_int("cache_setup", "capacity_bytes", capacity_bytes, 1)
    tiers = (Tier(name, int(capacity_bytes), 0.0, 0.0, 1.0), Tier("store", None, 0.0, 0.0, 1.0))
    if len(size) and int(size.max()) > capacity_bytes:
        check("cache_setup", "capacity_bytes", capacity_bytes, False,
              f"at least the largest page ({int(size.max())} bytes)")
    return Setup(scen, tiers, ComputeModel(), quantization("fp16"), size, np.zeros(len(size)), pages)
