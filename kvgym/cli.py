"""The ``kvgym`` command line.

Every module in :mod:`kvgym.commands` that defines ``register(subparsers)`` adds its own
subcommand(s); ``register`` sets ``func`` on its parser(s) via ``set_defaults``. Errors of
the project's own type are printed as one line (exit status 2), never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from kvgym import __version__
from kvgym.errors import KvgymError


def build_parser() -> argparse.ArgumentParser:
    import kvgym.commands as pkg

    parser = argparse.ArgumentParser(prog="kvgym", description="KV-cache hierarchy simulator and Gymnasium environments.")
    parser.add_argument("--version", action="version", version=f"kvgym {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        mod = importlib.import_module(f"kvgym.commands.{info.name}")
        if hasattr(mod, "register"):
            mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except KvgymError as e:
        print(f"kvgym {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
