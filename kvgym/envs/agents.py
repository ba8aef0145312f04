"""Agents that act through the env, and the one adapter the harness uses for any agent.

An *agent* is any of:

- an object with ``act(obs, info) -> int`` (optionally ``attach(env)``, called once with the
  made env before the first ``reset``, and ``reset()`` before each episode);
- a Stable-Baselines3 model (``predict``); masks are passed when it accepts ``action_masks``
  (sb3-contrib's ``MaskablePPO``), predictions are deterministic;
- a plain callable ``f(obs, info) -> int``.

:class:`PolicyAgent` wraps a registered policy. Its policy object is attached to the env
(``env.unwrapped.attach_policy``): the episode's compiled engine keeps the policy's state up to
date through every event of the run (in compiled code for a built-in policy, through its Python
hooks otherwise), and at each decision the agent takes the policy's own victim
(``env.unwrapped.policy_choice()``), chosen among *all* eligible pages as in :func:`kvgym.sim.run`.
In ``kvgym/PrefixCache-v0`` the policy serves every tier the agent decides, and an admission
decision plays the env's configured admission policy (slot 0 stores, slot 1 skips).
With ``k`` large enough to show every eligible page its metrics equal ``run(..., name)``
(tested for every registered policy). With a smaller ``k`` its victim may not be shown: it then
takes slot 0 (the least recently used shown page) and counts the event in ``outside``
(``outside_rate`` = outside / decisions).
"""

from __future__ import annotations

import inspect

import numpy as np

from kvgym.errors import ConfigError
from kvgym.sim.policy import make_policy


class PolicyAgent:
    """A baseline policy (by name, with parameters) acting through the env."""

    def __init__(self, name: str, **params):
        make_policy(name, **params)  # fail early on unknown names or bad parameters
        self.name = name
        self.params = params
        self.env = None
        self.decisions = 0
        self.outside = 0

    def attach(self, env) -> None:
        self.env = env.unwrapped
        self.env.attach_policy(lambda: make_policy(self.name, **self.params))

    def reset(self) -> None:
        self.decisions = 0
        self.outside = 0

    @property
    def outside_rate(self) -> float:
        return self.outside / self.decisions if self.decisions else 0.0

    def act(self, obs, info) -> int:
        env = self.env
        if env is None or env.policy is None:
            raise ConfigError("PolicyAgent: call attach(env) before the env's reset()")
        if env.phase == "admit":  # PrefixCache-v0: the configured admission policy's own answer
            self.decisions += 1
            return 0 if env.policy_choice() else 1
        if env.phase != "evict":
            return 0  # a prefetch decision: the policy does not prefetch
        v = env.policy_choice()
        shown = env.candidate_pages()
        self.decisions += 1
        hit = np.flatnonzero(shown == v)
        if hit.size:
            return int(hit[0])
        self.outside += 1
        return 0


class RandomAgent:
    """Uniformly random among the valid actions, seeded."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def act(self, obs, info) -> int:
        valid = np.flatnonzero(obs["action_mask"])
        return int(valid[int(self.rng.integers(len(valid)))])


def choose(agent, obs, info, env) -> int:
    """One action from any agent (see the module docstring)."""
    if hasattr(agent, "act"):
        return int(agent.act(obs, info))
    if hasattr(agent, "predict"):
        kw = {"deterministic": True}
        if "action_masks" in inspect.signature(agent.predict).parameters:
            kw["action_masks"] = env.unwrapped.action_masks()
        action, _ = agent.predict(obs, **kw)
        return int(np.asarray(action).reshape(-1)[0])
    if callable(agent):
        return int(agent(obs, info))
    raise ConfigError(f"agent {agent!r}: needs act(obs, info), predict(obs) or to be callable")
