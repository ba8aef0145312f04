"""Benchmark: generate and write a 1M-token ``topk_drift`` trace (Llama-3.1-8B geometry).

Target (issue 3): 1,048,576-token prompt, 100 decode steps, 2,048 pages per layer per step
(32 layers x 2,048 x 100 = 6,553,600 accesses, 2,097,376 pages) generated AND written in
<= 60 s with a peak resident memory <= 4 GiB.

Each phase runs in a fresh Python process so its peak RSS (``resource.getrusage``) is its own:

- ``target``: ``make_trace("topk_drift", ...)`` then ``write_trace``;
- ``reference``: ``np.random.default_rng().random(n_accesses)`` plus a plain ``write_trace`` of a
  trivial trace of the same size (same number of accesses and pages, one weight per access) —
  the floor any generator pays to produce and store that many rows on this machine.

Prints the timings and the ratio target / reference and writes ``artifacts/perf/workloads.json``
(atomically). ``--prompt-tokens`` etc. shrink the run for a quick check (the artifact is only
written for the full-size run unless ``--out`` is given).

    .venv/bin/python benchmarks/bench_workloads.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT_S = 60.0
LIMIT_RSS = 4 * 1024 ** 3
FULL = {"prompt_tokens": 1_048_576, "decode_steps": 100, "k": 2048}


def _rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def phase_target(args, tmp: Path) -> dict:
    from kvgym.traces.parquet import pages_path, write_trace
    from kvgym.workloads import make_trace

    rss0 = _rss_bytes()
    c0 = time.process_time()
    t0 = time.perf_counter()
    tr = make_trace("topk_drift", seed=0, model="llama-3.1-8b", prompt_tokens=args.prompt_tokens,
                    decode_steps=args.decode_steps, k=args.k)
    t1 = time.perf_counter()
    p = write_trace(tr, tmp / "target.parquet")
    t2 = time.perf_counter()
    return {"generate_s": t1 - t0, "write_s": t2 - t1, "total_s": t2 - t0, "cpu_s": time.process_time() - c0,
            "peak_rss_bytes": _rss_bytes(),
            "rss_after_imports_bytes": rss0, "accesses": len(tr), "pages": len(tr.pages),
            "file_bytes": p.stat().st_size + pages_path(p).stat().st_size}


def phase_reference(args, tmp: Path) -> dict:
    import numpy as np

    from kvgym.traces.format import PageTable, Trace
    from kvgym.traces.geometry import geometry
    from kvgym.traces.parquet import write_trace

    g = geometry("llama-3.1-8b")
    n = args.decode_steps * g.layers * args.k
    n_pages = -(-(args.prompt_tokens + args.decode_steps) // g.tokens_per_page) * g.layers
    rss0 = _rss_bytes()
    c0 = time.process_time()
    t0 = time.perf_counter()
    w = np.random.default_rng(0).random(n)
    t1 = time.perf_counter()
    i = np.arange(n, dtype=np.int64)
    tr = Trace(step=i // (g.layers * args.k), page=i % n_pages, weight=w.astype(np.float32),
               pages=PageTable.uniform(n_pages, g.page_fp16_bytes, layers=g.layers))
    write_trace(tr, tmp / "reference.parquet")
    t2 = time.perf_counter()
    return {"random_s": t1 - t0, "write_s": t2 - t1, "total_s": t2 - t0, "cpu_s": time.process_time() - c0,
            "peak_rss_bytes": _rss_bytes(),
            "rss_after_imports_bytes": rss0, "accesses": n, "pages": n_pages}


def _child(phase: str, args) -> dict:
    cmd = [sys.executable, __file__, "--phase", phase, "--prompt-tokens", str(args.prompt_tokens),
           "--decode-steps", str(args.decode_steps), "--k", str(args.k)]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=ROOT)
    if res.returncode:
        sys.exit(f"{phase} phase failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompt-tokens", type=int, default=FULL["prompt_tokens"])
    ap.add_argument("--decode-steps", type=int, default=FULL["decode_steps"])
    ap.add_argument("--k", type=int, default=FULL["k"])
    ap.add_argument("--out", help="result JSON (default artifacts/perf/workloads.json for the full-size run)")
    ap.add_argument("--phase", choices=("target", "reference"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        with tempfile.TemporaryDirectory() as d:
            fn = phase_target if args.phase == "target" else phase_reference
            print(json.dumps(fn(args, Path(d))))
        return 0

    # Warm numba's on-disk cache first so the timed run measures generation, not compilation.
    _child("target", argparse.Namespace(prompt_tokens=256, decode_steps=2, k=4))
    ref = _child("reference", args)
    tgt = _child("target", args)
    ratio = tgt["total_s"] / ref["total_s"]
    ok = tgt["total_s"] <= LIMIT_S and tgt["peak_rss_bytes"] <= LIMIT_RSS
    print(f"topk_drift llama-3.1-8b prompt={args.prompt_tokens:,} steps={args.decode_steps} k={args.k}: "
          f"{tgt['accesses']:,} accesses, {tgt['pages']:,} pages")
    print(f"  target:    generate {tgt['generate_s']:.2f} s + write {tgt['write_s']:.2f} s = {tgt['total_s']:.2f} s "
          f"(CPU {tgt['cpu_s']:.2f} s), peak RSS {tgt['peak_rss_bytes'] / 2**20:,.0f} MiB")
    print(f"  reference: random {ref['random_s']:.2f} s + write {ref['write_s']:.2f} s = {ref['total_s']:.2f} s "
          f"(CPU {ref['cpu_s']:.2f} s), peak RSS {ref['peak_rss_bytes'] / 2**20:,.0f} MiB")
    print(f"  ratio target/reference: {ratio:.2f}x time, {tgt['peak_rss_bytes'] / ref['peak_rss_bytes']:.2f}x memory; "
          f"limits {LIMIT_S:.0f} s, {LIMIT_RSS / 2**30:.0f} GiB: {'PASS' if ok else 'FAIL'}")
    full = (args.prompt_tokens, args.decode_steps, args.k) == tuple(FULL.values())
    out = args.out or ("artifacts/perf/workloads.json" if full else None)
    if out:
        import numba
        import numpy
        import pyarrow

        result = {
            "benchmark": "bench_workloads",
            "config": {"workload": "topk_drift", "model": "llama-3.1-8b", "seed": 0, "prompt_tokens": args.prompt_tokens,
                       "decode_steps": args.decode_steps, "k": args.k},
            "target": tgt, "reference": ref,
            "ratio": {"time": ratio, "cpu": tgt["cpu_s"] / ref["cpu_s"],
                      "peak_rss": tgt["peak_rss_bytes"] / ref["peak_rss_bytes"]},
            "load_average_1min": os.getloadavg()[0],
            "limits": {"seconds": LIMIT_S, "peak_rss_bytes": LIMIT_RSS}, "pass": ok,
            "env": {"python": platform.python_version(), "numpy": numpy.__version__, "numba": numba.__version__,
                    "pyarrow": pyarrow.__version__, "cpus": os.cpu_count(), "machine": platform.machine()},
        }
        from kvgym.files import write_json

        write_json(ROOT / out if not Path(out).is_absolute() else Path(out), result, indent=1)
        print(f"wrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
