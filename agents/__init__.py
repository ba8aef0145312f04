"""Learned eviction agents (installed as ``kvgym.agents``; the only part of kvgym that imports torch).

- :mod:`kvgym.agents.imitation`: Belady imitation with DAgger (Parrot-style candidate scorer).
- :mod:`kvgym.agents.ppo`: sb3-contrib MaskablePPO on ``kvgym/Evict-v0``.
- :func:`load_agent`: a saved agent (folder, ``agent.json`` or model file; local paths only) as an
  object that :func:`kvgym.bench.evaluate.evaluate` runs like any agent.

Torch is imported on first use, not by ``import kvgym.agents``.
"""

from __future__ import annotations


def load_agent(path):
    """Load a saved agent; see :func:`kvgym.agents.agent.load_agent`."""
    from kvgym.agents.agent import load_agent as _load

    return _load(path)


__all__ = ["load_agent"]
