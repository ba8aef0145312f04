"""Helpers shared by the learned agents: safe local paths, seeding, config loading.

Loading a saved agent is loading a pickle (an SB3 ``.zip`` holds pickled objects; ``torch.load``
unpickles), so :func:`local_path` refuses anything that looks like a URL and requires an
existing local file or folder: agents are only ever read from paths the user named.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np

from kvgym.errors import ConfigError
from kvgym.params import check as need  # noqa: F401  (the training arguments' checks)
from kvgym.params import is_int, is_num  # noqa: F401

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


def load_args(cls, path=None, sets=()):
    """Build args dataclass ``cls`` from a JSON/TOML file plus ``--set key=value`` overrides
    (the harness's config loader: unknown keys are errors listing the valid ones)."""
    from kvgym.configs import load_config

    return load_config(cls, path, sets)
