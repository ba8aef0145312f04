"""vLLM's own counts on a Mooncake trace beside kvgym's: the kvgym-vs-vLLM peer comparison.

:func:`kvgym_counts` is kvgym's serving engine set up as vLLM's CPU tier (the one definition of
that setup: no GPU prefix cache, write-through, the ``threshold`` admission, ``vllm_lru`` or
``vllm_arc`` in the CPU tier, prompt blocks only, no timing). :func:`peer_counts` replays a Mooncake trace through vLLM's ``CPUOffloadingManager``
(:func:`~kvgym.integrations.vllm_replay.replay_vllm`) for one capacity (blocks), one
``cache_policy`` and one ``store_threshold``; :func:`peer_grid` runs a grid of them and
:func:`write_peer_table` writes it as ``counts.csv`` and ``README.md`` (``kvgym vllm replay``).
Capacities may be given as a share of the trace's distinct full blocks (``"5%"``, rounded to the
nearest block, at least 1). :func:`synthetic_trace` is the one place that knows where the Mooncake
synthetic trace lives.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from kvgym.errors import ConfigError, TraceError
from kvgym.files import write_text
from kvgym.integrations.vllm_replay import BlockRequests, VllmCounts, from_mooncake, replay_vllm


def synthetic_trace() -> Path:
    """Path of the Mooncake FAST'25 synthetic trace (3,993 requests), shipped with kvgym."""
    from kvgym.bundled import mooncake_synthetic

    path = mooncake_synthetic()
    if not path.is_file():
        raise TraceError(f"{path}: the Mooncake synthetic trace is not there; fetch it "
                         "(`kvgym trace fetch mooncake-synthetic`) and pass its path")
    return path


def distinct_blocks(req: BlockRequests) -> int:
    return len(np.unique(req.blocks))


def resolve_capacity(spec, req: BlockRequests) -> int:
    """``"5%"`` of the distinct full blocks (nearest block, >= 1), or a number of blocks."""
    s = str(spec).strip()
    try:
        if s.endswith("%"):
            share = float(s[:-1])
            if not 0 < share <= 100:
                raise ValueError
            return max(1, round(share / 100 * distinct_blocks(req)))
        n = int(s)
        if n < 1:
            raise ValueError
        return n
    except ValueError:
        raise ConfigError(f"capacity {spec!r}: expected a number of blocks >= 1 or a share like 5%") from None


def peer_counts(path, capacity_blocks: int, cache_policy: str = "lru", store_threshold: int = 1,
                **replay_kw) -> VllmCounts:
    """vLLM's counts on the Mooncake trace at ``path`` (vLLM's partial-block rule: full blocks only)."""
    return replay_vllm(from_mooncake(path), capacity_blocks, cache_policy, store_threshold, **replay_kw)


FIELDS = ("capacity", "capacity_blocks", "cache_policy", "store_threshold", "requests", "blocks", "hits",
          "misses", "loads", "stores", "skipped_stores", "failed_stores", "evictions", "hit_rate", "kvgym")
#: The counts compared, vLLM's names; kvgym's are ``ServingMetrics`` fields of tier 1.
COMPARED = ("loads", "stores", "skipped_stores", "failed_stores", "evictions")
#: kvgym's serving baseline that mirrors each of vLLM's built-in cache policies.
KVGYM_POLICY = {"lru": "vllm_lru", "arc": "vllm_arc"}


def kvgym_counts(trace, cpu_blocks: int, cache_policy: str, store_threshold: int) -> dict:
    """kvgym's counts (:data:`COMPARED`) for ``trace`` (a :class:`~kvgym.traces.requests.RequestTrace`)
    with its serving engine set up as vLLM's CPU tier of ``cpu_blocks`` blocks."""
    from kvgym.sim.serving import ServingConfig, simulate_serving

    cfg = ServingConfig(tiers=("hbm", "host"), capacities=(None, cpu_blocks), gpu_prefix_cache=False,
                        write_policy="write_through", timing=False, store_output_blocks=False)
    m = simulate_serving(trace, cfg, "lru", lower=KVGYM_POLICY[cache_policy], admission="threshold",
                         admission_params={"store_threshold": store_threshold})
    return {"loads": m.loads[1], "stores": m.stores[1], "skipped_stores": m.stores_skipped[1],
            "failed_stores": m.stores_failed[1], "evictions": m.evictions[1]}


def _compare(row: dict, trace) -> str:
    """The ``kvgym`` column: ``equal``, the counts that differ, or ``n/a`` (no kvgym mirror)."""
    if trace is None or row["cache_policy"] not in KVGYM_POLICY:
        return "n/a"
    k = kvgym_counts(trace, row["capacity_blocks"], row["cache_policy"], row["store_threshold"])
    diff = [f"{c} {k[c]:,} vs {row[c]:,}" for c in COMPARED if k[c] != row[c]]
    return "equal" if not diff else "differs: " + "; ".join(diff)


def peer_grid(req: BlockRequests, capacities, policies, thresholds, *, trace=None, **replay_kw) -> list[dict]:
    """One row per (capacity, policy, threshold), capacities outermost; with ``trace`` (the same
    requests as a kvgym request trace), the ``kvgym`` column compares :func:`kvgym_counts`."""
    rows = []
    for spec in capacities:
        cap = resolve_capacity(spec, req)
        for pol in policies:
            for thr in thresholds:
                c = replay_vllm(req, cap, pol, thr, **replay_kw).to_dict()
                row = {"capacity": str(spec), "capacity_blocks": cap, "cache_policy": pol,
                       "store_threshold": thr, **{k: c[k] for k in FIELDS if k in c}}
                row["kvgym"] = _compare(row, trace)
                rows.append(row)
    return rows


def table_markdown(rows: list[dict]) -> str:
    cols = [f for f in FIELDS if f not in ("requests", "blocks")]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(f"{r[c]:.4f}" if c == "hit_rate" else f"{r[c]:,}" if isinstance(r[c], int)
                                     else str(r[c]) for c in cols) + " |")
    return "\n".join(out)


def write_peer_table(rows: list[dict], out_dir: str | Path, *, source: str, command: str) -> Path:
    """Write ``counts.csv`` and ``README.md`` (the table, the command, the trace) atomically."""
    out_dir = Path(out_dir)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text(out_dir / "counts.csv", buf.getvalue())
    r0 = rows[0]
    text = (f"# vLLM's own CPU-tier counts, and kvgym's\n\nMade by `{command}` (vLLM's `CPUOffloadingManager` "
            "driven as its offloading connector drives it: `kvgym.integrations.vllm_replay`, docs/vllm.md). The "
            "`kvgym` column compares kvgym's serving engine set up as vLLM's CPU tier "
            "(`kvgym.integrations.vllm_peer.kvgym_counts`) on loads, stores, skipped and failed stores and "
            "evictions.\n\n"
            f"Trace: {source}: {r0['requests']:,} requests, {r0['blocks']:,} full prompt blocks. Counts are blocks; "
            "capacities are shares of the trace's distinct full blocks.\n\n"
            f"{table_markdown(rows)}\n")
    return write_text(out_dir / "README.md", text)
