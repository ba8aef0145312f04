"""A batched vector env: N copies of ``kvgym/Evict-v0`` (or EvictPrefetch) stepped in one compiled call.

:class:`EvictVectorEnv` is a :class:`gymnasium.vector.VectorEnv`. Each sub-env is a full
:class:`~kvgym.envs.evict.EvictEnv` (same arguments, same traces and splits, same observation),
but a ``step`` hands all N actions to the compiled engine at once
(``kvgym.sim._engine.step_batch``), which applies each, runs each episode to its next decision,
and writes the observations straight into the batch arrays and the rewards into one array.

- **Autoreset** (``metadata["autoreset_mode"]`` is ``NEXT_STEP``, gymnasium's default): the step
  that ends an episode returns the terminal observation (zeros, as the single env does); the next
  ``step`` resets that sub-env, ignores its action and returns the first observation of the new
  episode with reward 0 and neither flag set.
- **Episode statistics**, as :class:`gymnasium.wrappers.vector.RecordEpisodeStatistics` reports
  them: on the step that ends episodes, ``info["episode"] = {"r": returns, "l": lengths
  (decisions), "t": wall seconds}`` (arrays over the sub-envs) and ``info["_episode"]`` (which
  sub-envs ended).
- Sub-env ``i`` is reset with ``seed + i`` when ``reset(seed=seed)`` is given.
- Actions are checked against each sub-env's mask before any is applied; an invalid one raises
  ``ValueError`` naming the sub-env.

**Stable-Baselines3** does not take gymnasium vector envs; :func:`kvgym.agents.vec_env.sb3_vec_env`
adapts this one to SB3's ``VecEnv`` (it needs torch, so it lives with the agents), through
:meth:`EvictVectorEnv.reset_finished` (SB3's same-step resets).
"""

from __future__ import annotations

import time
from typing import ClassVar

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from kvgym.envs.evict import EvictEnv, EvictPrefetchEnv
from kvgym.envs.observation import N_FEATURES, n_context
from kvgym.errors import ConfigError
from kvgym.sim import _engine

REWARD_KINDS = ("stall", "misses", "bytes")


class EvictVectorEnv(VectorEnv):
    """``num_envs`` copies of Evict-v0 (``prefetch_decisions=True``: EvictPrefetch-v0) in one batch."""

    metadata: ClassVar[dict] = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 64, *, prefetch_decisions: bool = False, **env_kwargs):
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise ConfigError(f"num_envs={num_envs!r} invalid: an int >= 1")
        cls = EvictPrefetchEnv if prefetch_decisions else EvictEnv
        self.envs = [cls(**env_kwargs) for _ in range(num_envs)]
        e0 = self.envs[0]
        self.num_envs = num_envs
        self.single_observation_space = e0.observation_space
        self.single_action_space = e0.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        k = e0.cfg.k
        self._obs_c = np.zeros((num_envs, k, N_FEATURES), np.float32)
        self._obs_g = np.zeros((num_envs, n_context(e0.n_tiers)), np.float32)
        self._mask = np.zeros((num_envs, k), np.int8)
        for i, env in enumerate(self.envs):
            env._buffers = (self._obs_c[i], self._obs_g[i], self._mask[i])
        self._kind = REWARD_KINDS.index(e0.cfg.reward)
        self._scale = float(e0.cfg.reward_scale)
        self._engines: tuple = ()
        self._autoreset = np.zeros(num_envs, bool)
        self._rewards = np.zeros(num_envs, np.float64)
        self._done = np.zeros(num_envs, np.uint8)
        self._ret = np.zeros(num_envs)
        self._len = np.zeros(num_envs, np.int64)
        self._t0 = np.zeros(num_envs)
        self._seeded = False

    # -- resets ---------------------------------------------------------------------------
    def _reset_one(self, i: int, seed: int | None = None, options: dict | None = None) -> dict:
        env = self.envs[i]
        _obs, info = env.reset(seed=seed, options=options)
        env._sim.engine._engine.take_reward(self._kind)  # costs before the first decision belong to no action
        self._ret[i] = 0.0
        self._len[i] = 0
        self._t0[i] = time.perf_counter()
        return info

    def _refresh_engines(self) -> None:
        self._engines = tuple(env._sim.engine._engine for env in self.envs)

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        seeds = seed if isinstance(seed, (list, tuple)) else \
            [None if seed is None else seed + i for i in range(self.num_envs)]
        if len(seeds) != self.num_envs:
            raise ConfigError(f"reset: {len(seeds)} seeds for {self.num_envs} envs")
        infos = [self._reset_one(i, s, options) for i, s in enumerate(seeds)]
        self._refresh_engines()
        self._autoreset[:] = False
        self._done[:] = 0
        return self._observation(), {"trace": [x["trace"] for x in infos]}

    # -- stepping -----------------------------------------------------------------------------
    def step(self, actions):
        actions = np.ascontiguousarray(actions, np.int64).reshape(self.num_envs)
        skip = self._autoreset
        if skip.any():
            for i in np.flatnonzero(skip):
                self._reset_one(int(i))
            self._refresh_engines()
        _engine.step_batch(self._engines, actions, skip.view(np.uint8), self._rewards, self._done, self._kind,
                           self._scale)
        done = self._done.astype(bool)
        live = ~skip
        self._ret[live] += self._rewards[live]
        self._len[live] += 1
        truncates = np.array([env._truncates for env in self.envs]) if done.any() else np.zeros(self.num_envs, bool)
        terminated, truncated = done & ~truncates, done & truncates
        info: dict = {}
        if done.any():
            now = time.perf_counter()
            info["episode"] = {"r": np.where(done, self._ret, 0.0), "l": np.where(done, self._len, 0),
                               "t": np.where(done, np.round(now - self._t0, 6), 0.0)}
            info["_episode"] = done.copy()
            for i in np.flatnonzero(done):
                self.envs[i]._done = True
        obs = self._observation()
        self._autoreset = done
        return obs, self._rewards.copy(), terminated, truncated, info

    def reset_finished(self, done: np.ndarray) -> dict:
        """Reset the sub-envs flagged in ``done`` now, rather than on the next step (the
        convention of SB3's ``VecEnv``), and return the observation of all sub-envs."""
        for i in np.flatnonzero(done):
            self._reset_one(int(i))
        self._refresh_engines()
        self._autoreset[:] = False
        self._done[:] = 0
        return self._observation()

    def _observation(self) -> dict:
        """Copies of the batch arrays; sub-envs whose episode just ended show the terminal (zero) observation."""
        obs = {"candidates": self._obs_c.copy(), "context": self._obs_g.copy(), "action_mask": self._mask.copy()}
        ended = self._done.astype(bool)
        if ended.any():
            for arr in obs.values():
                arr[ended] = 0
        return obs

    def action_masks(self) -> np.ndarray:
        """The valid actions of every sub-env, bool (num_envs, k)."""
        return self._mask.astype(bool)

    def close_extras(self, **kwargs) -> None:
        for env in self.envs:
            env.close()
