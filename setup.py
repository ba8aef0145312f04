"""Builds the compiled engine (``kvgym.sim._engine``); everything else is in pyproject.toml."""

from pathlib import Path

from setuptools import Extension, setup

SRC = Path("kvgym/sim/cengine")

setup(ext_modules=[Extension(
    "kvgym.sim._engine",
    sources=[str(SRC / "module.c")],  # one translation unit: module.c includes the other .c files
    depends=[str(p) for p in sorted(SRC.glob("*.[ch]"))],
    # No FMA contraction and no fast-math: the engine's floats must equal the specification's.
    extra_compile_args=["-O2", "-std=c11", "-ffp-contract=off", "-fno-fast-math", "-Wall"],
)])
