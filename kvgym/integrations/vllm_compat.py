"""The vLLM version kvgym is pinned to, how it is found, and the interface kvgym relies on.

vLLM is an optional dependency, installed by the ``kvgym[vllm]`` extra *without* its own
dependencies (they pin a CUDA build of torch); see ``docs/vllm.md#install``.

- :data:`VLLM_VERSION`: the pinned version (the Makefile reads it from here).
- :func:`require_vllm`: import vLLM or raise one line naming the extra; warns once when the
  installed version is not the pinned one, naming both.
- :data:`CACHE_POLICY_CONTRACT` / :data:`MANAGER_CONTRACT`: the methods and parameter names of
  ``CachePolicy`` and ``CPUOffloadingManager`` that kvgym calls or implements, as in the pinned
  version; :func:`contract_differences` compares them with the installed vLLM (the contract
  test fails loudly on any difference).
"""

from __future__ import annotations

import importlib
import inspect
import warnings

from kvgym.errors import KvgymError

#: The vLLM release kvgym's vLLM integration is written and tested against.
VLLM_VERSION = "0.33.0"

EXTRA_HINT = ("the vLLM integration needs the kvgym[vllm] extra: `make venv` installs it, or "
              f"pip install -e '.[vllm]' && pip install --no-deps vllm=={VLLM_VERSION}")


class VllmMissing(KvgymError, ImportError):
    """vLLM (or one of the light packages it imports) is not installed."""


class VllmVersionWarning(UserWarning):
    """The installed vLLM is not the version kvgym is pinned to."""


_warned = False

# vLLM 0.33.0, vllm/v1/kv_offload/cpu/policies/base.py: every CachePolicy method kvgym
# implements, with its parameters (``self`` omitted). Abstract ones are marked.
CACHE_POLICY_CONTRACT: dict[str, tuple[str, ...]] = {
    "__init__": ("cache_capacity",),
    "get": ("key",),
    "insert": ("key", "chunk", "req_context"),
    "remove": ("key",),
    "touch": ("keys", "req_context"),
    "on_store_miss": ("keys", "req_context"),
    "on_request_access": ("keys", "req_context"),
    "on_request_finished": ("key_groups", "insertion_only_keys", "reused_keys", "req_context"),
    "evict": ("n", "protected"),
    "clear": (),
    "mark_evictable": ("key",),
    "mark_non_evictable": ("key",),
}
CACHE_POLICY_ABSTRACT = frozenset({"get", "insert", "remove", "touch", "evict", "clear"})

# vLLM 0.33.0, vllm/v1/kv_offload/cpu/manager.py: what replay_vllm calls.
MANAGER_CONTRACT: dict[str, tuple[str, ...]] = {
    "__init__": ("num_chunks", "cache_policy", "cache_policy_module_path", "enable_events",
                 "store_threshold", "max_tracker_size", "info"),
    "on_new_request": ("req_context",),
    "lookup": ("key", "req_context"),
    "prepare_load": ("keys", "req_context"),
    "complete_load": ("keys", "req_context"),
    "prepare_store": ("keys", "req_context"),
    "complete_store": ("keys", "req_context", "success"),
    "on_request_finished": ("req_context",),
}


def require_vllm():
    """Import and return the ``vllm`` package, or raise :class:`VllmMissing` (one line).

    Warns once (:class:`VllmVersionWarning`) when its version is not :data:`VLLM_VERSION`.
    """
    global _warned
    try:
        vllm = importlib.import_module("vllm")
        # The offloading code imports the light dependencies; fail here, not mid-run.
        importlib.import_module("vllm.v1.kv_offload.cpu.manager")
    except ImportError as e:
        raise VllmMissing(f"{EXTRA_HINT} ({type(e).__name__}: {e})") from None
    found = getattr(vllm, "__version__", "unknown")
    if found != VLLM_VERSION and not _warned:
        _warned = True
        warnings.warn(f"kvgym's vLLM integration is pinned to vLLM {VLLM_VERSION}, found vLLM {found}: "
                      "the CachePolicy interface may differ (run the contract test)",
                      VllmVersionWarning, stacklevel=2)
    return vllm


def _params(fn) -> tuple[str, ...]:
    return tuple(p for p in inspect.signature(fn).parameters if p != "self")


def contract_differences() -> list[str]:
    """Differences between the pinned contract and the installed vLLM (empty when it holds)."""
    require_vllm()
    from vllm.v1.kv_offload.cpu.manager import CPUOffloadingManager
    from vllm.v1.kv_offload.cpu.policies.base import CachePolicy

    out: list[str] = []
    own = {n for n, v in vars(CachePolicy).items() if callable(v) and (n == "__init__" or not n.startswith("_"))}
    for name in sorted(own - CACHE_POLICY_CONTRACT.keys()):
        out.append(f"CachePolicy.{name}{_params(getattr(CachePolicy, name))} is new")
    for cls, table in ((CachePolicy, CACHE_POLICY_CONTRACT), (CPUOffloadingManager, MANAGER_CONTRACT)):
        for name, want in table.items():
            fn = getattr(cls, name, None)
            if fn is None:
                out.append(f"{cls.__name__}.{name} is gone")
            elif _params(fn) != want:
                out.append(f"{cls.__name__}.{name}{_params(fn)} was {name}{want}")
    abstract = frozenset(getattr(CachePolicy, "__abstractmethods__", ()))
    if abstract != CACHE_POLICY_ABSTRACT:
        out.append(f"CachePolicy abstract methods {sorted(abstract)} were {sorted(CACHE_POLICY_ABSTRACT)}")
    return out
