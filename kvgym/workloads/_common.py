"""Helpers shared by the workload generators: parameter checks and random sampling.

Every check raises :class:`kvgym.errors.ConfigError` with a message that names the workload,
the parameter, the value given and the valid range, e.g.
``workload 'topk_drift': drift=1.5 is out of range; valid: 0.0 <= drift <= 1.0``
(:mod:`kvgym.params`).
"""

from __future__ import annotations

import numpy as np

from kvgym import params
from kvgym.errors import ConfigError


def fail(wl: str, msg: str) -> ConfigError:
    return ConfigError(f"workload {wl!r}: {msg}")


def need_int(wl: str, name: str, value: int, lo: int, hi: int | None = None, why: str = "") -> int:
    """``lo <= value (<= hi)`` (:func:`kvgym.params.need_int`; ``why`` says where ``hi`` comes from)."""
    return params.need_int(f"workload {wl!r}", name, value, lo, hi, why)


def need_float(wl: str, name: str, value: float, lo: float, hi: float | None = None, *, lo_open: bool = False) -> float:
    """A finite number in range (:func:`kvgym.params.need_num`)."""
    return params.need_num(f"workload {wl!r}", name, value, lo, hi, lo_open=lo_open)


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
