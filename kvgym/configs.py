"""Config dataclasses from a TOML or JSON file plus ``--set key=value`` overrides, for every
command that takes ``--config``/``--set`` (the harness's sweeps, plots and leaderboards, training).

Precedence, lowest first: the command's defaults (``base``), the config file, the command's own
flags (``overrides``), then ``--set`` items. A ``--set`` value is parsed by the field's type
(tuples: comma-separated, commas inside parentheses do not split; dotted keys reach into table
fields). Unknown keys are errors that list the valid ones.
"""

from __future__ import annotations

import json
import os
import tomllib
import typing
from dataclasses import fields
from pathlib import Path

from kvgym.callspec import parse_value, split_top
from kvgym.errors import ConfigError


def read_config_file(path: str | os.PathLike) -> dict:
    """A config file as a dict: TOML (``.toml``) or JSON (``.json``)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        if p.suffix == ".toml":
            return tomllib.loads(p.read_text())
        if p.suffix == ".json":
            d = json.loads(p.read_text())
            if not isinstance(d, dict):
                raise ConfigError(f"{p}: a JSON config must be an object")
            return d
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: invalid TOML ({e})") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p}: invalid JSON (line {e.lineno}: {e.msg})") from None
    raise ConfigError(f"{p}: config files are .toml or .json")


def _field_kind(cls, name: str):
    hints = typing.get_type_hints(cls)
    return hints[name]


def _coerce(cls, key: str, text: str):
    """Parse the text of ``--set key=text`` by the field's type."""
    default = next(f for f in fields(cls) if f.name == key)
    kind = _field_kind(cls, key)
    example = default.default if default.default is not default.default_factory else None
    if kind is tuple or isinstance(example, tuple):
        return [parse_value(x) for x in split_top(text)]
    if kind is bool:
        v = parse_value(text)
        if not isinstance(v, bool):
            raise ConfigError(f"--set {key}={text}: expected true or false")
        return v
    if kind is int:
        v = parse_value(text)
        if not isinstance(v, int) or isinstance(v, bool):
            raise ConfigError(f"--set {key}={text}: expected an integer")
        return v
    if kind is float:
        v = parse_value(text)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise ConfigError(f"--set {key}={text}: expected a number")
        return float(v)
    if example is None and text in ("", "none", "null"):  # an optional field set back to None
        return None
    return text


def apply_sets(cls, data: dict, sets) -> dict:
    """Apply ``key=value`` overrides (dotted keys reach into table fields)."""
    data = dict(data)
    valid = [f.name for f in fields(cls)]
    for item in sets or ():
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, text = item.split("=", 1)
        key = key.strip()
        head, _, rest = key.partition(".")
        if head not in valid:
            raise ConfigError(f"--set: unknown key {head!r}; valid: {', '.join(valid)}")
        if rest:
            if _field_kind(cls, head) is not dict:
                raise ConfigError(f"--set {key}: {head!r} is not a table")
            node = data.setdefault(head, {})
            node = json.loads(json.dumps(node))  # copy nested tables before editing
            data[head] = node
            parts = rest.split(".")
            for p in parts[:-1]:
                node = node.setdefault(p, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"--set {key}: {p!r} is not a table")
            node[parts[-1]] = parse_value(text)
        else:
            data[head] = _coerce(cls, head, text)
    return data


def load_config(cls, path=None, sets=(), base: dict | None = None, **overrides):
    """Build config ``cls`` from (in increasing priority) ``base``, a config file, explicit
    ``overrides`` (``None`` values ignored) and ``--set`` items. Unknown keys are errors."""
    data = dict(base or {})
    if path is not None:
        data.update(read_config_file(path))
    data.update({k: v for k, v in overrides.items() if v is not None})
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - valid)
    if unknown:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}unknown config keys {unknown}; valid: {', '.join(sorted(valid))}")
    data = apply_sets(cls, data, sets)
    try:
        return cls(**data)
    except TypeError as e:
        raise ConfigError(f"config: {e}") from None
