"""``kvgym run``: one scenario x trace x policy, printed as a metrics table."""

from __future__ import annotations

from pathlib import Path

from kvgym.callspec import parse_call, parse_sets
from kvgym.files import check_output, write_json


def load_trace(spec: str, seed: int):
    """A Parquet trace path (kept as a path so ``run`` streams it in row groups), or a workload
    spec (:func:`kvgym.workloads.resolve_trace`)."""
    if spec.endswith(".parquet") or Path(spec).is_file():
        return spec
    from kvgym.workloads import resolve_trace

    return resolve_trace(spec, seed, what="--trace")[0]


def cmd_run(args) -> int:
    from kvgym.sim import run
    from kvgym.sim.catalog import resolve_scenario
    from kvgym.sim.policy import make_policy, make_prefetcher

    if args.json:
        check_output(args.json, "--json")
    scen = resolve_scenario(args.scenario, parse_sets(args.sets, "--set"))
    policy, params = parse_call(args.policy, "--policy")
    make_policy(policy, **params)  # names and parameters fail here, before any work
    prefetcher = None
    if args.prefetcher is not None:
        name, pparams = parse_call(args.prefetcher, "--prefetcher")
        prefetcher = make_prefetcher(name, **pparams)
    trace = load_trace(args.trace, args.seed)
    m = run(trace, scen, policy, prefetcher, engine=args.engine, **params)
    d = m.to_dict()
    print(f"scenario {scen.name} ({scen.profile}, {scen.cost_model}, {scen.quantization}, "
          f"prefetch {'on' if scen.prefetch else 'off'}) | trace {args.trace} | policy {args.policy}")
    width = max(len(k) for k in d)
    for k, v in d.items():
        if isinstance(v, float):
            v = f"{v:,.3f}"
        elif isinstance(v, int):
            v = f"{v:,}"
        print(f"  {k:<{width}}  {v}")
    if args.json:
        write_json(args.json, {"scenario": scen.to_dict(), "trace": args.trace, "policy": args.policy,
                                      "metrics": d})
    return 0


def register(sub) -> None:
    p = sub.add_parser("run", help="simulate one trace under one scenario with one policy",
                       description="Simulate one trace (a Parquet file or a generated workload) under one scenario "
                                   "with one eviction policy (and optional prefetcher); print every metric.")
    p.add_argument("--trace", default="streaming",
                   help="Parquet trace path, or a workload spec NAME(key=value,...) (default: streaming)")
    p.add_argument("--seed", type=int, default=0, help="workload seed (default 0)")
    p.add_argument("--scenario", default=None,
                   help="scenario name (see `kvgym scenarios`) or a scenario JSON file (default: 'default', "
                        "tier 0 sized auto:0.5)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=V",
                   help="scenario field override, e.g. cost_model=serial (repeatable)")
    p.add_argument("--policy", default="lru",
                   help="eviction policy spec NAME(key=value,...), e.g. 'regret_aware(regret_weight=12)' (default lru)")
    p.add_argument("--prefetcher", default=None,
                   help="prefetcher spec NAME(key=value,...) (used when the scenario has prefetch on)")
    p.add_argument("--engine", default="compiled", choices=["compiled", "reference"],
                   help="compiled (default) or reference (the specification engine)")
    p.add_argument("--json", metavar="OUT", help="also write the metrics as JSON")
    p.set_defaults(func=cmd_run)
