"""The project's own exception types.

Every error raised on bad input is a :class:`KvgymError` subclass whose message names the
field, file and row (or line) at fault, so callers can catch one type and users read one line.
"""

from __future__ import annotations


class KvgymError(Exception):
    """Base class of every error kvgym raises on purpose."""


class ConfigError(KvgymError, ValueError):
    """A configuration value (scenario, tier, geometry, policy parameter) is invalid."""


class TraceError(KvgymError, ValueError):
    """A trace file or trace array is malformed. The message names file, column and row."""


class SimulationError(KvgymError, RuntimeError):
    """The simulation cannot proceed (e.g. pinned pages alone overflow tier 0)."""


def unknown_name(kind: str, name: str, valid) -> ConfigError:
    """The error for an unknown registry name, listing the valid ones."""
    return ConfigError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(valid))}")


class OutputError(KvgymError):
    """An output file cannot be written (a folder, an unwritable location, a full disk)."""
