"""The ``kvgym`` command line.

Every module in :mod:`kvgym.commands` that defines ``register(subparsers)`` adds its own
subcommand(s); ``register`` sets ``func`` on its parser(s) via ``set_defaults``. Errors of
the project's own type are printed as one line (exit status 2), never as a traceback; a closed
output pipe (``kvgym ... | head``) ends the command quietly (status 141, as SIGPIPE would), and
Ctrl-C with one line (status 130).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import signal
import sys

from kvgym import __version__
from kvgym.errors import KvgymError


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (``kvgym run: error: ... (see kvgym run --help)``), like
    every other kvgym error; subcommand parsers are of this class too."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    import kvgym.commands as pkg

    parser = Parser(prog="kvgym", description="KV-cache hierarchy simulator and Gymnasium environments.")
    parser.add_argument("--version", action="version", version=f"kvgym {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        mod = importlib.import_module(f"kvgym.commands.{info.name}")
        if hasattr(mod, "register"):
            mod.register(sub)
    return parser


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush into a closed pipe is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    command = "kvgym"
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        words = [getattr(args, "command", None)] + [v for k, v in vars(args).items() if k.endswith("_command")]
        command = " ".join(["kvgym", *(w for w in words if isinstance(w, str) and w)])
        if not getattr(args, "func", None):
            parser.print_help()
            return 1
        return int(args.func(args) or 0)
    except KvgymError as e:
        print(f"{command}: error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    except BrokenPipeError:
        # Whoever read our output stopped (`kvgym ... | head`): stop quietly, as Unix tools do.
        # Files are written atomically, so an interrupted write left nothing behind.
        _quiet_stdout()
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
