"""kvgym: a trace-driven simulator of the LLM KV-cache hierarchy (HBM, host RAM, disk),
wrapped as Gymnasium environments whose actions are eviction and prefetch choices.

Layers: ``kvgym.traces`` (trace data) -> ``kvgym.sim`` (the engines, no gymnasium) ->
``kvgym.baselines`` (built-in policies) and ``kvgym.oracle`` -> ``kvgym.envs`` -> ``kvgym.agents``
(torch); ``kvgym.bench`` drives them all by name. Importing ``kvgym`` registers the built-in
policies and, once Gymnasium is imported too, the environment ids; it imports neither Gymnasium
nor torch.
"""

__version__ = "0.1.0"

import kvgym.baselines  # noqa: F401  (registers the built-in policies and prefetchers)
from kvgym.envs import registration as _registration

_registration.register_when_gymnasium_loads()
