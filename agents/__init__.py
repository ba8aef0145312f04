"""Learned eviction agents (installed as ``kvgym.agents``; the only part of kvgym that imports torch).

- :mod:`kvgym.agents.imitation`: Belady imitation with DAgger (Parrot-style candidate scorer).
- :mod:`kvgym.agents.ppo`: sb3-contrib MaskablePPO on ``kvgym/Evict-v0``.
- :func:`load_agent`: a saved agent (folder, ``agent.json``, model file or ``zoo:NAME``; local
  paths only; tensors only, a legacy SB3 pickle only with ``trust_pickle`` and a recorded sha256) as an
  object that :func:`kvgym.envs.evaluate.evaluate` runs like any agent.

Torch is imported on first use, not by ``import kvgym.agents``.
"""

from __future__ import annotations


def load_agent(path, trust_pickle: bool = False):
    """Load a saved agent; see :func:`kvgym.agents.agent.load_agent`."""
    import importlib.util

    from kvgym.errors import ConfigError

    missing = [m for m in ("torch", "stable_baselines3", "sb3_contrib") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"agent {str(path)!r}: loading saved agents needs the agents extra ({', '.join(missing)} "
                          "not installed): pip install -e '.[agents]'")
    from kvgym.agents.agent import load_agent as _load

    return _load(path, trust_pickle=trust_pickle)


__all__ = ["load_agent"]
