"""Seeded synthetic trace generators, found by name.

A workload is a function ``gen(rng: numpy.random.Generator, **params) -> Trace`` registered
with :func:`register_workload` together with its documented default parameters.
:func:`make_trace` merges overrides into the defaults (unknown keys are errors listing the valid
ones; a value must have its default's type), seeds a ``numpy.random.Generator(PCG64(seed))`` and
records generator, parameters and seed in ``trace.meta``. Same name, parameters and seed give
identical arrays (and, through :func:`kvgym.traces.parquet.write_trace`, identical files).

Long generators call :func:`report_progress` once per decode step; :func:`make_trace`'s
``progress`` callback receives ``(done, total)`` (the CLI draws a progress bar with it).

Importing this package imports every module in it, so each generator module registers itself.
The catalogue with every rule, parameter and default is ``docs/workloads.md``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kvgym.errors import ConfigError, unknown_name
from kvgym.traces.format import Trace, validate


@dataclass(frozen=True)
class Workload:
    name: str
    fn: Callable[..., Trace]
    defaults: dict
    doc: str

    @property
    def summary(self) -> str:
        """First line of the generator's docstring."""
        return self.doc.splitlines()[0] if self.doc else ""


_WORKLOADS: dict[str, Workload] = {}
_ACCESS_SEQ: dict[str, Callable[[Trace], np.ndarray]] = {}
_PROGRESS: ContextVar[Callable[[int, int], None] | None] = ContextVar("kvgym_workload_progress", default=None)


def register_workload(name: str, **defaults):
    """Decorator: register ``fn(rng, **params) -> Trace`` under ``name`` with its defaults."""
    def deco(fn):
        _WORKLOADS[name] = Workload(name, fn, dict(defaults), (fn.__doc__ or "").strip())
        return fn
    return deco


def register_access_seq(name: str):
    """Decorator: register ``fn(trace) -> int64[n]``, the request of each access of a trace made by
    workload ``name``, for workloads where one page serves several requests (shared prefixes)."""
    def deco(fn):
        _ACCESS_SEQ[name] = fn
        return fn
    return deco


def access_seq(trace: Trace) -> np.ndarray | None:
    """Per-access request ids when the generator that made ``trace`` (``meta["generator"]``)
    registered them, else ``None`` (the page table's ``seq`` then says each access's request)."""
    _load()
    fn = _ACCESS_SEQ.get(str(trace.meta.get("generator")))
    return None if fn is None else fn(trace)


def _load() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def workloads() -> dict[str, Workload]:
    _load()
    return dict(_WORKLOADS)


def workload_names() -> list[str]:
    return sorted(workloads())


def get_workload(name: str) -> Workload:
    """The registered workload ``name``; an unknown name raises listing the valid ones."""
    wl = workloads()
    if name not in wl:
        raise unknown_name("workload", name, wl)
    return wl[name]


def report_progress(done: int, total: int) -> None:
    """Called by generators (steps done, steps in all); forwards to :func:`make_trace`'s callback."""
    cb = _PROGRESS.get()
    if cb is not None:
        cb(int(done), int(total))


def _check_type(wname: str, key: str, value, default):
    """``value`` converted to ``default``'s type, or a ConfigError naming the parameter."""
    want = type(default)
    if want is bool:
        ok = isinstance(value, (bool, np.bool_))
    elif want is int:
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    elif want is float:
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    else:
        ok = isinstance(value, want)
    if not ok:
        raise ConfigError(f"workload {wname!r}: parameter {key!r} must be {want.__name__} "
                          f"(default {default!r}), got {value!r}")
    return want(value)


def make_trace(name: str, seed: int = 0, *, progress: Callable[[int, int], None] | None = None, **params) -> Trace:
    """Generate workload ``name`` with ``params`` overriding its defaults.

    ``progress(done, total)``, if given, is called as the generator advances (decode steps).
    """
    w = get_workload(name)
    unknown = set(params) - set(w.defaults)
    if unknown:
        raise ConfigError(f"workload {name!r}: unknown parameters {sorted(unknown)}; valid: {', '.join(sorted(w.defaults))}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"workload {name!r}: seed must be an int >= 0, got {seed!r}")
    full = {k: _check_type(name, k, params[k], d) if k in params else d for k, d in w.defaults.items()}
    token = _PROGRESS.set(progress)
    try:
        trace = w.fn(np.random.Generator(np.random.PCG64(int(seed))), **full)
    finally:
        _PROGRESS.reset(token)
    trace.meta.update(generator=name, params=full, seed=int(seed))
    validate(trace, f"workload {name!r}")
    return trace


def resolve_trace(spec: str, seed: int = 0, *, progress: Callable[[int, int], None] | None = None,
                  what: str = "trace") -> tuple[Trace, str]:
    """``(trace, label)`` for a Parquet trace path (``X.parquet``, its page table beside it) or a
    workload spec ``NAME`` / ``NAME(key=value,...)`` (:func:`kvgym.callspec.parse_call`; the
    registry checks names and types), generated with ``seed``. The one reading of ``--trace``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"{what}: an empty name; give a Parquet trace or a workload (kvgym list workloads)")
    if spec.endswith(".parquet"):
        from kvgym.traces.parquet import read_trace

        return read_trace(spec), Path(spec).name[: -len(".parquet")]
    from kvgym.callspec import parse_call

    name, params = parse_call(spec, "workload")
    return make_trace(name, seed=seed, progress=progress, **params), spec
