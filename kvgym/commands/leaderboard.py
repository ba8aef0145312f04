"""``kvgym leaderboard DIR``: (re)build and print a sweep's leaderboard from its results."""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class LeaderboardConfig:
    """results: a sweep's output directory; top: policies shown per scenario when printing;
    full: print the whole Markdown instead; write: rewrite DIR/leaderboard.md."""

    results: str = "artifacts/default_sweep"
    top: int = 3
    full: bool = False
    write: bool = True


def _cmd(args) -> int:
    from pathlib import Path

    from kvgym.bench import leaderboard
    from kvgym.bench.results import read_records
    from kvgym.configs import load_config

    cfg = load_config(LeaderboardConfig, args.config, args.sets, results=args.results,
                      top=args.top, full=True if args.full else None)
    records = read_records(Path(cfg.results))
    title = "Leaderboard: " + Path(cfg.results).name
    if cfg.write:
        board, text = leaderboard.write(Path(cfg.results), records, title)
    else:
        board = leaderboard.build(records)
        text = leaderboard.markdown(board, title)
    print(text if cfg.full else leaderboard.terminal(board, cfg.top))
    return 0


def register(subparsers) -> None:
    from kvgym.bench.cli_common import add_config_args, keys_epilog

    p = subparsers.add_parser("leaderboard", help="rank the policies and agents of a sweep",
                              description="Rank every policy and agent of a sweep per scenario and overall (time vs "
                                          "LRU with 95% intervals from the seeds; ties share a rank; the oracle beside "
                                          "the ranking), rewrite DIR/leaderboard.md and print it.",
                              epilog=keys_epilog(LeaderboardConfig), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="?", help="sweep output directory (default artifacts/default_sweep)")
    add_config_args(p)
    p.add_argument("--top", type=int, help="policies shown per scenario (default 3)")
    p.add_argument("--full", action="store_true", help="print the whole Markdown leaderboard")
    p.set_defaults(func=_cmd)
