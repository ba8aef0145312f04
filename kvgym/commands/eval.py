"""``kvgym eval``: evaluate policies or agents on scenarios and traces, print the metrics.

The same cells as ``kvgym sweep`` (same config keys), run in this process, with no files
written unless ``--json`` is given: the quick way to score one policy or agent.
"""

from __future__ import annotations

import argparse


def _cmd(args) -> int:
    from kvgym.bench.cells import expand, run_cell
    from kvgym.bench.cli_common import grid_overrides
    from kvgym.bench.config import SweepConfig, load_config
    from kvgym.files import check_output, write_json
    from kvgym.sim.catalog import DEFAULT_NAME

    if args.json:
        check_output(args.json, "--json")
    keys = _keys(args)
    base = {"scenarios": [DEFAULT_NAME], "workloads": ["streaming"], "policies": ["lru"],
            "oracle": "", "backend": "serial"}
    if args.traces or "traces" in keys:  # a trace file given: no default workload beside it
        base["workloads"] = []
    if args.agents or "agents" in keys:
        base["policies"] = []
    cfg = load_config(SweepConfig, args.config, args.sets, base=base, **grid_overrides(args),
                      trust_pickle=True if args.trust_pickle else None)
    recs = [run_cell(c) for c in expand(cfg)]
    cols = ["scenario", "source", "policy", "seed", "status", "hit_rate", "misses", "bytes_moved", "stall_us",
            "total_time_us", "tokens_per_s", "prefetch_usefulness"]
    rows = [[_fmt(r.get(c)) for c in cols] for r in recs]
    width = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, width)))
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, width)))
    for r in recs:
        if r["status"] != "ok":
            print(f"{r['scenario']} / {r['source']}: {r['status']}: {r['error']}")
    if args.json:
        write_json(args.json, {"config": cfg.result_dict(), "records": recs})
        print(f"wrote {args.json}")
    return 0


def _keys(args) -> set:
    from kvgym.bench.config import read_config_file
    keys = set(read_config_file(args.config)) if args.config else set()
    return keys | {s.split("=", 1)[0].split(".")[0] for s in args.sets}


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def register(subparsers) -> None:
    from kvgym.bench.cli_common import add_config_args, add_grid_args, keys_epilog
    from kvgym.bench.config import SweepConfig

    p = subparsers.add_parser(
        "eval", help="evaluate policies or agents on a scenario and trace, print the metrics",
        description="Score policies (registry names, with parameters in parentheses) or agents (policy:NAME "
                    "through the Gymnasium env, or a saved agent's path) on scenarios and workloads or trace "
                    "files. Defaults: lru on streaming under the 'default' scenario, seed 0.",
        epilog=keys_epilog(SweepConfig), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    add_grid_args(p)
    p.add_argument("--json", metavar="FILE", help="also write the records as JSON")
    p.add_argument("--trust-pickle", action="store_true", dest="trust_pickle",
                   help="allow agents saved as SB3 .zip files (pickles: they can run code when loaded), each only "
                        "if its sha256 matches the one recorded in its agent.json")
    p.set_defaults(func=_cmd)
