"""The named scenarios: the five originals exactly as kv-hierarchy-lab defines them (and equal to
the parity cells' scenarios), and the realistic grid."""

from __future__ import annotations

import pytest

from kvgym.bench.scenarios import get_scenario, scenario_names
from kvgym.sim.scenario import Scenario

ORIGINALS = {
    "small_fp16_prefetch": ((64000, 128000, 500000, 4000000), "fp16", True),
    "small_fp16_no_prefetch": ((64000, 128000, 500000, 4000000), "fp16", False),
    "small_int4_no_prefetch": ((64000, 128000, 500000, 4000000), "int4", False),
    "base_fp8_prefetch": ((128000, 256000, 1000000, 8000000), "fp8", True),
    "constrained_fp16_prefetch": ((32000, 64000, 250000, 2000000), "fp16", True),
}


def test_originals_are_exact():
    assert scenario_names("parity") == list(ORIGINALS)
    for name, (caps, q, pf) in ORIGINALS.items():
        s = get_scenario(name)
        assert isinstance(s, Scenario)
        assert (s.profile, s.capacities, s.cost_model, s.quantization, s.decode, s.prefetch, s.max_prefetch,
                s.lower_policy, s.backing_tier, s.first_touch) == ("seed-toy", caps, "serial", q, "parity", pf, 2, "same", -1, "backing")


def test_realistic_grid():
    names = scenario_names("realistic")
    assert len(names) == 18
    for pct in (5, 10, 25):
        for q in ("fp16", "fp8", "int4"):
            for pf in (False, True):
                s = get_scenario(f"h200_{pct}pct_{q}_{'prefetch' if pf else 'no_prefetch'}")
                assert (s.profile, s.cost_model, s.quantization, s.prefetch, s.capacities[0]) == (
                    "h200-measured", "overlap", q, pf, f"{pct}%")
                assert s.capacities[1:] == (None, None, None) and s.first_touch == "create"


@pytest.mark.shared
def test_originals_equal_the_parity_cells(shared_dir):
    from kvgym.bench.parity import load_cell

    for name in ORIGINALS:
        cell = load_cell(shared_dir / "parity" / "traces" / f"{name}__rag_burst.json")
        assert cell.scenario.with_(description="") == get_scenario(name).with_(description="")
