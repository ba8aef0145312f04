"""Helpers shared by the workload generators: parameter checks and random sampling.

Every check raises :class:`kvgym.errors.ConfigError` with a message that names the workload,
the parameter, the value given and the valid range, e.g.
``workload 'streaming': window_pages=300 is larger than the context (257 pages at step 0); valid: 1 <= window_pages <= 256``.
"""

from __future__ import annotations

import numpy as np

from kvgym.errors import ConfigError


def fail(wl: str, msg: str) -> ConfigError:
    return ConfigError(f"workload {wl!r}: {msg}")


def need_int(wl: str, name: str, value: int, lo: int, hi: int | None = None, why: str = "") -> int:
    """``lo <= value (<= hi)`` or an error stating the valid range (``why`` says where ``hi`` comes from)."""
    if value < lo or (hi is not None and value > hi):
        rng = f"{lo} <= {name}" + (f" <= {hi}" if hi is not None else "")
        extra = f" ({why})" if why else ""
        raise fail(wl, f"{name}={value} is out of range{extra}; valid: {rng}")
    return value


def need_float(wl: str, name: str, value: float, lo: float, hi: float | None = None, *, lo_open: bool = False) -> float:
    bad = (value <= lo if lo_open else value < lo) or (hi is not None and value > hi) or not np.isfinite(value)
    if bad:
        rng = f"{lo} {'<' if lo_open else '<='} {name}" + (f" <= {hi}" if hi is not None else "")
        raise fail(wl, f"{name}={value} is out of range; valid: {rng}")
    return value


def sample_rows(rng: np.random.Generator, rows: int, population: int, k: int) -> np.ndarray:
    """``rows`` independent samples of ``k`` distinct ints from ``[0, population)``, in random order.

    Shape ``(rows, k)``; memory ``rows * population`` floats (for the small classic patterns).
    """
    if rows == 0 or k == 0:
        return np.zeros((rows, k), np.int64)
    keys = rng.random((rows, population))
    idx = np.argpartition(keys, k - 1, axis=1)[:, :k] if k < population else np.broadcast_to(np.arange(population), (rows, population)).copy()
    order = np.argsort(np.take_along_axis(keys, idx, axis=1), axis=1)
    return np.take_along_axis(idx, order, axis=1).astype(np.int64)
