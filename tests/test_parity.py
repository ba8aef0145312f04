"""Parity with kv-hierarchy-lab v0.1 (+ fixes F1, F2) on all 210 records of
``../shared/parity/expected_fixed.json``, and the ``kvgym parity`` command."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from conftest import SHARED

from kvgym.bench.parity import load_cell
from kvgym.cli import main
from kvgym.commands.parity import compare, default_dir, run_all, run_record, runner


def test_all_210_records_match(shared_dir):
    records = run_all(shared_dir / "parity")
    assert len(records) == 210
    bad = [(r.scenario, r.workload, r.policy, r.bad) for r in records if not r.ok]
    assert not bad
    # Every metric within 1e-9 relative; in fact the only differences are float rounding of the
    # ms <-> µs scaling (~1e-15).
    assert max(r.worst_rel for r in records) < 1e-13
    assert {r.policy for r in records} == {"lru", "windowed_recency", "heavy_hitter", "cost_aware",
                                           "predictive", "regret_aware"}


def test_readme_spot_values(shared_dir):
    # ../shared/parity/README.md §5 "Quick spot values".
    cell = load_cell(shared_dir / "parity/traces/small_fp16_prefetch__rag_burst.json")
    got = run_record(cell, "lru", {})
    assert (got["miss_count"], got["eviction_count"], got["bytes_moved"]) == (212, 242, 2_094_248)
    assert math.isclose(got["avg_latency_ms"], 1.422230468749997, rel_tol=1e-12)
    cell = load_cell(shared_dir / "parity/traces/constrained_fp16_prefetch__chat_continuation.json")
    got = run_record(cell, "predictive", {"min_confidence": 2, "max_prefetches": 2})
    assert (got["miss_count"], got["prefetch_requests"], got["useful_prefetches"], got["wasted_prefetches"]) \
        == (67, 20, 5, 15)


def test_predictive_runs_with_markov_prefetcher():
    pol, pre = runner("predictive", {"min_confidence": 3, "max_prefetches": 1})
    assert (pol.name, pre.name) == ("predictive", "markov")
    assert (pre.min_confidence, pre.max_prefetches) == (3, 1)
    pol, pre = runner("regret_aware", {"regret_horizon": 5})
    assert pol.regret_horizon == 5 and pre is None


def test_compare_rules():
    want = {"a": 3, "b": 1.0, "t": {"x": 0.5}}
    assert compare({"a": 3, "b": 1.0 + 5e-10, "t": {"x": 0.5}}, want)[0]
    ok, worst, bad = compare({"a": 4, "b": 1.0, "t": {"x": 0.5}}, want)
    assert not ok and bad == ["a"] and math.isinf(worst)
    ok, _, bad = compare({"a": 3, "b": 1.0 + 2e-9, "t": {"x": 0.5}}, want)
    assert not ok and bad == ["b"]
    ok, _, bad = compare({"a": 3, "b": 1.0, "t": {"y": 0.5}}, want)
    assert not ok and bad == ["t"]
    ok, _, bad = compare({"a": 3, "b": 1.0}, want)
    assert not ok and bad == ["t"]


def test_default_dir_is_shared_beside_the_repo():
    assert default_dir().resolve() == (SHARED / "parity").resolve()


def test_cli_one_policy(shared_dir, capsys):
    rc = main(["parity", str(shared_dir / "parity"), "--policy", "lru"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert out[-1] == "parity: 35/35 records match"
    assert out[0].split()[:4] == ["scenario", "workload", "policy", "match"]
    assert len(out) == 1 + 35 + 1


def test_cli_reports_a_mismatch_and_exits_nonzero(shared_dir, tmp_path, capsys):
    src = shared_dir / "parity"
    (tmp_path / "traces").mkdir()
    name = "small_fp16_prefetch__rag_burst.json"
    shutil.copy(src / "traces" / name, tmp_path / "traces" / name)
    manifest = json.loads((src / "manifest.json").read_text())
    manifest["cells"] = [c for c in manifest["cells"] if c["trace"] == f"traces/{name}"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    recs = [r for r in json.loads((src / "expected_fixed.json").read_text())
            if (r["scenario"], r["workload"]) == ("small_fp16_prefetch", "rag_burst")
            and r["policy"] in ("lru", "heavy_hitter")]
    recs[1]["metrics"]["miss_count"] += 1
    (tmp_path / "expected_fixed.json").write_text(json.dumps(recs))
    rc = main(["parity", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert rc == 1
    assert out[-1] == "parity: 1/2 records match"
    assert "heavy_hitter" in out[2] and "NO" in out[2] and out[2].endswith("miss_count")


def test_cli_missing_dir_is_a_one_line_error(tmp_path, capsys):
    rc = main(["parity", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("kvgym parity: error: no parity data at") and "\n" not in err


def test_cli_unknown_policy(shared_dir, capsys):
    rc = main(["parity", str(shared_dir / "parity"), "--policy", "nope"])
    assert rc == 2
    assert "unknown policies ['nope']" in capsys.readouterr().err


@pytest.mark.parametrize("policy", ["lru", "predictive"])
def test_parity_cells_keep_engine_invariants(shared_dir, policy):
    from kvgym.sim.engine import Engine

    cell = load_cell(shared_dir / "parity/traces/constrained_fp16_prefetch__periodic_reuse.json")
    pol, pre = runner(policy, {"min_confidence": 2, "max_prefetches": 2} if policy == "predictive" else {})
    eng = Engine(cell.scenario.build(cell.trace.pages), pol, pre)
    for _ in eng.simulate([(cell.trace.step[i:i + 1], cell.trace.page[i:i + 1], None) for i in range(len(cell.trace))]):
        pass
    eng.check_invariants()
    m = eng.m
    assert m.prefetch_useful + m.prefetch_wasted == m.prefetch_issued
    assert m.hits + m.misses == m.accesses == len(cell.trace)
