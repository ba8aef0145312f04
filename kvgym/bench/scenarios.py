"""The harness's view of the named scenarios: groups and patterns for sweeps, and one-line descriptions.

The scenarios themselves, the default and the single-scenario resolver live in
:mod:`kvgym.sim.catalog` (``kvgym/data/scenarios.json``); they are re-exported here for the
harness. Groups: ``default``, ``parity`` (kv-hierarchy-lab v0.1's five, equal field for field to
the scenarios :func:`kvgym.bench.parity.load_cell` builds) and ``realistic`` (``h200-measured``
tiers, ``overlap`` clock, tier 0 at 5%, 10% or 25% of the page table's stored bytes, fp16 / fp8
/ int4, prefetch off / on).

:func:`resolve_scenarios` takes lists of names, shell-style patterns (``h200_*``), group names,
scenario ``.json`` files and inline scenario tables from a config file.
"""

from __future__ import annotations

import fnmatch

from kvgym.errors import ConfigError
from kvgym.sim.catalog import (  # noqa: F401  (re-exported for the harness)
    GROUPS,
    get_scenario,
    resolve_scenario,
    scenario_group,
    scenario_names,
    scenarios,
)
from kvgym.sim.scenario import Scenario


def resolve_scenarios(specs) -> list[Scenario]:
    """Scenario objects for a list of names, patterns, group names, ``.json`` files or inline
    dicts (order kept, duplicates dropped). Unknown names are errors listing the valid ones."""
    if isinstance(specs, (str, dict)):
        specs = [specs]
    out: dict[str, Scenario] = {}
    for spec in specs:
        if isinstance(spec, Scenario):
            out.setdefault(spec.name, spec)
        elif isinstance(spec, str) and spec in GROUPS:
            for n in scenario_names(spec):
                out.setdefault(n, get_scenario(n))
        elif isinstance(spec, str) and any(ch in spec for ch in "*?["):
            names = [n for n in scenario_names() if fnmatch.fnmatchcase(n, spec)]
            if not names:
                raise ConfigError(f"scenario pattern {spec!r} matches nothing; valid: {', '.join(scenario_names())}")
            for n in names:
                out.setdefault(n, get_scenario(n))
        elif isinstance(spec, (str, dict)):
            s = resolve_scenario(spec)
            out.setdefault(s.name, s)
        else:
            raise ConfigError(f"scenario entry {spec!r}: expected a name, a pattern or a table of Scenario fields")
    return list(out.values())


def describe(s: Scenario) -> dict:
    """One row of ``kvgym scenarios``: the fields a reader compares."""
    caps = ["profile" if c is None else c for c in s.capacities] or ["profile"]
    return {"name": s.name, "group": scenario_group(s.name), "profile": s.profile,
            "capacities": "/".join(str(c) for c in caps), "cost": s.cost_model, "quant": s.quantization,
            "decode": s.decode, "prefetch": "on" if s.prefetch else "off", "max_prefetch": s.max_prefetch,
            "lower": s.lower_policy, "first_touch": s.first_touch}


def scenario_line(row: dict) -> str:
    """One line from :func:`kvgym.bench.scenarios.describe`'s fields."""
    return (f"{row['group']}: {row['profile']} tiers {row['capacities']}, {row['cost']} costs, {row['quant']}, "
            f"prefetch {row['prefetch']}")
