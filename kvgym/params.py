"""Checking configuration values: the one helper behind every parameter check in kvgym.

Policies, prefetchers, workloads, scenarios, sweep and training settings all check their values
through these functions, so every bad value gets the same one-line message::

    {owner}: {name}={value!r} must be an int; valid: 1 <= {name} <= 256
    {owner}: {name}={value!r} is out of range[ (why)]; valid: 1 <= {name} <= 256
    {owner}: {name}={value!r} is invalid[ (why)]; valid: {rule}

e.g. ``workload 'topk_drift': drift=1.5 is out of range; valid: 0.0 <= drift <= 1.0``.
Types are strict: a bool is not an int, a float is not an int (no silent truncation), a number
must be finite. Each ``need_*`` returns the value converted to the plain Python type.
"""

from __future__ import annotations

import math
import numbers

from kvgym.errors import ConfigError


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def invalid(owner: str, name: str, value, rule: str, why: str = "") -> ConfigError:
    """The error for a value that breaks ``rule`` (see the module docstring)."""
    extra = f" ({why})" if why else ""
    return ConfigError(f"{owner}: {name}={_show(value)} is invalid{extra}; valid: {rule}")


def check(owner: str, name: str, value, ok: bool, rule: str, why: str = "") -> None:
    """Raise :func:`invalid` unless ``ok``."""
    if not ok:
        raise invalid(owner, name, value, rule, why)


def is_int(v) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_num(v) -> bool:
    """A finite real number (int or float, Python or numpy), not a bool."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _range(name: str, lo, hi, lo_open: bool = False) -> str:
    """``1 <= name <= 9``, ``0.0 < name``, ``name <= 5`` or ``""``."""
    text = name
    if lo is not None:
        text = f"{lo} {'<' if lo_open else '<='} {text}"
    if hi is not None:
        text = f"{text} <= {hi}"
    return "" if text == name else text


def _need(owner, name, value, kind: str, typed: bool, lo, hi, lo_open: bool, why: str) -> None:
    rng = _range(name, lo, hi, lo_open)
    if not typed:
        raise ConfigError(f"{owner}: {name}={_show(value)} must be {kind}" + (f"; valid: {rng}" if rng else ""))
    if (lo is not None and (value <= lo if lo_open else value < lo)) or (hi is not None and value > hi):
        extra = f" ({why})" if why else ""
        raise ConfigError(f"{owner}: {name}={_show(value)} is out of range{extra}; valid: {rng}")


def need_int(owner: str, name: str, value, lo: int | None = None, hi: int | None = None, why: str = "") -> int:
    """``value`` as an int, checked to be an integer in ``[lo, hi]`` (either bound optional;
    ``why`` says where a bound comes from)."""
    _need(owner, name, value, "an int", is_int(value), lo, hi, False, why)
    return int(value)


def need_num(owner: str, name: str, value, lo: float | None = None, hi: float | None = None, *,
             lo_open: bool = False, why: str = "") -> float:
    """``value`` as a float, checked to be a finite number in range (``lo_open``: ``> lo``)."""
    _need(owner, name, value, "a finite number", is_num(value), lo, hi, lo_open, why)
    return float(value)


def need_bool(owner: str, name: str, value) -> bool:
    check(owner, name, value, isinstance(value, bool), "true or false")
    return value


def need_str(owner: str, name: str, value, *, empty: bool = True) -> str:
    check(owner, name, value, isinstance(value, str) and (empty or bool(value.strip())),
          "a string" if empty else "a non-empty string")
    return value


def need_choice(owner: str, name: str, value, valid) -> str:
    """``value`` is one of the strings ``valid``."""
    valid = list(valid)
    check(owner, name, value, isinstance(value, str) and value in valid, "one of " + ", ".join(valid))
    return value
