"""Shared command-line plumbing of the harness commands: ``--config FILE`` and ``--set key=value``.

Precedence, lowest first: the command's defaults, the config file, the command's own flags,
then ``--set`` items (so a ``--set`` always wins).
"""

from __future__ import annotations

import argparse

from kvgym.callspec import split_top


def add_config_args(p: argparse.ArgumentParser, keys_help: str = "") -> None:
    p.add_argument("--config", metavar="FILE", help="config file (.toml or .json) with the keys below")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key (repeatable; lists are comma-separated)" + keys_help)


def add_list_arg(p: argparse.ArgumentParser, plural: str, help: str, *, singular: str | None = None,
                 required: bool = False) -> None:
    """The one grammar of list flags: ``--policies a,b(k=1)`` takes a comma-separated list (commas
    inside parentheses belong to the spec), the singular ``--policy`` is an alias, and both may be
    repeated and mixed; the values join in the order given (:func:`csv_list` splits them)."""
    singular = singular or (plural[:-3] + "y" if plural.endswith("ies") else plural[:-1])
    p.add_argument(f"--{plural}", f"--{singular}", dest=plural.replace("-", "_"), action="append",
                   required=required, metavar="A,B", help=f"{help} (comma-separated; --{singular} is the same flag)")


def add_grid_args(p: argparse.ArgumentParser) -> None:
    """The grid flags ``kvgym sweep`` and ``kvgym eval`` share (keys of the sweep config)."""
    add_list_arg(p, "scenarios", "scenario names, patterns (h200_*) or groups (parity, realistic)")
    add_list_arg(p, "workloads", "workload specs or groups (decode, patterns, all), e.g. 'streaming(prompt_tokens=8192)'")
    add_list_arg(p, "traces", "trace files (.parquet, or parity cell .json)")
    add_list_arg(p, "policies", "policy specs, e.g. 'regret_aware(regret_weight=12)', or 'all'")
    add_list_arg(p, "agents", "agent specs: policy:NAME, or a saved agent's folder")
    add_list_arg(p, "seeds", "seeds")


def grid_overrides(args) -> dict:
    """The grid flags of :func:`add_grid_args` as config overrides (``None`` = not given)."""
    return {"scenarios": csv_list(args.scenarios), "workloads": csv_list(args.workloads),
            "traces": csv_list(args.traces), "policies": csv_list(args.policies), "agents": csv_list(args.agents),
            "seeds": int_list(args.seeds)}


def csv_list(values: str | list[str] | None):
    """``a,b(c=1,d=2)`` -> ``['a', 'b(c=1,d=2)']``; a list (a repeated flag) is joined first
    (``None`` stays ``None``)."""
    if values is None:
        return None
    return [x for v in ([values] if isinstance(values, str) else values) for x in split_top(v)]


def int_list(values: str | list[str] | None):
    items = csv_list(values)
    if items is None:
        return None
    from kvgym.errors import ConfigError
    try:
        return [int(x) for x in items]
    except ValueError:
        raise ConfigError(f"expected comma-separated integers, got {','.join(items)!r}") from None


def keys_epilog(cls) -> str:
    from dataclasses import MISSING, fields

    lines = ["config keys (file or --set):"]
    for f in fields(cls):
        d = f.default if f.default is not MISSING else (f.default_factory() if f.default_factory is not MISSING else "")
        if isinstance(d, tuple):
            d = ",".join(str(x) for x in d)
        lines.append(f"  {f.name} (default: {d!r})")
    return "\n".join(lines)


def invocation(command: str, drop: tuple[str, ...] = ()) -> str | None:
    """This process's ``kvgym ...`` command line when it runs ``command`` (None otherwise, e.g.
    when ``kvgym.cli.main`` is called from Python), for artifacts that name the command; the
    display-only flags in ``drop`` (which change no result) are left out."""
    import shlex
    import sys

    argv = sys.argv[1:]
    return "kvgym " + shlex.join(a for a in argv if a not in drop) if argv[:1] == [command] else None


def stop_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so a killed sweep still stops its workers cleanly
    (finished cells are already on disk; every file is written atomically)."""
    import signal

    def _raise(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread
        pass
