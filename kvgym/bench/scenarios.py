"""The harness's named scenarios, shipped as data in ``kvgym/data/scenarios.json``.

Two groups:

- ``parity``: kv-hierarchy-lab v0.1's five scenarios (``small_fp16_prefetch``,
  ``small_fp16_no_prefetch``, ``small_int4_no_prefetch``, ``base_fp8_prefetch``,
  ``constrained_fp16_prefetch``): ``seed-toy`` tiers with the original capacities (bytes),
  ``serial`` costs, the fixed per-page decode penalty (``decode="parity"``) and one policy for
  every tier (``lower_policy="same"``). Equal, field for field, to the scenarios that
  :func:`kvgym.traces.parity.load_cell` builds from the parity cells.
- ``realistic``: ``h200-measured`` tiers with the ``overlap`` clock; tier 0 (HBM) holds 5%, 10%
  or 25% of the trace's footprint (the page table's total stored bytes under the scenario's
  quantization), lower tiers keep the profile's capacities; fp16 / fp8 / int4 pages; prefetch
  off / on.

Every entry is a :class:`kvgym.sim.scenario.Scenario`; :func:`resolve_scenarios` also accepts
shell-style patterns (``h200_*``) and inline scenario dicts from a config file.
"""

from __future__ import annotations

import fnmatch
import json
from functools import cache
from importlib import resources

from kvgym.errors import ConfigError
from kvgym.sim.scenario import Scenario

GROUPS = ("parity", "realistic")


@cache
def _load() -> tuple[dict[str, Scenario], dict[str, str]]:
    doc = json.loads(resources.files("kvgym").joinpath("data/scenarios.json").read_text())
    if doc.get("format") != "kvgym-scenarios/1":
        raise ConfigError(f"kvgym/data/scenarios.json: format {doc.get('format')!r}, expected 'kvgym-scenarios/1'")
    scen, group = {}, {}
    for i, entry in enumerate(doc["scenarios"]):
        entry = dict(entry)
        g = entry.pop("group", "custom")
        if g not in GROUPS:
            raise ConfigError(f"kvgym/data/scenarios.json: scenarios[{i}] group {g!r}; valid: {', '.join(GROUPS)}")
        s = Scenario.from_dict(entry)
        if s.name in scen:
            raise ConfigError(f"kvgym/data/scenarios.json: scenario {s.name!r} defined twice")
        scen[s.name], group[s.name] = s, g
    return scen, group


def scenarios() -> dict[str, Scenario]:
    """Every named scenario, in file order."""
    return dict(_load()[0])


def scenario_names(group: str | None = None) -> list[str]:
    """Names in file order, optionally only those of ``group`` (``parity`` / ``realistic``)."""
    scen, grp = _load()
    return [n for n in scen if group is None or grp[n] == group]


def scenario_group(name: str) -> str:
    return _load()[1].get(name, "custom")


def get_scenario(name: str) -> Scenario:
    scen = _load()[0]
    if name not in scen:
        raise ConfigError(f"unknown scenario {name!r}; valid: {', '.join(scen)} "
                          f"(or a pattern such as 'h200_*', or the groups {', '.join(GROUPS)})")
    return scen[name]


def resolve_scenarios(specs) -> list[Scenario]:
    """Scenario objects for a list of names, patterns, group names or inline dicts (order kept,
    duplicates dropped). Unknown names are errors listing the valid ones."""
    if isinstance(specs, (str, dict)):
        specs = [specs]
    out: dict[str, Scenario] = {}
    for spec in specs:
        if isinstance(spec, Scenario):
            out.setdefault(spec.name, spec)
        elif isinstance(spec, dict):
            s = Scenario.from_dict(spec)
            out.setdefault(s.name, s)
        elif isinstance(spec, str):
            if spec in GROUPS:
                names = scenario_names(spec)
            elif any(ch in spec for ch in "*?["):
                names = [n for n in scenario_names() if fnmatch.fnmatchcase(n, spec)]
                if not names:
                    raise ConfigError(f"scenario pattern {spec!r} matches nothing; valid: {', '.join(scenario_names())}")
            else:
                names = [get_scenario(spec).name]
            for n in names:
                out.setdefault(n, get_scenario(n))
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
