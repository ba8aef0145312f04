"""The policy and prefetcher protocols, and the registries that find them by name.

**Eviction policy** (score-based): ``scores(cands, step)`` returns one number per candidate
page (an int64 array of page ids, in the tier's insertion order); the engine evicts the
candidate with the **lowest** score, ties going to the one inserted first. Scores are asked
afresh for every victim, so they may depend on the current ``step``. A policy may keep state
through optional hooks, each called with ``(page, tier, step)``; ``tier`` is -1 when the page
is resident nowhere:

- ``on_access``: every access, before any placement or eviction it causes;
- ``on_insert``: a page placed in tier 0 by a promotion, or cold-inserted in the backing tier
  (not called for demotions);
- ``on_evict``: a page evicted from any tier (demoted or dropped).

``bind(ctx)`` is called once before a run with the :class:`~kvgym.sim.context.SimContext`
(page sizes, tiers, per-page engine state, and ``ctx.future``, the privileged view of the
trace, which only oracle policies may read).

**Prefetcher**: ``propose(step, pages) -> sequence of page ids`` after a step's demand
accesses (``pages``: that step's accessed page ids); same optional hooks. The engine cuts the
list to the scenario's ``max_prefetch``.

Policies and prefetchers register by name with :func:`register_policy` /
:func:`register_prefetcher`; ``make_policy(name, **params)`` builds one.

**Serving mode** (:mod:`kvgym.sim.serving`, request-level prefix caching) gives every tier its
own policy object, bound to a per-tier view of the hierarchy (a
:class:`~kvgym.sim.serving.context.ServingContext`): the policy sees its tier as tier 0 and a
block outside it as resident nowhere, so every decode policy runs there unchanged with "page" =
block id and "access" = a block reference of that tier (tier 0: every prompt block reference and
every output block a request completes; a lower tier: a load from it, or a store offer to it).
``step`` is the engine's event counter (it rises at every block event, so LRU is exact). The
context also carries ``req`` (the request being served, -1 none) and ``block_pos`` (the chain
position of the block being handled, -1 none). Serving adds optional request-level hooks, called
with ``(req, blocks, positions, step)`` (int64 arrays in chain order, head first), each block at
most once per request and tier (they mirror vLLM's ``CachePolicy``, see ``docs/serving.md``):

- ``on_request_load``: the request's prefix blocks found in this tier (read from it);
- ``on_request_offer``: blocks a write-through store offers to this tier that are present or
  admitted (vLLM's request-scoped access of ``prepare_store``);
- ``on_store_miss``: admitted blocks that are not present (before they are inserted);
- ``on_request_finished(req, blocks, positions, inserted, reused, step)``: at the request's end,
  every block it loaded, offered or held in this tier (head first); ``inserted``: the ones it
  placed here, ``reused``: the ones it read or found present, except those it had placed here
  itself before (sets; vLLM's ``inserted_keys`` and ``reused_keys``).

Policies made for serving only register with ``register_policy(name, serving_only=True)``: they
run in the decode engine too (on the per-access hooks) but :func:`policy_names` leaves them out
so decode sweeps are unchanged; :func:`serving_policy_names` lists every policy usable there.

**Admission** (write-through stores, :class:`Admission`): ``on_reference(block)`` at every
tier-0 block reference, ``on_offer(blocks)`` at every store offer (all offered blocks, present or
not), then ``admit(blocks) -> bool array`` for the offered blocks not present in the tier, in
offer order. Registered with :func:`register_admission`; :func:`make_admission` builds one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np

from kvgym.errors import ConfigError, unknown_name
from kvgym.params import check as check_param  # noqa: F401  (the policies' parameter check)


class Policy:
    """Base class of eviction policies. Subclasses set ``name`` and implement ``scores``.

    A built-in policy also names its compiled implementation (``compiled = "name"`` in its own
    class body, see :mod:`kvgym.sim.compiled`) and packs its parameters for it in
    ``compiled_args(setup) -> (floats, ints)``; a policy without one runs in the compiled engine
    through Python callbacks.
    """

    name = "policy"
    #: True for policies that read ``ctx.future`` (oracles); the harness labels them.
    privileged = False
    #: True for policies registered for serving mode only (left out of :func:`policy_names`).
    serving_only = False
    on_access = None
    on_insert = None
    on_evict = None
    # Serving mode's request-level hooks (see the module docstring).
    on_request_load = None
    on_request_offer = None
    on_store_miss = None
    on_request_finished = None

    def bind(self, ctx) -> None:
        self.ctx = ctx

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def compiled_args(self, setup) -> tuple[tuple[float, ...], tuple[int, ...]]:
        """Parameters of the compiled implementation: (up to 8 floats, up to 4 ints)."""
        return (), ()

    def params(self) -> dict:
        """Constructor parameters (JSON-serialisable), for manifests."""
        return dict(getattr(self, "_params", {}))

    def __repr__(self) -> str:
        p = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({p})"


class Admission:
    """Base class of admission policies for write-through stores (see the module docstring)."""

    name = "admission"
    on_reference = None
    on_offer = None

    def bind(self, ctx) -> None:
        self.ctx = ctx

    def admit(self, blocks: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def compiled_args(self) -> tuple[int, int, int, int, int] | None:
        """The compiled engine's parameters of this admission, once bound (class with ``compiled
        = "always" | "threshold" | "sketch"`` in its own body), or None when its state must stay
        in Python (it then runs through callbacks)."""
        return None

    def params(self) -> dict:
        return dict(getattr(self, "_params", {}))


class Prefetcher:
    """Base class of prefetchers. ``propose`` returns page ids to bring into tier 0."""

    name = "prefetcher"
    privileged = False
    on_access = None
    on_insert = None
    on_evict = None

    def bind(self, ctx) -> None:
        self.ctx = ctx

    def propose(self, step: int, pages: np.ndarray):  # pragma: no cover - abstract
        raise NotImplementedError

    def compiled_args(self, setup) -> tuple[tuple[int, ...], np.ndarray | None]:
        """Parameters of the compiled implementation: (up to 4 ints, a per-page int64 table or None)."""
        return (), None

    def params(self) -> dict:
        return dict(getattr(self, "_params", {}))


_POLICIES: dict[str, Callable[..., Policy]] = {}
_PREFETCHERS: dict[str, Callable[..., Prefetcher]] = {}
_ADMISSIONS: dict[str, Callable[..., Admission]] = {}


def register_policy(name: str, *, serving_only: bool = False):
    """Class decorator: make a policy available by ``name`` (``serving_only``: see the module docstring)."""
    def deco(cls):
        cls.name = name
        cls.serving_only = serving_only
        _POLICIES[name] = cls
        return cls
    return deco


def register_admission(name: str):
    """Class decorator: make an admission policy available by ``name``."""
    def deco(cls):
        cls.name = name
        _ADMISSIONS[name] = cls
        return cls
    return deco


def register_prefetcher(name: str):
    def deco(cls):
        cls.name = name
        _PREFETCHERS[name] = cls
        return cls
    return deco


def _build(kind: str, table: dict, name: str, params: dict):
    if name not in table:
        raise unknown_name(kind, name, table)
    sig = inspect.signature(table[name])
    if not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        unknown = sorted(set(params) - set(sig.parameters))
        if unknown:  # name the parameter (a bare TypeError may not, e.g. "takes no arguments")
            raise ConfigError(f"{kind} {name!r}: unknown parameters {unknown}; valid: "
                              f"{', '.join(sig.parameters) or 'none'}")
    try:
        obj = table[name](**params)
    except TypeError as e:
        raise ConfigError(f"{kind} {name!r}: {e}") from None
    obj._params = dict(params)
    return obj


def make_policy(name: str, **params) -> Policy:
    return _build("policy", _POLICIES, name, params)


def make_prefetcher(name: str, **params) -> Prefetcher:
    return _build("prefetcher", _PREFETCHERS, name, params)


def policy_names() -> list[str]:
    """Registered decode policies (the built-ins register when ``kvgym`` is imported); serving-only
    ones are left out (see the module docstring)."""
    return sorted(n for n, c in _POLICIES.items() if not getattr(c, "serving_only", False))


def make_admission(name: str, **params) -> Admission:
    return _build("admission policy", _ADMISSIONS, name, params)


def admission_names() -> list[str]:
    return sorted(_ADMISSIONS)


def serving_policy_names() -> list[str]:
    """Every policy the serving engine runs: all but the privileged (oracle) ones."""
    return sorted(n for n, c in _POLICIES.items() if not getattr(c, "privileged", False))


def prefetcher_names() -> list[str]:
    return sorted(_PREFETCHERS)


def policy_class(name: str) -> type:
    """The class registered as ``name`` (its module docstring states the rule)."""
    if name not in _POLICIES:
        raise unknown_name("policy", name, _POLICIES)
    return _POLICIES[name]


def prefetcher_class(name: str) -> type:
    """The class registered as prefetcher ``name`` (its module docstring states the rule)."""
    if name not in _PREFETCHERS:
        raise unknown_name("prefetcher", name, _PREFETCHERS)
    return _PREFETCHERS[name]
