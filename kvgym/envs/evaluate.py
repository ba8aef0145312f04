"""One harness for every agent: ``evaluate(agent, scenario, trace) -> Metrics``.

A heuristic (:class:`kvgym.envs.agents.PolicyAgent`), a learned model (SB3 / sb3-contrib, with
action masks when it takes them), a random agent or any callable is run the same way: make the
env on ``scenario`` and ``trace``, reset once (seeded), act until the episode ends, and return
the episode's :class:`~kvgym.sim.metrics.Metrics` (the same object a whole-trace ``kvgym.sim.run``
returns, so results compare directly). A trace that never needs a tier-0 eviction still gets
its metrics (no decision was made).
"""

from __future__ import annotations

import gymnasium as gym

from kvgym.errors import ConfigError
from kvgym.sim.metrics import Metrics


def eligible_bound(scenario, trace) -> int:
    """An upper bound on the tier-0 residents of ``trace`` under ``scenario`` (tier-0 bytes / smallest
    page, capped by the pages in the table): a ``k`` at least this large shows every candidate."""
    from kvgym.sim.catalog import resolve_scenario

    setup = resolve_scenario(scenario).build(trace.pages, [(trace.step, trace.page)])
    cap = setup.tiers[0].capacity_bytes
    n = len(setup.page_bytes)
    if cap is None:
        return max(2, n)
    return int(max(2, min(n, cap // max(1, int(setup.page_bytes.min())))))


def evaluate(agent, scenario, trace, *, env_id: str = "kvgym/Evict-v0", k: int | str | None = None,
             seed: int = 0, window: tuple[int, int] | None = None, max_decisions: int | None = None,
             **env_kwargs) -> Metrics:
    """Run ``agent`` on ``trace`` under ``scenario`` through ``env_id``; return the episode's metrics.

    Args:
        agent: see :mod:`kvgym.envs.agents` (``act``, ``predict`` or a callable).
        scenario: a Scenario, its dict form or a harness scenario name.
        trace: a Trace, a Parquet path or a workload name (seed drawn from the env's split).
        k: candidate slots; ``"all"`` = enough to show every tier-0 resident
            (:func:`eligible_bound`), ``None`` = the env's default.
        seed: the reset seed (candidate sampling; the workload draw when ``trace`` is a name).
        window: access rows ``(start, stop)`` to run instead of the whole trace.
        max_decisions: stop early after this many decisions (metrics so far; a safety cap).
        env_kwargs: further env arguments (``reward``, ``sample``, ``prefetcher``, ...).
    """
    if k == "all":
        from kvgym.traces.format import Trace

        if not isinstance(trace, Trace):
            raise ConfigError("evaluate: k='all' needs an in-memory Trace")
        k = min(4096, eligible_bound(scenario, trace))
    if k is not None:
        env_kwargs["k"] = k
    env = gym.make(env_id, scenario=scenario, trace=trace, disable_env_checker=True, **env_kwargs)
    return play(agent, env, seed=seed, window=window, max_decisions=max_decisions)


def play(agent, env, *, seed: int = 0, window=None, max_decisions: int | None = None):
    """Attach ``agent`` to the made ``env``, reset once (seeded), act until the episode ends and
    return the episode's metrics (``env.unwrapped.metrics()``); the env is closed."""
    from kvgym.envs.agents import choose
    from kvgym.envs.config import NoDecisionError

    try:
        if hasattr(agent, "attach"):
            agent.attach(env)
        if hasattr(agent, "act") and callable(getattr(agent, "reset", None)):
            agent.reset()
        options = {"window": tuple(window)} if window is not None else None
        try:
            obs, info = env.reset(seed=seed, options=options)
        except NoDecisionError:
            return env.unwrapped.metrics()
        n = 0
        while True:
            obs, _, terminated, truncated, info = env.step(choose(agent, obs, info, env))
            n += 1
            if terminated or truncated or (max_decisions is not None and n >= max_decisions):
                break
        return env.unwrapped.metrics()
    finally:
        env.close()


def evaluate_prefix(agent, trace, *, env_id: str = "kvgym/PrefixCache-v0", k: int | str | None = None,
                    seed: int = 0, window: tuple[int, int] | None = None, **config):
    """Run ``agent`` through a serving env (``kvgym/PrefixCache-v0`` or a preset) on ``trace``;
    return the episode's :class:`~kvgym.sim.metrics.ServingMetrics`.

    Args:
        trace: a RequestTrace or any request-trace spec (:mod:`kvgym.workloads.request_sources`; a
            workload name draws its seed from the env's split).
        k: candidate slots; ``"all"`` = the largest capacity, in blocks, of the tiers the agent
            decides (capped at 4096; the trace's blocks for an unbounded tier), so every valid
            victim is shown (``sample`` 0 unless given); ``None`` = the env's default.
        config: further configuration keys (``serving``, ``policy``, ``evict_tiers``, ...).
    """
    if k == "all":
        from kvgym.workloads.request_sources import request_trace, source_kind

        if source_kind(trace) == "workload":
            raise ConfigError("evaluate_prefix: k='all' needs a RequestTrace, a file or a dataset, not a workload name")
        trace = request_trace(trace)
        probe = gym.make(env_id, trace=trace, disable_env_checker=True, **config).unwrapped
        caps = probe.serving.resolve(trace.n_blocks, trace.block_tokens).capacities
        probe.close()
        tiers = probe.cfg.evict_tiers or (0,)
        k = int(max(2, min(4096, max(trace.n_blocks if caps[t] is None else caps[t] for t in tiers))))
    if k is not None:
        config["k"] = k
        config.setdefault("sample", 0)
    env = gym.make(env_id, trace=trace, disable_env_checker=True, **config)
    return play(agent, env, seed=seed, window=window)


def evaluate_many(agent_factory, scenario, traces, **kw) -> list[Metrics]:
    """:func:`evaluate` over several traces, a fresh agent per trace (``agent_factory()``)."""
    return [evaluate(agent_factory(), scenario, t, **kw) for t in traces]


__all__ = ["eligible_bound", "evaluate", "evaluate_many", "evaluate_prefix", "play"]
