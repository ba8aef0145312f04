"""How the ``oracle`` and ``regret`` commands find their trace (scenarios: :mod:`kvgym.sim.catalog`).

**Trace**: a Parquet trace path (``X.parquet`` with its page table beside it), or a workload name
with optional parameters in the harness's spec syntax, ``NAME`` or ``NAME(key=value,...)``
(:func:`kvgym.callspec.parse_call`; the workload registry checks names and types).
"""

from __future__ import annotations

from pathlib import Path

from kvgym.errors import ConfigError
from kvgym.traces.format import Trace


def resolve_trace(spec: str, seed: int = 0) -> tuple[Trace, str]:
    """``(trace, label)`` for a Parquet path or a workload spec (see the module docstring)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError("trace: an empty name; give a Parquet trace or a workload (kvgym trace gallery)")
    if spec.endswith(".parquet"):
        from kvgym.traces.parquet import read_trace

        return read_trace(spec), Path(spec).name[: -len(".parquet")]
    from kvgym.callspec import parse_call
    from kvgym.workloads import make_trace

    name, params = parse_call(spec, "workload")
    return make_trace(name, seed=seed, **params), spec
