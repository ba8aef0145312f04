"""``kvgym trace gen 'NAME(key=value,...)' [--seed N] -o FILE.parquet``: generate a workload trace.

``kvgym trace gen --list`` prints every workload with its parameters and defaults. A progress
bar (decode steps) appears on a terminal when generation takes more than half a second.
"""

from __future__ import annotations

import time

from kvgym.errors import ConfigError


def register_trace(sub) -> None:
    p = sub.add_parser("gen", help="generate a synthetic workload trace (Parquet)",
                       description="Generate a seeded synthetic trace by workload name. See docs/workloads.md.")
    p.add_argument("name", nargs="?", metavar="WORKLOAD",
                   help="workload spec NAME or NAME(key=value,...), e.g. 'topk_drift(k=16)' (see --list)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("-o", "--output", help="output trace file (.parquet; the page table goes beside it)")
    p.add_argument("--list", action="store_true", help="list the workloads and their parameters")
    p.set_defaults(func=run)


def list_workloads() -> str:
    from kvgym.workloads import workloads

    lines = []
    for name, w in sorted(workloads().items()):
        lines.append(f"{name}: {w.summary}")
        lines.append("    " + ", ".join(f"{k}={v!r}" for k, v in w.defaults.items()))
    return "\n".join(lines)


def run(args) -> int:
    from kvgym.files import check_outputs
    from kvgym.traces.parquet import pages_path, write_trace
    from kvgym.workloads import resolve_trace, workload_names

    if args.list:
        print(list_workloads())
        return 0
    if not args.name:
        raise ConfigError(f"a workload name is required; valid: {', '.join(workload_names())}")
    if not args.output:
        raise ConfigError("-o/--output FILE.parquet is required")
    check_outputs(args.output, pages_path(args.output))
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            # delay: small traces never show a bar; disable=None: no bar when not on a terminal.
            bar = tqdm(total=total, desc=args.name, unit="step", delay=0.5, disable=None, leave=False)
        bar.update(done - bar.n)

    t0 = time.perf_counter()
    try:
        trace, _ = resolve_trace(args.name, seed=args.seed, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    t1 = time.perf_counter()
    path = write_trace(trace, args.output)
    t2 = time.perf_counter()
    steps = int(trace.step[-1]) + 1 if len(trace) else 0
    print(f"wrote {path}: {len(trace):,} accesses, {steps:,} steps, {len(trace.pages):,} pages "
          f"(generated in {t1 - t0:.2f} s, written in {t2 - t1:.2f} s)")
    return 0
