"""Import kv-hierarchy-lab v0.1 parity cells (``shared/parity/traces/*.json``).

Each cell file becomes a kvgym :class:`Trace` (one access per step, page ids renumbered
0..n-1 in page-table order, the stored ``size_bytes`` kept as the page table's ``bytes``) and a
``serial`` :class:`Scenario` on the ``seed-toy`` profile with the cell's capacities, its
quantization's fixed decode penalty (``decode="parity"``), one policy for every tier
(``lower_policy="same"``) and the cell's prefetch flag. The files are read with ``json`` only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kvgym.errors import TraceError
from kvgym.sim.scenario import Scenario
from kvgym.sim.tiers import profile
from kvgym.traces.format import PageTable, Trace, validate


@dataclass(frozen=True, eq=False)
class ParityCell:
    scenario_name: str
    workload: str
    policies: tuple[str, ...]
    trace: Trace
    scenario: Scenario


def load_cell(path: str | Path) -> ParityCell:
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise TraceError(f"{path}: cannot read parity cell ({e})") from None
    if d.get("format") != "kvgym-parity-trace/1":
        raise TraceError(f"{path}: format {d.get('format')!r}, expected 'kvgym-parity-trace/1'")
    toy = profile("seed-toy").tiers
    tiers = d["tiers"]
    if len(tiers) != len(toy):
        raise TraceError(f"{path}: {len(tiers)} tiers, seed-toy has {len(toy)}")
    for i, (t, ref) in enumerate(zip(tiers, toy)):
        got = (t["read_latency_ms"] * 1e3, t["write_latency_ms"] * 1e3, t["bandwidth_bytes_per_ms"] / 1e3)
        want = (ref.read_latency_us, ref.write_latency_us, ref.bandwidth_bytes_per_us)
        if any(abs(a - b) > 1e-9 * max(1.0, abs(b)) for a, b in zip(got, want)):
            raise TraceError(f"{path}: tiers[{i}] costs {got} differ from seed-toy {want}")
    ids = {p["page_id"]: i for i, p in enumerate(d["pages"])}
    pg = d["pages"]
    pages = PageTable(
        seq=np.zeros(len(pg), np.int32),
        layer=np.array([p["layer"] for p in pg], np.int32),
        token_start=np.array([p["token_start"] for p in pg], np.int64),
        token_end=np.array([p["token_end"] for p in pg], np.int64),
        fp16_bytes=np.array([p["size_bytes"] for p in pg], np.int64),
        bytes=np.array([p["size_bytes"] for p in pg], np.int64),
    )
    acc = d["accesses"]
    try:
        page = np.array([ids[a[1]] for a in acc], np.int64)
    except KeyError as e:
        raise TraceError(f"{path}: access to unknown page {e}") from None
    step = np.array([a[0] for a in acc], np.int64)
    meta = {"generator": d.get("generator"), "params": d.get("generator_params"), "source": "kv-hierarchy-lab v0.1 parity"}
    trace = Trace(step, page, pages, None, meta)
    validate(trace, str(path))
    scen = Scenario(name=d["scenario"], profile="seed-toy", capacities=tuple(int(t["capacity_bytes"]) for t in tiers),
                    cost_model="serial", quantization=d["quantization_scheme"], decode="parity",
                    prefetch=bool(d["prefetch_enabled"]), max_prefetch=int(d["max_prefetch_candidates"]),
                    lower_policy="same", description="kv-hierarchy-lab v0.1 parity cell")
    return ParityCell(d["scenario"], d["workload"], tuple(d["policies"]), trace, scen)


def parity_metrics(m, trace_accesses: int, tier_names) -> dict:
    """kvgym metrics in kv-hierarchy-lab's record format (latencies in ms)."""
    acc = m.accesses
    demand = sum(m.link_bytes_demand) + sum(m.link_bytes_demotion)
    pref = sum(m.link_bytes_prefetch)
    served = {tier_names[i]: m.tier_hits[i] / acc for i in range(len(tier_names)) if m.tier_hits[i]}
    return {
        "accesses": acc, "miss_count": m.misses, "eviction_count": sum(m.evictions),
        "avg_latency_ms": (m.total_time_us / 1e3) / acc if acc else 0.0,
        "overall_hit_rate": 1.0 - m.misses / acc if acc else 0.0,
        "bytes_moved": demand + pref, "demand_bytes_moved": demand, "prefetch_bytes_moved": pref,
        "prefetch_requests": m.prefetch_issued, "useful_prefetches": m.prefetch_useful,
        "wasted_prefetches": m.prefetch_wasted, "prefetch_usefulness": m.prefetch_usefulness,
        "tier_hit_rate": served, "peak_footprint_bytes": {tier_names[i]: m.peak_bytes[i] for i in range(len(tier_names))},
    }
