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


def cmd_run(args) -> int:
    from kvgym.sim import run
    from kvgym.sim.catalog import resolve_scenario
    from kvgym.sim.policy import make_policy, make_prefetcher

    if args.json:
        check_output(args.json, "--json")
    scen = resolve_scenario(args.scenario, parse_kv(args.set, "--set"))
    params = parse_kv(args.param, "--param")
    make_policy(args.policy, **params)  # names and parameters fail here, before any work
    if args.prefetcher is not None:
        make_prefetcher(args.prefetcher)
    trace = load_trace(args.trace, args.seed, args.wparam)
    m = run(trace, scen, args.policy, args.prefetcher, engine=args.engine, **params)
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
    p.add_argument("--trace", default="streaming", help="Parquet trace path, or a workload name (default: streaming)")
    p.add_argument("--seed", type=int, default=0, help="workload seed (default 0)")
    p.add_argument("--wparam", action="append", metavar="K=V", help="workload parameter override (repeatable)")
    p.add_argument("--scenario", default=None,
                   help="scenario name (see `kvgym scenarios`) or a scenario JSON file (default: 'default', "
                        "tier 0 sized auto:0.5)")
    p.add_argument("--set", action="append", metavar="FIELD=V", help="scenario field override, e.g. cost_model=serial")
    p.add_argument("--policy", default="lru", help="eviction policy name (default lru)")
    p.add_argument("--param", action="append", metavar="K=V", help="policy parameter (repeatable)")
    p.add_argument("--prefetcher", default=None, help="prefetcher name (used when the scenario has prefetch on)")
    p.add_argument("--engine", default="compiled", choices=["compiled", "reference"],
                   help="compiled (default) or reference (the specification engine)")
    p.add_argument("--json", metavar="OUT", help="also write the metrics as JSON")
    p.set_defaults(func=cmd_run)
