"""``kvgym plot DIR``: (re)draw a sweep's plots from its results.parquet."""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class PlotConfig:
    """results: a sweep's output directory; out: where plots/ goes (default: results)."""

    results: str = "artifacts/default_sweep"
    out: str = ""


def _cmd(args) -> int:
    from pathlib import Path

    from kvgym.bench import plots
    from kvgym.bench.results import read_records
    from kvgym.configs import load_config

    cfg = load_config(PlotConfig, args.config, args.sets, results=args.results, out=args.out)
    recs = read_records(Path(cfg.results))
    paths = plots.write_all(recs, Path(cfg.out or cfg.results))
    for p in paths:
        print(f"wrote {p}")
    return 0


def register(subparsers) -> None:
    from kvgym.bench.cli_common import add_config_args, keys_epilog

    p = subparsers.add_parser("plot", help="draw a sweep's plots from its results",
                              description="Draw hit rate, latency vs bytes, per-tier hits, prefetch usefulness and "
                                          "stall plots (PNG) from DIR/results.parquet into DIR/plots/.",
                              epilog=keys_epilog(PlotConfig), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="?", help="sweep output directory (default artifacts/default_sweep)")
    add_config_args(p)
    p.add_argument("--out", help="write plots/ under this directory instead")
    p.set_defaults(func=_cmd)
