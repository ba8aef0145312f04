"""``kvgym trace ...``: the trace command group.

Each module ``kvgym/commands/trace_*.py`` that defines ``register_trace(sub)`` adds its
subcommands (gen, stats, import, capture, fetch, ...) to this group.
"""

from __future__ import annotations

import importlib
import pkgutil


def register(subparsers) -> None:
    import kvgym.commands as pkg

    p = subparsers.add_parser("trace", help="generate, import, capture, fetch and inspect traces")
    sub = p.add_subparsers(dest="trace_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("trace_"):
            mod = importlib.import_module(f"kvgym.commands.{info.name}")
            if hasattr(mod, "register_trace"):
                mod.register_trace(sub)
