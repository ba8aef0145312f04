"""Serving mode: request-level prefix caching across tiers (vLLM's KV offloading, SGLang HiCache,
LMCache, Dynamo KVBM), with recompute, write-through and admission, and time to first token.

Public API: :class:`ServingConfig`, :func:`simulate_serving` (returns
:class:`~kvgym.sim.metrics.ServingMetrics`; ``engine="compiled"``, the default, runs
:mod:`kvgym.sim.serving.compiled`, ``"reference"`` the specification). The rules are the docstring
of :mod:`kvgym.sim.serving.engine` (the specification); ``docs/serving.md`` cites their sources.
"""

from kvgym.sim.metrics import ServingMetrics
from kvgym.sim.serving.config import ServingConfig
from kvgym.sim.serving.engine import ServingEngine, simulate_serving

__all__ = ["ServingConfig", "ServingEngine", "ServingMetrics", "simulate_serving"]
