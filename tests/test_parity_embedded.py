"""Parity on two of the 210 cells of kv-hierarchy-lab v0.1's default sweep, read straight from the
shipped JSON (``kvgym/data/parity``) without :func:`kvgym.bench.parity.load_cell`: an independent
path from the raw page sizes and accessed page ids to the engine, cross-checking the loader.

The cells: ``constrained_fp16_prefetch / chat_continuation`` (prefetch on: exercises the
``predictive`` + ``markov`` pair, F2 and prefetch accounting) and
``small_int4_no_prefetch / adversarial_burst`` (int4 sizes and decode penalty, cascades).
Inputs: the page sizes (already quantized) and the accessed page of each step; expected: the six
records of ``expected_fixed.json`` for the cell. The tiers are the ``seed-toy`` costs with the
cell's capacities.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from kvgym.bench.parity import parity_metrics
from kvgym.bundled import parity_dir
from kvgym.commands.parity import compare, runner
from kvgym.sim.engine import Engine
from kvgym.sim.scenario import Scenario
from kvgym.traces.format import PageTable, Trace


def raw_cell(name: str) -> dict:
    """Sizes, accessed page indices, capacities and expected records of one cell, from the raw JSON."""
    root = parity_dir()
    d = json.loads((root / "traces" / f"{name}.json").read_text())
    ids = {p["page_id"]: i for i, p in enumerate(d["pages"])}
    assert [a[0] for a in d["accesses"]] == list(range(len(d["accesses"])))  # one access per step
    expected = {r["policy"]: r["metrics"] for r in json.loads((root / "expected_fixed.json").read_text())
                if (r["scenario"], r["workload"]) == (d["scenario"], d["workload"])}
    return {"scenario": d["scenario"], "sizes": [p["size_bytes"] for p in d["pages"]],
            "pages": [ids[a[1]] for a in d["accesses"]],
            "capacities": tuple(t["capacity_bytes"] for t in d["tiers"]),
            "quantization": d["quantization_scheme"], "prefetch": d["prefetch_enabled"], "expected": expected}


CELLS = {name: raw_cell(name) for name in ("constrained_fp16_prefetch__chat_continuation",
                                           "small_int4_no_prefetch__adversarial_burst")}
PARAMS = {p["name"]: p["params"] for p in json.loads((parity_dir() / "manifest.json").read_text())["policies"]}


def build(cell: dict) -> tuple[Trace, Scenario]:
    sizes = np.asarray(cell["sizes"], np.int64)
    n = len(sizes)
    pages = PageTable(seq=np.zeros(n, np.int32), layer=np.zeros(n, np.int32), token_start=np.zeros(n, np.int64),
                      token_end=np.zeros(n, np.int64), fp16_bytes=sizes, bytes=sizes)
    acc = np.asarray(cell["pages"], np.int64)
    trace = Trace(np.arange(len(acc), dtype=np.int64), acc, pages)
    scen = Scenario(name=cell["scenario"], profile="seed-toy", capacities=cell["capacities"], cost_model="serial",
                    quantization=cell["quantization"], decode="parity", prefetch=cell["prefetch"], max_prefetch=2,
                    lower_policy="same")
    return trace, scen


@pytest.mark.parametrize("cell_name", ["constrained_fp16_prefetch__chat_continuation",
                                       "small_int4_no_prefetch__adversarial_burst"])
@pytest.mark.parametrize("policy", ["lru", "windowed_recency", "heavy_hitter", "cost_aware", "predictive",
                                    "regret_aware"])
def test_embedded_cell(cell_name, policy):
    cell = CELLS[cell_name]
    trace, scen = build(cell)
    setup = scen.build(trace.pages)
    pol, pre = runner(policy, PARAMS[policy])
    m = Engine(setup, pol, pre).run(trace)
    got = parity_metrics(m, len(trace), [t.name for t in setup.tiers])
    ok, worst, bad = compare(got, cell["expected"][policy])
    assert ok, (bad, worst, got)
    # Integers are exact; the latency agrees far below the 1e-9 tolerance.
    for key in ("miss_count", "eviction_count", "bytes_moved", "prefetch_requests", "useful_prefetches",
                "wasted_prefetches"):
        assert got[key] == cell["expected"][policy][key]
    assert worst < 1e-13


def test_readme_spot_value_predictive():
    # kvgym/data/parity/README.md §5: constrained_fp16_prefetch / chat_continuation / predictive.
    trace, scen = build(CELLS["constrained_fp16_prefetch__chat_continuation"])
    pol, pre = runner("predictive", PARAMS["predictive"])
    m = Engine(scen.build(trace.pages), pol, pre).run(trace)
    assert (m.misses, m.prefetch_issued, m.prefetch_useful, m.prefetch_wasted) == (67, 20, 5, 15)


def test_the_cells_are_what_the_test_expects():
    # Six expected records per cell, the original's policy parameters, and the exact sizes of one cell.
    assert all(set(c["expected"]) == set(PARAMS) for c in CELLS.values())
    assert PARAMS["windowed_recency"] == {"window_size": 32}
    c = CELLS["small_int4_no_prefetch__adversarial_burst"]
    assert c["capacities"] == (64000, 128000, 500000, 4000000) and c["quantization"] == "int4" and not c["prefetch"]
