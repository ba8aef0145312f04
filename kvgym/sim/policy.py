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
    on_access = None
    on_insert = None
    on_evict = None

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


def register_policy(name: str):
    """Class decorator: make a policy available by ``name``."""
    def deco(cls):
        cls.name = name
        _POLICIES[name] = cls
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
    """Registered policies (the built-ins register when ``kvgym`` is imported)."""
    return sorted(_POLICIES)


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
