"""``kvgym findings``: re-run kv-hierarchy-lab's four published findings and write the report."""

from __future__ import annotations

import sys


def _cmd(args) -> int:
    from pathlib import Path

    from kvgym.bench.cli_common import int_list
    from kvgym.bench.findings import default_shared_dir, write_report

    shared = Path(args.shared) if args.shared else default_shared_dir()
    if not (shared / "parity" / "traces").is_dir():
        print(f"findings: {shared}/parity not found: part 1 (parity replay) is skipped and the report says so",
              file=sys.stderr)
    seeds = int_list(args.seeds) or [0, 1]
    path, res = write_report(Path(args.out), shared, seeds=seeds, realistic=not args.parity_only,
                             log=lambda m: print(m, file=sys.stderr))
    if res.get("parity"):
        for f, ok in res["parity"]["verdicts"].items():
            print(f"{f}: {'holds' if ok else 'does not hold'}")
    print(f"wrote {path}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "findings", help="re-run kv-hierarchy-lab's published findings (parity + realistic) into a report",
        description="Replay the four published findings of kv-hierarchy-lab v0.1 on its exact traces (parity mode, "
                    "from ../shared/parity), side by side with the published figures, each marked holds / does not "
                    "hold with the reason; then ask the same questions on the realistic H200 scenarios. Writes "
                    "OUT/README.md (default artifacts/findings/).")
    p.add_argument("--out", default="artifacts/findings", help="output directory (default artifacts/findings)")
    p.add_argument("--shared", help="the shared folder (default: ../shared beside the repository)")
    p.add_argument("--seeds", help="seeds of the realistic part (default 0,1)")
    p.add_argument("--parity-only", action="store_true", help="skip the realistic part")
    p.set_defaults(func=_cmd)
