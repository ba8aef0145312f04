"""``RecordingPolicy``: wrap any vLLM ``CachePolicy`` and record the CPU tier's access stream as a
kvgym trace, so a deployment's real stream can be replayed in kvgym.

**What is recorded.** Every batch a policy is told about as accesses: each
``on_request_access(keys, req)`` call (the keys a request touches for the first time: blocks
it loads, then blocks its stores offer and admit) and each ``touch(keys, req)`` call is one
kvgym **step**; each key is one access, its page id given in order of first appearance. The
page table holds, per key: ``seq`` = ordinal of the first request that touched it,
``token_start == token_end`` = its end-token position in that request (0 if vLLM gave none),
``fp16_bytes`` = ``CHUNK_BYTES`` (the CPU chunk size, if known; default 1). The inner policy's
decisions are counted in ``meta["vllm"]``: ``accesses``, ``hits`` (accesses of keys resident
at that moment), ``inserts``, ``evictions``, ``removes`` (failed stores cleaned up),
``clears``.

Replaying the trace in kvgym on a one-cache setup of ``cache_capacity`` blocks with the same
policy (``KvgymCachePolicy`` inside, the kvgym policy outside) gives the same hits, misses
(= inserts) and evictions, as long as no store failed (a failed store's accesses are in the
trace but nothing was inserted). Keys held back by ``store_threshold`` are never announced to
the policy, so the trace holds the admitted stream only.

**Writing.** The trace is written atomically (``kvgym.traces.parquet.write_trace``) by
:meth:`RecordingPolicy.flush`: at interpreter exit (:meth:`RecordingPolicy.flush_all`) and on
``clear()``; call it yourself for a snapshot (each call rewrites the whole file).

Use it in vLLM through a module of your own on PYTHONPATH::

    from kvgym.integrations.vllm_record import RecordingPolicy

    class RecordedLRU(RecordingPolicy):
        INNER = "lru"                     # a vLLM policy name, or "package.module:ClassName"
        OUTPUT = "/data/cpu_tier.parquet"

and ``"eviction_policy": "RecordedLRU", "cache_policy_module_path": "<that module>"``.
"""

from __future__ import annotations

import atexit
import importlib
import weakref
from array import array
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from kvgym.errors import ConfigError
from kvgym.integrations.vllm_compat import require_vllm

vllm = require_vllm()

from vllm.v1.kv_offload.cpu.policies.base import CachePolicy, ChunkStatus
from vllm.v1.kv_offload.cpu.policies.factory import CachePolicyFactory


def resolve_policy_class(spec: str) -> type[CachePolicy]:
    """A vLLM cache policy class from a built-in name (``lru``, ``arc``) or ``module:ClassName``."""
    if ":" in spec:
        mod, _, name = spec.partition(":")
        try:
            cls = getattr(importlib.import_module(mod), name, None)
        except ModuleNotFoundError as e:
            raise ConfigError(f"inner policy {spec!r}: no such module ({e})") from None
        if not (isinstance(cls, type) and issubclass(cls, CachePolicy)):
            raise ConfigError(f"inner policy {spec!r}: module {mod!r} does not define a CachePolicy class {name!r}")
        return cls
    try:
        return CachePolicyFactory.get_cache_policy_cls(spec)
    except ValueError:
        raise ConfigError(f"inner policy {spec!r}: not a vLLM cache policy name (built in: "
                          f"{', '.join(sorted(CachePolicyFactory._registry))}; or give module:ClassName)") from None


_LIVE: weakref.WeakSet = weakref.WeakSet()


class RecordingPolicy(CachePolicy):
    """Records the accesses ``INNER`` sees to ``OUTPUT`` (see the module docstring)."""

    INNER = "lru"
    OUTPUT = "kvgym_cpu_tier.parquet"
    CHUNK_BYTES = 1

    def __init__(self, cache_capacity: int, inner: str | None = None, output: str | Path | None = None,
                 chunk_bytes: int | None = None):
        super().__init__(cache_capacity)
        self.inner_spec = inner or self.INNER
        self.inner = resolve_policy_class(self.inner_spec)(cache_capacity=cache_capacity)
        self.output = Path(output or self.OUTPUT)
        self.chunk_bytes = self.CHUNK_BYTES if chunk_bytes is None else chunk_bytes
        if not isinstance(self.chunk_bytes, int) or isinstance(self.chunk_bytes, bool) or self.chunk_bytes < 1:
            raise ConfigError(f"RecordingPolicy: chunk_bytes={self.chunk_bytes!r} must be an int >= 1")
        self._ids: dict = {}
        self._requests: dict[str, int] = {}
        self._step, self._page = array("q"), array("q")
        self._seq, self._token = array("q"), array("q")
        self._steps = 0
        self.counts = {"accesses": 0, "hits": 0, "inserts": 0, "evictions": 0, "removes": 0, "clears": 0}
        _LIVE.add(self)

    @staticmethod
    def flush_all() -> list[Path]:
        """Flush every live recording policy (also run at interpreter exit); returns the files written."""
        return [p for rec in list(_LIVE) if (p := rec.flush()) is not None]

    def _record(self, keys: Iterable, req_context) -> list:
        keys = list(keys)
        if not keys:
            return keys
        step = self._steps
        self._steps += 1
        req = self._requests.setdefault(req_context.req_id, len(self._requests))
        for k in keys:
            p = self._ids.get(k)
            if p is None:
                p = self._ids[k] = len(self._ids)
                self._seq.append(req)
                self._token.append(req_context.get_offload_key_position(k) or 0)
            self._step.append(step)
            self._page.append(p)
            self.counts["hits"] += self.inner.get(k) is not None
        self.counts["accesses"] += len(keys)
        return keys

    def flush(self) -> Path | None:
        """Write the trace recorded so far to ``OUTPUT`` (atomically); None when nothing was recorded."""
        if not len(self._page):
            return None
        from kvgym.traces.format import PageTable, Trace
        from kvgym.traces.parquet import write_trace

        token = np.frombuffer(self._token, np.int64).copy()
        n = len(self._seq)
        pages = PageTable(seq=np.frombuffer(self._seq, np.int64).astype(np.int32), layer=np.zeros(n, np.int32),
                          token_start=token, token_end=token.copy(), fp16_bytes=np.full(n, self.chunk_bytes, np.int64))
        meta = {"generator": "vllm-record", "params": {"inner": self.inner_spec, "cache_capacity": self.cache_capacity,
                                                      "chunk_bytes": self.chunk_bytes},
                "vllm": {"version": vllm.__version__, **self.counts},
                "step": "one batch of accesses: on_request_access or touch"}
        trace = Trace(np.frombuffer(self._step, np.int64).copy(), np.frombuffer(self._page, np.int64).copy(),
                      pages, None, meta)
        return write_trace(trace, self.output)

    # -- CachePolicy: forward, counting ------------------------------------------------
    def get(self, key) -> ChunkStatus | None:
        return self.inner.get(key)

    def insert(self, key, chunk: ChunkStatus, req_context) -> None:
        self.counts["inserts"] += 1
        self.inner.insert(key, chunk, req_context)

    def remove(self, key) -> None:
        self.counts["removes"] += 1
        self.inner.remove(key)

    def touch(self, keys: Iterable, req_context) -> None:
        self.inner.touch(self._record(keys, req_context), req_context)

    def on_store_miss(self, keys: Iterable, req_context) -> None:
        self.inner.on_store_miss(keys, req_context)

    def on_request_access(self, keys: Iterable, req_context) -> None:
        self.inner.on_request_access(self._record(keys, req_context), req_context)

    def on_request_finished(self, key_groups: Sequence[Sequence], insertion_only_keys: set, reused_keys: set,
                            req_context) -> None:
        self.inner.on_request_finished(key_groups, insertion_only_keys, reused_keys, req_context)

    def evict(self, n: int, protected: set) -> list[tuple[object, ChunkStatus]] | None:
        out = self.inner.evict(n, protected)
        if out:
            self.counts["evictions"] += len(out)
        return out

    def clear(self) -> None:
        self.counts["clears"] += 1
        self.flush()
        self.inner.clear()

    def mark_evictable(self, key) -> None:
        self.inner.mark_evictable(key)

    def mark_non_evictable(self, key) -> None:
        self.inner.mark_non_evictable(key)


atexit.register(RecordingPolicy.flush_all)
