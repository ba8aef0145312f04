"""Where an episode's trace comes from: a Trace, a Parquet file, or a workload drawn from a split.

:class:`TraceSource` resolves the ``trace`` argument of the env (and of
``reset(options={"trace": ...})``) and caches recently used traces, so resetting onto the same
trace does not regenerate or re-read it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kvgym.envs.config import Splits
from kvgym.errors import ConfigError
from kvgym.traces.format import Trace


@dataclass(frozen=True)
class Drawn:
    """A resolved episode trace and a label for logs and ``info``."""

    trace: Trace
    label: str


def _looks_like_path(s: str) -> bool:
    return s.endswith(".parquet") or "/" in s or "\\" in s or Path(s).exists()


class TraceSource:
    """Resolves trace specs; the default spec is a workload drawn from ``split`` of ``splits``.

    A spec is a :class:`Trace`, a path to a kvgym Parquet trace, a registered workload name (its
    seed drawn uniformly from the split's seeds, parameters ``workload_params``), or a
    list/tuple of those (one drawn uniformly per episode).
    """

    def __init__(self, default, workload: str, workload_params: dict | None, split: str, splits: Splits,
                 cache_size: int = 4):
        self.default = default
        self.workload = workload
        self.params = dict(workload_params or {})
        self.splits = splits
        self.split = split
        self.seeds = splits.seeds(split)  # validates the split name
        self._cache: OrderedDict = OrderedDict()
        self.cache_size = cache_size
        if not isinstance(workload, str):
            raise ConfigError(f"workload must be a workload name, got {workload!r}")

    def draw(self, spec, rng: np.random.Generator) -> Drawn:
        if spec is None:
            spec = self.default if self.default is not None else self.workload
        if isinstance(spec, (list, tuple)):
            if not spec:
                raise ConfigError("trace: an empty list of traces")
            spec = spec[int(rng.integers(len(spec)))]
        if isinstance(spec, Trace):
            gen = spec.meta.get("generator")
            return Drawn(spec, f"{gen}#{spec.meta.get('seed')}" if gen else "trace")
        if isinstance(spec, Path) or (isinstance(spec, str) and _looks_like_path(spec)):
            return self._cached(("file", str(spec)), lambda: self._read(spec), Path(spec).name)
        if isinstance(spec, str):
            seed = int(self.seeds[int(rng.integers(len(self.seeds)))])
            return self.workload_trace(spec, seed)
        raise ConfigError(f"trace must be a Trace, a Parquet path, a workload name or a list of them, "
                          f"got {type(spec).__name__}")

    def workload_trace(self, name: str, seed: int) -> Drawn:
        from kvgym.workloads import make_trace, workload_names

        if name not in workload_names():
            raise ConfigError(f"trace {name!r}: not a file and not a workload; valid workloads: "
                              f"{', '.join(workload_names())}")
        params = self.params if name == self.workload else {}
        key = ("workload", name, json.dumps(params, sort_keys=True, default=str), seed)
        return self._cached(key, lambda: make_trace(name, seed, **params), f"{name}#{seed}")

    def _cached(self, key, make, label: str) -> Drawn:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        d = Drawn(make(), label)
        self._cache[key] = d
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return d

    @staticmethod
    def _read(path) -> Trace:
        from kvgym.traces.parquet import read_trace

        return read_trace(path)
