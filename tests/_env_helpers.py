"""Helpers shared by the env tests."""

from __future__ import annotations

import warnings

import gymnasium as gym
from gymnasium.utils.env_checker import check_env

KNOWN_WARNINGS = ("is different from the unwrapped version",  # check_env on the made env (expected)
                  "unconventional shape")  # SB3's advice to flatten Box(k, F); its extractor flattens it


def checker_warnings(env_id: str, **kwargs) -> list[str]:
    """Run Gymnasium's check_env on the made env and on ``.unwrapped`` and SB3's check_env; return
    the warnings they raised beyond the known ones (a failing check raises)."""
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = gym.make(env_id, **kwargs)
        check_env(env.unwrapped)
        check_env(env)
        sb3_check_env(env.unwrapped)
        env.close()
    return [str(w.message) for w in caught if not any(s in str(w.message) for s in KNOWN_WARNINGS)]
