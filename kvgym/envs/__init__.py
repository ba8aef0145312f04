"""Gymnasium environments: tier-0 eviction (and prefetch) decisions over the simulator.

Importing this package registers the ids (:mod:`kvgym.envs.registration`) and nothing heavy;
the env classes and agents load on first use::

    import gymnasium as gym
    import kvgym  # registers kvgym/Evict-v0, kvgym/EvictPrefetch-v0, kvgym/PrefixCache-v0 and presets

    env = gym.make("kvgym/Evict-v0", k=32)

See :class:`kvgym.envs.evict.EvictEnv` for spaces, rewards and episode semantics, and
:class:`kvgym.envs.prefix.PrefixCacheEnv` for the serving-mode env.
"""

from __future__ import annotations

from kvgym.envs.registration import ENV_IDS, register_envs

_LAZY = {
    "EvictEnv": "kvgym.envs.evict", "EvictPrefetchEnv": "kvgym.envs.evict", "NoDecisionError": "kvgym.envs.config",
    "EnvConfig": "kvgym.envs.config", "Splits": "kvgym.envs.config", "split_files": "kvgym.envs.config",
    "PolicyAgent": "kvgym.envs.agents", "RandomAgent": "kvgym.envs.agents",
    "PrefixCacheEnv": "kvgym.envs.prefix", "PrefixEnvConfig": "kvgym.envs.prefix_config",
    "FEATURES": "kvgym.envs.observation",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kvgym.envs' has no attribute {name!r}")


__all__ = [
    "ENV_IDS",
    "FEATURES",
    "EnvConfig",
    "EvictEnv",
    "EvictPrefetchEnv",
    "NoDecisionError",
    "PolicyAgent",
    "PrefixCacheEnv",
    "PrefixEnvConfig",
    "RandomAgent",
    "Splits",
    "register_envs",
    "split_files",
]
