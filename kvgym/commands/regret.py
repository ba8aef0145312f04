"""``kvgym regret --policy P --trace T --scenario S``: regret report of policies against the oracle.

``--policy`` and ``--trace`` repeat: every policy runs on every trace. Policies use the
harness's spec syntax (``regret_aware(regret_weight=12)``, ``lru+sequential`` for a prefetcher);
traces are Parquet files or workload specs. Writes ``report.md``, ``regret.json`` and the plots
(regret over time, gap closed by workload, attribution by layer and age) into ``--out``; see
:mod:`kvgym.oracle.report` and docs/oracle.md.
"""

from __future__ import annotations

import argparse
import shlex


def _cmd(args) -> int:
    from kvgym.bench.cli_common import csv_list
    from kvgym.bench.specs import PolicySpec
    from kvgym.files import check_output_dir
    from kvgym.workloads import resolve_trace
    from kvgym.oracle.regret import analyze
    from kvgym.oracle.report import write_report
    from kvgym.params import need_int
    from kvgym.sim.catalog import resolve_scenario
    from kvgym.sim.policy import make_policy, make_prefetcher

    need_int("regret", "--top", args.top, 0)
    if args.window is not None:
        need_int("regret", "--window", args.window, 1)
    check_output_dir(args.out, "--out")
    scenario = resolve_scenario(args.scenario)
    specs = [PolicySpec.parse(p).resolve("none") for p in csv_list(args.policies)]
    results = []
    for tspec in csv_list(args.traces):
        trace, label = resolve_trace(tspec, seed=args.seed)
        cache: dict = {}
        for ps in specs:
            pre = make_prefetcher(ps.prefetcher, **ps.prefetcher_params) if ps.prefetcher != "none" else None
            r = analyze(trace, scenario, make_policy(ps.name, **ps.params), label=ps.label, trace_label=label,
                        prefetcher=pre, window=args.window, top=args.top, cache=cache)
            s = r.summary()
            gc = "n/a" if s["gap_closed"] is None else f"{s['gap_closed']:.1f}%"
            gr = "n/a" if s["good_ratio"] is None else f"{s['good_ratio']:.3f}"
            print(f"{label:28s} {ps.label:24s} misses {s['misses']:8d} (lru {s['misses_lru']}, "
                  f"{s['oracle']} {s['misses_oracle']})  gap closed {gc:>8s}  good decisions {gr}")
            results.append(r)
    command = args.command_text or _command(args)
    files = write_report(results, args.out, command=command)
    print(f"wrote {files['report.md']} (+ regret.json and {len(files) - 2} plots)")
    return 0


def _command(args) -> str:
    """The command line that reproduces this run, rebuilt from the parsed arguments."""
    from kvgym.bench.cli_common import csv_list

    parts = ["kvgym", "regret"]
    for p in csv_list(args.policies):
        parts += ["--policy", p]
    for t in csv_list(args.traces):
        parts += ["--trace", t]
    for flag, value, default in (("--scenario", args.scenario, None), ("--seed", args.seed, 0),
                                 ("--window", args.window, None), ("--top", args.top, 20)):
        if value != default:
            parts += [flag, str(value)]
    return shlex.join(parts + ["--out", args.out])


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "regret", help="regret report: gap closed, good-decision ratio, regret over time, costly evictions",
        description="Compare policies with the offline oracle on traces under a scenario: the fraction of the "
                    "LRU-to-oracle gap closed, the share of evictions that match Belady's choice, regret over "
                    "time, and which evictions cost the most later (by page, layer, age and tier). "
                    "See docs/oracle.md.")
    from kvgym.bench.cli_common import add_list_arg

    add_list_arg(p, "policies", "policy specs: NAME, NAME(key=value,...), NAME+PREFETCHER", required=True)
    add_list_arg(p, "traces", "Parquet traces or workload specs NAME(key=value,...)", required=True)
    p.add_argument("--scenario", help="scenario name (kvgym scenarios) or a scenario .json file "
                                      "(default: 'default', tier 0 sized auto:0.5)")
    p.add_argument("--seed", type=int, default=0, help="workload seed (default 0)")
    p.add_argument("--window", type=int, default=None, help="steps per regret window (default: ~50 windows)")
    p.add_argument("--top", type=int, default=20, help="evictions listed per policy and trace (default 20)")
    p.add_argument("--out", default="regret_out", help="output folder (default regret_out)")
    # Overrides the command line recorded in the report (for scripts that call main()).
    p.add_argument("--command-text", dest="command_text", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd)

