"""Cao et al.'s prefetch references: hand-worked schedule and invariants."""

from __future__ import annotations

import numpy as np
import pytest

from kvgym.errors import ConfigError
from kvgym.oracle.belady import belady
from kvgym.oracle.prefetch import fetch_time_units, prefetch_schedules
from kvgym.sim.scenario import Scenario
from kvgym.traces.format import PageTable, Trace


def test_hand_worked_schedules():
    # 0 1 2 0 1 2, 2 pages, F = 2 (see docs/oracle.md for the timeline).
    r = prefetch_schedules([0, 1, 2, 0, 1, 2], 2, 2.0)
    assert (r["demand_min"].fetches, r["demand_min"].stall, r["demand_min"].elapsed) == (4, 8.0, 14.0)
    # Conservative: MIN's 4 fetches at 0, 2, 5 (after page 1's last use ends at 5), 9.
    assert (r["conservative"].fetches, r["conservative"].stall, r["conservative"].elapsed) == (4, 7.0, 13.0)
    # Aggressive: keeps the disk busy (6 fetches), same elapsed time here.
    assert (r["aggressive"].fetches, r["aggressive"].stall, r["aggressive"].elapsed) == (6, 7.0, 13.0)


def test_invariants_on_random_traces():
    rng = np.random.default_rng(0)
    for _ in range(150):
        n_pages = int(rng.integers(1, 25))
        page = rng.integers(0, n_pages, int(rng.integers(1, 150)))
        k = int(rng.integers(1, n_pages + 2))
        F = float(rng.choice([0.0, 0.5, 1.0, 3.0, 12.5]))
        r = prefetch_schedules(page, k, F)
        d, c, a = r["demand_min"], r["conservative"], r["aggressive"]
        n = len(page)
        assert d.fetches == c.fetches == belady(page, k).misses
        assert a.fetches >= d.fetches
        assert n <= c.elapsed <= d.elapsed + 1e-9
        assert a.elapsed >= n
        if F == 0.0:
            assert c.stall == a.stall == 0.0
        # Cao et al.: conservative is within 1 + F/K of the optimum, which is >= n.
        assert c.elapsed <= d.elapsed


def test_everything_fits_means_only_first_touches():
    r = prefetch_schedules([0, 1, 0, 1, 2, 2, 0], 5, 4.0)
    assert r["demand_min"].fetches == r["aggressive"].fetches == 3
    # One disk: the three fetches run back to back (0-4, 4-8, 8-12); the CPU waits 4 for page 0,
    # 3 more for page 1 (ready at 8, wanted at 5) and 1 for page 2 (ready at 12, wanted at 11).
    assert r["aggressive"].elapsed == 15.0 and r["aggressive"].stall == 8.0
    assert r["conservative"].elapsed == 15.0


def test_errors_and_fetch_time_units():
    with pytest.raises(ConfigError, match="capacity"):
        prefetch_schedules([0], 0, 1.0)
    with pytest.raises(ConfigError, match="fetch_time"):
        prefetch_schedules([0], 1, -1.0)
    pages = PageTable.uniform(4, 65536, layers=2)
    trace = Trace(np.array([0, 0, 1, 1]), np.array([0, 1, 2, 3]), pages)
    setup = Scenario(name="f", profile="h200-measured", capacities=("50%", None, None, None)).build(pages)
    F = fetch_time_units(setup, trace)
    # tier-1 promotion over the mean compute per access (2 layers x floor / 2). h200-measured's
    # HBM pool -> HBM link is the measured device-to-device curve: 13.906 µs for a 64 KiB copy.
    per = max(2 * setup.compute.layer_floor_us, 2 * 65536 / setup.compute.attention_bytes_per_us) / 2
    assert setup.link(1, 0).time_us(65536) == 13.906
    assert F == pytest.approx(13.906 / per)
