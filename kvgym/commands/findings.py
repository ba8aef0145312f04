"""``kvgym findings``: re-run kv-hierarchy-lab's four published findings and write the report."""

from __future__ import annotations

import sys


def _cmd(args) -> int:
    from pathlib import Path

    from kvgym.bench.cli_common import int_list
    from kvgym.bench.findings import write_report

    seeds = int_list(args.seeds) or [0, 1]
    parity = Path(args.parity_dir) if args.parity_dir else None
    path, res = write_report(Path(args.out), parity, seeds=seeds, realistic=not args.parity_only,
                             log=lambda m: print(m, file=sys.stderr))
    for f, ok in res["parity"]["verdicts"].items():
        print(f"{f}: {'holds' if ok else 'does not hold'}")
    print(f"wrote {path}")
    return 0


def register(subparsers) -> None:
    from kvgym.bench.cli_common import add_list_arg

    p = subparsers.add_parser(
        "findings", help="re-run kv-hierarchy-lab's published findings (parity + realistic) into a report",
        description="Replay the four published findings of kv-hierarchy-lab v0.1 on its exact traces (parity mode, "
                    "shipped in kvgym/data/parity), side by side with the published figures, each marked holds / does not "
                    "hold with the reason; then ask the same questions on the realistic H200 scenarios. Writes "
                    "OUT/README.md (default artifacts/findings/).")
    p.add_argument("--out", default="artifacts/findings", help="output directory (default artifacts/findings)")
    p.add_argument("--parity-dir", help="parity data folder (default: the copy shipped in kvgym/data/parity)")
    add_list_arg(p, "seeds", "seeds of the realistic part (default 0,1)")
    p.add_argument("--parity-only", action="store_true", help="skip the realistic and serving parts (2 and 3)")
    p.set_defaults(func=_cmd)
