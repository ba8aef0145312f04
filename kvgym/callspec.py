"""The ``NAME(key=value,...)`` grammar of specs on the command line and in config files.

``parse_call("regret_aware(regret_weight=12,regret_horizon=8)", "policy")`` gives
``("regret_aware", {"regret_weight": 12, "regret_horizon": 8})``; values are JSON scalars (``12``
int, ``0.5`` float, ``true`` bool), anything else a string; :func:`split_top` splits lists of specs
on commas outside parentheses; :func:`fmt_call` writes a spec back.
"""

from __future__ import annotations

import json
import re

from kvgym.errors import ConfigError

_SPEC = re.compile(r"^\s*([A-Za-z0-9_.\-/:]+?)\s*(?:\((.*)\))?\s*$", re.DOTALL)


def parse_value(text: str):
    """A parameter value: a JSON scalar if it parses as one, else the string itself."""
    t = text.strip()
    try:
        v = json.loads(t)
    except (json.JSONDecodeError, ValueError):
        return t
    return v if isinstance(v, (int, float, bool, str)) or v is None else t


def split_top(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside parentheses: ``a(x=1,y=2),b`` -> ``['a(x=1,y=2)', 'b']``."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == sep and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [s.strip() for s in out if s.strip()]


def parse_call(text: str, what: str) -> tuple[str, dict]:
    """``name(k=v,k=v)`` -> ``(name, {k: v})``."""
    m = _SPEC.match(text)
    if not m:
        raise ConfigError(f"{what} {text!r}: expected NAME or NAME(key=value,...)")
    name, args = m.group(1), m.group(2)
    params = {}
    for part in split_top(args or ""):
        if "=" not in part:
            raise ConfigError(f"{what} {text!r}: parameter {part!r} is not key=value")
        k, v = part.split("=", 1)
        params[k.strip()] = parse_value(v)
    return name, params


def parse_sets(items, what: str) -> dict:
    """``["key=value", ...]`` (a repeated ``--set``) -> ``{key: value}``; a value is JSON when it
    parses as JSON (numbers, bools, null, lists: ``capacities=["10%",null]``), else the text."""
    out = {}
    for item in items or ():
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise ConfigError(f"{what}: expected key=value, got {item!r}")
        try:
            out[k.strip()] = json.loads(v)
        except (ValueError, RecursionError):  # not JSON (or absurdly nested): the text itself
            out[k.strip()] = v
    return out


def fmt_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def fmt_call(name: str, params: dict) -> str:
    if not params:
        return name
    return f"{name}(" + ",".join(f"{k}={fmt_value(params[k])}" for k in sorted(params)) + ")"
