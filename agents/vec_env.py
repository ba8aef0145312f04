"""Stable-Baselines3's ``VecEnv`` over :class:`kvgym.envs.vector.EvictVectorEnv` (SB3 does not take
gymnasium vector envs): same-step resets with ``terminal_observation`` and ``episode`` in each
sub-env's ``info``, ``action_masks`` for sb3-contrib's ``MaskablePPO``. Limits: no ``render``;
``env_method`` serves ``action_masks`` only; ``get_attr``/``set_attr`` read or write attributes of
the sub-envs.
"""

from __future__ import annotations

import numpy as np

from kvgym.envs.vector import EvictVectorEnv
from kvgym.errors import ConfigError


def sb3_vec_env(venv: EvictVectorEnv):
    """``venv`` behind Stable-Baselines3's ``VecEnv`` interface (see the module docstring)."""
    from stable_baselines3.common.vec_env import VecEnv

    class SB3Adapter(VecEnv):
        def __init__(self, inner: EvictVectorEnv):
            self.inner = inner
            super().__init__(inner.num_envs, inner.single_observation_space, inner.single_action_space)
            self._actions = None

        def reset(self):
            first = self._seeds[0] if getattr(self, "_seeds", None) else None
            obs, _ = self.inner.reset(seed=first)
            self._reset_seeds()
            return obs

        def step_async(self, actions):
            self._actions = actions

        def step_wait(self):
            inner = self.inner
            obs, rew, term, trunc, info = inner.step(self._actions)
            done = term | trunc
            infos = [{} for _ in range(self.num_envs)]
            if done.any():  # SB3 resets in the same step and hands over the terminal observation
                for i in np.flatnonzero(done):
                    infos[i]["terminal_observation"] = {k: v[i] for k, v in obs.items()}
                    infos[i]["TimeLimit.truncated"] = bool(trunc[i])
                    ep = info["episode"]
                    infos[i]["episode"] = {"r": float(ep["r"][i]), "l": int(ep["l"][i]), "t": float(ep["t"][i])}
                obs = inner.reset_finished(done)
            return obs, rew, done, infos

        def close(self):
            self.inner.close()

        def get_attr(self, attr_name, indices=None):
            return [getattr(self.inner.envs[i], attr_name) for i in self._get_indices(indices)]

        def set_attr(self, attr_name, value, indices=None):
            for i in self._get_indices(indices):
                setattr(self.inner.envs[i], attr_name, value)

        def env_method(self, method_name, *args, indices=None, **kwargs):
            if method_name != "action_masks":
                raise ConfigError(f"sb3_vec_env: env_method serves action_masks only, not {method_name!r}")
            masks = self.inner.action_masks()
            return [masks[i] for i in self._get_indices(indices)]

        def env_is_wrapped(self, wrapper_class, indices=None):
            return [False for _ in self._get_indices(indices)]

    return SB3Adapter(venv)
