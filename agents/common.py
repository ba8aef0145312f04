"""Helpers shared by the learned agents: safe local paths, atomic files, seeding, config loading.

Loading a saved agent is loading a pickle (an SB3 ``.zip`` holds pickled objects; ``torch.load``
unpickles), so :func:`local_path` refuses anything that looks like a URL and requires an
existing local file or folder: agents are only ever read from paths the user named.
"""

from __future__ import annotations

import os
import random
import re
import tempfile
from pathlib import Path

import numpy as np

from kvgym.errors import ConfigError

#: ``scheme://`` or a Windows-free ``scheme:`` prefix such as ``s3:`` / ``hf:``: never a local path.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(//|[^\\/])")


def local_path(path, what: str = "agent") -> Path:
    """``path`` as an existing local :class:`Path`; URLs and missing paths are ConfigErrors."""
    text = str(path)
    if "://" in text or (_URL.match(text) and not Path(text).exists()):
        raise ConfigError(f"{what} {text!r}: only local paths are loaded (an agent file is a pickle; "
                          f"download it yourself, check where it came from, then pass its path)")
    p = Path(text).expanduser()
    if not p.exists():
        raise ConfigError(f"{what} {text!r}: no such file or folder")
    return p


def atomic_write_bytes(path, save) -> Path:
    """Write a file atomically: ``save(tmp_path)`` writes a temporary file, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch, and keep torch on one thread.

    One thread: the machine's cores are shared, and single-threaded CPU kernels make training
    runs with the same seed bit-identical.
    """
    import torch

    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)
    torch.set_num_threads(1)


def need(owner: str, name: str, value, ok: bool, rule: str) -> None:
    """Raise a ConfigError naming the field when ``ok`` is false."""
    if not ok:
        raise ConfigError(f"{owner}: {name}={value!r} invalid: {rule}")


def is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def is_num(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and np.isfinite(v)


def load_args(cls, path=None, sets=()):
    """Build args dataclass ``cls`` from a JSON/TOML file plus ``--set key=value`` overrides
    (the harness's config loader: unknown keys are errors listing the valid ones)."""
    from kvgym.bench.config import load_config

    return load_config(cls, path, sets)
