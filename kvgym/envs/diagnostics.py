"""How well the candidate set covers the good choices: the numbers behind the ``k``/``sample`` knobs.

:func:`candidate_report` runs each baseline as a :class:`~kvgym.envs.agents.PolicyAgent` with a
given ``k`` (and ``diagnostics=True``) and reports, per policy:

- ``outside_rate``: share of decisions where the policy's own choice (its lowest score among
  *all* eligible pages) was not among the ``k`` shown (it then took its best shown candidate);
- ``belady_shown_rate``: share of decisions where a page with the farthest next use (Belady's
  victim, which reads the future) was among the shown candidates;
- ``hit_rate`` through the env and ``hit_rate_full`` from a whole-trace run of the policy (all candidates),
  so the cost of restricting the choice to ``k`` slots is visible.
"""

from __future__ import annotations

from kvgym.sim.policy import policy_names


def candidate_report(scenario, trace, policies=None, *, k: int = 32, sample: int = 8, seed: int = 0) -> list[dict]:
    """One row per policy (see the module docstring); ``policies`` defaults to every baseline."""
    import gymnasium as gym

    from kvgym.envs.agents import PolicyAgent, choose
    from kvgym.envs.evict import NoDecisionError
    from kvgym.sim.engine import simulate

    rows = []
    for name in policies if policies is not None else policy_names():
        agent = PolicyAgent(name)
        env = gym.make("kvgym/Evict-v0", scenario=scenario, trace=trace, k=k, sample=sample, diagnostics=True,
                       disable_env_checker=True)
        agent.attach(env)
        try:
            obs, info = env.reset(seed=seed)
            done = False
            while not done:
                obs, _, term, trunc, info = env.step(choose(agent, obs, info, env))
                done = term or trunc
        except NoDecisionError:
            pass
        u = env.unwrapped
        m = u.metrics()
        checked, shown = u.belady_stats
        full = simulate(trace, u.scenario, name)
        rows.append({"policy": name, "decisions": agent.decisions, "outside": agent.outside,
                     "outside_rate": round(agent.outside_rate, 4),
                     "belady_shown_rate": round(shown / checked, 4) if checked else None,
                     "hit_rate": round(m.hit_rate, 6), "hit_rate_full": round(full.hit_rate, 6)})
        env.close()
    return rows
