"""Parity checks that run on a fresh clone (no ``../shared``): two of the 210 cells of
kv-hierarchy-lab v0.1's default sweep, copied here as numbers.

The cells: ``constrained_fp16_prefetch / chat_continuation`` (prefetch on: exercises the
``predictive`` + ``markov`` pair, F2 and prefetch accounting) and
``small_int4_no_prefetch / adversarial_burst`` (int4 sizes and decode penalty, cascades).
Inputs: the page sizes (already quantized) and the accessed page of each step, from
``../shared/parity/traces/<cell>.json``; expected: the six records of
``../shared/parity/expected_fixed.json`` for the cell. The tiers are the ``seed-toy`` costs with
the cell's capacities. ``test_embedded_data_is_the_shared_data`` checks the copy when
``../shared`` is present.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from kvgym.bench.parity import parity_metrics
from kvgym.commands.parity import compare, runner
from kvgym.sim.engine import Engine
from kvgym.sim.scenario import Scenario
from kvgym.traces.format import PageTable, Trace


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
    # ../shared/parity/README.md §5: constrained_fp16_prefetch / chat_continuation / predictive.
    trace, scen = build(CELLS["constrained_fp16_prefetch__chat_continuation"])
    pol, pre = runner("predictive", PARAMS["predictive"])
    m = Engine(scen.build(trace.pages), pol, pre).run(trace)
    assert (m.misses, m.prefetch_issued, m.prefetch_useful, m.prefetch_wasted) == (67, 20, 5, 15)


def test_embedded_data_is_the_shared_data(shared_dir):
    root = shared_dir / "parity"
    expected = json.loads((root / "expected_fixed.json").read_text())
    manifest = json.loads((root / "manifest.json").read_text())
    assert PARAMS == {p["name"]: p["params"] for p in manifest["policies"]}
    for name, cell in CELLS.items():
        d = json.loads((root / "traces" / f"{name}.json").read_text())
        ids = {p["page_id"]: i for i, p in enumerate(d["pages"])}
        assert cell["sizes"] == [p["size_bytes"] for p in d["pages"]]
        assert cell["pages"] == [ids[a[1]] for a in d["accesses"]]
        assert [a[0] for a in d["accesses"]] == list(range(len(d["accesses"])))
        assert cell["capacities"] == tuple(t["capacity_bytes"] for t in d["tiers"])
        assert (cell["quantization"], cell["prefetch"]) == (d["quantization_scheme"], d["prefetch_enabled"])
        recs = {r["policy"]: r["metrics"] for r in expected
                if (r["scenario"], r["workload"]) == (d["scenario"], d["workload"])}
        assert recs == cell["expected"]


# --- data copied from ../shared/parity (generated once; checked above when ../shared exists) ---

# constrained_fp16_prefetch__chat_continuation.json:
# page sizes (bytes, in page-table order) and the accessed page index of each step.
CONSTRAINED_FP16_PREFETCH_CHAT_CONTINUATION_SIZES = [
    4132, 4044, 4170, 3992, 4004, 4016, 4154, 3996, 4076, 3986, 4012, 4190, 4182, 4002, 4090, 4014,
    4184, 3998, 4030, 4082, 3998, 4170, 3992, 4080, 3990, 4036, 4116, 4182, 4040, 4028, 4124, 4060,
    4020, 4064, 4158, 4016, 4000, 3998, 4072, 4222, 4186, 4128, 4206, 4200, 4152, 4120, 4094, 4060,
    4092, 4008, 4120, 4220, 4142, 4196, 4114, 4004, 4028, 4182, 4052, 4142, 4044, 4218, 4182, 3988
]
CONSTRAINED_FP16_PREFETCH_CHAT_CONTINUATION_PAGES = [
    10, 4, 5, 5, 9, 4, 7, 4, 5, 10, 10, 5, 7, 5, 10, 4, 5, 4, 28, 4, 7, 4, 6, 8, 28, 6, 5, 8, 6, 5,
    7, 9, 5, 5, 7, 11, 28, 7, 11, 11, 7, 8, 7, 6, 7, 5, 8, 11, 7, 11, 8, 28, 6, 7, 6, 11, 28, 4, 5,
    7, 7, 7, 11, 11, 5, 5, 8, 11, 8, 11, 8, 28, 7, 4, 11, 7, 6, 5, 11, 4, 7, 8, 6, 7, 28, 5, 6, 11,
    28, 8, 6, 28, 8, 28, 7, 28, 50, 6, 5, 6, 6, 50, 11, 6, 8, 8, 4, 6, 28, 7, 7, 6, 4, 11, 28, 28,
    28, 28, 5, 61, 4, 50, 5, 50, 11, 6, 5, 7, 4, 5, 4, 6, 5, 7, 4, 5, 61, 6, 8, 26, 26, 11, 5, 5,
    11, 11, 11, 11, 8, 5, 6, 5, 26, 6, 4, 33, 26, 6, 4, 8, 5, 8, 26, 6, 26, 33, 26, 33, 33, 33, 33,
    33, 51, 26, 4, 4, 8, 51, 8, 33, 26, 51, 26, 26, 5, 33, 5, 29, 26, 29, 51, 4, 51, 26, 5, 5, 61,
    29, 51, 6, 61, 26, 5, 61, 5, 59, 59, 59, 4, 59, 51, 59, 51, 26, 59, 59, 4, 4, 5, 59, 61, 4, 8,
    29, 8, 29, 26, 8, 61, 59, 4, 26, 51, 61, 59, 59, 4, 51, 4, 59, 59, 59, 51, 5, 4, 23, 51, 5, 4,
    29, 29, 8, 4, 5, 51, 51
]
CONSTRAINED_FP16_PREFETCH_CHAT_CONTINUATION_EXPECTED = {'lru': {'accesses': 256,
         'miss_count': 35,
         'eviction_count': 28,
         'avg_latency_ms': 0.35294453125000036,
         'overall_hit_rate': 0.86328125,
         'bytes_moved': 256774,
         'demand_bytes_moved': 256774,
         'prefetch_bytes_moved': 0,
         'prefetch_requests': 0,
         'useful_prefetches': 0,
         'wasted_prefetches': 0,
         'prefetch_usefulness': 0.0,
         'tier_hit_rate': {'tier0_gpu_fast': 0.86328125, 'tier1_gpu_overflow': 0.0703125},
         'peak_footprint_bytes': {'tier0_gpu_fast': 28894,
                                  'tier1_gpu_overflow': 40896,
                                  'tier2_host_ram': 0,
                                  'tier3_nvme_like': 4220}},
 'windowed_recency': {'accesses': 256,
                      'miss_count': 41,
                      'eviction_count': 34,
                      'avg_latency_ms': 0.3611408203125004,
                      'overall_hit_rate': 0.83984375,
                      'bytes_moved': 307104,
                      'demand_bytes_moved': 307104,
                      'prefetch_bytes_moved': 0,
                      'prefetch_requests': 0,
                      'useful_prefetches': 0,
                      'wasted_prefetches': 0,
                      'prefetch_usefulness': 0.0,
                      'tier_hit_rate': {'tier0_gpu_fast': 0.83984375,
                                        'tier1_gpu_overflow': 0.09375},
                      'peak_footprint_bytes': {'tier0_gpu_fast': 28836,
                                               'tier1_gpu_overflow': 40758,
                                               'tier2_host_ram': 0,
                                               'tier3_nvme_like': 4220}},
 'heavy_hitter': {'accesses': 256,
                  'miss_count': 73,
                  'eviction_count': 66,
                  'avg_latency_ms': 0.4046087890625014,
                  'overall_hit_rate': 0.71484375,
                  'bytes_moved': 573016,
                  'demand_bytes_moved': 573016,
                  'prefetch_bytes_moved': 0,
                  'prefetch_requests': 0,
                  'useful_prefetches': 0,
                  'wasted_prefetches': 0,
                  'prefetch_usefulness': 0.0,
                  'tier_hit_rate': {'tier0_gpu_fast': 0.71484375, 'tier1_gpu_overflow': 0.21875},
                  'peak_footprint_bytes': {'tier0_gpu_fast': 28690,
                                           'tier1_gpu_overflow': 40998,
                                           'tier2_host_ram': 0,
                                           'tier3_nvme_like': 4220}},
 'cost_aware': {'accesses': 256,
                'miss_count': 73,
                'eviction_count': 66,
                'avg_latency_ms': 0.4046087890625014,
                'overall_hit_rate': 0.71484375,
                'bytes_moved': 573016,
                'demand_bytes_moved': 573016,
                'prefetch_bytes_moved': 0,
                'prefetch_requests': 0,
                'useful_prefetches': 0,
                'wasted_prefetches': 0,
                'prefetch_usefulness': 0.0,
                'tier_hit_rate': {'tier0_gpu_fast': 0.71484375, 'tier1_gpu_overflow': 0.21875},
                'peak_footprint_bytes': {'tier0_gpu_fast': 28690,
                                         'tier1_gpu_overflow': 40998,
                                         'tier2_host_ram': 0,
                                         'tier3_nvme_like': 4220}},
 'predictive': {'accesses': 256,
                'miss_count': 67,
                'eviction_count': 80,
                'avg_latency_ms': 0.42504257812500124,
                'overall_hit_rate': 0.73828125,
                'bytes_moved': 687858,
                'demand_bytes_moved': 605646,
                'prefetch_bytes_moved': 82212,
                'prefetch_requests': 20,
                'useful_prefetches': 5,
                'wasted_prefetches': 15,
                'prefetch_usefulness': 0.25,
                'tier_hit_rate': {'tier0_gpu_fast': 0.73828125, 'tier1_gpu_overflow': 0.1953125},
                'peak_footprint_bytes': {'tier0_gpu_fast': 28722,
                                         'tier1_gpu_overflow': 41072,
                                         'tier2_host_ram': 0,
                                         'tier3_nvme_like': 4220}},
 'regret_aware': {'accesses': 256,
                  'miss_count': 55,
                  'eviction_count': 48,
                  'avg_latency_ms': 0.3802132812500008,
                  'overall_hit_rate': 0.78515625,
                  'bytes_moved': 424006,
                  'demand_bytes_moved': 424006,
                  'prefetch_bytes_moved': 0,
                  'prefetch_requests': 0,
                  'useful_prefetches': 0,
                  'wasted_prefetches': 0,
                  'prefetch_usefulness': 0.0,
                  'tier_hit_rate': {'tier0_gpu_fast': 0.78515625, 'tier1_gpu_overflow': 0.1484375},
                  'peak_footprint_bytes': {'tier0_gpu_fast': 28804,
                                           'tier1_gpu_overflow': 40860,
                                           'tier2_host_ram': 0,
                                           'tier3_nvme_like': 4220}}}
CONSTRAINED_FP16_PREFETCH_CHAT_CONTINUATION_CELL = {
    "scenario": "constrained_fp16_prefetch", "quantization": "fp16", "prefetch": True,
    "capacities": (32000, 64000, 250000, 2000000),
    "sizes": CONSTRAINED_FP16_PREFETCH_CHAT_CONTINUATION_SIZES,
    "pages": CONSTRAINED_FP16_PREFETCH_CHAT_CONTINUATION_PAGES,
    "expected": CONSTRAINED_FP16_PREFETCH_CHAT_CONTINUATION_EXPECTED,
}


# small_int4_no_prefetch__adversarial_burst.json:
# page sizes (bytes, in page-table order) and the accessed page index of each step.
SMALL_INT4_NO_PREFETCH_ADVERSARIAL_BURST_SIZES = [
    1033, 1068, 1060, 1035, 1068, 1074, 1077, 1026, 1028, 1037, 1080, 1052, 1068, 1034, 1087, 1066,
    1077, 1049, 1081, 1045, 1052, 1079, 1076, 1049, 1078, 1062, 1059, 1052, 1076, 1084, 1042, 1063,
    1062, 1084, 1074, 1036, 1071, 1041, 1057, 1043, 1067, 1032, 1074, 1044, 1077, 1078, 1083, 1060,
    1043, 1065, 1050, 1059, 1025, 1026, 1075, 1077, 1041, 1079, 1043, 1061, 1025, 1030, 1029, 1063,
    1039, 1024, 1031, 1028, 1025, 1043, 1046, 1081, 1071, 1053, 1032, 1027, 1048, 1056, 1087, 1026,
    1040, 1048, 1038, 1045, 1028, 1072, 1052, 1049, 1050, 1055, 1066, 1053, 1024, 1038, 1056, 1064
]
SMALL_INT4_NO_PREFETCH_ADVERSARIAL_BURST_PAGES = [
    4, 11, 19, 27, 29, 9, 2, 16, 30, 12, 13, 0, 34, 35, 59, 46, 52, 39, 57, 43, 63, 47, 42, 51, 4,
    11, 19, 27, 29, 9, 90, 95, 87, 70, 78, 69, 71, 77, 88, 85, 86, 82, 12, 17, 21, 13, 9, 8, 16, 24,
    7, 28, 15, 25, 41, 56, 63, 62, 61, 50, 54, 52, 47, 44, 51, 35, 12, 17, 21, 13, 9, 8, 87, 91, 68,
    72, 93, 86, 74, 66, 81, 76, 69, 77, 27, 14, 9, 19, 21, 4, 10, 23, 22, 20, 31, 6, 49, 32, 56, 62,
    44, 45, 63, 36, 58, 61, 41, 60, 27, 14, 9, 19, 21, 4, 67, 87, 65, 88, 84, 73, 95, 64, 91, 80,
    93, 85, 0, 4, 5, 22, 14, 11, 7, 2, 31, 6, 8, 15, 33, 36, 38, 35, 55, 37, 63, 52, 44, 39, 61, 53,
    0, 4, 5, 22, 14, 11, 79, 94, 74, 71, 90, 88, 64, 83, 67, 86, 82, 72, 20, 7, 21, 13, 25, 1, 10,
    28, 9, 18, 5, 23, 58, 53, 35, 45, 33, 44, 60, 47, 32, 62, 42, 63, 20, 7, 21, 13, 25, 1, 72, 68,
    69, 75, 83, 79, 76, 84, 80, 66, 74, 70, 30, 29, 1, 14, 26, 7, 18, 27, 28, 5, 20, 16, 53, 37, 62,
    33, 52, 46, 60, 59, 49, 58, 41, 57, 30, 29, 1, 14, 26, 7, 70, 93, 73, 71, 74, 92, 67, 95, 86,
    83, 69, 88, 6, 25, 8, 10, 11, 0, 4, 27, 31, 7, 13, 22, 48, 40, 49, 42, 60, 44, 46, 41, 38, 53,
    35, 37, 6, 25, 8, 10, 11, 0, 68, 84, 72, 66, 89, 91, 67, 88, 71, 70, 95, 65, 17, 28, 26, 24, 30,
    11, 27, 21, 10, 2, 9, 20, 38, 52, 57, 58, 54, 42, 61, 55, 56, 45, 43, 35, 17, 28
]
SMALL_INT4_NO_PREFETCH_ADVERSARIAL_BURST_EXPECTED = {'lru': {'accesses': 320,
         'miss_count': 162,
         'eviction_count': 102,
         'avg_latency_ms': 1.0102375781250055,
         'overall_hit_rate': 0.49375,
         'bytes_moved': 278572,
         'demand_bytes_moved': 278572,
         'prefetch_bytes_moved': 0,
         'prefetch_requests': 0,
         'useful_prefetches': 0,
         'wasted_prefetches': 0,
         'prefetch_usefulness': 0.0,
         'tier_hit_rate': {'tier0_gpu_fast': 0.49375, 'tier1_gpu_overflow': 0.209375},
         'peak_footprint_bytes': {'tier0_gpu_fast': 63371,
                                  'tier1_gpu_overflow': 37051,
                                  'tier2_host_ram': 0,
                                  'tier3_nvme_like': 1087}},
 'windowed_recency': {'accesses': 320,
                      'miss_count': 162,
                      'eviction_count': 102,
                      'avg_latency_ms': 1.0102375781250055,
                      'overall_hit_rate': 0.49375,
                      'bytes_moved': 278572,
                      'demand_bytes_moved': 278572,
                      'prefetch_bytes_moved': 0,
                      'prefetch_requests': 0,
                      'useful_prefetches': 0,
                      'wasted_prefetches': 0,
                      'prefetch_usefulness': 0.0,
                      'tier_hit_rate': {'tier0_gpu_fast': 0.49375, 'tier1_gpu_overflow': 0.209375},
                      'peak_footprint_bytes': {'tier0_gpu_fast': 63371,
                                               'tier1_gpu_overflow': 37051,
                                               'tier2_host_ram': 0,
                                               'tier3_nvme_like': 1087}},
 'heavy_hitter': {'accesses': 320,
                  'miss_count': 165,
                  'eviction_count': 105,
                  'avg_latency_ms': 1.0123267968750056,
                  'overall_hit_rate': 0.484375,
                  'bytes_moved': 284914,
                  'demand_bytes_moved': 284914,
                  'prefetch_bytes_moved': 0,
                  'prefetch_requests': 0,
                  'useful_prefetches': 0,
                  'wasted_prefetches': 0,
                  'prefetch_usefulness': 0.0,
                  'tier_hit_rate': {'tier0_gpu_fast': 0.484375, 'tier1_gpu_overflow': 0.21875},
                  'peak_footprint_bytes': {'tier0_gpu_fast': 63371,
                                           'tier1_gpu_overflow': 36999,
                                           'tier2_host_ram': 0,
                                           'tier3_nvme_like': 1087}},
 'cost_aware': {'accesses': 320,
                'miss_count': 165,
                'eviction_count': 105,
                'avg_latency_ms': 1.0123267968750056,
                'overall_hit_rate': 0.484375,
                'bytes_moved': 284914,
                'demand_bytes_moved': 284914,
                'prefetch_bytes_moved': 0,
                'prefetch_requests': 0,
                'useful_prefetches': 0,
                'wasted_prefetches': 0,
                'prefetch_usefulness': 0.0,
                'tier_hit_rate': {'tier0_gpu_fast': 0.484375, 'tier1_gpu_overflow': 0.21875},
                'peak_footprint_bytes': {'tier0_gpu_fast': 63371,
                                         'tier1_gpu_overflow': 36999,
                                         'tier2_host_ram': 0,
                                         'tier3_nvme_like': 1087}},
 'predictive': {'accesses': 320,
                'miss_count': 161,
                'eviction_count': 101,
                'avg_latency_ms': 1.0095413281250054,
                'overall_hit_rate': 0.49687499999999996,
                'bytes_moved': 276460,
                'demand_bytes_moved': 276460,
                'prefetch_bytes_moved': 0,
                'prefetch_requests': 0,
                'useful_prefetches': 0,
                'wasted_prefetches': 0,
                'prefetch_usefulness': 0.0,
                'tier_hit_rate': {'tier0_gpu_fast': 0.496875, 'tier1_gpu_overflow': 0.20625},
                'peak_footprint_bytes': {'tier0_gpu_fast': 63371,
                                         'tier1_gpu_overflow': 36979,
                                         'tier2_host_ram': 0,
                                         'tier3_nvme_like': 1087}},
 'regret_aware': {'accesses': 320,
                  'miss_count': 165,
                  'eviction_count': 105,
                  'avg_latency_ms': 1.0123148437500054,
                  'overall_hit_rate': 0.484375,
                  'bytes_moved': 284761,
                  'demand_bytes_moved': 284761,
                  'prefetch_bytes_moved': 0,
                  'prefetch_requests': 0,
                  'useful_prefetches': 0,
                  'wasted_prefetches': 0,
                  'prefetch_usefulness': 0.0,
                  'tier_hit_rate': {'tier0_gpu_fast': 0.484375, 'tier1_gpu_overflow': 0.21875},
                  'peak_footprint_bytes': {'tier0_gpu_fast': 63371,
                                           'tier1_gpu_overflow': 36961,
                                           'tier2_host_ram': 0,
                                           'tier3_nvme_like': 1087}}}
SMALL_INT4_NO_PREFETCH_ADVERSARIAL_BURST_CELL = {
    "scenario": "small_int4_no_prefetch", "quantization": "int4", "prefetch": False,
    "capacities": (64000, 128000, 500000, 4000000),
    "sizes": SMALL_INT4_NO_PREFETCH_ADVERSARIAL_BURST_SIZES,
    "pages": SMALL_INT4_NO_PREFETCH_ADVERSARIAL_BURST_PAGES,
    "expected": SMALL_INT4_NO_PREFETCH_ADVERSARIAL_BURST_EXPECTED,
}

CELLS = {
    "constrained_fp16_prefetch__chat_continuation": CONSTRAINED_FP16_PREFETCH_CHAT_CONTINUATION_CELL,
    "small_int4_no_prefetch__adversarial_burst": SMALL_INT4_NO_PREFETCH_ADVERSARIAL_BURST_CELL,
}
PARAMS = {'lru': {},
 'windowed_recency': {'window_size': 32},
 'heavy_hitter': {},
 'cost_aware': {'size_penalty': 0.4, 'freq_weight': 2.0, 'recency_weight': 1.0},
 'predictive': {'min_confidence': 2, 'max_prefetches': 2},
 'regret_aware': {'regret_horizon': 24,
                  'regret_weight': 6.0,
                  'freq_weight': 1.5,
                  'recency_weight': 1.0,
                  'decay': 0.98}}
