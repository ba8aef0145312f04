"""Configuration of ``kvgym/PrefixCache-v0``: one frozen, validated :class:`PrefixEnvConfig`.

HighwayEnv's pattern: the env class has a :meth:`PrefixEnvConfig.default` configuration (a plain
dict, ``PrefixCacheEnv.default_config()``); a preset or a caller gives *overrides*, merged
deeply (a nested ``serving`` table is merged key by key, so ``serving={"capacities": [64, 512]}``
keeps the other serving fields). The merged dict is then validated here, once: an unknown key, a
bad value or an impossible combination raises :class:`~kvgym.errors.ConfigError` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from kvgym.callspec import parse_call
from kvgym.envs.config import check_slots_and_reward
from kvgym.errors import ConfigError
from kvgym.params import need_bool, need_choice, need_int

#: Rewards by name (see :mod:`kvgym.envs.prefix`): dense ones booked per request, terminal ones at
#: the episode's last step.
DENSE_REWARDS = ("prefill_us", "prefill_tokens")
TERMINAL_REWARDS = ("ttft_us", "ttft_p90_us")
REWARDS = DENSE_REWARDS + TERMINAL_REWARDS
VICTIMS = ("leaves", "any")


def deep_merge(base: dict, over: dict) -> dict:
    """``base`` updated by ``over``; a table in both is merged key by key (neither is modified)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass(frozen=True)
class PrefixEnvConfig:
    """What an episode replays and which decisions the agent takes.

    Attributes:
        trace: a :class:`~kvgym.traces.requests.RequestTrace`, a request-trace Parquet path, a
            request workload name (``chat``, ``agent``, ``system_prompt``, ``rag``: its seed drawn
            from ``split``), a dataset name (``mooncake-synthetic``, shipped; the other Mooncake
            datasets once fetched), or a list of these (one drawn per episode); ``None``: ``workload``.
        workload, workload_params: the request workload of episodes without a ``trace``, and its
            parameter overrides (``kvgym.workloads.serving``).
        split, splits: the seed range workload traces are drawn from
            (:class:`~kvgym.envs.config.Splits`; ``splits`` as its dict form).
        episode_requests: each episode replays a random window of this many requests (its block ids
            renumbered); ``None``: the whole trace.
        serving: :class:`~kvgym.sim.serving.config.ServingConfig` fields, merged over
            :data:`DEFAULT_SERVING`.
        policy: eviction policy of tier 0 when the agent does not decide there (a ``name(k=v)`` spec).
        lower: eviction policy of every lower tier the agent does not decide.
        admission: admission policy of stores into tier 1 (a ``name(k=v)`` spec); with ``admit`` on,
            its state is still kept (``PolicyAgent`` plays its answers).
        evict_tiers: tiers whose eviction victims the agent chooses: ``[0]`` (default), ``[0, 1]``,
            ``[1]`` or ``[]``.
        admit: the agent also decides, block by block, whether an offered block is stored into
            tier 1 (needs ``write_through`` and at least 2 tiers).
        victims: ``leaves`` (the evictable blocks with no resident child in their tier, so the
            tier stays prefix-closed; all evictable blocks if none is a leaf) or ``any``.
        k, sample: candidate slots (``Discrete(k)``); of them, ``sample`` are drawn at random when
            more than ``k`` blocks are valid (``None``: ``k // 4``), the rest are the least
            recently used.
        reward, reward_scale: the reward by name (:data:`REWARDS`) and a multiplier.
    """

    trace: Any = None
    workload: str = "chat"
    workload_params: dict = field(default_factory=dict)
    split: str = "train"
    splits: dict | None = None
    episode_requests: int | None = None
    serving: dict = field(default_factory=dict)
    policy: str = "radix_lru"
    lower: str = "lru"
    admission: str = "always"
    evict_tiers: tuple = (0,)
    admit: bool = False
    victims: str = "leaves"
    k: int = 32
    sample: int | None = None
    reward: str = "prefill_us"
    reward_scale: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "evict_tiers", tuple(self.evict_tiers) if isinstance(self.evict_tiers, (list, tuple))
                           else self.evict_tiers)
        self.validate()

    def validate(self) -> None:
        from kvgym.sim.policy import (
            admission_names,
            make_admission,
            make_policy,
            serving_policy_names,
        )
        from kvgym.workloads.serving import request_workload_names

        w = "PrefixCache env"
        need_choice(w, "workload", self.workload, request_workload_names())
        if not isinstance(self.workload_params, dict):
            raise ConfigError(f"{w}: workload_params must be a table of parameter overrides")
        need_choice(w, "split", self.split, ("train", "validation", "test"))
        if self.episode_requests is not None:
            need_int(w, "episode_requests", self.episode_requests, 1)
        if not isinstance(self.serving, dict):
            raise ConfigError(f"{w}: serving must be a table of ServingConfig fields")
        cfg = self.serving_config()
        for key, names in (("policy", serving_policy_names()), ("lower", serving_policy_names())):
            name, params = self.spec(key)
            need_choice(w, key, name, names)
            make_policy(name, **params)
        name, params = self.spec("admission")
        need_choice(w, "admission", name, admission_names())
        make_admission(name, **params)
        T = len(cfg.tiers)
        ok = isinstance(self.evict_tiers, tuple) and all(isinstance(t, int) and not isinstance(t, bool)
                                                         for t in self.evict_tiers)
        if not ok or len(set(self.evict_tiers)) != len(self.evict_tiers) or not set(self.evict_tiers) <= {0, 1}:
            raise ConfigError(f"{w}: evict_tiers={self.evict_tiers!r} invalid: a list of distinct tiers from [0, 1]")
        if any(t >= T for t in self.evict_tiers):
            raise ConfigError(f"{w}: evict_tiers={list(self.evict_tiers)} names a tier the serving config does "
                              f"not have ({T} tier{'s' if T > 1 else ''}: {', '.join(cfg.tiers)})")
        need_bool(w, "admit", self.admit)
        if self.admit and (T < 2 or cfg.write_policy != "write_through"):
            raise ConfigError(f"{w}: admit=true needs write_policy 'write_through' and at least 2 tiers "
                              f"(got {cfg.write_policy!r}, {T} tier{'s' if T > 1 else ''})")
        if not self.evict_tiers and not self.admit:
            raise ConfigError(f"{w}: no decision left to the agent: give evict_tiers or admit=true")
        need_choice(w, "victims", self.victims, VICTIMS)
        check_slots_and_reward(w, self, REWARDS)

    def spec(self, key: str) -> tuple[str, dict]:
        """``(name, params)`` of the ``policy``, ``lower`` or ``admission`` spec."""
        v = getattr(self, key)
        if not isinstance(v, str):
            raise ConfigError(f"PrefixCache env: {key} must be a spec string like 'name(k=v)', got {v!r}")
        return parse_call(v, key)

    def serving_config(self):
        """The :class:`~kvgym.sim.serving.config.ServingConfig` (defaults merged with ``serving``)."""
        from kvgym.sim.serving.config import ServingConfig

        return ServingConfig.from_dict(deep_merge(DEFAULT_SERVING, self.serving))

    def to_dict(self) -> dict:
        """The fields as a dict (shallow: a ``trace`` object stays the object)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["evict_tiers"] = list(self.evict_tiers)
        return d

    @classmethod
    def default(cls) -> dict:
        """The default configuration as a dict (``PrefixCacheEnv.default_config()``)."""
        d = cls().to_dict()
        d["serving"] = dict(DEFAULT_SERVING)
        d["sample"] = None  # k // 4 of whatever k ends up being
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PrefixEnvConfig:
        known = {f.name for f in fields(cls)}
        if unknown := set(d) - known:
            raise ConfigError(f"PrefixCache env: unknown config keys {sorted(unknown)}; valid: {', '.join(sorted(known))}")
        return cls(**d)


#: The serving setup of the default env: H200 HBM over host RAM, write-through (vLLM's offloading
#: default), capacities in blocks sized for the default ``chat`` workload (a request needs up to
#: ~40 blocks at once; a trace touches ~700): tier 0 holds a few running conversations, host a
#: third of the trace.
DEFAULT_SERVING = {"name": "prefix-cache", "profile": "h200-measured", "tiers": ["hbm", "host"],
                   "capacities": [64, 256], "write_policy": "write_through"}
