"""Learned eviction agents (installed as ``kvgym.agents``; the only part of kvgym that imports torch).

- :mod:`kvgym.agents.benchmark`: the held-out benchmark (``benchmark.json``: families, splits) and
  the ledger that keeps development off the test split; :mod:`kvgym.agents.families` makes its traces.
- :mod:`kvgym.agents.features`: the agents' scale-free per-page history features and context.
- :mod:`kvgym.agents.imitation`: Belady imitation with DAgger on a mixture of families.
- :mod:`kvgym.agents.ppo`: sb3-contrib MaskablePPO on the batched vector env, warm-started.
- :mod:`kvgym.agents.gate`: the safety gate (agent, LRU or a fallback, by tracked regret).
- :mod:`kvgym.agents.references`: generator-aware references of the synthetic families.
- :mod:`kvgym.agents.zoo`: the per-family report.
- :mod:`kvgym.agents.serving`: family c, serving mode: imitation of a prefix-aware Belady in
  ``kvgym/PrefixCache-v0``, and its report.
- :func:`load_agent`: a saved agent (folder, ``agent.json``, model file or ``zoo:NAME``; local
  paths only; tensors only, a legacy SB3 pickle only with ``trust_pickle`` and a recorded sha256) as an
  object that :func:`kvgym.envs.evaluate.evaluate` runs like any agent.

Torch is imported on first use, not by ``import kvgym.agents``.
"""

from __future__ import annotations


def load_agent(path, trust_pickle: bool = False, gate: bool = True):
    """Load a saved agent; see :func:`kvgym.agents.agent.load_agent`."""
    import importlib.util

    from kvgym.errors import ConfigError

    missing = [m for m in ("torch", "stable_baselines3", "sb3_contrib") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"agent {str(path)!r}: loading saved agents needs the agents extra ({', '.join(missing)} "
                          "not installed): pip install -e '.[agents]'")
    from kvgym.agents.agent import load_agent as _load

    return _load(path, trust_pickle=trust_pickle, gate=gate)


__all__ = ["load_agent"]
