"""Gymnasium ids of kvgym, registered (idempotently) as soon as both ``kvgym`` and ``gymnasium``
are imported, in either order.

``kvgym/Evict-v0`` and ``kvgym/EvictPrefetch-v0`` are the decode environments and
``kvgym/PrefixCache-v0`` the serving one; the presets below differ from them only in keyword
arguments (a workload, a scenario, a quantization), as Gymnasium's own variants do. ``import kvgym`` does not import Gymnasium (so ``import kvgym.sim``
stays light): :func:`register_when_gymnasium_loads` registers at once if Gymnasium is already
imported, and otherwise the moment it is. Entry points are strings, so registering imports no env
code; ``gym.make("kvgym:kvgym/Evict-v0")`` imports ``kvgym`` first and works too.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

EVICT = "kvgym.envs.evict:EvictEnv"
EVICT_PREFETCH = "kvgym.envs.evict:EvictPrefetchEnv"


def _h200(tier0: str, **kw) -> dict:
    d = {"name": f"h200-hbm{tier0.rstrip('%')}", "profile": "h200-measured", "capacities": [tier0, None, None, None],
         "cost_model": "overlap"}
    d.update(kw)
    return d


#: id -> (entry point, kwargs). Scenarios are given as dicts so every spec is JSON-serialisable.
#: The default (Evict-v0) is ``topk_drift`` with HBM holding 13% of the page table: each decode step
#: pins 1,024 pages (12.3%), so tier 0 sits between the step's working set and the trace's
#: footprint and an episode has about 3,000 decisions. Capacities are shares of the *stored* bytes,
#: so the quantization presets hold the same pages and differ in bytes moved and decode cost.
PRESETS: dict[str, tuple[str, dict]] = {
    "kvgym/Evict-v0": (EVICT, {}),
    "kvgym/EvictPrefetch-v0": (EVICT_PREFETCH, {}),
    # Workloads (kvgym.workloads), each with a tier 0 between its step working set and footprint.
    "kvgym/Evict-HeavyHitter-v0": (EVICT, {"workload": "heavy_hitter", "scenario": _h200("12.5%")}),
    "kvgym/Evict-Retrieval-v0": (EVICT, {"workload": "retrieval", "scenario": _h200("5%")}),
    "kvgym/EvictPrefetch-Streaming-v0": (EVICT_PREFETCH, {"workload": "streaming",
                                                          "scenario": _h200("6.8%", prefetch=True)}),
    # Quantization of the default configuration.
    "kvgym/Evict-FP8-v0": (EVICT, {"scenario": _h200("13%", name="h200-hbm13-fp8", quantization="fp8")}),
    "kvgym/Evict-Int4-v0": (EVICT, {"scenario": _h200("13%", name="h200-hbm13-int4", quantization="int4")}),
    # kv-hierarchy-lab's toy tiers (serial costs) on one of its eight patterns: tiny and fast.
    "kvgym/Evict-Toy-v0": (EVICT, {"workload": "long_tail_mix", "k": 8, "sample": 2, "scenario": {
        "name": "seed-toy-small", "profile": "seed-toy", "capacities": [64000, 128000, 500000, 4000000],
        "cost_model": "serial", "decode": "parity"}}),
}
DECODE_ENV_IDS = tuple(PRESETS)

PREFIX = "kvgym.envs.prefix:PrefixCacheEnv"
#: Serving-mode ids (:class:`kvgym.envs.prefix.PrefixCacheEnv`): kwargs are a ``config`` of
#: overrides of the env's default configuration (keyword arguments at ``gym.make`` merge into it).
#: Capacities are blocks of 512 tokens (64 MiB for Llama-3.1-8B in fp16): the generated workloads
#: get a tier 0 that holds a few running requests, so eviction is frequent; the Mooncake preset gets
#: one H200's room for KV next to the weights (1,700 blocks, about 106 GiB) and 500 GiB of host RAM.
SERVING_PRESETS: dict[str, tuple[str, dict]] = {
    "kvgym/PrefixCache-v0": (PREFIX, {}),
    "kvgym/PrefixCache-RAG-v0": (PREFIX, {"config": {"workload": "rag", "workload_params": {"requests": 200},
                                                     "serving": {"capacities": [64, 256]}}}),
    "kvgym/PrefixCache-Mooncake-v0": (PREFIX, {"config": {"trace": "mooncake-synthetic", "episode_requests": 200,
                                                          "serving": {"capacities": [1700, 8000]}}}),
    "kvgym/PrefixCacheAdmit-v0": (PREFIX, {"config": {"admit": True, "admission": "threshold(store_threshold=2)"}}),
}
SERVING_ENV_IDS = tuple(SERVING_PRESETS)
ENV_IDS = DECODE_ENV_IDS + SERVING_ENV_IDS


def register_envs() -> list[str]:
    """Register every kvgym id not yet in Gymnasium's registry; returns the ids newly added."""
    from gymnasium.envs.registration import register, registry

    added = []
    for env_id, (entry, kwargs) in {**PRESETS, **SERVING_PRESETS}.items():
        if env_id not in registry:
            register(id=env_id, entry_point=entry, kwargs=kwargs, disable_env_checker=False)
            added.append(env_id)
    return added


class _AfterGymnasium(importlib.abc.MetaPathFinder):
    """One-shot import hook: when ``gymnasium`` finishes loading, register the ids."""

    def find_spec(self, name, path=None, target=None):
        if name != "gymnasium":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            register_envs()

        spec.loader.exec_module = exec_then_register
        return spec


def register_when_gymnasium_loads() -> None:
    """Register now if Gymnasium is imported, else as soon as it is (see the module docstring)."""
    if "gymnasium" in sys.modules:
        register_envs()
    elif not any(isinstance(f, _AfterGymnasium) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterGymnasium())
