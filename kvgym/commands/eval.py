"""``kvgym eval``: evaluate policies or agents on scenarios and traces, print the metrics.

The same cells as ``kvgym sweep`` (same config keys), run in this process, with no files
written unless ``--json`` is given: the quick way to score one policy or agent.
"""

from __future__ import annotations

import argparse


def _cmd(args) -> int:
    from kvgym.bench.cells import expand, run_cell
    from kvgym.bench.cli_common import grid_overrides
    from kvgym.bench.config import SweepConfig
    from kvgym.configs import load_config
    from kvgym.files import check_output, write_json
    from kvgym.sim.catalog import DEFAULT_NAME

    if args.json:
        check_output(args.json, "--json")
    keys = _keys(args)
    grid = grid_overrides(args)
    serving = _serving(args, grid)
    base = {"scenarios": [DEFAULT_NAME], "workloads": ["streaming"], "policies": ["lru"],
            "oracle": "", "backend": "serial"}
    if args.traces or "traces" in keys or serving is not None:  # given traces: no default workload beside them
        base["workloads"] = []
    if args.agents or "agents" in keys:
        base["policies"] = []
    out = {}
    if serving is None or grid["workloads"] or grid["traces"] or args.config or args.sets:
        cfg = load_config(SweepConfig, args.config, args.sets, base=base, **grid,
                          trust_pickle=True if args.trust_pickle else None)
        recs = [run_cell(c) for c in expand(cfg)]
        _table(recs, ["scenario", "source", "policy", "seed", "status", "hit_rate", "misses", "bytes_moved", "stall_us",
                      "total_time_us", "tokens_per_s", "prefetch_usefulness"])
        out = {"config": cfg.result_dict(), "records": recs}
    if serving is not None:
        from kvgym.bench.serving import expand_serving

        recs = [c.run_safe() for c in expand_serving(serving)]
        _table(recs, ["scenario", "source", "policy", "admission", "seed", "status", "ttft_mean_us", "ttft_p90_us",
                      "tpot_mean_us", "prefill_tokens_computed", "prefill_tokens_saved", "hit_rate", "requests_per_s"])
        out["serving"] = {"config": serving.to_dict(), "records": recs}
    if args.json:
        write_json(args.json, out)
        print(f"wrote {args.json}")
    return 0


def _table(recs: list[dict], cols: list[str]) -> None:
    rows = [[_fmt(r.get(c)) for c in cols] for r in recs]
    width = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, width)))
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, width)))
    for r in recs:
        if r["status"] != "ok":
            print(f"{r['scenario']} / {r['source']}: {r['status']}: {r['error']}")


def _serving(args, grid: dict):
    """The serving part of the command line (request-trace files, request workloads, serving
    scenarios, ``--admissions``), taken out of ``grid`` (the decode grid keeps the rest); ``None``
    when there is none."""
    from kvgym.bench.cli_common import csv_list
    from kvgym.bench.serving import ServingSweepConfig
    from kvgym.bench.serving_scenarios import serving_scenario_names
    from kvgym.callspec import parse_call
    from kvgym.errors import ConfigError
    from kvgym.workloads.request_sources import is_request_file
    from kvgym.workloads.serving import request_workload_names

    req_traces = [t for t in grid["traces"] or [] if is_request_file(t)]
    req_workloads = [w for w in grid["workloads"] or [] if parse_call(w, "--workloads")[0] in request_workload_names()]
    serv_scen = [s for s in grid["scenarios"] or [] if s in serving_scenario_names() or s == "serving"]
    admissions = csv_list(args.admissions)
    if not (req_traces or req_workloads):
        if admissions or serv_scen:
            raise ConfigError("--admissions and serving scenarios need a request trace (--traces FILE) or a request "
                              f"workload (--workloads {'|'.join(request_workload_names())})")
        return None
    serving = ServingSweepConfig(scenarios=serv_scen or serving_scenario_names()[:1], sources=req_traces + req_workloads,
                                 policies=grid["policies"] or ["vllm_lru"], admissions=admissions or ["always"],
                                 seeds=grid["seeds"] or [0])
    for key, drop in (("scenarios", serv_scen), ("workloads", req_workloads), ("traces", req_traces)):
        grid[key] = [x for x in grid[key] or [] if x not in drop] or None
    return serving


def _keys(args) -> set:
    from kvgym.configs import read_config_file
    keys = set(read_config_file(args.config)) if args.config else set()
    return keys | {s.split("=", 1)[0].split(".")[0] for s in args.sets}


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def register(subparsers) -> None:
    from kvgym.bench.cli_common import add_config_args, add_grid_args, add_list_arg, keys_epilog
    from kvgym.bench.config import SweepConfig

    p = subparsers.add_parser(
        "eval", help="evaluate policies or agents on a scenario and trace, print the metrics",
        description="Score policies (registry names, with parameters in parentheses) or agents (policy:NAME "
                    "through the Gymnasium env, or a saved agent's path) on scenarios and workloads or trace "
                    "files. Defaults: lru on streaming under the 'default' scenario, seed 0. Request traces "
                    "(request-trace Parquet files, request workloads such as 'rag(requests=100)') run the serving "
                    "engine under serving scenarios (default: the first of `kvgym scenarios --serving`), each "
                    "policy in every tier, with --admissions (default always).",
        epilog=keys_epilog(SweepConfig), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    add_grid_args(p)
    add_list_arg(p, "admissions", "serving: admission policy specs of write-through stores (default always)")
    p.add_argument("--json", metavar="FILE", help="also write the records as JSON")
    p.add_argument("--trust-pickle", action="store_true", dest="trust_pickle",
                   help="allow agents saved as SB3 .zip files (pickles: they can run code when loaded), each only "
                        "if its sha256 matches the one recorded in its agent.json")
    p.set_defaults(func=_cmd)
