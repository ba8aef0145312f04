"""The oracle policies: ``belady`` is optimal (exhaustive search on every tiny trace drawn),
never beaten by another policy, and ``belady_size`` equals it when sizes are uniform."""

from __future__ import annotations

from functools import cache

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kvgym.baselines.common import cache_setup
from kvgym.sim.context import Future
from kvgym.sim.engine import Engine, simulate
from kvgym.sim.policy import make_policy
from kvgym.traces.format import PageTable, Trace

ONLINE = ["lru", "windowed_recency", "heavy_hitter", "cost_aware", "predictive", "regret_aware", "fifo", "lfu",
          "arc", "sieve", "s3fifo", "clock", "streaming_llm", "h2o", "cost_aware_tiered"]


def optimum(pages: tuple[int, ...], capacity: int) -> int:
    """Fewest misses of any demand-paging cache of ``capacity`` pages, by exhaustive search."""

    @cache
    def best(i: int, cache: frozenset) -> int:
        if i == len(pages):
            return 0
        p = pages[i]
        if p in cache:
            return best(i + 1, cache)
        if len(cache) < capacity:
            return 1 + best(i + 1, cache | {p})
        return 1 + min(best(i + 1, (cache - {v}) | {p}) for v in cache)

    return best(0, frozenset())


def misses(policy: str, pages, capacity: int) -> int:
    trace = Trace.from_pages(pages, fp16_bytes=1)
    pol = make_policy(policy)
    future = Future(trace.page, len(trace.pages)) if pol.privileged else None
    return Engine(cache_setup(trace.pages, capacity), pol, future=future).run(trace).misses


def test_optimum_by_hand():
    # Cache of 2, trace 0 1 2 0 1 3 0 1: at 2 MIN evicts 1 (next use 4 > 3), at 1 it evicts 2
    # (never used again), at 3 it evicts 1 (7 > 6): misses at 0 1 2 1 3 1 = 6. LRU misses all 8.
    assert optimum((0, 1, 2, 0, 1, 3, 0, 1), 2) == 6
    assert misses("belady", [0, 1, 2, 0, 1, 3, 0, 1], 2) == 6
    assert misses("lru", [0, 1, 2, 0, 1, 3, 0, 1], 2) == 8


tiny = st.lists(st.integers(0, 4), min_size=1, max_size=10)


@settings(max_examples=300, deadline=None)
@given(pages=tiny, capacity=st.integers(1, 4))
def test_belady_equals_exhaustive_optimum(pages, capacity):
    assert misses("belady", pages, capacity) == optimum(tuple(pages), capacity)


@settings(max_examples=100, deadline=None)
@given(pages=tiny, capacity=st.integers(1, 4))
def test_belady_size_is_belady_with_uniform_sizes(pages, capacity):
    assert misses("belady_size", pages, capacity) == misses("belady", pages, capacity)


@settings(max_examples=25, deadline=None)
@given(pages=st.lists(st.integers(0, 11), min_size=1, max_size=60), capacity=st.integers(1, 6))
def test_belady_never_has_more_misses(pages, capacity):
    best = misses("belady", pages, capacity)
    for policy in ONLINE:
        assert best <= misses(policy, pages, capacity), policy


def test_belady_through_simulate_and_in_a_hierarchy():
    # simulate() builds the privileged view itself; in a 4-tier hierarchy the tier-0 misses of
    # belady are the single-cache optimum (lower tiers only decide where misses are served from).
    rng = np.random.Generator(np.random.PCG64(4))
    page = rng.integers(0, 30, 300)
    pages = PageTable.uniform(30, 4096)
    trace = Trace.from_pages(page, pages)
    from kvgym.sim.scenario import Scenario

    scen = Scenario(name="h", profile="seed-toy", capacities=(5 * 4096, 5 * 4096, 10 * 4096, None),
                    cost_model="serial", lower_policy="same")
    m = simulate(trace, scen, "belady")
    assert m.misses == misses("belady", page.tolist(), 5)
    assert m.misses < simulate(trace, scen, "lru").misses
