"""Parity folders beyond the shipped one (issue 16, defect 11): cells keyed by every identifying
field (seed included), policies built from ``kind`` plus parameters under any label, ambiguous
lookups refused, and the seed printed. Everything is made here (no data outside the repository)."""

from __future__ import annotations

import json

import pytest

from kvgym.bench.parity import load_cell
from kvgym.cli import main
from kvgym.commands.parity import run_all, run_record
from kvgym.errors import ConfigError

# kv-hierarchy-lab v0.1's toy tiers (the seed-toy profile), as its parity files spell them.
TIERS = [
    {"name": "tier0_gpu_fast", "capacity_bytes": 64000, "read_latency_ms": 0.02, "write_latency_ms": 0.02,
     "bandwidth_bytes_per_ms": 80000},
    {"name": "tier1_gpu_overflow", "capacity_bytes": 128000, "read_latency_ms": 0.06, "write_latency_ms": 0.06,
     "bandwidth_bytes_per_ms": 40000},
    {"name": "tier2_host_ram", "capacity_bytes": 500000, "read_latency_ms": 0.4, "write_latency_ms": 0.35,
     "bandwidth_bytes_per_ms": 8000},
    {"name": "tier3_nvme_like", "capacity_bytes": 4000000, "read_latency_ms": 2.5, "write_latency_ms": 2.0,
     "bandwidth_bytes_per_ms": 2000},
]
# One access per step over pages of 32,000 bytes: tier 0 (64,000 bytes) holds two of them, so LRU
# misses: seed 0 (A B A B A B) 2, seed 1 (A B C A B C) 6, seed 2 (A A A A A A) 1.
PATTERNS = {0: "ABABAB", 1: "ABCABC", 2: "AAAAAA"}
LRU_MISSES = {0: 2, 1: 6, 2: 1}
POLICIES = [{"name": "lru", "kind": "LRUPolicy", "params": {}},
            {"name": "regret_aware_w1.0_h8", "kind": "RegretAwarePolicy",
             "params": {"regret_weight": 1.0, "regret_horizon": 8, "freq_weight": 1.5, "recency_weight": 1.0,
                        "decay": 0.98}}]


def _cell(seed: int) -> dict:
    pages = [{"page_id": f"page-{c}", "size_bytes": 32000, "layer": 0, "head_group": 0, "token_start": 16 * i,
              "token_end": 16 * i + 16, "quantization_scheme": "fp16"} for i, c in enumerate("ABC")]
    return {"format": "kvgym-parity-trace/1", "scenario": "tiny", "workload": "pattern", "quantization_scheme": "fp16",
            "decode_penalty_ms": 0.0, "prefetch_enabled": False, "max_prefetch_candidates": 2, "tiers": TIERS,
            "policies": [p["name"] for p in POLICIES], "num_pages": 3, "num_accesses": 6, "pages": pages,
            "accesses": [[t, f"page-{c}"] for t, c in enumerate(PATTERNS[seed])]}


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "traces").mkdir()
    cells, records = [], []
    for seed in PATTERNS:
        rel = f"traces/tiny__pattern__s{seed}.json"
        (tmp_path / rel).write_text(json.dumps(_cell(seed)))
        cells.append({"scenario": "tiny", "workload": "pattern", "seed": seed, "trace": rel})
        cell = load_cell(tmp_path / rel)
        for p, name in zip(POLICIES, ("lru", "regret_aware")):
            m = run_record(cell, name, p["params"])
            records.append({"scenario": "tiny", "workload": "pattern", "seed": seed, "policy": p["name"],
                            "metrics": m})
    assert [r["metrics"]["miss_count"] for r in records if r["policy"] == "lru"] == list(LRU_MISSES.values())
    (tmp_path / "manifest.json").write_text(json.dumps({"policies": POLICIES, "cells": cells}))
    (tmp_path / "expected_fixed.json").write_text(json.dumps(records))
    return tmp_path


def test_every_seed_runs_its_own_trace(folder, capsys):
    recs = run_all(folder)
    assert [(dict(r.key)["seed"], r.policy, r.ok) for r in recs] == [
        (s, p["name"], True) for s in PATTERNS for p in POLICIES]
    assert main(["parity", str(folder)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:5] == ["scenario", "workload", "seed", "policy", "match"]
    assert [line.split()[2:4] for line in out[1:-1]] == [[str(s), p["name"]] for s in PATTERNS for p in POLICIES]
    assert out[-1] == "parity: 6/6 records match"


def test_a_record_is_compared_with_its_own_seed(folder):
    # Seed 1's record says 6 misses; seed 0's trace gives 2. Swapping the seeds must be caught.
    recs = json.loads((folder / "expected_fixed.json").read_text())
    recs[0]["seed"], recs[2]["seed"] = 1, 0
    (folder / "expected_fixed.json").write_text(json.dumps(recs))
    bad = [(dict(r.key)["seed"], r.policy) for r in run_all(folder) if not r.ok]
    assert bad == [(1, "lru"), (0, "lru")]


def test_a_record_without_its_seed_is_ambiguous(folder):
    recs = json.loads((folder / "expected_fixed.json").read_text())
    del recs[3]["seed"]
    (folder / "expected_fixed.json").write_text(json.dumps(recs))
    with pytest.raises(ConfigError, match=r"record 3 matches 3 cells of manifest.json \(they differ in seed"):
        run_all(folder)


def test_unknown_kind_and_unknown_policy_label_are_errors(folder):
    m = json.loads((folder / "manifest.json").read_text())
    m["policies"][1]["kind"] = "MysteryPolicy"
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ConfigError, match="unknown kind 'MysteryPolicy'; valid: LRUPolicy"):
        run_all(folder)
    m["policies"] = m["policies"][:1]
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ConfigError, match="record 1 has policy 'regret_aware_w1.0_h8', not in manifest.json"):
        run_all(folder)
