"""``KvgymCachePolicy``: a vLLM ``CachePolicy`` that runs a kvgym eviction policy.

vLLM's offloading manager (``vllm/v1/kv_offload/cpu/manager.py``) calls its policy as follows;
each call maps to kvgym's engine order through :class:`~kvgym.integrations.vllm_driver.PolicyDriver`:

- ``on_request_access(keys, req)``: the keys a request touches for the first time, in prefix
  order (the blocks it loads, then those its stores offer and admit). This is **one kvgym step**
  of accesses. Resident keys at the head are hits at once; from the first non-resident key on,
  the accesses wait (in the request's queue) for the store that writes that key, so hits and
  misses reach the policy in kvgym's order (access, make room, insert, next access).
- ``evict(n, protected)``: called by ``prepare_store`` before it inserts the new keys. The
  waiting accesses of that store (the request queue whose next key is in ``protected``) are
  played now: each miss makes room when the cache is full (victim: the kvgym policy's lowest
  score among resident chunks neither pinned nor in ``protected``), then is inserted
  into the policy. Atomic: when fewer than ``n`` chunks are evictable it returns None and
  changes nothing. If the played misses free fewer than ``n`` chunks, more victims are chosen.
- ``insert(key, chunk, req)``: records the chunk; a key not yet played (no eviction was needed)
  is played now with the accesses queued before it.
- ``on_request_finished``: plays the request's remaining hits; accesses of keys that were never
  stored (a failed store) are dropped, since no kvgym access exists without its insertion.
- ``touch(keys, req)`` (not called by the 0.33 connector): one step of hits on the resident keys.
- ``remove(key)`` (a failed transfer): the key leaves the policy as an eviction would
  (``on_evict``), without counting as one.
- ``on_store_miss``: nothing (the miss is seen through ``on_request_access``).
- ``get``, ``clear``: chunk bookkeeping; ``mark_evictable``/``mark_non_evictable`` (and an
  insert with ``ref_cnt != 0``) track which chunks are pinned by transfers.

A module written by ``kvgym export vllm`` subclasses it with the policy's name and parameters
(vLLM builds policies with ``cache_capacity`` only).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from kvgym.errors import SimulationError
from kvgym.integrations.vllm_compat import require_vllm
from kvgym.integrations.vllm_driver import PolicyDriver

require_vllm()

from vllm.v1.kv_offload.cpu.policies.base import CachePolicy, ChunkStatus


@dataclass(slots=True)
class _Waiting:
    """A request's accesses not yet played: (key, step) in access order."""

    owner: object
    generation: int
    queue: deque = field(default_factory=deque)


class KvgymCachePolicy(CachePolicy):
    """Runs kvgym policy ``POLICY`` with ``PARAMS`` (subclasses set them) as a vLLM cache policy.

    Args:
        cache_capacity: chunks in vLLM's CPU tier (given by vLLM).
        policy, params, history: override ``POLICY``, ``PARAMS`` and ``HISTORY`` (evicted keys
            whose kvgym history is kept; None: ``4 * cache_capacity``).
    """

    POLICY = "lru"
    PARAMS: ClassVar[dict] = {}
    HISTORY: int | None = None

    def __init__(self, cache_capacity: int, policy: str | None = None, params: dict | None = None,
                 history: int | None = None):
        super().__init__(cache_capacity)
        self._spec = (policy or self.POLICY, dict(self.PARAMS if params is None else params),
                      self.HISTORY if history is None else history)
        self._generation = 0
        self._reset()

    def _reset(self) -> None:
        name, params, history = self._spec
        self.driver = PolicyDriver(name, params, self.cache_capacity, history=history)
        self.chunks: dict = {}
        self._pinned: set = set()  # chunks with ref_cnt != 0 (stores in flight, loads)
        self._active: dict[int, _Waiting] = {}

    # -- request queues ----------------------------------------------------------------
    def _waiting(self, req_context) -> _Waiting:
        w = req_context.get_state(_Waiting)
        if w is None or w.owner is not self or w.generation != self._generation:
            w = _Waiting(self, self._generation)
            req_context.set_state(w)
            self._active[id(w)] = w
        return w

    def _blocked(self, protected: set) -> set:
        """Keys an eviction must not take: protected by the store, or pinned."""
        return protected | self._pinned if self._pinned else protected

    def _next(self, w: _Waiting):
        """Pop ``w``'s next access and set the step it belongs to."""
        key, step = w.queue.popleft()
        self.driver.ctx.step = step
        return key

    def _play_until(self, w: _Waiting, until) -> None:
        """Play ``w``'s accesses up to ``until``, a key being inserted into a free chunk."""
        d = self.driver
        while w.queue:
            key = self._next(w)
            if key in d.resident:
                d.hit(key)
            elif key == until:
                self._place(key)
                return
            # else: accessed but not stored now (not admitted): no kvgym access

    def _place(self, key) -> None:
        """A miss inserted into a chunk vLLM found free: it needs no victim."""
        if self.driver.miss(key, max_victims=0) is None:
            raise SimulationError(f"{self.driver.name}: vLLM inserted a block into a full CPU tier "
                                  "(an insert or eviction bypassed the policy)")

    def _play_store(self, w: _Waiting, protected: set, blocked: set, budget: int) -> list:
        """Play the accesses of the store being prepared (keys in ``protected``); its misses
        make room with at most ``budget`` victims in all. Returns the victims."""
        d, victims = self.driver, []
        while w.queue and w.queue[0][0] in protected:
            key, step = w.queue[0]
            d.ctx.step = step
            if key in d.resident:
                d.hit(key)
            else:
                got = d.miss(key, blocked, budget - len(victims))
                if got is None:
                    break
                victims += got
            w.queue.popleft()
        return victims

    def _play_rest(self, w: _Waiting) -> None:
        """The request is over: play its remaining hits; misses never stored are dropped."""
        d = self.driver
        while w.queue:
            key = self._next(w)
            if key in d.resident:
                d.hit(key)

    # -- CachePolicy -------------------------------------------------------------------
    def get(self, key) -> ChunkStatus | None:
        return self.chunks.get(key)

    def insert(self, key, chunk: ChunkStatus, req_context) -> None:
        self.chunks[key] = chunk
        if chunk.ref_cnt != 0:
            self._pinned.add(key)
        d = self.driver
        if key in d.resident:  # already played by evict()
            return
        w = self._waiting(req_context)
        if any(k == key for k, _ in w.queue):
            self._play_until(w, key)
        else:  # inserted without being announced as an access: its own step
            d.new_step()
            self._place(key)

    def remove(self, key) -> None:
        self.chunks.pop(key, None)
        self._pinned.discard(key)
        if key in self.driver.resident:
            self.driver.evict(key)

    def touch(self, keys: Iterable, req_context) -> None:
        d = self.driver
        d.new_step()
        for key in keys:
            if key in d.resident:
                d.hit(key)

    def on_store_miss(self, keys: Iterable, req_context) -> None:
        return

    def on_request_access(self, keys: Iterable, req_context) -> None:
        w = self._waiting(req_context)
        step = self.driver.new_step()
        w.queue.extend((k, step) for k in keys)
        d = self.driver
        while w.queue and w.queue[0][0] in d.resident:  # hits before the first miss play at once
            d.hit(self._next(w))

    def on_request_finished(self, key_groups: Sequence[Sequence], insertion_only_keys: set, reused_keys: set,
                            req_context) -> None:
        w = req_context.get_state(_Waiting)
        if w is None or w.owner is not self or w.generation != self._generation:
            return
        self._play_rest(w)
        self._active.pop(id(w), None)

    def evict(self, n: int, protected: set) -> list[tuple[object, ChunkStatus]] | None:
        if n == 0:
            return []
        d = self.driver
        blocked = self._blocked(protected)
        if len(d.candidates(blocked)) < n:
            return None
        victims: list = []
        for w in list(self._active.values()):
            if w.queue and w.queue[0][0] in protected:
                victims += self._play_store(w, protected, blocked, n - len(victims))
        while len(victims) < n:
            victims.append(d.victim(blocked))
        return [(k, self.chunks.pop(k)) for k in victims]

    def clear(self) -> None:
        self._generation += 1
        self._reset()

    def mark_evictable(self, key) -> None:
        self._pinned.discard(key)

    def mark_non_evictable(self, key) -> None:
        self._pinned.add(key)
