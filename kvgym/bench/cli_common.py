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


def csv_list(text: str | None):
    """``a,b(c=1,d=2)`` -> ``['a', 'b(c=1,d=2)']`` (``None`` stays ``None``)."""
    return None if text is None else split_top(text)


def int_list(text: str | None):
    if text is None:
        return None
    from kvgym.errors import ConfigError
    try:
        return [int(x) for x in split_top(text)]
    except ValueError:
        raise ConfigError(f"expected comma-separated integers, got {text!r}") from None


def keys_epilog(cls) -> str:
    from dataclasses import MISSING, fields

    lines = ["config keys (file or --set):"]
    for f in fields(cls):
        d = f.default if f.default is not MISSING else (f.default_factory() if f.default_factory is not MISSING else "")
        if isinstance(d, tuple):
            d = ",".join(str(x) for x in d)
        lines.append(f"  {f.name} (default: {d!r})")
    return "\n".join(lines)


def invocation(command: str) -> str | None:
    """This process's ``kvgym ...`` command line when it runs ``command`` (None otherwise, e.g.
    when ``kvgym.cli.main`` is called from Python), for artifacts that name the command."""
    import shlex
    import sys

    argv = sys.argv[1:]
    return "kvgym " + shlex.join(argv) if argv[:1] == [command] else None


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
