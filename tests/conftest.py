"""Shared test helpers. Every test reads data from the repository (``kvgym/data`` through
:mod:`kvgym.bundled`), never from outside it.

:func:`needs_extra` is the one way a test depends on an optional extra: without the extra the test
is skipped with a message naming it, unless ``KVGYM_REQUIRE_EXTRAS`` names it (or is ``all``),
in which case the test fails: ``make test`` installs its extras and sets that variable, so CI
never skips silently.
"""

from __future__ import annotations

import importlib
import os

import pytest

REQUIRE_ENV = "KVGYM_REQUIRE_EXTRAS"


def extra_required(extra: str) -> bool:
    wanted = {x.strip() for x in os.environ.get(REQUIRE_ENV, "").split(",") if x.strip()}
    return "all" in wanted or extra in wanted


def missing(extra: str, why: str) -> None:
    """Skip (or, when the extra is required, fail) a test that needs ``extra``."""
    msg = f"needs the '{extra}' extra (pip install -e '.[{extra}]'): {why}"
    if extra_required(extra):
        pytest.fail(f"{msg}; {REQUIRE_ENV} says it must be installed", pytrace=False)
    pytest.skip(msg, allow_module_level=True)


def needs_extra(extra: str, *modules: str):
    """Import and return ``modules`` (one module, or a tuple), or skip/fail naming ``extra``."""
    out = []
    for name in modules:
        try:
            out.append(importlib.import_module(name))
        except ImportError as e:
            missing(extra, f"cannot import {name} ({e})")
    return out[0] if len(out) == 1 else tuple(out)
