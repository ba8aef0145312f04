"""The results table, the summary over seeds and the leaderboard, on hand-made records with exact numbers."""

from __future__ import annotations

import math

import pytest

from kvgym.bench import leaderboard
from kvgym.bench.results import csv_text, summarise


def rec(scen, src, pol, seed, misses, time_us, bytes_moved, kind="policy", status="ok"):
    acc = 100
    return {"cell_id": f"{scen}-{src}-{pol}-{seed}", "scenario": scen, "source": src, "policy": pol, "kind": kind,
            "seed": seed, "status": status, "error": "", "trace_accesses": acc, "trace_pages": 10,
            "accesses": acc, "hits": acc - misses, "misses": misses, "full_misses": 0, "first_touch_misses": 0,
            "hit_rate": (acc - misses) / acc, "evictions": misses, "bytes_moved": bytes_moved, "bytes_demand": bytes_moved,
            "bytes_prefetch": 0, "bytes_demotion": 0, "prefetch_issued": 0, "prefetch_useful": 0, "prefetch_late": 0,
            "prefetch_wasted": 0, "prefetch_usefulness": 0.0, "stall_us": time_us / 2, "compute_us": time_us / 2,
            "total_time_us": time_us, "avg_latency_us": time_us / acc, "tokens_per_s": 1e6 * acc / time_us,
            "steps": acc, "tokens": acc, "tier_hits": [acc - misses, misses], "evictions_tier": [misses, 0],
            "peak_bytes": [4096, 8192]}


def test_csv_format_is_exact():
    r = rec("s", "w", "lru", 0, 10, 1000.0, 4096)
    text = csv_text([r, {**r, "seed": 1, "status": "infeasible", "error": "too big, really", "hit_rate": None}])
    lines = text.split("\n")
    assert lines[0].startswith("scenario,source,policy,kind,seed,cell_id,status,error,trace_accesses,")
    assert lines[0].endswith("tier0_hits,tier1_hits,tier0_evictions,tier1_evictions,tier0_peak_bytes,tier1_peak_bytes")
    assert lines[1] == ("s,w,lru,policy,0,s-w-lru-0,ok,,100,10,100,90,10,0,0,0.9,10,4096,4096,0,0,0,0,0,0,0.0,500.0,"
                        "500.0,1000.0,10.0,100000.0,100,100,90,10,10,0,4096,8192")
    assert lines[2].startswith('s,w,lru,policy,1,s-w-lru-0,infeasible,"too big, really",100,10,100,90,10,0,0,,10,')
    assert text.endswith("\n") and "\r" not in text


def test_summary_mean_and_sample_std():
    rs = [rec("s", "w", "lru", 0, 10, 1000.0, 100), rec("s", "w", "lru", 1, 20, 3000.0, 300),
          rec("s", "w", "lru", 2, 30, 2000.0, 200, status="infeasible")]
    [g] = summarise(rs)
    assert g["n"] == 2 and g["seeds"] == [0, 1]
    assert g["mean"]["misses"] == 15.0 and g["std"]["misses"] == pytest.approx(math.sqrt(50.0))
    assert g["mean"]["total_time_us"] == 2000.0 and g["std"]["total_time_us"] == pytest.approx(math.sqrt(2e6))
    assert g["mean"]["tier1_hits"] == 15.0


def test_leaderboard_ranks_by_geomean_time_and_shows_oracle_beside():
    rs = []
    for src, (lru_t, a_t, b_t) in {"w1": (1000.0, 500.0, 800.0), "w2": (1000.0, 2000.0, 900.0)}.items():
        rs += [rec("s", src, "lru", 0, 40, lru_t, 1000), rec("s", src, "A", 0, 30, a_t, 500),
               rec("s", src, "B", 0, 20, b_t, 2000), rec("s", src, "belady", 0, 10, 100.0, 100, kind="oracle")]
    board = leaderboard.build({"groups": summarise(rs)})
    [sc] = board["scenarios"]
    ranked = [(r["policy"], r["rank"]) for r in sc["ranked"]]
    # A: sqrt(0.5 * 2.0) = 1.0 ties lru; B: sqrt(0.8 * 0.9) = 0.8485 wins; ties keep config order (lru first)
    assert ranked == [("B", 1), ("lru", 2), ("A", 3)]
    b = sc["ranked"][0]
    assert b["time_vs_ref"] == pytest.approx(math.sqrt(0.72))
    assert b["misses_vs_ref"] == pytest.approx(0.5) and b["bytes_vs_ref"] == pytest.approx(2.0)
    # gap closed: LRU 40 misses, oracle 10: B closes (40 - 20) / 30 = 66.7%
    assert b["gap_closed"] == pytest.approx(200 / 3)
    assert [r["policy"] for r in sc["oracle"]] == ["belady"]
    assert board["overall"]["ranked"][0]["policy"] == "B" and board["overall"]["ranked"][0]["wins"] == 1
    md = leaderboard.markdown(board)
    assert "| 1 | B | 0.849 | 0.8000 | 0.500 | 2.000 |" in md
    assert "| oracle | belady (reads the future) |" in md
