"""``kvgym sweep``: run a grid of scenarios x workloads/traces x policies/agents x seeds."""

from __future__ import annotations

import argparse
import sys


def _cmd(args) -> int:
    from kvgym.bench.cli_common import invocation, stop_on_sigterm

    stop_on_sigterm()
    from kvgym.bench import leaderboard
    from kvgym.bench.cli_common import grid_overrides
    from kvgym.bench.config import SweepConfig
    from kvgym.bench.sweep import run_sweep
    from kvgym.configs import load_config

    cfg = load_config(SweepConfig, args.config, args.sets, name=args.name, **grid_overrides(args),
                      backend=args.backend, workers=args.workers, out=args.out,
                      plots=False if args.no_plots else None, progress=False if args.quiet else None,
                      trust_pickle=True if args.trust_pickle else None)
    res = run_sweep(cfg, log=lambda m: print(m, file=sys.stderr),
                    command=invocation("sweep", drop=("--quiet", "--no-plots")))
    print(leaderboard.terminal(res.board))
    if res.serving is not None:
        from kvgym.bench.serving_board import summary

        print(summary(res.serving))
    print(f"wrote {res.out}/ (results.csv, results.parquet, summary.json, leaderboard.md, report.html"
          f"{', plots/' if cfg.plots else ''}, manifest.json): {len(res.cells)} cells, {res.ran} run, "
          f"{res.reused} reused, {res.wall_s:.1f} s")
    return 0


def register(subparsers) -> None:
    from kvgym.bench.cli_common import add_config_args, add_grid_args, keys_epilog
    from kvgym.bench.config import SweepConfig

    p = subparsers.add_parser(
        "sweep", help="run a benchmark sweep (resumable) and write results, plots and the leaderboard",
        description="Run every cell of scenarios x workloads (or trace files) x policies (and agents) x seeds, "
                    "resuming from finished cells in OUT/cells/, then write results.csv/.parquet, summary.json, "
                    "leaderboard.md, plots/ and manifest.json. Lists are comma-separated; policy and workload "
                    "parameters go in parentheses: 'regret_aware(regret_weight=12)'.",
        epilog=keys_epilog(SweepConfig), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("--name", help="sweep name")
    add_grid_args(p)
    p.add_argument("--backend", help="serial, process (default) or ray")
    p.add_argument("--workers", type=int, help="processes for the process backend (default: all cores)")
    p.add_argument("--out", help="output directory (default artifacts/sweep)")
    p.add_argument("--no-plots", action="store_true", help="skip the plots")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--trust-pickle", action="store_true", dest="trust_pickle",
                   help="allow agents saved as SB3 .zip files (pickles: they can run code when loaded), each only "
                        "if its sha256 matches the one recorded in its agent.json")
    p.set_defaults(func=_cmd)
