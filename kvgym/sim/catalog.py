"""Named scenarios, the default scenario, and :func:`resolve_scenario`: the one way every part of
kvgym (``kvgym run``, ``oracle``, ``regret``, ``eval``, sweeps, the Gymnasium envs) turns what a
user wrote into a :class:`~kvgym.sim.scenario.Scenario`.

The named scenarios ship as data in ``kvgym/data/scenarios.json``, in three groups:

- ``default``: the single scenario :data:`DEFAULT_NAME` (``default``) used when none is given:
  measured H200 tiers, the ``overlap`` clock, fp16 pages, new KV created in HBM
  (``first_touch="create"``), prefetch off, and tier 0 (HBM) sized ``auto:0.5``: halfway between
  the trace's feasible minimum (its largest step's pages) and its footprint (every page it
  touches), so any trace fits and still evicts.
- ``parity``: kv-hierarchy-lab v0.1's five scenarios (``seed-toy`` tiers, ``serial`` costs).
- ``realistic``: ``h200-measured`` tiers with the ``overlap`` clock; tier 0 at 5%, 10% or 25%
  of the page table's stored bytes; fp16 / fp8 / int4 pages; prefetch off / on.

:func:`resolve_scenario` takes ``None`` (the default), a Scenario, a dict of Scenario fields, a
scenario name, or the path of a ``.json`` file holding a Scenario's fields (optionally under a
``"scenario"`` key), plus optional field overrides (``kvgym run --set``).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from kvgym.errors import ConfigError
from kvgym.files import read_json
from kvgym.sim.scenario import Scenario

GROUPS = ("default", "parity", "realistic")
DEFAULT_NAME = "default"


@cache
def _load() -> tuple[dict[str, Scenario], dict[str, str]]:
    where = "kvgym/data/scenarios.json"
    doc = read_json(resources.files("kvgym").joinpath("data/scenarios.json"), "scenario registry")
    if not isinstance(doc, dict) or doc.get("format") != "kvgym-scenarios/1":
        raise ConfigError(f"{where}: expected format 'kvgym-scenarios/1'")
    scen, group = {}, {}
    for i, entry in enumerate(doc["scenarios"]):
        entry = dict(entry)
        g = entry.pop("group", None)
        if g not in GROUPS:
            raise ConfigError(f"{where}: scenarios[{i}] group {g!r}; valid: {', '.join(GROUPS)}")
        s = Scenario.from_dict(entry)
        if s.name in scen:
            raise ConfigError(f"{where}: scenario {s.name!r} defined twice")
        scen[s.name], group[s.name] = s, g
    if DEFAULT_NAME not in scen:
        raise ConfigError(f"{where}: no {DEFAULT_NAME!r} scenario")
    return scen, group


def scenarios() -> dict[str, Scenario]:
    """Every named scenario, in file order."""
    return dict(_load()[0])


def scenario_names(group: str | None = None) -> list[str]:
    """Names in file order, optionally only those of ``group`` (``default``, ``parity``, ``realistic``)."""
    scen, grp = _load()
    return [n for n in scen if group is None or grp[n] == group]


def scenario_group(name: str) -> str:
    return _load()[1].get(name, "custom")


def get_scenario(name: str) -> Scenario:
    scen = _load()[0]
    if name not in scen:
        raise ConfigError(f"unknown scenario {name!r}; valid: {', '.join(scen)} (or a scenario .json file)")
    return scen[name]


def default_scenario() -> Scenario:
    """The scenario used when none is given (see the module docstring)."""
    return get_scenario(DEFAULT_NAME)


def read_scenario_file(path: str | Path) -> Scenario:
    """A scenario from a JSON file of its fields (optionally under a ``"scenario"`` key)."""
    d = read_json(path, "scenario file")
    if isinstance(d, dict) and set(d) >= {"scenario"} and isinstance(d["scenario"], dict):
        d = d["scenario"]
    if not isinstance(d, dict):
        raise ConfigError(f"scenario file {path}: expected a JSON object of scenario fields, got {type(d).__name__}")
    try:
        return Scenario.from_dict(d)
    except ConfigError as e:
        raise ConfigError(f"scenario file {path}: {e}") from None


def resolve_scenario(spec=None, overrides: dict | None = None) -> Scenario:
    """The scenario ``spec`` names (see the module docstring), with field ``overrides`` applied."""
    if spec is None:
        scen = default_scenario()
    elif isinstance(spec, Scenario):
        scen = spec
    elif isinstance(spec, dict):
        scen = Scenario.from_dict(spec)
    elif isinstance(spec, (str, Path)):
        text = str(spec)
        if not text.strip():
            raise ConfigError("scenario: an empty name; give a scenario name (kvgym scenarios) or a .json file")
        if text.endswith(".json") or (text not in _load()[0] and Path(text).is_file()):
            scen = read_scenario_file(text)
        else:
            scen = get_scenario(text)
    else:
        raise ConfigError(f"scenario: expected a name, a .json file, a table of fields or a Scenario, "
                          f"got {type(spec).__name__}")
    if overrides:
        scen = Scenario.from_dict({**scen.to_dict(), **overrides})
    return scen
