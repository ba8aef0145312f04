"""Hierarchy lower bounds: never above any registered policy's cost on random multi-tier runs."""

from __future__ import annotations

import numpy as np
import pytest

from kvgym.errors import ConfigError
from kvgym.oracle.belady import belady
from kvgym.oracle.hierarchy import compute_us, hierarchy_bounds
from kvgym.oracle.nextuse import future
from kvgym.oracle.observe import observe
from kvgym.sim.engine import Engine
from kvgym.sim.policy import make_policy, make_prefetcher, policy_names, prefetcher_names
from kvgym.sim.scenario import Scenario
from kvgym.sim.tiers import transfer_alpha_beta
from kvgym.traces.format import PageTable, Trace

P = 4096


def _random_case(rng):
    n_pages = int(rng.integers(6, 36))
    n = int(rng.integers(10, 120))
    page = rng.integers(0, n_pages, n)
    step = np.sort(rng.integers(0, n // 2 + 1, n))
    pages = PageTable.uniform(n_pages, P, layers=int(rng.integers(1, 4)))
    trace = Trace(step.astype(np.int64), page.astype(np.int64), pages)
    widest = max(len(set(page[step == s].tolist())) for s in np.unique(step))
    # tier 0 one page wider than the widest step: the prefetch phase needs an unpinned slot
    caps = (int(rng.integers(widest + 1, widest + 5)) * P, (widest + int(rng.integers(1, 6))) * P,
            (widest + int(rng.integers(1, 8))) * P,
            (widest + int(rng.choice([n_pages + 5, max(2, n_pages // 3)]))) * P)
    scen = Scenario(name="random", profile="seed-toy", capacities=caps,
                    cost_model=str(rng.choice(["serial", "overlap"])), prefetch=bool(rng.integers(0, 2)),
                    max_prefetch=int(rng.integers(1, 3)), backing_tier=int(rng.choice([-1, 1, 2])),
                    lower_policy=str(rng.choice(["lru", "same"])),
                    first_touch=str(rng.choice(["backing", "create"])))
    return trace, scen


def _costs(trace, setup, obs):
    """Per-run counts and link time, computed from the engine's metrics (uniform pages of P bytes)."""
    m, T = obs.metrics, setup.tiers
    prom = [(m.link_bytes_demand[i] + m.link_bytes_prefetch[i]) // P for i in range(len(T))]
    dem = [m.link_bytes_demotion[i] // P for i in range(len(T))]

    def link(a, b):
        al, be = transfer_alpha_beta(T[a], T[b])
        return al + P / be

    transfer = sum(prom[i] * link(i, 0) for i in range(1, len(T))) + sum(dem[i] * link(i - 1, i) for i in range(1, len(T)))
    X = len(np.unique(trace.page)) if setup.scenario.first_touch == "create" else 0
    entries = [sum(prom[j + 1:]) + X + (obs.cold_inserts if setup.backing <= j else 0) for j in range(len(T))]
    return prom, dem, transfer, entries


@pytest.mark.parametrize("seed", range(6))
def test_bounds_never_above_any_policy(seed):
    rng = np.random.default_rng(100 + seed)
    checked = 0
    for _ in range(5):
        trace, scen = _random_case(rng)
        setup = scen.build(trace.pages)
        hb = hierarchy_bounds(trace, setup)
        fut = future(trace.page, len(trace.pages))
        for name in policy_names():
            pre = make_prefetcher(str(rng.choice(prefetcher_names()))) if scen.prefetch else None
            obs = observe(trace, setup, make_policy(name), prefetcher=pre, future=fut, decisions=False)
            m = obs.metrics
            prom, dem, transfer, entries = _costs(trace, setup, obs)
            where = f"{name} under {scen}"
            for j, e in enumerate(entries):
                assert e >= hb.entry_lb[j], where
            if not scen.prefetch:
                assert m.misses >= hb.tier0_miss_lb, where
            assert sum(prom) >= hb.promotion_lb and sum(dem) >= hb.demotion_lb, where
            assert transfer >= hb.transfer_us_lb, where
            assert m.stall_us >= hb.stall_us_lb, where
            assert m.total_time_us >= hb.total_us_lb, where
            checked += 1
    assert checked == 5 * len(policy_names())


def test_two_tier_serial_bound_is_tight_for_belady():
    # One access per step, tier 1 unbounded backing: Belady's run meets every count of the LP, so
    # the serial total-time bound equals its total time.
    rng = np.random.default_rng(7)
    page = rng.integers(0, 12, 80)
    pages = PageTable.uniform(12, P)
    trace = Trace(np.arange(80, dtype=np.int64), page.astype(np.int64), pages)
    scen = Scenario(name="two", profile="seed-toy", capacities=(5 * P, 10**9, 10**9, None), cost_model="serial")
    setup = scen.build(pages)
    hb = hierarchy_bounds(trace, setup)
    m = Engine(setup, make_policy("belady"), future=future(trace.page, 12)).run(trace)
    assert hb.entry_lb[0] == belady(page, 5).misses == m.misses
    assert hb.entry_lb[1:] == [12, 12, 12]
    assert hb.promotion_lb == m.misses
    assert hb.demotion_lb == m.evictions[0]
    assert hb.total_us_lb == pytest.approx(m.total_time_us, rel=1e-8)


def test_compute_us_matches_the_overlap_engine():
    rng = np.random.default_rng(8)
    pages = PageTable.uniform(20, 65536, layers=4)
    page = rng.integers(0, 20, 200)
    trace = Trace(np.sort(rng.integers(0, 60, 200)).astype(np.int64), page.astype(np.int64), pages)
    scen = Scenario(name="o", profile="h200-measured", capacities=("50%", None, None, None), quantization="int4")
    setup = scen.build(pages)
    m = Engine(setup, make_policy("lru")).run(trace)
    assert compute_us(trace, setup) == pytest.approx(m.compute_us, rel=1e-12)
    hb = hierarchy_bounds(trace, setup)
    assert hb.compute_us == pytest.approx(m.compute_us, rel=1e-12)
    assert m.total_time_us >= hb.total_us_lb


def test_variable_sizes_use_the_smallest_page_and_the_lp():
    sizes = np.array([2048, 4096, 4096, 8192, 2048, 4096], np.int64)
    pages = PageTable(seq=np.zeros(6, np.int32), layer=np.zeros(6, np.int32), token_start=np.arange(6) * 16,
                      token_end=np.arange(6) * 16 + 16, fp16_bytes=sizes, bytes=sizes)
    page = np.array([0, 1, 2, 3, 0, 4, 5, 1, 2, 3, 0, 5], np.int64)
    trace = Trace(np.arange(12, dtype=np.int64), page, pages)
    scen = Scenario(name="v", profile="seed-toy", capacities=(12288, 10**9, 10**9, None), cost_model="serial")
    setup = scen.build(pages)
    hb = hierarchy_bounds(trace, setup)
    assert not hb.uniform and hb.page_bytes == 2048 and hb.capacity_pages[0] == 6
    assert hb.entry_method[0] == "lp"       # the LP with real sizes beats MIN on 6 small pages
    for name in ("lru", "belady", "belady_size", "fifo"):
        m = Engine(setup, make_policy(name), future=future(page, 6)).run(trace)
        assert m.misses >= hb.tier0_miss_lb and m.total_time_us >= hb.total_us_lb


def test_backing_tier_zero_is_refused():
    with pytest.raises(ConfigError, match="backing_tier=0 is invalid; valid: an int in \\[1, 3\\] or \\[-3, -1\\]"):
        Scenario(name="b0", profile="seed-toy", backing_tier=0)
