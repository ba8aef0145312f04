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


def serving_source(spec: str) -> bool:
    """Whether ``--trace`` names a request trace: a request-trace Parquet (by its schema), a request
    workload or a dataset (:mod:`kvgym.workloads.request_sources`), rather than a decode trace."""
    from kvgym.errors import ConfigError
    from kvgym.workloads import workload_names
    from kvgym.workloads.request_sources import is_request_file, source_kind

    if spec.endswith(".parquet") or Path(spec).is_file():
        return is_request_file(spec)
    try:
        return parse_call(spec, "--trace")[0] not in workload_names() and source_kind(spec) in ("workload", "dataset")
    except ConfigError:
        return False


def print_metrics(head: str, d: dict) -> None:
    """The metrics table ``kvgym run`` prints: a header line, then one line per metric."""
    print(head)
    width = max(len(k) for k in d)
    for k, v in d.items():
        if isinstance(v, float):
            v = f"{v:,.3f}"
        elif isinstance(v, int):
            v = f"{v:,}"
        print(f"  {k:<{width}}  {v}")


def cmd_run_serving(args) -> int:
    """``kvgym run`` on a request trace: the serving engine under a serving scenario."""
    from kvgym.bench.serving import simulate
    from kvgym.bench.serving_scenarios import resolve_serving_scenario, serving_scenario_names
    from kvgym.callspec import fmt_call
    from kvgym.errors import ConfigError
    from kvgym.sim.policy import make_admission, make_policy
    from kvgym.sim.serving.config import ServingConfig
    from kvgym.workloads.request_sources import request_trace

    if args.prefetcher is not None:
        raise ConfigError("--prefetcher applies to decode traces; serving mode has no prefetcher")
    scen = resolve_serving_scenario(args.scenario or serving_scenario_names()[0])
    if args.sets:
        scen = ServingConfig.from_dict({**scen.to_dict(), **parse_sets(args.sets, "--set")})
    policy = parse_call(args.policy, "--policy")
    lower = parse_call(args.lower, "--lower") if args.lower else policy
    adm = parse_call(args.admission, "--admission") if args.admission else ("always", {})
    make_policy(policy[0], **policy[1])  # names and parameters fail here, before any work
    make_policy(lower[0], **lower[1])
    make_admission(adm[0], **adm[1])
    trace = request_trace(args.trace, args.seed)
    d = simulate(trace, scen, policy, adm, lower, engine=args.engine).to_dict()
    caps = "/".join("unbounded" if c is None else str(c) for c in (scen.capacities or (None,) * len(scen.tiers)))
    print_metrics(f"serving scenario {scen.name} ({scen.profile}, {'+'.join(scen.tiers)} {caps} blocks, "
                  f"{scen.write_policy}) | trace {args.trace} ({len(trace)} requests) | policy {fmt_call(*policy)} | "
                  f"lower {fmt_call(*lower)} | admission {fmt_call(*adm)}", d)
    if args.json:
        write_json(args.json, {"mode": "serving", "scenario": scen.to_dict(), "trace": args.trace,
                               "policy": fmt_call(*policy), "lower": fmt_call(*lower), "admission": fmt_call(*adm),
                               "metrics": d})
    return 0


def cmd_run(args) -> int:
    from kvgym.errors import ConfigError
    from kvgym.sim import run
    from kvgym.sim.catalog import resolve_scenario
    from kvgym.sim.policy import make_policy, make_prefetcher

    if args.json:
        check_output(args.json, "--json")
    if serving_source(args.trace):
        return cmd_run_serving(args)
    if args.lower or args.admission:
        raise ConfigError("--lower and --admission apply to serving (request) traces")
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
    print_metrics(f"scenario {scen.name} ({scen.profile}, {scen.cost_model}, {scen.quantization}, "
                  f"prefetch {'on' if scen.prefetch else 'off'}) | trace {args.trace} | policy {args.policy}", d)
    if args.json:
        write_json(args.json, {"scenario": scen.to_dict(), "trace": args.trace, "policy": args.policy,
                                      "metrics": d})
    return 0


def register(sub) -> None:
    p = sub.add_parser("run", help="simulate one trace under one scenario with one policy",
                       description="Simulate one trace (a Parquet file or a generated workload) under one scenario "
                                   "with one eviction policy (and optional prefetcher); print every metric. A request "
                                   "trace (a request-trace Parquet, a request workload such as 'rag(requests=100)', or "
                                   "a dataset such as mooncake-synthetic) runs the serving engine under a serving "
                                   "scenario (`kvgym scenarios --serving`), the policy in every tier unless --lower "
                                   "names another.")
    p.add_argument("--trace", default="streaming",
                   help="Parquet trace path (decode or request trace), or a workload spec NAME(key=value,...) "
                        "(default: streaming)")
    p.add_argument("--seed", type=int, default=0, help="workload seed (default 0)")
    p.add_argument("--scenario", default=None,
                   help="scenario name (see `kvgym scenarios`) or a scenario JSON file (default: 'default', "
                        "tier 0 sized auto:0.5); for a request trace, a serving scenario (default: the first listed)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=V",
                   help="scenario field override, e.g. cost_model=serial (repeatable)")
    p.add_argument("--policy", default="lru",
                   help="eviction policy spec NAME(key=value,...), e.g. 'regret_aware(regret_weight=12)' (default lru)")
    p.add_argument("--prefetcher", default=None,
                   help="prefetcher spec NAME(key=value,...) (used when the scenario has prefetch on)")
    p.add_argument("--lower", default=None, help="serving: the lower tiers' policy spec (default: --policy's)")
    p.add_argument("--admission", default=None,
                   help="serving: admission policy spec of write-through stores, e.g. 'threshold(store_threshold=2)' "
                        "(default always)")
    p.add_argument("--engine", default="compiled", choices=["compiled", "reference"],
                   help="compiled (default) or reference (the specification engine)")
    p.add_argument("--json", metavar="OUT", help="also write the metrics as JSON")
    p.set_defaults(func=cmd_run)
