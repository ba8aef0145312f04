"""Determinism of the sweep: byte-identical results.csv on two runs, and the same results with the
serial, process and ray backends."""

from __future__ import annotations

import pytest
from _bench_helpers import small_config, tiny_traces
from conftest import needs_extra

from kvgym.bench.sweep import run_sweep


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    return tiny_traces(tmp_path_factory.mktemp("traces"))


@pytest.fixture(scope="module")
def serial_csv(traces, tmp_path_factory):
    d = tmp_path_factory.mktemp("serial")
    res = run_sweep(small_config(d, traces))
    return res, (d / "out" / "results.csv").read_bytes()


def test_two_runs_give_byte_identical_csv(traces, serial_csv, tmp_path):
    res, first = serial_csv
    again = run_sweep(small_config(tmp_path, traces))
    assert (tmp_path / "out" / "results.csv").read_bytes() == first
    assert again.ran == len(again.cells) and again.reused == 0
    # 2 scenarios x 2 traces x (3 policies + the belady oracle) x 1 seed, every cell feasible
    assert len(res.records) == 16
    assert {r["status"] for r in res.records} == {"ok"}
    assert [r["kind"] for r in res.records[:4]] == ["policy", "policy", "policy", "oracle"]


def test_process_backend_matches_serial(traces, serial_csv, tmp_path):
    _, first = serial_csv
    run_sweep(small_config(tmp_path, traces, backend="process", workers=2))
    assert (tmp_path / "out" / "results.csv").read_bytes() == first


def test_oracle_never_misses_more_than_policies(serial_csv):
    res, _ = serial_csv
    by = {}
    for r in res.records:
        by.setdefault((r["scenario"], r["source"]), {})[r["policy"]] = r["misses"]
    for cell in by.values():
        assert cell["belady"] <= min(cell["lru"], cell["fifo"], cell["regret_aware"])


@pytest.mark.slow
def test_ray_backend_matches_serial(traces, serial_csv, tmp_path):
    ray = needs_extra("ray", "ray")
    _, first = serial_csv
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        run_sweep(small_config(tmp_path, traces, backend="ray"))
    finally:
        ray.shutdown()
    assert (tmp_path / "out" / "results.csv").read_bytes() == first


def test_policy_agent_through_the_env_matches_the_policy(traces, tmp_path):
    """One harness: a baseline acting as an agent through the Gymnasium env scores exactly as the
    same baseline run by the engine."""
    pytest.importorskip("kvgym.envs.agents")
    res = run_sweep(small_config(tmp_path, traces[:1], scenarios=("h200_10pct_fp16_no_prefetch",),
                                 policies=("lru", "regret_aware"), agents=("policy:regret_aware",), oracle=""))
    by = {r["policy"]: r for r in res.records}
    assert by["agent:regret_aware"]["kind"] == "agent"
    skip = {"policy", "kind", "cell_id"}
    assert {k: v for k, v in by["agent:regret_aware"].items() if k not in skip} == \
           {k: v for k, v in by["regret_aware"].items() if k not in skip}
