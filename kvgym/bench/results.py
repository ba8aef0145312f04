"""The results table and its files: ``results.csv``, ``results.parquet``, ``summary.json``.

One row per cell and seed, in the sweep's order (scenario, source, policy, seed as listed in
the config). Columns: the cell's key (``scenario``, ``source``, ``policy``, ``kind`` =
policy / oracle / agent, ``seed``), ``cell_id``, ``status`` (``ok``, or ``infeasible`` when the
trace does not fit the scenario, with ``error`` saying why), the trace's size, then the metrics
of :class:`kvgym.sim.metrics.Metrics` (times in µs, bytes in bytes; see that module for the
definitions), with per-tier lists spread over ``tier{i}_hits``, ``tier{i}_evictions``,
``tier{i}_peak_bytes``.

Byte-identical CSV for the same config: fixed row and column order, integers as integers,
floats as Python's shortest round-trip ``repr``, missing values empty, ``\\n`` line ends.

``summary.json``: per (scenario, source, policy), the mean and the sample standard deviation
(ddof 1; 0 for a single seed) of every numeric metric over the seeds, and ``n``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from kvgym.files import atomic_write, write_text

KEY_COLUMNS = ["scenario", "source", "policy", "kind", "seed"]
HEAD_COLUMNS = KEY_COLUMNS + ["cell_id", "status", "error", "trace_accesses", "trace_pages"]
METRIC_COLUMNS = [
    "accesses", "hits", "misses", "full_misses", "first_touch_misses", "hit_rate", "total_evictions",
    "bytes_moved", "bytes_demand", "bytes_prefetch", "bytes_demotion", "prefetch_issued",
    "prefetch_useful", "prefetch_late", "prefetch_wasted", "prefetch_usefulness", "stall_us",
    "compute_us", "total_time_us", "avg_access_latency_us", "tokens_per_s", "steps", "tokens",
]
FLOAT_COLUMNS = {"hit_rate", "prefetch_usefulness", "stall_us", "compute_us", "total_time_us",
                 "avg_access_latency_us", "tokens_per_s"}
#: Per-tier lists of :meth:`Metrics.to_dict` and the ``tier{i}_*`` columns they spread over.
TIER_LISTS = {"tier_hits": "hits", "evictions": "evictions", "peak_bytes": "peak_bytes"}


def n_tiers(records: list[dict]) -> int:
    return max((len(r.get("tier_hits") or []) for r in records), default=0)


def columns(nt: int) -> list[str]:
    tier = [f"tier{i}_{suffix}" for suffix in TIER_LISTS.values() for i in range(nt)]
    return HEAD_COLUMNS + METRIC_COLUMNS + tier


def flatten(rec: dict, nt: int) -> dict:
    """One record as a flat row over :func:`columns` (missing values ``None``)."""
    row = {c: rec.get(c) for c in HEAD_COLUMNS + METRIC_COLUMNS}
    for key, suffix in TIER_LISTS.items():
        vals = rec.get(key) or []
        for i in range(nt):
            row[f"tier{i}_{suffix}"] = vals[i] if i < len(vals) else None
    return row


def table(records: list[dict]) -> pd.DataFrame:
    """The results as a DataFrame with fixed columns and dtypes (nullable ints)."""
    nt = n_tiers(records)
    cols = columns(nt)
    rows = [flatten(r, nt) for r in records]
    df = pd.DataFrame(rows, columns=cols)
    for c in cols:
        if c in ("scenario", "source", "policy", "kind", "cell_id", "status", "error"):
            df[c] = df[c].astype("string")
        elif c in FLOAT_COLUMNS:
            df[c] = df[c].astype("float64")
        else:
            df[c] = df[c].astype("Int64")
    return df


def _fmt(v) -> str:
    if v is None or v is pd.NA:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "" if math.isnan(v) else repr(float(v))
    return str(v)


def rows_csv(rows, cols: list[str]) -> str:
    """Flat rows as the deterministic CSV text of the module docstring (header ``cols``)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for row in rows:
        w.writerow([_fmt(row[c]) for c in cols])
    return buf.getvalue()


def csv_text(records: list[dict]) -> str:
    nt = n_tiers(records)
    return rows_csv((flatten(r, nt) for r in records), columns(nt))


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> None:
    tbl = pa.Table.from_pandas(df, preserve_index=False)
    atomic_write(path, lambda tmp: pq.write_table(tbl, tmp, compression="zstd"), "results")


def summarise(records: list[dict]) -> list[dict]:
    """Mean and sample std over seeds per (scenario, source, policy), in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["scenario"], r["source"], r["policy"], r["kind"]), []).append(r)
    out = []
    for (scen, src, pol, kind), rs in groups.items():
        ok = [r for r in rs if r.get("status") == "ok"]
        entry = {"scenario": scen, "source": src, "policy": pol, "kind": kind, "n": len(ok),
                 "seeds": [r["seed"] for r in ok], "status": "ok" if ok else rs[0].get("status"),
                 "error": "" if ok else rs[0].get("error", ""), "mean": {}, "std": {}}
        nt = n_tiers(ok)
        for c in METRIC_COLUMNS + [f"tier{i}_hits" for i in range(nt)]:
            vals = []
            for r in ok:
                v = flatten(r, nt)[c]
                if v is not None:
                    vals.append(float(v))
            if not vals:
                continue
            a = np.array(vals)
            entry["mean"][c] = float(a.mean())
            entry["std"][c] = float(a.std(ddof=1)) if len(a) > 1 else 0.0
        out.append(entry)
    return out


def write_results(out: Path, records: list[dict]) -> dict:
    """Write results.csv, results.parquet and summary.json atomically; return the summary."""
    write_text(out / "results.csv", csv_text(records))
    write_parquet_atomic(table(records), out / "results.parquet")
    summary = {"format": "kvgym-summary/1", "aggregate": "mean and sample std (ddof=1) over seeds",
               "groups": summarise(records)}
    write_text(out / "summary.json", summary_text(summary))
    return summary


def summary_text(summary: dict) -> str:
    """Compact, deterministic JSON with one group per line (small, and diffs line by line)."""
    head = {k: v for k, v in summary.items() if k != "groups"}
    lines = [json.dumps(g, sort_keys=True, separators=(",", ":")) for g in summary["groups"]]
    body = ",\n".join(lines)
    return json.dumps(head, sort_keys=True)[:-1] + ', "groups": [\n' + body + "\n]}\n"


def missing(v) -> bool:
    """A value a results table stores as missing (``None``, pandas' NA, a float NaN)."""
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def read_frame(out: Path, what: str = "results") -> pd.DataFrame:
    """``out/results.parquet`` as a DataFrame; one clear error when there is none."""
    from kvgym.errors import ConfigError

    path = Path(out) / "results.parquet"
    if not path.is_file():
        raise ConfigError(f"{path}: no {what} here (run `kvgym sweep` first)")
    return pq.read_table(path).to_pandas()


def read_records(out: Path) -> list[dict]:
    """Records back from a results directory (for ``kvgym plot`` / ``kvgym leaderboard``)."""
    df = read_frame(out)
    nt = sum(1 for c in df.columns if c.startswith("tier") and c.endswith("_hits"))
    recs = []
    for row in df.to_dict("records"):
        rec = {k: (None if missing(v) else v) for k, v in row.items()
               if not k.startswith("tier") or k in ("trace_accesses", "trace_pages")}
        for k in ("seed", "trace_accesses", "trace_pages") + tuple(c for c in METRIC_COLUMNS if c not in FLOAT_COLUMNS):
            if rec.get(k) is not None:
                rec[k] = int(rec[k])
        for key, suffix in TIER_LISTS.items():
            vals = [row.get(f"tier{i}_{suffix}") for i in range(nt)]
            rec[key] = [None if v is pd.NA else int(v) for v in vals] if rec.get("status") == "ok" else None
        recs.append(rec)
    return recs
