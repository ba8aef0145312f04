"""``kvgym run``: one scenario x trace x policy, printed as a metrics table."""

from __future__ import annotations

import json
from pathlib import Path

from kvgym.errors import ConfigError
from kvgym.files import check_output, write_json


def parse_kv(items, what: str) -> dict:
    """``["k=v", ...]`` -> dict; values parsed as JSON when possible (numbers, bools, lists), else strings."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"{what}: expected key=value, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except (ValueError, RecursionError):  # not JSON (or absurdly nested): the text itself
            out[k.strip()] = v
    return out


def load_trace(spec: str, seed: int, items):
    """A Parquet trace path (kept as a path so ``run`` streams it in row groups), or a workload
    name generated with ``--wparam`` overrides typed by the registry (``parse_params``)."""
    if not spec.strip():
        raise ConfigError("--trace: an empty name; give a Parquet trace or a workload name (kvgym trace gallery)")
    if spec.endswith(".parquet") or Path(spec).is_file():
        if items:
            raise ConfigError("--wparam applies to generated workloads, not to trace files")
        return spec
    from kvgym.workloads import make_trace, parse_params

    return make_trace(spec, seed=seed, **parse_params(spec, items or []))


def serving_source(spec: str) -> bool:
    """Whether ``--trace`` names a request trace: a request-trace Parquet (by its schema), a request
    workload or a dataset name (:mod:`kvgym.traces.request_sources`), rather than a decode trace."""
    from kvgym.callspec import parse_call
    from kvgym.traces.request_sources import is_request_file, source_kind
    from kvgym.workloads import workload_names

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
    from kvgym.callspec import fmt_call, parse_call
    from kvgym.sim.policy import make_admission, make_policy
    from kvgym.sim.serving.config import ServingConfig
    from kvgym.traces.request_sources import request_trace

    if args.prefetcher is not None:
        raise ConfigError("--prefetcher applies to decode traces; serving mode has no prefetcher")
    scen = resolve_serving_scenario(args.scenario or serving_scenario_names()[0])
    if args.set:
        scen = ServingConfig.from_dict({**scen.to_dict(), **parse_kv(args.set, "--set")})
    name, params = parse_call(args.policy, "--policy")
    params.update(parse_kv(args.param, "--param"))
    lower = parse_call(args.lower, "--lower") if args.lower else (name, params)
    adm = parse_call(args.admission, "--admission") if args.admission else ("always", {})
    make_policy(name, **params)  # names and parameters fail here, before any work
    make_policy(lower[0], **lower[1])
    make_admission(adm[0], **adm[1])
    wparams = parse_kv(args.wparam, "--wparam")
    trace = request_trace(args.trace, args.seed, wparams)
    m = simulate(trace, scen, (name, params), adm, lower)
    d = m.to_dict()
    caps = "/".join("unbounded" if c is None else str(c) for c in (scen.capacities or (None,) * len(scen.tiers)))
    print_metrics(f"serving scenario {scen.name} ({scen.profile}, {'+'.join(scen.tiers)} {caps} blocks, "
                  f"{scen.write_policy}) | trace {args.trace} ({len(trace)} requests) | policy {fmt_call(name, params)}"
                  f" | lower {fmt_call(*lower)} | admission {fmt_call(*adm)}", d)
    if args.json:
        write_json(args.json, {"mode": "serving", "scenario": scen.to_dict(), "trace": args.trace, "policy": fmt_call(name, params),
                               "lower": fmt_call(*lower), "admission": fmt_call(*adm), "metrics": d})
    return 0


def cmd_run(args) -> int:
    from kvgym.sim import run
    from kvgym.sim.catalog import resolve_scenario
    from kvgym.sim.policy import make_policy, make_prefetcher

    if args.json:
        check_output(args.json, "--json")
    if serving_source(args.trace):
        return cmd_run_serving(args)
    if args.lower or args.admission:
        raise ConfigError("--lower and --admission apply to serving (request) traces")
    scen = resolve_scenario(args.scenario, parse_kv(args.set, "--set"))
    params = parse_kv(args.param, "--param")
    make_policy(args.policy, **params)  # names and parameters fail here, before any work
    if args.prefetcher is not None:
        make_prefetcher(args.prefetcher)
    trace = load_trace(args.trace, args.seed, args.wparam)
    m = run(trace, scen, args.policy, args.prefetcher, engine=args.engine, **params)
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
                                   "trace (a request-trace Parquet, a request workload such as rag, or a dataset such "
                                   "as mooncake-synthetic) runs the serving engine under a serving scenario "
                                   "(`kvgym scenarios --serving`), the policy in every tier unless --lower is given.")
    p.add_argument("--trace", default="streaming", help="Parquet trace path (decode or request trace), or a workload "
                                                         "or dataset name (default: streaming)")
    p.add_argument("--seed", type=int, default=0, help="workload seed (default 0)")
    p.add_argument("--wparam", action="append", metavar="K=V", help="workload parameter override (repeatable)")
    p.add_argument("--scenario", default=None,
                   help="scenario name (see `kvgym scenarios`) or a scenario JSON file (default: 'default', "
                        "tier 0 sized auto:0.5); for a request trace, a serving scenario (default: the first listed)")
    p.add_argument("--set", action="append", metavar="FIELD=V", help="scenario field override, e.g. cost_model=serial")
    p.add_argument("--policy", default="lru", help="eviction policy, NAME or NAME(k=v,...) (default lru)")
    p.add_argument("--param", action="append", metavar="K=V", help="policy parameter (repeatable)")
    p.add_argument("--prefetcher", default=None, help="prefetcher name (used when the scenario has prefetch on)")
    p.add_argument("--lower", default=None, help="serving: the lower tiers' policy spec (default: --policy's)")
    p.add_argument("--admission", default=None,
                   help="serving: admission policy of write-through stores, e.g. 'threshold(store_threshold=2)' "
                        "(default always)")
    p.add_argument("--engine", default="compiled", choices=["compiled", "reference"],
                   help="compiled (default) or reference (the specification engine)")
    p.add_argument("--json", metavar="OUT", help="also write the metrics as JSON")
    p.set_defaults(func=cmd_run)
