"""Trace statistics: reuse distances, footprints, attention concentration, plot, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kvgym.bench.tracestats import (
    attention_stats,
    plot_stats,
    reuse_distances,
    reuse_summary,
    trace_stats,
)
from kvgym.cli import main
from kvgym.traces.format import PageTable, Trace
from kvgym.traces.parquet import write_trace
from kvgym.workloads import make_trace


def brute_reuse(page):
    out = []
    for i, p in enumerate(page):
        prev = [j for j in range(i) if page[j] == p]
        out.append(-1 if not prev else len(set(page[prev[-1] + 1:i]) - {p}))
    return out


def test_reuse_distance_hand_example():
    # a b c a b b d a: a sees {b, c}; b sees {c, a}; b again: nothing; a sees {b, d}.
    assert reuse_distances(np.array([0, 1, 2, 0, 1, 1, 3, 0])).tolist() == [-1, -1, -1, 2, 2, 0, -1, 2]
    assert reuse_distances(np.zeros(0, np.int64)).tolist() == []


@pytest.mark.parametrize("seed", range(5))
def test_reuse_distance_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    page = rng.integers(0, 1 + 3 * seed, 300)
    assert reuse_distances(page).tolist() == brute_reuse(page.tolist())


def test_reuse_summary_quantiles():
    d = np.array([-1, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 100])
    s = reuse_summary(d)
    assert s == {"accesses": 12, "first_touches": 2, "reuses": 10, "p50": 4, "p90": 8, "p99": 100,
                 "mean": 13.6, "max": 100}
    assert reuse_summary(np.array([-1])) == {"accesses": 1, "first_touches": 1, "reuses": 0}


def test_trace_stats_counts_and_footprints():
    pages = PageTable.uniform(20, 65536, layers=2)
    t = Trace.from_pages([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1], pages, steps=[0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3])
    s = trace_stats(t)
    assert (s["accesses"], s["steps"], s["distinct_steps"], s["distinct_pages"], s["pages_in_table"]) == (12, 4, 4, 10, 20)
    assert s["accesses_per_step"] == 3.0 and s["layers"] == 2 and s["sequences"] == 1 and not s["has_weights"]
    # 65,536 fp16 bytes = 32,768 scalars; int4 g64: 16,384 data + 512 fp16 scales = 17,408 bytes.
    assert s["footprint_bytes"] == {"fp16": 655360, "fp8": 327680, "int4": 174080, "int2": 92160}
    assert s["reuse_distance"] == {"accesses": 12, "first_touches": 10, "reuses": 2, "p50": 9, "p90": 9, "p99": 9,
                                   "mean": 9.0, "max": 9}
    s = trace_stats(t, reuse_limit=5)
    assert s["reuse_distance"]["accesses"] == 5 and s["reuse_distance"]["reuses"] == 0
    assert attention_stats(t) is None


def att_trace():
    # One sequence, 2 layers, 2 steps; pages: layer l, block b -> id 2b + l, 4 blocks.
    pages = PageTable.uniform(8, 4096, layers=2)
    # step 0: layer 0 reads blocks 0,1,2 (ids 0,2,4) with .5 .2 .3; layer 1 reads blocks 0,3 (ids 1,7) with .4 .6
    # step 1: layer 0 reads blocks 1,3 (ids 2,6) with .1 .9
    page = [0, 2, 4, 1, 7, 2, 6]
    w = [0.5, 0.2, 0.3, 0.4, 0.6, 0.1, 0.9]
    return Trace.from_pages(page, pages, steps=[0, 0, 0, 0, 0, 1, 1], weight=w)


def test_attention_stats_exact():
    a = attention_stats(att_trace(), ks=(1, 2))
    assert a["groups"] == 3 and a["mean_pages_per_group"] == pytest.approx(7 / 3)
    # recent page: block 2 (.3), block 3 (.6), block 3 (.9); first page: .5, .4, 0
    assert a["recent_page_share"] == pytest.approx((0.3 + 0.6 + 0.9) / 3, abs=1e-7)
    assert a["first_page_share"] == pytest.approx((0.5 + 0.4 + 0.0) / 3, abs=1e-7)
    assert a["recent_page_share_by_layer"] == pytest.approx({"0": 0.6, "1": 0.6}, abs=1e-7)
    assert a["topk_coverage"]["k"] == [1, 2]
    assert a["topk_coverage"]["mean"] == pytest.approx([(0.5 + 0.6 + 0.9) / 3, (0.8 + 1.0 + 1.0) / 3], abs=1e-7)
    assert a["topk_coverage"]["by_layer"]["0"] == pytest.approx([0.7, 0.9], abs=1e-7)
    json.dumps(a)


def test_attention_stats_seq_override_splits_groups():
    t = att_trace()
    a = attention_stats(t, ks=(1,), seq=np.array([0, 0, 1, 0, 0, 0, 0]))  # the .3 access belongs to request 1
    assert a["groups"] == 4
    # request 1's group is one page (block 2) holding all of its mass.
    assert a["recent_page_share"] == pytest.approx((0.2 / 0.7 + 1.0 + 0.6 + 0.9) / 4, abs=1e-6)


def test_plot_is_written_atomically_and_deterministically(tmp_path):
    t = make_trace("topk_drift", model="stories260k", prompt_tokens=512, decode_steps=12, k=5)
    a = plot_stats(t, tmp_path / "a.png", title="x", layer=0)
    b = plot_stats(t, tmp_path / "b.png", title="x", layer=0)
    assert a.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and a.read_bytes() == b.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]  # no temporary left behind


def test_cli_stats_prints_saves_json_and_plots(tmp_path, capsys):
    path = write_trace(make_trace("streaming", model="stories260k", prompt_tokens=512, decode_steps=10,
                                  window_pages=4), tmp_path / "s.parquet")
    rc = main(["trace", "stats", str(path), "--json", str(tmp_path / "s.json"), "--plot", str(tmp_path / "s.png"),
               "--topk", "1,5"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "accesses: 250 " in out  # 10 steps x 5 layers x (1 sink + 4 window)
    assert "footprint of distinct pages: fp16" in out and "int2" in out and "reuse distance" in out
    assert "first page 0.300" in out and "k=1: " in out and "k=5: 1.000" in out
    d = json.loads((tmp_path / "s.json").read_text())
    assert d["trace"] == "s.parquet" and d["stats"]["accesses"] == 250
    assert d["attention"]["first_page_share"] == pytest.approx(0.3, abs=1e-6)
    assert d["meta"]["generator"] == "streaming"
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_stats_uses_per_access_requests_for_shared_prefix(tmp_path, capsys):
    t = make_trace("shared_prefix", model="stories260k", requests=3, system_tokens=64, doc_tokens=64,
                   question_tokens=16, decode_steps=4, k=3)
    path = write_trace(t, tmp_path / "p.parquet")
    assert main(["trace", "stats", str(path), "--json", str(tmp_path / "p.json")]) == 0
    a = json.loads((tmp_path / "p.json").read_text())["attention"]
    assert a["groups"] == 3 * 5 * 5 and a["mean_group_mass"] == pytest.approx(1.0, abs=1e-6)


def test_cli_stats_errors(tmp_path, capsys):
    assert main(["trace", "stats", str(tmp_path / "missing.parquet")]) == 2
    err = capsys.readouterr().err
    assert "no such trace file" in err and err.count("\n") == 1
    path = write_trace(make_trace("periodic_reuse"), tmp_path / "p.parquet")
    assert main(["trace", "stats", str(path), "--topk", "0,x"]) == 2
    assert "--topk expects" in capsys.readouterr().err
    assert main(["trace", "stats", str(path), "--heat-layer", "top"]) == 2


def test_cli_gallery_writes_one_png_per_workload(tmp_path, capsys):
    assert main(["trace", "gallery", "-o", str(tmp_path), "--names", "periodic_reuse,rag_burst"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["periodic_reuse.png", "rag_burst.png"]
    assert main(["trace", "gallery", "-o", str(tmp_path), "--names", "nope"]) == 2
    assert "unknown workload 'nope'" in capsys.readouterr().err
