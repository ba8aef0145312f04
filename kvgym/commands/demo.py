"""``kvgym demo``: run the default sweep and print its leaderboard (the README's main job)."""

from __future__ import annotations

import argparse
import sys


def _cmd(args) -> int:
    from kvgym.bench.cli_common import invocation, stop_on_sigterm

    stop_on_sigterm()
    from kvgym.bench import leaderboard
    from kvgym.bench.config import SweepConfig
    from kvgym.bench.demo import DEFAULT_SWEEP
    from kvgym.bench.sweep import run_sweep
    from kvgym.configs import load_config

    cfg = load_config(SweepConfig, args.config, args.sets, base=DEFAULT_SWEEP, out=args.out, backend=args.backend,
                      workers=args.workers, progress=False if args.quiet else None)
    res = run_sweep(cfg, log=lambda m: print(m, file=sys.stderr), title="Leaderboard: the default sweep",
                    command=invocation("demo", drop=("--quiet",)))
    print(leaderboard.terminal(res.board))
    if res.serving is not None:
        from kvgym.bench.serving_board import summary

        print(summary(res.serving))
    print(f"wrote {res.out}/: results.csv, results.parquet, summary.json, leaderboard.md, plots/, manifest.json "
          f"({len(res.cells)} cells, {res.ran} run, {res.reused} reused, {res.wall_s:.1f} s wall)")
    print(f"open {res.out}/report.html in a browser: sortable leaderboards, plots, what each scenario and workload is")
    return 0


def register(subparsers) -> None:
    from kvgym.bench.cli_common import add_config_args, keys_epilog
    from kvgym.bench.config import SweepConfig

    p = subparsers.add_parser(
        "demo", help="run the default sweep (realistic scenarios x decode workloads x every baseline, and serving)",
        description="Run the default sweep: every realistic H200 scenario x the synthetic decode workloads x every "
                    "registered baseline policy x seeds 0,1, plus a serving section (serving baselines and admission "
                    "policies on the Mooncake synthetic trace, ranked by time to first token); write runs/demo/ (an "
                    "untracked folder) and print the leaderboards. Resumable: a rerun reuses finished cells. Config keys as for `kvgym sweep`.",
        epilog=keys_epilog(SweepConfig), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("--out", help="output directory (default runs/demo)")
    p.add_argument("--backend", help="serial, process (default) or ray")
    p.add_argument("--workers", type=int, help="processes (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd)
