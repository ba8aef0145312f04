"""The serving section of the harness: scenarios, request sources, cells, results, the TTFT
leaderboard and its spreads, plots, resume, the sweep and report wiring, findings part 3, and
``kvgym run`` / ``kvgym eval`` on request traces."""

from __future__ import annotations

import json
import math

import pytest

from kvgym.bench import serving_board
from kvgym.bench.serving import (
    RequestSource,
    ServingSweepConfig,
    csv_text,
    expand_serving,
    read_records,
    run_serving,
    run_serving_cell,
)
from kvgym.bench.serving_scenarios import (
    get_serving_scenario,
    resolve_serving_scenarios,
    serving_scenario_names,
)
from kvgym.bundled import mooncake_synthetic
from kvgym.cli import main
from kvgym.errors import ConfigError
from kvgym.sim.serving import ServingConfig, simulate_serving
from kvgym.traces.requests import requests_from_mooncake, slice_requests, write_requests
from kvgym.workloads.request_sources import is_request_file, request_trace
from kvgym.workloads.serving import make_requests

SMALL = {"scenarios": ["gpu5_host25_wt", "gpu5_only"], "sources": ["rag(requests=40)"],
         "policies": ["vllm_lru", "radix_lru"], "admissions": ["always", "threshold(store_threshold=2)"], "seeds": [0]}


# -- scenarios and sources -----------------------------------------------------------------------
def test_serving_scenario_catalog():
    names = serving_scenario_names()
    assert names == ["gpu5_host25_wt", "gpu5_host25_wb", "gpu10_host10_wt", "gpu5_only"]
    s = get_serving_scenario("gpu5_host25_wb")
    assert (s.tiers, s.capacities, s.write_policy) == (("hbm", "host"), ("5%", "25%"), "write_back")
    assert [x.name for x in resolve_serving_scenarios(["gpu5_*", "serving"])] == \
        ["gpu5_host25_wt", "gpu5_host25_wb", "gpu5_only", "gpu10_host10_wt"]
    inline = resolve_serving_scenarios([{"name": "mine", "tiers": ["hbm"], "capacities": [32]}])[0]
    assert inline == ServingConfig(name="mine", tiers=("hbm",), capacities=(32,))
    with pytest.raises(ConfigError, match="unknown serving scenario 'nope'"):
        resolve_serving_scenarios(["nope"])
    with pytest.raises(ConfigError, match="matches nothing"):
        resolve_serving_scenarios(["zz*"])


def test_request_sources_and_windows(tmp_path):
    full = requests_from_mooncake(mooncake_synthetic(), limit=120)
    w = request_trace("mooncake-synthetic(start=50,limit=70)")
    ref = slice_requests(full, 50, 120)
    assert len(w) == 70 and (w.blocks == ref.blocks).all() and (w.arrival_us == full.arrival_us[50:120]).all()
    assert (w.prompt_tokens == full.prompt_tokens[50:120]).all() and w.n_blocks == ref.n_blocks
    # A window renumbers ids densely and keeps every sharing: same prefixes, same ids.
    assert (slice_requests(full, 0, 120).blocks == full.blocks).all()
    g = request_trace("rag(requests=30)", seed=4)
    assert len(g) == 30 and g.meta["seed"] == 4
    p = tmp_path / "req.parquet"
    write_requests(g, p)
    assert is_request_file(p) and not is_request_file(tmp_path / "none.parquet")
    assert (request_trace(str(p)).blocks == g.blocks).all()
    for spec, msg in (("mooncake-synthetic(window=3)", "unknown options"), ("nothing_like_this", "not a file"),
                      ("mooncake-synthetic(start=5000)", "start=5000"), ("mooncake-synthetic(limit=0)", "limit")):
        with pytest.raises(ConfigError, match=msg):
            request_trace(spec)


# -- cells ---------------------------------------------------------------------------------------------
def test_expansion_admission_axis_only_where_it_matters():
    cfg = ServingSweepConfig(**{**SMALL, "scenarios": ["serving"]})
    cells = expand_serving(cfg)
    per = {s: sum(c.scenario.name == s for c in cells) for s in serving_scenario_names()}
    # write-through with a host tier: 2 policies x 2 admissions; write-back or one tier: 2 policies.
    assert per == {"gpu5_host25_wt": 4, "gpu5_host25_wb": 2, "gpu10_host10_wt": 4, "gpu5_only": 2}
    c = cells[1]
    assert c.key == {"scenario": "gpu5_host25_wt", "source": "rag(requests=40)", "policy": "vllm_lru",
                     "admission": "threshold(store_threshold=2)", "entry": "vllm_lru+threshold(store_threshold=2)",
                     "kind": "policy", "seed": 0}
    assert len({x.cell_id for x in cells}) == len(cells)


def test_a_cell_is_the_engine_with_the_policy_in_every_tier():
    cfg = ServingSweepConfig(**SMALL)
    cell = next(c for c in expand_serving(cfg) if c.key["entry"] == "radix_lru+threshold(store_threshold=2)")
    rec = run_serving_cell(cell)
    trace = make_requests("rag", 0, requests=40)
    m = simulate_serving(trace, get_serving_scenario("gpu5_host25_wt"), "radix_lru", lower="radix_lru",
                         admission="threshold", admission_params={"store_threshold": 2})
    assert rec["status"] == "ok" and {k: rec[k] for k in m.to_dict()} == m.to_dict()
    assert (rec["trace_requests"], rec["trace_blocks"]) == (40, trace.n_blocks)


def test_infeasible_cells_are_recorded():
    cfg = ServingSweepConfig(scenarios=["gpu5_only"], sources=["mooncake-synthetic(start=3793,limit=60)"],
                             policies=["lru"], admissions=["always"])
    rec = run_serving_cell(expand_serving(cfg)[0])
    assert rec["status"] == "infeasible" and "needs 102 blocks in tier 0" in rec["error"]   # 5% = 86 blocks


def test_bad_serving_configs_are_one_clear_error():
    for bad, msg in (({"policies": ["nope"]}, "unknown policy 'nope'"), ({"admissions": ["sometimes"]}, "admission"),
                     ({"sources": ["nope"]}, "not a file"), ({"scenarios": ["gpu1"]}, "serving scenario 'gpu1'"),
                     ({"seeds": [-1]}, "seeds"), ({"whatever": 1}, "unknown keys"),
                     ({"policies": ["lru(nope=1)"]}, "unknown parameters")):
        with pytest.raises(ConfigError, match=msg):
            ServingSweepConfig.from_dict({**SMALL, **bad})


# -- the leaderboard, exact ---------------------------------------------------------------------------
def _rec(entry, ttft, p90, prefill, seed=0, source="s", scenario="x"):
    return {"scenario": scenario, "source": source, "policy": entry.split("+")[0],
            "admission": entry.split("+")[1] if "+" in entry else "always", "entry": entry, "kind": "policy",
            "seed": seed, "status": "ok", "ttft_mean_us": ttft, "ttft_p50_us": ttft, "ttft_p90_us": p90,
            "prefill_tokens_computed": prefill, "prefix_hits": [10, 5], "prompt_blocks": 100,
            "link_bytes_load": [0, 2**30]}


def test_leaderboard_ranks_by_ttft_and_reports_the_spread():
    recs = []
    for seed, jitter in ((0, 1.0), (1, 1.01), (2, 0.99)):
        recs += [_rec("vllm_lru", 100e3 * jitter, 200e3, 1000, seed), _rec("a", 80e3 * jitter, 150e3, 900, seed),
                 _rec("b", 100e3 * jitter, 200e3, 950, seed), _rec("c", 125e3 * jitter, 260e3, 1200, seed)]
    board = serving_board.build(recs, "vllm_lru")
    sc = board["scenarios"][0]
    ranked = {r["policy"]: r for r in sc["ranked"]}
    assert [r["policy"] for r in sc["ranked"]] == ["a", "b", "vllm_lru", "c"]
    # a is 20% faster on every cell; b ties vllm_lru in TTFT and computes 5% fewer prefill tokens.
    assert ranked["a"]["rank"] == 1 and math.isclose(ranked["a"]["ttft_vs_ref"], 0.8)
    assert (ranked["b"]["rank"], ranked["vllm_lru"]["rank"], ranked["c"]["rank"]) == (2, 3, 4)
    assert math.isclose(ranked["b"]["prefill_vs_ref"], 0.95) and math.isclose(ranked["c"]["p90_vs_ref"], 1.3)
    assert math.isclose(ranked["a"]["ttft_mean_ms"], 80.0) and math.isclose(ranked["a"]["prefix_hit_rate"], 0.15)
    assert math.isclose(ranked["a"]["gpu_hit_rate"], 0.1) and math.isclose(ranked["a"]["loaded_gib"], 1.0)
    m, p = sc["spread_mean"], sc["spread_p90"]
    assert (m["best"], m["worst"]) == ("a", "c") and math.isclose(m["spread"], 1.25 / 0.8 - 1)
    assert math.isclose(p["spread"], 260 / 150 - 1) and math.isclose(m["best_ms"], 80.0)
    text = serving_board.markdown(board)
    assert "| x | a 80.0 | c 125.0 | 56.2% | a 150.0 | c 260.0 | 73.3% |" in text
    assert "| 1 | a | 0.8000 [" in text


def test_spreads_weigh_each_source_equally():
    # Source s1's TTFTs are 100x s2's; b is 10% slower than a on s2 only.
    recs = [_rec("a", 1e6, 2e6, 10, source="s1"), _rec("b", 1e6, 2e6, 10, source="s1"),
            _rec("a", 1e4, 2e4, 10, source="s2"), _rec("b", 1.1e4, 2.2e4, 10, source="s2")]
    sc = serving_board.build(recs, "a")["scenarios"][0]
    assert math.isclose(sc["spread_mean"]["spread"], math.sqrt(1.1) - 1)   # geometric mean of 1.0 and 1.1


# -- the section end to end ----------------------------------------------------------------------------
def test_serving_section_files_resume_and_determinism(tmp_path):
    cfg = ServingSweepConfig(**SMALL)
    a = run_serving(cfg, tmp_path / "a")
    assert a.ran == 6 and a.reused == 0 and len(a.records) == 6
    for f in ("results.csv", "results.parquet", "leaderboard.md", "plots/serving_ttft.png", "plots/serving_prefill.png"):
        assert (tmp_path / "a" / f).is_file(), f
    text = (tmp_path / "a" / "leaderboard.md").read_text()
    assert "## gpu5_host25_wt" in text and "vllm_lru+threshold(store_threshold=2)" in text and "## Spread" in text
    head = (tmp_path / "a" / "results.csv").read_text().splitlines()[0].split(",")
    assert head[:7] == ["scenario", "source", "policy", "admission", "entry", "kind", "seed"]
    assert "tier1_prefix_hits" in head and "ttft_p90_us" in head and "prefill_tokens_computed" in head
    # Records read back from Parquet equal the ones written.
    assert read_records(tmp_path / "a") == a.records
    b = run_serving(cfg, tmp_path / "a")        # a rerun reuses every cell
    assert (b.ran, b.reused) == (0, 6) and b.records == a.records
    run_serving(cfg, tmp_path / "c")
    assert (tmp_path / "a" / "results.csv").read_bytes() == (tmp_path / "c" / "results.csv").read_bytes()
    assert csv_text(a.records) == (tmp_path / "a" / "results.csv").read_text()


def test_sweep_runs_its_serving_section_into_the_report(tmp_path):
    from kvgym.bench.config import SweepConfig
    from kvgym.bench.sweep import run_sweep

    cfg = SweepConfig(scenarios=["h200_10pct_fp16_no_prefetch"], workloads=["topk_drift(prompt_tokens=1024,decode_steps=8,k=4)"],
                      policies=["lru"], oracle="", backend="serial", progress=False, out=str(tmp_path / "out"),
                      serving={**SMALL, "scenarios": ["gpu5_only"], "policies": ["vllm_lru"]})
    res = run_sweep(cfg)
    assert res.serving is not None and res.serving.ran == 1
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["serving_cells"] == 1 and manifest["config"]["serving"]["scenarios"] == ["gpu5_only"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<h2>Serving mode</h2>" in html and 'id="serving-table-0"' in html and "serving_ttft.png" in html
    with pytest.raises(ConfigError, match="unknown policy"):
        SweepConfig(serving={**SMALL, "policies": ["nope"]})


def test_the_default_sweep_has_a_serving_section():
    from kvgym.bench.demo import DEFAULT_SWEEP

    cells = expand_serving(ServingSweepConfig.from_dict(DEFAULT_SWEEP["serving"]))
    assert len(cells) == 70 and {c.source.label for c in cells} == {"mooncake-synthetic", "rag(requests=100)"}
    assert RequestSource.parse("mooncake-synthetic(start=3793)").digest  # the dataset's pinned sha256 is in the cell


def test_findings_serving_part(monkeypatch):
    from kvgym.bench import serving_findings as sf

    monkeypatch.setattr(sf, "SOURCE", "mooncake-synthetic(start=3793,limit=150)")   # quicker
    monkeypatch.setattr(sf, "POLICIES", ("vllm_lru", "radix_lru"))
    lines, res = sf.serving_section(0.05)
    text = "\n".join(lines)
    assert text.startswith("## Part 3") and "Part 2's decode workloads put at most +5.0%" in text
    assert set(res) >= {"gpu5_host25_wt", "gpu5_host25_wb", "admission", "write_back_vs_through", "compulsory_hits"}
    assert res["best_hits"] <= res["compulsory_hits"]   # no run beats the unlimited cache
    assert "spread (mean)" in text and set(res["admission"]) == {"vllm_lru", "radix_lru"}


# -- the command line ----------------------------------------------------------------------------------------
@pytest.fixture()
def request_file(tmp_path):
    p = tmp_path / "rag_requests.parquet"
    write_requests(make_requests("rag", seed=1, requests=40), p)
    return p


def test_run_takes_a_request_trace(request_file, tmp_path, capsys):
    out = tmp_path / "run.json"
    assert main(["run", "--trace", str(request_file), "--scenario", "gpu5_host25_wt", "--policy", "vllm_lru",
                 "--lower", "lru", "--admission", "threshold(store_threshold=2)", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("serving scenario gpu5_host25_wt") and "ttft_p90_us" in text and "prefix_hits" in text
    d = json.loads(out.read_text())
    m = simulate_serving(make_requests("rag", seed=1, requests=40), get_serving_scenario("gpu5_host25_wt"),
                         "vllm_lru", lower="lru", admission="threshold", admission_params={"store_threshold": 2})
    assert d["mode"] == "serving" and d["metrics"] == json.loads(json.dumps(m.to_dict()))
    assert (d["policy"], d["lower"], d["admission"]) == ("vllm_lru", "lru", "threshold(store_threshold=2)")


def test_run_on_a_request_workload_with_overrides(capsys):
    assert main(["run", "--trace", "rag(requests=30)", "--scenario", "gpu5_only", "--policy", "radix_lru",
                 "--set", "timing=false"]) == 0
    text = capsys.readouterr().out
    assert "(30 requests)" in text and "ttft_mean_us             0.000" in text


def test_eval_takes_request_traces(request_file, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", "--trace", str(request_file), "--scenario", "gpu5_host25_wt,gpu5_only", "--policy",
                 "vllm_lru,radix_lru", "--admission", "always,tinylfu", "--json", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:6] == ["scenario", "source", "policy", "admission", "seed", "status"]
    assert len([x for x in lines if x.startswith("gpu5_")]) == 4 + 2
    d = json.loads(out.read_text())
    assert "records" not in d and len(d["serving"]["records"]) == 6
    assert all(r["status"] == "ok" for r in d["serving"]["records"])


def test_cli_errors_are_one_line(request_file, capsys):
    assert main(["run", "--trace", "streaming", "--admission", "tinylfu"]) == 2
    assert "--lower and --admission apply to serving" in capsys.readouterr().err
    assert main(["run", "--trace", str(request_file), "--scenario", "gpu9"]) == 2
    assert "unknown serving scenario 'gpu9'" in capsys.readouterr().err
    assert main(["run", "--trace", str(request_file), "--prefetcher", "sequential"]) == 2
    assert "no prefetcher" in capsys.readouterr().err
    assert main(["run", "--trace", str(request_file), "--scenario", "gpu5_only", "--set", "capacities=[2]"]) == 2
    err = capsys.readouterr().err
    assert "needs" in err and "blocks in tier 0" in err and len(err.strip().splitlines()) == 1
    assert main(["eval", "--policy", "lru", "--admission", "tinylfu"]) == 2
    assert "need a request trace" in capsys.readouterr().err
    assert main(["scenarios", "--serving"]) == 0
    assert "gpu5_host25_wb" in capsys.readouterr().out
