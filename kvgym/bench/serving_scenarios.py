"""Named serving scenarios: the catalog the harness, ``kvgym run`` and ``kvgym eval`` share.

A serving scenario is a :class:`~kvgym.sim.serving.config.ServingConfig` (its ``name`` and
``description`` included), shipped as data in ``kvgym/data/serving_scenarios.json``; the admission
policy of write-through stores is chosen per run, not per scenario. :func:`resolve_serving_scenarios`
takes names, shell patterns (``gpu5_*``), the group name ``serving`` (all of them), ``.json`` files
of ServingConfig fields and inline tables of them.
"""

from __future__ import annotations

import fnmatch
from functools import cache
from importlib import resources
from pathlib import Path

from kvgym.errors import ConfigError, unknown_name
from kvgym.files import read_json
from kvgym.sim.serving.config import ServingConfig

GROUP = "serving"


@cache
def _load() -> dict[str, ServingConfig]:
    where = "kvgym/data/serving_scenarios.json"
    doc = read_json(resources.files("kvgym").joinpath("data/serving_scenarios.json"), "serving scenario registry")
    if not isinstance(doc, dict) or doc.get("format") != "kvgym-serving-scenarios/1":
        raise ConfigError(f"{where}: expected format 'kvgym-serving-scenarios/1'")
    out: dict[str, ServingConfig] = {}
    for entry in doc["scenarios"]:
        s = ServingConfig.from_dict(entry)
        if s.name in out:
            raise ConfigError(f"{where}: serving scenario {s.name!r} defined twice")
        out[s.name] = s
    return out


def serving_scenarios() -> dict[str, ServingConfig]:
    """Every named serving scenario, in file order."""
    return dict(_load())


def serving_scenario_names() -> list[str]:
    return list(_load())


def get_serving_scenario(name: str) -> ServingConfig:
    if name not in _load():
        raise unknown_name("serving scenario", name, _load())
    return _load()[name]


def resolve_serving_scenario(spec) -> ServingConfig:
    """One serving scenario from a name, a ServingConfig, a table of its fields or a ``.json`` file."""
    if isinstance(spec, ServingConfig):
        return spec
    if isinstance(spec, dict):
        return ServingConfig.from_dict(spec)
    if isinstance(spec, str) and spec.endswith(".json"):
        d = read_json(Path(spec), "serving scenario")
        if not isinstance(d, dict):
            raise ConfigError(f"{spec}: a serving scenario file holds a JSON object of ServingConfig fields")
        return ServingConfig.from_dict(d)
    if isinstance(spec, str):
        return get_serving_scenario(spec)
    raise ConfigError(f"serving scenario {spec!r}: expected a name, a pattern, a .json file or a table of "
                      "ServingConfig fields")


def resolve_serving_scenarios(specs) -> list[ServingConfig]:
    """Serving scenarios for a list of names, patterns, ``serving`` (all), files or tables (order
    kept, duplicates dropped)."""
    if isinstance(specs, (str, dict)):
        specs = [specs]
    out: dict[str, ServingConfig] = {}
    for spec in specs:
        if spec == GROUP:
            for s in _load().values():
                out.setdefault(s.name, s)
        elif isinstance(spec, str) and any(ch in spec for ch in "*?["):
            names = [n for n in _load() if fnmatch.fnmatchcase(n, spec)]
            if not names:
                raise ConfigError(f"serving scenario pattern {spec!r} matches nothing; valid: "
                                  f"{', '.join(serving_scenario_names())}")
            for n in names:
                out.setdefault(n, _load()[n])
        else:
            s = resolve_serving_scenario(spec)
            out.setdefault(s.name, s)
    return list(out.values())


def describe(s: ServingConfig) -> str:
    """One line: tiers and capacities, write policy, lookup and load overlap."""
    caps = s.capacities or (None,) * len(s.tiers)
    tiers = " + ".join(f"{t} {'unbounded' if c is None else c}" for t, c in zip(s.tiers, caps))
    write = s.write_policy if len(s.tiers) > 1 else "one tier (evictions drop)"
    return (f"{s.profile} {tiers} (blocks), {write}, lookup {s.lookup}, loads {s.load_overlap}, "
            f"{s.geometry} {s.quantization}")
