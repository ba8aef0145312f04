"""Config files, --set overrides, spec strings, and the errors for unknown keys and names."""

from __future__ import annotations

import json

import pytest

from kvgym.bench.cells import expand
from kvgym.bench.config import SweepConfig
from kvgym.bench.scenarios import resolve_scenarios, scenario_names
from kvgym.bench.specs import PolicySpec, SourceSpec
from kvgym.callspec import split_top
from kvgym.configs import load_config
from kvgym.errors import ConfigError


def test_toml_file_then_flags_then_sets(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('name = "x"\nscenarios = ["h200_5pct_*"]\nseeds = [1, 2]\npolicies = ["lru"]\n'
                 '[workload_params.rag_burst]\nlength = 100\n')
    cfg = load_config(SweepConfig, f, ["seeds=3,4,5", "workload_params.rag_burst.hot_pages=8", "backend=serial"],
                      name="y", workloads=["rag_burst"])
    assert cfg.name == "y"  # a flag beats the file
    assert cfg.seeds == (3, 4, 5)  # --set beats both
    assert cfg.workload_params == {"rag_burst": {"length": 100, "hot_pages": 8}}
    assert cfg.backend == "serial"


def test_json_file_and_config_hash_ignores_execution_keys(tmp_path):
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"scenarios": ["small_fp16_prefetch"], "workloads": ["rag_burst"], "policies": ["lru"]}))
    a = load_config(SweepConfig, f)
    b = load_config(SweepConfig, f, ["backend=serial", "workers=1", "out=elsewhere"])
    c = load_config(SweepConfig, f, ["seeds=1"])
    assert a.config_hash() == b.config_hash() != c.config_hash()


@pytest.mark.parametrize("sets, match", [
    (["colour=red"], r"unknown key 'colour'; valid: name, scenarios, workloads"),
    (["seeds=a,b"], r"seeds must be a non-empty list of ints"),
    (["backend=mpi"], r"backend='mpi' is invalid; valid: one of serial, process, ray"),
    (["workers=two"], r"--set workers=two: expected an integer"),
    (["plots=maybe"], r"expected true or false"),
    (["seeds"], r"expected key=value"),
])
def test_bad_sets(sets, match):
    with pytest.raises(ConfigError, match=match):
        load_config(SweepConfig, None, sets)


def test_unknown_file_key_lists_valid(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text("scenario = ['x']\n")
    with pytest.raises(ConfigError, match=r"unknown config keys \['scenario'\]; valid: .*scenarios"):
        load_config(SweepConfig, f)
    g = tmp_path / "s.yaml"
    g.write_text("")
    with pytest.raises(ConfigError, match="config files are .toml or .json"):
        load_config(SweepConfig, g)


def test_spec_strings():
    assert split_top("lru,regret_aware(regret_weight=1,regret_horizon=8),fifo") == [
        "lru", "regret_aware(regret_weight=1,regret_horizon=8)", "fifo"]
    p = PolicySpec.parse("regret_aware(regret_weight=12,decay=0.5)").resolve("none")
    assert (p.name, p.params, p.prefetcher) == ("regret_aware", {"decay": 0.5, "regret_weight": 12}, "none")
    assert p.label == "regret_aware(decay=0.5,regret_weight=12)"
    # predictive brings its own prefetcher; others take the sweep's default
    assert PolicySpec.parse("predictive").resolve("sequential").prefetcher == "markov"
    assert PolicySpec.parse("lru").resolve("sequential").prefetcher == "sequential"
    q = PolicySpec.parse("lru+sequential").resolve("none")
    assert (q.prefetcher, q.label) == ("sequential", "lru+sequential")
    assert PolicySpec.parse({"name": "lru", "prefetcher": "markov"}).resolve("none").label == "lru+markov"
    w = SourceSpec.workload("rag_burst(length=100)", {"hot_pages": 8})
    assert (w.params, w.label) == ({"hot_pages": 8, "length": 100}, "rag_burst(hot_pages=8,length=100)")


@pytest.mark.parametrize("kw, match", [
    ({"policies": ("lru", "no_such_policy")}, r"unknown policy 'no_such_policy'; valid: .*lru"),
    ({"policies": ("lru(window=3)",)}, r"policy 'lru'"),
    ({"policies": ("lru+nope",)}, r"unknown prefetcher 'nope'; valid: none, .*markov"),
    ({"workloads": ("no_such_workload",)}, r"unknown workload 'no_such_workload'; valid: .*rag_burst"),
    ({"workloads": ("rag_burst(colour=1)",)}, r"workload 'rag_burst': unknown parameters \['colour'\]; valid: "),
    ({"workload_params": {"nope": {"a": 1}}}, r"workload_params: unknown workload 'nope'"),
    ({"scenarios": ("nope",)}, r"unknown scenario 'nope'; valid: default, small_fp16_prefetch, "),
    ({"scenarios": ("zz_*",)}, r"scenario pattern 'zz_\*' matches nothing"),
    ({"traces": ("missing.parquet",)}, r"trace file 'missing.parquet' not found"),
])
def test_unknown_names_are_errors_listing_valid_ones(kw, match):
    base = {"scenarios": ("small_fp16_prefetch",), "workloads": ("rag_burst",), "policies": ("lru",), "backend": "serial"}
    base.update(kw)
    with pytest.raises(ConfigError, match=match):
        expand(SweepConfig(**base))


def test_scenario_groups_and_patterns():
    assert len(scenario_names("parity")) == 5 and len(scenario_names("realistic")) == 18
    got = [s.name for s in resolve_scenarios(["h200_25pct_int4_*", "small_fp16_prefetch", "h200_25pct_int4_prefetch"])]
    assert got == ["h200_25pct_int4_no_prefetch", "h200_25pct_int4_prefetch", "small_fp16_prefetch"]
    inline = resolve_scenarios([{"name": "mine", "profile": "seed-toy", "cost_model": "serial"}])
    assert inline[0].name == "mine" and inline[0].cost_model == "serial"


def test_grid_order_and_file_sources_run_once(tmp_path):
    from _bench_helpers import tiny_traces
    [tr] = tiny_traces(tmp_path, n=1)
    cfg = SweepConfig(scenarios=("small_fp16_prefetch", "small_fp16_no_prefetch"), workloads=("rag_burst",),
                      traces=(tr,), policies=("lru", "fifo"), oracle="belady", seeds=(3, 4), backend="serial")
    cells = expand(cfg)
    keys = [(c.scenario.name, c.source.label, c.runner.label, c.seed) for c in cells]
    # scenario-major, then source, then policy (oracle last), then seed; a file runs with the first seed only
    assert keys[:6] == [("small_fp16_prefetch", "rag_burst", "lru", 3), ("small_fp16_prefetch", "rag_burst", "lru", 4),
                        ("small_fp16_prefetch", "rag_burst", "fifo", 3), ("small_fp16_prefetch", "rag_burst", "fifo", 4),
                        ("small_fp16_prefetch", "rag_burst", "belady", 3), ("small_fp16_prefetch", "rag_burst", "belady", 4)]
    assert keys[6:9] == [("small_fp16_prefetch", "trace0", "lru", 3), ("small_fp16_prefetch", "trace0", "fifo", 3),
                         ("small_fp16_prefetch", "trace0", "belady", 3)]
    assert len(cells) == 2 * (6 + 3)
    assert [c.kind for c in cells[:6]] == ["policy"] * 4 + ["oracle"] * 2
    assert len({c.cell_id for c in cells}) == len(cells)


def test_infeasible_cells_are_recorded_not_fatal(tmp_path):
    from _bench_helpers import tiny_traces

    from kvgym.bench.sweep import run_sweep

    [tr] = tiny_traces(tmp_path, n=1, accesses=50)
    res = run_sweep(SweepConfig(scenarios=("small_fp16_prefetch", "h200_25pct_fp16_no_prefetch"), workloads=(),
                                traces=(tr,), policies=("lru",), oracle="", backend="serial",
                                out=str(tmp_path / "out"), plots=False, progress=False))
    bad, ok = res.records
    # 64 KiB pages do not fit kv-hierarchy-lab's 64,000-byte tier 0
    assert (bad["status"], ok["status"]) == ("infeasible", "ok")
    assert "larger than tier 'tier0_gpu_fast'" in bad["error"] and bad.get("hits") is None
    [sc_bad, _] = res.board["scenarios"]
    assert sc_bad["infeasible"] == ["trace0"] and sc_bad["ranked"] == []
