"""Data shipped inside the package, under ``kvgym/data/`` (so an installed kvgym has it too).

Each folder holds a ``NOTICE.md`` with the files' origin, license and sha256 (checked by
``tests/test_bundled_data.py``):

- ``parity/``: kv-hierarchy-lab v0.1's default-sweep traces, manifest and expected records, and
  the written spec of its semantics (``kvgym parity``, ``kvgym findings``);
- ``calibration/``: the H200 measurements behind the ``h200-measured`` profile, and the script that
  took them (read through :func:`kvgym.sim.calibration.default_calibration`);
- ``models/``: the stories260K llama2.c checkpoint and its tokenizer (``kvgym trace capture
  --checkpoint stories260K``);
- ``traces/``: the Mooncake FAST'25 synthetic trace (dataset ``mooncake-synthetic``).

Larger data is not shipped: it comes through :mod:`kvgym.traces.datasets` with a pinned sha256.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def data_path(*parts: str) -> Path:
    """The path of ``kvgym/data/<parts...>`` in the installed package (it may not exist)."""
    return Path(str(resources.files("kvgym").joinpath("data", *parts)))


def parity_dir() -> Path:
    """kv-hierarchy-lab v0.1's parity data: ``manifest.json``, ``traces/``, ``expected_fixed.json``."""
    return data_path("parity")


def mooncake_synthetic() -> Path:
    """The Mooncake FAST'25 synthetic trace (JSON Lines, 3,993 requests)."""
    return data_path("traces", "mooncake_fast25_synthetic_trace.jsonl")


#: Shipped llama2.c checkpoints by name: ``name -> (checkpoint, tokenizer)`` file names in ``models/``.
MODELS = {"stories260K": ("stories260K.bin", "tok512.bin")}


def model_files(name: str) -> tuple[Path, Path]:
    """(checkpoint, tokenizer) paths of a shipped llama2.c model (see :data:`MODELS`)."""
    from kvgym.errors import unknown_name

    if name not in MODELS:
        raise unknown_name("bundled model", name, MODELS)
    ckpt, tok = MODELS[name]
    return data_path("models", ckpt), data_path("models", tok)
