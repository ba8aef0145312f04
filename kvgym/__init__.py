"""kvgym: a trace-driven simulator of the LLM KV-cache hierarchy (HBM, host RAM, disk),
wrapped as Gymnasium environments whose actions are eviction and prefetch choices.

Layers: ``kvgym.sim`` (engine, no gymnasium) -> ``kvgym.envs`` -> ``kvgym.agents`` (torch);
``kvgym.baselines`` stand on ``kvgym.sim``; ``kvgym.bench`` drives them all by name.
"""

__version__ = "0.1.0"

from kvgym.envs import registration as _registration  # noqa: E402,F401  (registers the Gymnasium ids)
