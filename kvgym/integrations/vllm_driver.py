"""Run a kvgym eviction policy over an open-ended stream of cache keys, in kvgym's engine order.

This is the half of :class:`~kvgym.integrations.vllm_policy.KvgymCachePolicy` that holds
kvgym's semantics; it imports no vLLM, so ports are checked (``kvgym export vllm``) without it.

**Model.** One cache of ``capacity`` equal-size blocks (vLLM's CPU tier, kvgym's tier 0) over a
backing tier 1 that never fills (in vLLM: recompute by prefill). The hooks a policy receives are
exactly those of kvgym's reference engine on a one-cache setup
(:func:`kvgym.baselines.common.cache_setup`): a hit is ``on_access(p, 0)``; a miss is
``on_access(p, loc)`` (``loc`` = -1 for a page never seen, 1 for one evicted earlier), for a
first touch ``on_insert(p, 1)`` (cold insert into the backing tier), then room is made (each
victim: the lowest ``scores`` among the evictable candidates in tier-0 insertion order, ties to
the earliest inserted, then ``on_evict(v, 0)``), then ``on_insert(p, 0)``. ``step`` is given by
the caller (:meth:`PolicyDriver.new_step`: one per batch of accesses).

**What the policy sees** (:class:`VllmContext`): page ids, ``n_pages``, ``page_bytes`` (1 per
block), ``tiers`` (the cache and the backing tier), and the engine's per-page state
``tier_of``, ``last_access``, ``freq``, ``insert_step``, ``evict_step``, ``pos`` and ``step``.
Nothing else: no future (``future`` is None and oracles are refused), no attention weights
(``weight_sum``), no layer or token span (``pages``), no tier costs (``setup``,
``refetch_cost_us``), no regret signal. A policy that reads any of these is refused with one
line (:class:`PortError`).

**Open key space.** Keys (any hashable) get dense page ids. Resident keys keep theirs; a key
evicted more than ``history`` evictions ago is forgotten when a new key needs an id (its id is
recycled and every per-page array of the policy and the context is reset at that id, as for a
page never seen), unless the policy still holds the id in one of its containers (a ghost list,
a window): then the next-oldest is taken. When no id can be recycled the arrays grow (doubling).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Collection, Hashable
from typing import ClassVar

import numpy as np

from kvgym.errors import ConfigError, SimulationError
from kvgym.sim.policy import make_policy
from kvgym.sim.tiers import Tier

Key = Hashable

#: What a policy reading each absent context attribute would need (for the refusal line).
_UNSEEN = {
    "future": "the future of the trace",
    "pages": "the page table (sequence, layer, token span of decode pages)",
    "weight_sum": "attention weights",
    "setup": "kvgym's tier hierarchy and its transfer costs",
    "refetch_cost_us": "kvgym's tier hierarchy and its transfer costs",
    "decode_us": "kvgym's decode compute model",
    "regret": "kvgym's eviction-regret signal",
}
SEES = ("a vLLM CachePolicy sees block keys, the request and token position that touched them, "
        "and its own insert/evict history; no layer, attention weights or future")


class PortError(ConfigError, AttributeError):
    """A kvgym policy cannot run as a vLLM cache policy (it reads what vLLM cannot give)."""


def _refusal(name: str, attr: str) -> PortError:
    what = _UNSEEN.get(attr, f"ctx.{attr}")
    return PortError(f"policy {name!r} cannot run as a vLLM cache policy: it reads {what} (ctx.{attr}); {SEES}")


class VllmContext:
    """The part of :class:`kvgym.sim.context.SimContext` a vLLM cache policy can fill.

    Per-page arrays are indexed by page id and grow with :meth:`grow`; reading any other
    attribute raises :class:`PortError` naming it.
    """

    ARRAYS: ClassVar[dict] = {"tier_of": (np.int8, -1), "last_access": (np.int64, -1), "freq": (np.int64, 0),
              "insert_step": (np.int64, -1), "evict_step": (np.int64, -1), "page_bytes": (np.int64, 1)}

    def __init__(self, capacity: int, n_pages: int):
        self.n_pages = n_pages
        for name, (dtype, init) in self.ARRAYS.items():
            setattr(self, name, np.full(n_pages, init, dtype))
        # Capacity in the unit of page_bytes (1 per block), as cache_setup builds it.
        self.tiers = (Tier("cpu", capacity, 0.0, 0.0, 1.0), Tier("recompute", None, 0.0, 0.0, 1.0))
        self.pos = 0
        self.step = 0
        self.future = None

    def __getattr__(self, name: str):  # only reached for attributes not set above
        if name.startswith("__"):
            raise AttributeError(name)
        raise PortError(f"ctx.{name}")

    def reset(self, p: int) -> None:
        for name, (_, init) in self.ARRAYS.items():
            getattr(self, name)[p] = init

    def grow(self, n: int) -> None:
        for name, (dtype, init) in self.ARRAYS.items():
            setattr(self, name, np.concatenate([getattr(self, name), np.full(n - self.n_pages, init, dtype)]))
        self.n_pages = n


def _check_int(owner: str, name: str, v, minimum: int) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < minimum:
        raise ConfigError(f"{owner}: {name}={v!r} must be an int >= {minimum}")
    return int(v)


class PolicyDriver:
    """One kvgym policy (``name`` with ``params``) over one cache of ``capacity`` blocks.

    Args:
        history: evicted keys whose ids (and history) are kept (default ``4 * capacity``).
    """

    def __init__(self, name: str, params: dict | None, capacity: int, *, history: int | None = None):
        self.capacity = _check_int("vllm policy", "cache_capacity", capacity, 1)
        self.history = 4 * self.capacity if history is None else _check_int("vllm policy", "history", history, 0)
        pol = make_policy(name, **(params or {}))
        if pol.privileged:
            raise PortError(f"policy {name!r} is an oracle: it reads the future of the trace, which a vLLM "
                            "cache policy cannot see")
        n = self.capacity + self.history + 1
        self.ctx = VllmContext(self.capacity, n)
        try:
            pol.bind(self.ctx)
        except PortError as e:
            raise _refusal(name, str(e).removeprefix("ctx.")) from None
        self.name = name
        self.policy = pol
        # Per-page arrays the policy allocated at bind, with the value a new page starts from.
        self._per_page: list[tuple[str, object]] = []
        for attr, v in vars(pol).items():
            if isinstance(v, np.ndarray) and v.ndim >= 1 and v.shape[0] == n:
                if not (v == v[0]).all():
                    raise PortError(f"policy {name!r} cannot run as a vLLM cache policy: its per-page array "
                                    f"{attr!r} does not start uniform, so ids of new keys cannot be recycled")
                self._per_page.append((attr, v[0].copy()))
        self._on_access = [pol.on_access] if pol.on_access is not None else []
        self._on_insert = [pol.on_insert] if pol.on_insert is not None else []
        self._on_evict = [pol.on_evict] if pol.on_evict is not None else []
        self.ids: dict[Key, int] = {}
        self.keys: list[Key | None] = [None] * n
        self._free = list(range(n - 1, -1, -1))  # pop() hands out the lowest id first
        self.resident: dict[Key, int] = {}  # tier 0: key -> page id, in insertion order
        self.gone: OrderedDict[Key, None] = OrderedDict()  # known, not resident, oldest eviction first
        self._step = 0
        self.pos = 0

    # -- steps and accesses ------------------------------------------------------------
    def new_step(self) -> int:
        """Start a batch of accesses (kvgym's step); returns its number."""
        s = self._step
        self._step += 1
        self.ctx.step = s
        return s

    def _touch(self, p: int, loc: int) -> None:
        ctx = self.ctx
        ctx.pos = self.pos
        self.pos += 1
        for h in self._on_access:
            h(p, loc, ctx.step)
        ctx.last_access[p] = ctx.step
        ctx.freq[p] += 1

    def hit(self, key: Key) -> None:
        """An access of a resident key."""
        self._touch(self.ids[key], 0)

    def miss(self, key: Key, blocked: Collection = (), max_victims: int | None = None) -> list[Key] | None:
        """An access of a non-resident key and its insertion, evicting first while the cache is full
        (never a key in ``blocked``).

        Returns the victims in eviction order, or None (nothing done) when the insertion would
        need more than ``max_victims`` of them.
        """
        need = max(0, len(self.resident) + 1 - self.capacity)
        if max_victims is not None and need > max_victims:
            return None
        p = self.ids.get(key)
        if p is None:
            p = self._new_id(key)
        else:
            del self.gone[key]
        ctx, s = self.ctx, self.ctx.step
        loc = int(ctx.tier_of[p])
        self._touch(p, loc)
        if loc < 0:  # first touch: cold-inserted into the backing tier, then promoted
            ctx.tier_of[p] = 1
            for h in self._on_insert:
                h(p, 1, s)
        ctx.tier_of[p] = -1
        victims = [self.victim(blocked) for _ in range(need)]
        self.resident[key] = p
        ctx.tier_of[p] = 0
        ctx.insert_step[p] = s
        for h in self._on_insert:
            h(p, 0, s)
        return victims

    def candidates(self, blocked: Collection = ()) -> np.ndarray:
        """Page ids of the residents not in ``blocked``, in insertion order."""
        ids = np.fromiter(self.resident.values(), np.int64, len(self.resident))
        out = [self.resident[k] for k in blocked if k in self.resident]
        return ids[~np.isin(ids, out)] if out else ids

    def victim(self, blocked: Collection = ()) -> Key:
        """Choose and evict one resident outside ``blocked`` (the policy's lowest score)."""
        cands = self.candidates(blocked)
        if not len(cands):
            raise SimulationError(f"{self.name}: no evictable block to make room")
        v = self.keys[int(cands[int(np.argmin(self.policy.scores(cands, self.ctx.step)))])]
        self.evict(v)
        return v

    def evict(self, key: Key) -> None:
        """Remove a resident key from the cache (it stays known, in the backing tier)."""
        p = self.ids[key]
        del self.resident[key]
        ctx = self.ctx
        ctx.tier_of[p] = -1
        for h in self._on_evict:
            h(p, 0, ctx.step)
        ctx.evict_step[p] = ctx.step
        ctx.tier_of[p] = 1
        self.gone[key] = None

    # -- ids ---------------------------------------------------------------------------
    def _new_id(self, key: Key) -> int:
        if len(self.gone) > self.history:
            self._recycle(len(self.gone) - self.history)
        if not self._free:
            self._grow()
        p = self._free.pop()
        self.ids[key] = p
        self.keys[p] = key
        return p

    def _held(self, p: int) -> bool:
        """True when the policy still holds id ``p`` in one of its containers."""
        return any(p in c for c in vars(self.policy).values() if isinstance(c, (dict, set, frozenset, list, deque)))

    def _recycle(self, count: int) -> None:
        """Forget up to ``count`` of the oldest evicted keys the policy no longer holds."""
        for _ in range(len(self.gone)):
            if count == 0:
                return
            key = next(iter(self.gone))
            p = self.ids[key]
            if self._held(p):  # still a ghost or in a window: look again later
                self.gone.move_to_end(key)
                continue
            del self.gone[key]
            del self.ids[key]
            self.keys[p] = None
            self.ctx.reset(p)
            for attr, init in self._per_page:
                getattr(self.policy, attr)[p] = init
            self._free.append(p)
            count -= 1

    def _grow(self) -> None:
        old, n = self.ctx.n_pages, 2 * self.ctx.n_pages
        self.ctx.grow(n)
        for attr, init in self._per_page:
            a = getattr(self.policy, attr)
            setattr(self.policy, attr, np.concatenate([a, np.full((n - old, *a.shape[1:]), init, a.dtype)]))
        self.keys.extend([None] * (n - old))
        self._free.extend(range(n - 1, old - 1, -1))


def check_portable(name: str, params: dict | None = None) -> None:
    """Raise :class:`PortError` (or ConfigError for a bad name/parameter) unless the policy ports.

    Binds the policy and drives it through evictions, id recycling and array growth on a small
    fixed key stream, so a policy that reads an unseen attribute only while scoring is caught too.
    """
    d = PolicyDriver(name, params, 3, history=1)
    stream = [0, 1, 2, 0, 3, 4, 0, 5, 1, 6, 7, 2, 8, 0, 9, 10, 11, 3, 12, 13, 0, 14]
    try:
        for i, k in enumerate(stream):
            d.new_step()
            if k in d.resident:
                d.hit(k)
            else:
                d.miss(k)
            if i == 10:
                d._grow()
    except PortError as e:
        if str(e).startswith("ctx."):
            raise _refusal(name, str(e).removeprefix("ctx.")) from None
        raise
