"""Helpers shared by the harness tests: tiny trace files and a small sweep config."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kvgym.bench.config import SweepConfig
from kvgym.traces.format import Trace
from kvgym.traces.parquet import write_trace


def tiny_traces(d: Path, n: int = 2, accesses: int = 600, pages: int = 80) -> list[str]:
    """``n`` Zipf-like single-access-per-step traces of 64 KiB fp16 pages, written as Parquet."""
    out = []
    for i in range(n):
        rng = np.random.default_rng(100 + i)
        page = (rng.zipf(1.3, accesses) - 1) % pages
        t = Trace.from_pages(page, fp16_bytes=65536, meta={"test": i})
        out.append(str(write_trace(t, d / f"trace{i}.parquet")))
    return out


def small_config(d: Path, traces: list[str], **kw) -> SweepConfig:
    base = {"name": "t", "scenarios": ("h200_10pct_fp16_no_prefetch", "h200_25pct_int4_prefetch"), "workloads": (),
                "traces": tuple(traces), "policies": ("lru", "fifo", "regret_aware"), "oracle": "belady", "seeds": (0,),
                "backend": "serial", "out": str(d / "out"), "plots": False, "progress": False}
    base.update(kw)
    return SweepConfig(**base)
