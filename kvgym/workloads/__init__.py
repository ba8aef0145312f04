"""Seeded synthetic trace generators, found by name.

A workload is a function ``gen(rng: numpy.random.Generator, **params) -> Trace`` registered
with :func:`register_workload` together with its documented default parameters.
:func:`make_trace` merges overrides into the defaults (unknown keys are errors listing the valid
ones), seeds a ``numpy.random.Generator(PCG64(seed))`` and records generator, parameters and
seed in ``trace.meta``. Same name, parameters and seed give identical arrays.

Importing this package imports every module in it, so each generator module registers itself.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

import numpy as np

from kvgym.errors import ConfigError, unknown_name
from kvgym.traces.format import Trace, validate


@dataclass(frozen=True)
class Workload:
    name: str
    fn: Callable[..., Trace]
    defaults: dict
    doc: str


_WORKLOADS: dict[str, Workload] = {}


def register_workload(name: str, **defaults):
    """Decorator: register ``fn(rng, **params) -> Trace`` under ``name`` with its defaults."""
    def deco(fn):
        _WORKLOADS[name] = Workload(name, fn, dict(defaults), (fn.__doc__ or "").strip())
        return fn
    return deco


def _load() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def workloads() -> dict[str, Workload]:
    _load()
    return dict(_WORKLOADS)


def workload_names() -> list[str]:
    return sorted(workloads())


def make_trace(name: str, seed: int = 0, **params) -> Trace:
    """Generate workload ``name`` with ``params`` overriding its defaults."""
    wl = workloads()
    if name not in wl:
        raise unknown_name("workload", name, wl)
    w = wl[name]
    unknown = set(params) - set(w.defaults)
    if unknown:
        raise ConfigError(f"workload {name!r}: unknown parameters {sorted(unknown)}; valid: {', '.join(sorted(w.defaults))}")
    full = {**w.defaults, **params}
    trace = w.fn(np.random.Generator(np.random.PCG64(seed)), **full)
    trace.meta.update(generator=name, params=full, seed=seed)
    validate(trace, f"workload {name!r}")
    return trace
