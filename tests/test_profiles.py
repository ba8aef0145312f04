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


def test_link_curve_interpolates_and_pipelines():
    from kvgym.sim.tiers import LinkCurve

    c = LinkCurve("host", "hbm", (100, 200, 400), (10.0, 12.0, 20.0), issue_us=5.0, wire_bytes_per_us=25.0)
    assert c.time_us(100) == 10.0 and c.time_us(400) == 20.0  # the measured points themselves
    assert c.time_us(150) == 11.0 and c.time_us(300) == 16.0  # piecewise linear between them
    assert c.time_us(50) == 10.0  # below the smallest size: its time
    assert c.time_us(600) == 28.0  # above the largest: the last segment's slope (8 µs per 200 bytes)
    assert c.time_us(100, queued=True) == 5.0  # back to back: the issue cost ...
    assert c.time_us(250, queued=True) == 10.0  # ... or the wire, whichever is slower


def test_h200_model_reproduces_every_measured_copy():
    """kvgym calibrate check: every copy point and every page-copy batch within 10%."""
    from kvgym.sim.calibration import fidelity

    rows = fidelity(default_calibration())
    copies = [r for r in rows if "batch" not in r["kind"]]
    batches = [r for r in rows if "batch" in r["kind"]]
    assert len(copies) == 27 and len(batches) == 5
    assert all(abs(r["error"]) < 1e-12 for r in copies)  # the curves pass through the points
    assert max(abs(r["error"]) for r in batches) < 0.08
    assert sum(abs(r["alpha_beta_error"]) > 0.10 for r in rows) == 18  # what the α-β fit alone missed
