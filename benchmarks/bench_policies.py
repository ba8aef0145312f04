"""Throughput of every eviction policy and prefetcher in the reference engine, against LRU.

Each policy runs alone (prefetch off), each prefetcher with LRU (prefetch on, 2 per step), on
one decode-like trace in a 4-tier ``h200-measured`` scenario (overlap cost model; tier 0 holds
10% of the footprint, the HBM pool 10%, host 40%). Times are CPU seconds of this process (best of
``--repeat`` runs of the reference engine :class:`kvgym.sim.engine.Engine`, construction
included). The ratio is over LRU timed in the same process: each round runs LRU then the
candidate, and the ratio reported is the median over rounds (machines are noisy: compare
ratios). Misses are printed too, so the table also says how well each policy does on this
trace. Writes ``artifacts/perf/policies.json``.

    python benchmarks/bench_policies.py [--accesses 10000] [--repeat 3]

The trace: 8 layers; every step reads, for each layer, the 8 most recent blocks, 4 heavy-hitter
blocks (Zipf) and 4 random older ones, with attention weights (heavier for heavy hitters and
recent blocks); the context starts at 192 blocks and grows by one every 2 steps.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kvgym.files import write_json
from kvgym.sim.context import Future
from kvgym.sim.engine import Engine
from kvgym.sim.policy import make_policy, make_prefetcher, policy_names, prefetcher_names
from kvgym.sim.scenario import Scenario
from kvgym.traces.format import PageTable, Trace

LAYERS, WINDOW, HEAVY, FAR = 8, 8, 4, 4


def decode_trace(n_access: int, seed: int = 0) -> Trace:
    rng = np.random.Generator(np.random.PCG64(seed))
    per_step = LAYERS * (WINDOW + HEAVY + FAR)
    steps = max(1, n_access // per_step)
    t = np.arange(steps)
    ctx = 192 + t // 2  # blocks present at each step
    win = ctx[:, None] - 1 - np.arange(WINDOW)[None, :]
    hv = (rng.zipf(1.5, (steps, HEAVY)) - 1) % ctx[:, None]
    fr = (rng.random((steps, FAR)) * ctx[:, None]).astype(np.int64)
    blk = np.concatenate([win, hv, fr], axis=1)
    w = np.concatenate([np.full((steps, WINDOW), 0.05), np.full((steps, HEAVY), 0.1), np.full((steps, FAR), 0.01)], 1)
    page = (blk[:, None, :] * LAYERS + np.arange(LAYERS)[None, :, None]).reshape(-1)
    weight = np.broadcast_to(w[:, None, :], (steps, LAYERS, w.shape[1])).reshape(-1)
    step = np.repeat(t, per_step)
    # One page per (step, page): a step reads each page once.
    key = step * (int(page.max()) + 1) + page
    _, first = np.unique(key, return_index=True)
    first.sort()
    n_pages = (int(ctx[-1]) + 1) * LAYERS
    i = np.arange(n_pages, dtype=np.int64)
    pt = PageTable(seq=np.zeros(n_pages, np.int32), layer=(i % LAYERS).astype(np.int32),
                   token_start=(i // LAYERS) * 16, token_end=(i // LAYERS + 1) * 16,
                   fp16_bytes=np.full(n_pages, 65536, np.int64))
    return Trace(step[first].astype(np.int64), page[first].astype(np.int64), pt,
                 weight[first].astype(np.float32), meta={"generator": "bench_policies.decode_trace", "seed": seed})


def timed(trace: Trace, scen: Scenario, policy: str, prefetcher: str | None, repeat: int):
    """(best CPU seconds of ``repeat`` runs, metrics). CPU time of this process, not wall time:
    the machine is shared, and other processes' load should not count against a policy."""
    best, m = float("inf"), None
    for _ in range(repeat):
        t0 = time.process_time()
        pol = make_policy(policy)
        pre = make_prefetcher(prefetcher) if prefetcher else None
        oracle = pol.privileged or (pre is not None and pre.privileged)
        future = Future(trace.page, len(trace.pages)) if oracle else None
        m = Engine(scen.build(trace.pages), pol, pre, future=future).run(trace)
        best = min(best, time.process_time() - t0)
    return best, m


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accesses", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "artifacts/perf/policies.json"))
    a = ap.parse_args()
    trace = decode_trace(a.accesses)
    base = Scenario(name="bench-policies", profile="h200-measured", capacities=("10%", "10%", "40%", None))
    base.build(trace.pages).check_steps(trace.step, trace.page)
    with_prefetch = base.with_(prefetch=True, max_prefetch=2)
    n = len(trace)
    timed(trace.window(0, min(n, 2000)), base, "lru", None, 1)  # warm up imports and caches
    rows = []
    runs = [(p, None, base) for p in policy_names()] + [("lru", f, with_prefetch) for f in prefetcher_names()]
    for policy, prefetcher, scen in runs:
        # LRU and the candidate alternate, so that a slow phase of the machine hits both: the
        # ratio is the median of the per-round ratios.
        secs, ratios, m = [], [], None
        for _ in range(a.repeat):
            ref_s, _ = timed(trace, base, "lru", None, 1)
            s, m = timed(trace, scen, policy, prefetcher, 1)
            secs.append(s)
            ratios.append(ref_s / s)
        rows.append({"policy": policy, "prefetcher": prefetcher, "seconds": round(min(secs), 4),
                     "accesses_per_s": round(n / min(secs)), "ratio_vs_lru": round(float(np.median(ratios)), 3),
                     "misses": m.misses, "hit_rate": round(m.hit_rate, 4), "prefetch_useful": m.prefetch_useful,
                     "prefetch_issued": m.prefetch_issued, "total_ms": round(m.total_time_us / 1e3, 3)})
        r = rows[-1]
        label = policy + (f" + {prefetcher}" if prefetcher else "")
        print(f"{label:<24} {r['accesses_per_s']:>9,} accesses/s  x{r['ratio_vs_lru']:<6} "
              f"misses {r['misses']:>6}  hit rate {r['hit_rate']:.4f}", flush=True)
    res = {
        "benchmark": "bench_policies", "engine": "kvgym.sim.engine.Engine (reference)",
        "trace": {"accesses": n, "pages": len(trace.pages), "steps": int(trace.step[-1]) + 1, **trace.meta},
        "scenario": base.to_dict(), "repeat": a.repeat,
        "timing": "CPU time (time.process_time); accesses_per_s from the best round, ratio_vs_lru the median "
                  "of per-round ratios against an LRU run right before",
        "reference": "lru", "results": rows,
        "machine": {"python": platform.python_version(), "numpy": np.__version__,
                    "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
    }
    out = write_json(a.out, res)
    print(f"wrote {out.relative_to(ROOT) if out.resolve().is_relative_to(ROOT) else out.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
