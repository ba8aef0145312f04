"""``kvgym oracle TRACE --scenario S``: print the oracle bounds of a trace and plot its miss-ratio curves.

TRACE is a Parquet trace or a workload spec (``NAME`` or ``NAME(key=value,...)``); S is a
harness scenario name, a scenario ``.json`` file, or omitted for the built-in default
(:func:`kvgym.workloads.resolve_trace`, :func:`kvgym.sim.catalog.resolve_scenario`). Writes ``mrc.png`` (OPT and LRU miss ratio against cache size)
and ``bounds.json`` (every figure) into ``--out``.
"""

from __future__ import annotations

import json
from pathlib import Path


def _cmd(args) -> int:
    from kvgym.files import check_output_dir, write_text
    from kvgym.oracle.bounds import oracle_bounds
    from kvgym.workloads import resolve_trace
    from kvgym.oracle.plots import plot_mrc
    from kvgym.params import need_int, need_num
    from kvgym.sim.catalog import resolve_scenario

    need_int("oracle", "--lp-max", args.lp_max, 0)
    if args.fetch_time is not None:
        need_num("oracle", "--fetch-time", args.fetch_time, 0.0, lo_open=True)
    check_output_dir(args.out, "--out")
    scenario = resolve_scenario(args.scenario)
    trace, label = resolve_trace(args.trace, seed=args.seed)
    rep = oracle_bounds(trace, scenario, label=label, lp_max=args.lp_max, fetch_time=args.fetch_time)
    for line in rep.lines():
        print(line)
    out = Path(args.out)
    h = rep.hierarchy
    marks = {"tier 0": rep.tier0_pages}
    for j in range(1, len(h.capacity_pages)):
        marks[f"tiers 0..{j}"] = h.capacity_pages[j]
    plot_mrc(rep.curves, out / "mrc.png", marks=marks,
             title=f"{label} under {scenario.name}: miss ratio by cache size")
    doc = rep.to_dict()
    doc["curves"] = rep.curves.to_dict() if args.curves else None
    write_text(out / "bounds.json", json.dumps(doc, indent=1, sort_keys=True, default=float) + "\n")
    print(f"wrote {out / 'mrc.png'} and {out / 'bounds.json'}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "oracle", help="oracle bounds of a trace: Belady MIN, miss-ratio curves, hierarchy, LP and prefetch bounds",
        description="Print lower bounds on what any policy can achieve on a trace under a scenario "
                    "(Belady MIN for tier 0, the cumulative-capacity hierarchy bounds on misses, transfer, "
                    "stall and total time, the LP bound for variable page sizes, Cao et al.'s prefetch "
                    "references) and plot the OPT and LRU miss-ratio curves. See docs/oracle.md.")
    p.add_argument("trace", help="a Parquet trace, or a workload: NAME or NAME(key=value,...)")
    p.add_argument("--scenario", help="scenario name (kvgym scenarios) or a scenario .json file "
                                      "(default: 'default', tier 0 sized auto:0.5)")
    p.add_argument("--seed", type=int, default=0, help="workload seed (default 0)")
    p.add_argument("--out", default="oracle_out", help="folder for mrc.png and bounds.json (default oracle_out)")
    p.add_argument("--lp-max", type=int, default=20_000, dest="lp_max",
                   help="largest trace (accesses) for the LP bound with variable page sizes (default 20000)")
    p.add_argument("--fetch-time", type=float, default=None, dest="fetch_time",
                   help="fetch time F of the prefetch references, in accesses (default: from the scenario)")
    p.add_argument("--curves", action="store_true", help="also store the full curves in bounds.json")
    p.set_defaults(func=_cmd)
