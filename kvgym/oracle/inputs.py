"""How the ``oracle`` and ``regret`` commands find their trace and scenario (one place each).

**Trace**: a Parquet trace path (``X.parquet`` with its page table beside it), or a workload name
with optional parameters in the harness's spec syntax, ``NAME`` or ``NAME(key=value,...)``
(:func:`kvgym.bench.specs.parse_call`; the workload registry checks names and types).

**Scenario**: ``None`` gives the built-in default :data:`DEFAULT_SCENARIO` (``h200-measured``
tiers, ``overlap`` costs, tier 0 at 10% of the page table's footprint); a path to a ``.json``
file holds a scenario's fields (a :class:`~kvgym.sim.scenario.Scenario` dict, optionally under a
``"scenario"`` key); any other string is a name of the harness registry
(:func:`kvgym.bench.scenarios.get_scenario`, ``kvgym scenarios`` lists them).
"""

from __future__ import annotations

import json
from pathlib import Path

from kvgym.errors import ConfigError
from kvgym.sim.scenario import Scenario
from kvgym.traces.format import Trace

DEFAULT_SCENARIO = Scenario(
    name="h200-overlap-10pct", profile="h200-measured", capacities=("10%", None, None, None),
    cost_model="overlap", description="built-in default of kvgym oracle/regret: measured H200 tiers, "
    "overlap clock, tier 0 at 10% of the footprint, lower tiers at the profile's capacities")


def resolve_scenario(spec: str | Scenario | None) -> Scenario:
    """The scenario named by ``spec`` (see the module docstring)."""
    if spec is None or isinstance(spec, Scenario):
        return spec or DEFAULT_SCENARIO
    if spec == DEFAULT_SCENARIO.name:
        return DEFAULT_SCENARIO
    path = Path(spec)
    if spec.endswith(".json"):
        if not path.is_file():
            raise ConfigError(f"scenario file {spec}: not found")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"scenario file {spec}: not JSON ({e.msg}, line {e.lineno})") from None
        if isinstance(d, dict) and isinstance(d.get("scenario"), dict):
            d = d["scenario"]
        if not isinstance(d, dict):
            raise ConfigError(f"scenario file {spec}: expected an object of scenario fields")
        return Scenario.from_dict(d)
    from kvgym.bench.scenarios import get_scenario

    return get_scenario(spec)


def resolve_trace(spec: str, seed: int = 0) -> tuple[Trace, str]:
    """``(trace, label)`` for a Parquet path or a workload spec (see the module docstring)."""
    if spec.endswith(".parquet"):
        from kvgym.traces.parquet import read_trace

        return read_trace(spec), Path(spec).name[: -len(".parquet")]
    from kvgym.bench.specs import parse_call
    from kvgym.workloads import make_trace

    name, params = parse_call(spec, "workload")
    return make_trace(name, seed=seed, **params), spec
