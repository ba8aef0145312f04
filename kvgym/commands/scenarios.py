"""``kvgym scenarios``: list the harness's named scenarios with their parameters."""

from __future__ import annotations

import json


def _cmd(args) -> int:
    from kvgym.bench.scenarios import GROUPS, describe, scenario_names, scenarios
    from kvgym.errors import ConfigError

    if args.serving:
        return _serving(args)
    if args.group and args.group not in GROUPS:
        raise ConfigError(f"unknown scenario group {args.group!r}; valid: {', '.join(GROUPS)}")
    scen = scenarios()
    names = scenario_names(args.group)
    if args.json:
        print(json.dumps([{"group": describe(scen[n])["group"], **scen[n].to_dict()} for n in names], indent=1))
        return 0
    rows = [describe(scen[n]) for n in names]
    cols = list(rows[0]) if rows else []
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(width[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(width[c]) for c in cols))
    print(f"\n{len(rows)} scenarios. Capacities are bytes per tier (tier 0 first); 'N%' is a share of the "
          "total stored bytes of the trace's page table; 'auto:F' sits at F of the way from the largest step's "
          "pages to every page the trace touches; 'N pages' is N times the largest page; 'profile' keeps the "
          "profile's value. "
          "`kvgym scenarios --json` prints every field.")
    return 0


def _serving(args) -> int:
    from kvgym.bench.serving_scenarios import describe, serving_scenarios

    scen = serving_scenarios()
    if args.json:
        print(json.dumps([s.to_dict() for s in scen.values()], indent=1))
        return 0
    width = max(len(n) for n in scen)
    for n, s in scen.items():
        print(f"{n.ljust(width)}  {describe(s)}")
    print(f"\n{len(scen)} serving scenarios (kvgym/data/serving_scenarios.json), for request traces. Capacities are "
          "blocks per tier (tier 0 first); 'N%' is a share of the trace's distinct blocks. "
          "`kvgym scenarios --serving --json` prints every field.")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("scenarios", help="list the benchmark scenarios and their parameters",
                              description="List the named scenarios of the benchmark harness "
                                          "(kvgym/data/scenarios.json): the default one, kv-hierarchy-lab's "
                                          "five parity scenarios and the realistic H200 ones.")
    p.add_argument("--group", help="only this group: default, parity or realistic")
    p.add_argument("--json", action="store_true", help="print every field as JSON")
    p.add_argument("--serving", action="store_true", help="the serving scenarios (for request traces) instead")
    p.set_defaults(func=_cmd)
