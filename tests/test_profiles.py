"""Shipped tier profiles: valid, and h200-measured equals its derivation from the calibration file."""

from __future__ import annotations

import pytest

from kvgym.sim.calibration import default_calibration, profile_from_calibration
from kvgym.sim.tiers import PROFILE_NAMES, profile, profiles


def test_every_profile_loads_with_provenance():
    assert set(PROFILE_NAMES) == set(profiles())
    for name in PROFILE_NAMES:
        p = profile(name)
        assert p.provenance, name
        assert p.tiers[-1].capacity_bytes is None or name == "seed-toy"


def test_h200_profile_matches_calibration():
    derived = profile_from_calibration(default_calibration())
    assert derived.to_dict() == profile("h200-measured").to_dict()
    # Spot values from the file: pinned host copies ~55 GB/s, ~11 µs fixed cost; disk 2.2 GB/s.
    host = derived.tiers[2]
    assert host.bandwidth_bytes_per_us == pytest.approx(55_461, rel=1e-3)
    assert host.read_latency_us == pytest.approx(11.16, abs=0.01)
    assert derived.tiers[3].bandwidth_bytes_per_us == 2200.0
    assert derived.compute.layer_floor_us == 20.25


def test_seed_toy_is_the_original_small_scenario():
    t = profile("seed-toy").tiers
    assert [x.capacity_bytes for x in t] == [64000, 128000, 500000, 4000000]
    assert [x.bandwidth_bytes_per_us for x in t] == [80.0, 40.0, 8.0, 2.0]  # 80000 bytes/ms etc.
