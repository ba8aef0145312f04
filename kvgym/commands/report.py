"""``kvgym report DIR``: write one self-contained HTML page per sweep (``DIR/report.html``)."""

from __future__ import annotations


def _run(args) -> int:
    from pathlib import Path

    from kvgym.bench.report import sweep_dirs, write

    for d in sweep_dirs(Path(args.dir)):
        print(write(d))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="write a self-contained HTML report of a sweep (sortable leaderboards, plots)",
        description="Write DIR/report.html for the sweep in DIR (or one per sweep in DIR's sub-folders): the "
                    "command that made it, sortable leaderboards overall and per scenario with 95%% intervals and "
                    "ties, the plots embedded, and the scenarios and trace sources described. One file, no "
                    "external resource: open it from disk or send it.")
    p.add_argument("dir", metavar="DIR", help="a sweep's output directory (results.parquet, manifest.json, plots/)")
    p.set_defaults(func=_run)
