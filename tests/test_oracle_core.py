"""Belady MIN, next-use arrays and the one-pass OPT/LRU miss-ratio curves (kvgym.oracle)."""

from __future__ import annotations

import numpy as np
import pytest

from kvgym.baselines.common import cache_setup
from kvgym.errors import ConfigError, SimulationError
from kvgym.oracle.belady import belady
from kvgym.oracle.nextuse import future, next_use, prev_use
from kvgym.oracle.stack import miss_ratio_curves, stack_distances
from kvgym.sim.context import Future
from kvgym.sim.engine import Engine
from kvgym.sim.policy import make_policy
from kvgym.traces.format import PageTable, Trace

PAGE = 4096


def _engine_misses(page, step, capacity_pages, policy: str) -> int:
    """Tier-0 misses of a registered policy on one cache of ``capacity_pages`` uniform pages."""
    n_pages = int(max(page)) + 1
    pages = PageTable.uniform(n_pages, PAGE)
    trace = Trace(np.asarray(step, np.int64), np.asarray(page, np.int64), pages)
    setup = cache_setup(pages, capacity_pages * PAGE)
    pol = make_policy(policy)
    fut = Future(trace.page, n_pages) if pol.privileged else None
    return Engine(setup, pol, future=fut).run(trace).misses


def _brute_min(page, capacity):
    """Textbook MIN (flat), for cross-checks."""
    n = len(page)
    nxt = [n] * n
    seen = {}
    for i in range(n - 1, -1, -1):
        nxt[i] = seen.get(page[i], n)
        seen[page[i]] = i
    cache, misses = {}, 0
    for i, p in enumerate(page):
        if p not in cache:
            misses += 1
            if len(cache) >= capacity:
                del cache[max(cache, key=cache.get)]
        cache[p] = nxt[i]
    return misses


# -- next-use arrays ---------------------------------------------------------------------------

def test_next_and_prev_use_hand_worked():
    page = np.array([3, 1, 3, 0, 1, 3])
    nxt, first = next_use(page, 5)
    assert nxt.tolist() == [2, 4, 5, 6, 6, 6]
    assert first.tolist() == [3, 1, 6, 0, 6]  # page 2 and 4 never accessed: n
    assert prev_use(page, 5).tolist() == [-1, -1, 0, -1, 1, 2]


def test_future_matches_sim_future_on_random_traces():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n_pages = int(rng.integers(1, 50))
        page = rng.integers(0, n_pages, int(rng.integers(0, 300)))
        a, b = future(page, n_pages), Future(page, n_pages)
        assert a.n == b.n
        assert np.array_equal(a.next_pos, b.next_pos)
        assert np.array_equal(a.first_pos, b.first_pos)


# -- Belady MIN ------------------------------------------------------------------------------

def test_belady_hand_worked():
    # 0 1 2 0 3 1 0 2 with 2 pages: misses at 0,1,2 (evict 1), 3 (evict 2), 1 (evict 3), 2 -> 6.
    page = [0, 1, 2, 0, 3, 1, 0, 2]
    r = belady(page, 2, record=True)
    assert r.misses == 6
    assert r.hits.tolist() == [False, False, False, True, False, False, True, False]
    assert r.evict_page[:3].tolist() == [1, 2, 3]
    assert r.evict_pos.tolist()[:3] == [2, 4, 5]
    assert belady(page, 3).misses == 5
    assert belady(page, 4).misses == 4  # first touches only
    assert belady(page, 1).misses == 8


def test_belady_pinned_steps_hand_worked():
    # Step 1 pins pages 1 and 2, so MIN must evict page 0 although page 1 is never used again.
    page, step = [0, 1, 2, 0], [0, 1, 1, 2]
    assert belady(page, 2).misses == 3
    assert belady(page, 2, step=step).misses == 4
    assert _engine_misses(page, step, 2, "belady") == 4


def test_belady_step_too_big_raises():
    with pytest.raises(SimulationError, match="step 0 needs more than 2"):
        belady([0, 1, 2], 2, step=[0, 0, 0])
    with pytest.raises(ConfigError, match="capacity"):
        belady([0, 1], 0)


def test_belady_equals_textbook_min_and_engine_belady():
    rng = np.random.default_rng(1)
    for trial in range(40):
        n_pages = int(rng.integers(1, 14))
        n = int(rng.integers(1, 80))
        page = rng.integers(0, n_pages, n)
        for cap in range(1, n_pages + 2):
            assert belady(page, cap).misses == _brute_min(page.tolist(), cap)
        # Multi-access steps: the engine's belady policy is the ground truth of pinned MIN.
        step = np.sort(rng.integers(0, max(1, n // 3), n))
        widest = max(len(set(page[step == s].tolist())) for s in np.unique(step))
        cap = int(rng.integers(widest, n_pages + 2))
        assert belady(page, cap, step=step).misses == _engine_misses(page, step, cap, "belady"), trial


# -- miss-ratio curves -------------------------------------------------------------------------

def test_stack_distances_hand_worked():
    opt, lru = stack_distances([0, 1, 2, 0, 3, 1, 0, 2])
    assert opt.tolist() == [0, 0, 0, 2, 0, 3, 2, 4]
    assert lru.tolist() == [0, 0, 0, 3, 0, 4, 3, 4]
    c = miss_ratio_curves([0, 1, 2, 0, 3, 1, 0, 2])
    assert (c.cold, c.distinct, c.accesses) == (4, 4, 8)
    assert c.opt_misses(np.arange(1, 5)).tolist() == [8, 6, 5, 4]
    assert c.lru_misses(np.arange(1, 5)).tolist() == [8, 8, 6, 4]
    assert c.opt_misses(100) == 4 and c.lru_misses(2) == 8
    assert c.to_dict()["opt_misses"] == [8, 6, 5, 4]


def test_curves_equal_belady_and_engine_lru_at_every_capacity():
    rng = np.random.default_rng(2)
    for trial in range(25):
        n_pages = int(rng.integers(1, 16))
        page = rng.integers(0, n_pages, int(rng.integers(1, 90)))
        step = np.arange(len(page))  # one access per step: flat and pinned semantics agree
        c = miss_ratio_curves(page)
        for cap in range(1, n_pages + 2):
            assert c.opt_misses(cap) == belady(page, cap).misses
            assert c.lru_misses(cap) == _engine_misses(page, step, cap, "lru"), (trial, cap)
        cap = int(rng.integers(1, n_pages + 1))
        assert c.opt_misses(cap) == _engine_misses(page, step, cap, "belady")


def test_flat_opt_curve_is_a_lower_bound_of_pinned_min():
    rng = np.random.default_rng(3)
    for _ in range(30):
        page = rng.integers(0, 8, 60)
        step = np.sort(rng.integers(0, 25, 60))
        widest = max(len(set(page[step == s].tolist())) for s in np.unique(step))
        c = miss_ratio_curves(page)
        for cap in range(widest, 10):
            assert c.opt_misses(cap) <= belady(page, cap, step=step).misses


def test_empty_trace():
    c = miss_ratio_curves(np.zeros(0, np.int64), 3)
    assert c.accesses == 0 and c.opt_misses(1) == 0
    assert belady(np.zeros(0, np.int64), 1, n_pages=3).misses == 0
