"""``replay_vllm``: drive vLLM's real ``CPUOffloadingManager`` with a request stream, calling it
exactly as vLLM 0.33.0's offloading connector does (scheduler side,
``vllm/distributed/kv_transfer/kv_connector/v1/offloading/scheduler.py``).

**Setting.** One full-attention KV group, one offloaded chunk per block (``block_size`` =
``block_tokens`` in ``kv_connector_extra_config``), ``offload_prompt_only`` (vLLM's default:
only prompt blocks are stored), no partial-tail lookups (those need a recurrent group), no
sync-load budget. Requests run **one at a time, in arrival order**, and every transfer completes
before the connector's next call: no block is pending (``ref_cnt`` -1) or pinned by a load
when another request looks it up, and ``lookup`` never answers ``HIT_PENDING`` or ``RETRY``.

**GPU side.** Request ``r``'s first ``gpu_blocks[r]`` blocks are held by vLLM's GPU prefix
cache at admission (default 0: prefix caching off, or a GPU cache that keeps nothing between
requests). The GPU side is not simulated: the caller says what it holds.

**Keys.** Block id ``b`` becomes the key ``make_offload_key(b.to_bytes(8, "big"), 0)``; only
*full* prompt blocks have keys (vLLM hashes a block once it is full), and the key of block ``i``
is registered at token position ``(i + 1) * block_tokens`` (``update_offload_keys``, l. 426).

**Calls per request** (n full blocks, g held by the GPU; scheduler.py line numbers of 0.33.0):

1. ``on_new_request(ctx)`` (``on_new_request``, l. 1201).
2. ``lookup(key)`` for blocks ``g, g+1, ...`` until the first ``MISS`` (``get_num_new_matched_tokens``
   -> ``_lookup_complete_chunks`` -> ``_maximal_prefix_lookup``, l. 786): ``h`` hits. Blocks
   after the first miss are recomputed even when cached.
3. If ``h > 0``: ``prepare_load(keys[g:g+h])`` (``update_state_after_alloc``, l. 1474), then
   ``complete_load`` of the same keys when the load finishes (``_update_connector_output``,
   l. 2293). The store offers then start after the loaded prefix (``next_stored_chunk_idx =
   num_chunks``, l. 1472); with ``h == 0`` they start at block 0, so blocks the GPU held are
   offered too (``update_state_after_alloc`` returns early, l. 1362).
4. Each prefill step (``prefill_tokens`` tokens per step, default the whole prompt in one step)
   offers the newly computed full blocks: ``prepare_store(keys[next:upto])`` (``_build_store_jobs``,
   l. 1988), then ``complete_store(keys_to_store)`` (l. 2291). A ``None`` (no room:
   stores are all-or-nothing) leaves ``next`` where it was, so the same blocks are offered again
   at every later step of the request: each of its ``output_tokens - 1`` decode steps and its
   finishing step (``finished_req_ids``, l. 1823). No call is made when nothing is left to offer.
5. ``on_request_finished(ctx)`` (``_build_connector_meta``, l. 2182), after the last offer.

``touch`` is never called (the 0.33 connector does not); recency moves inside ``prepare_load``,
``prepare_store`` and ``on_request_finished``. ``store_threshold`` and the tracker size go to
the manager, which counts every offer (retries included) in its bounded tracker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from kvgym.errors import ConfigError, TraceError


@dataclass(frozen=True, eq=False)
class BlockRequests:
    """Requests as the offloading connector sees them, in arrival order (columnar).

    ``blocks[offsets[r]:offsets[r + 1]]``: request ``r``'s full prompt blocks in prefix order
    (ids >= 0, distinct within a request); ``prompt_tokens[r]`` (>= that count x
    ``block_tokens``, < one more block); ``output_tokens[r]`` (>= 1, generated tokens);
    ``gpu_blocks[r]``: leading blocks the GPU prefix cache holds at admission;
    ``lines``: each request's source line, for messages (None if unknown).
    """

    offsets: np.ndarray
    blocks: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    gpu_blocks: np.ndarray
    block_tokens: int
    source: str = "requests"
    lines: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.prompt_tokens)

    def request(self, r: int) -> np.ndarray:
        return self.blocks[self.offsets[r]:self.offsets[r + 1]]

    @classmethod
    def from_lists(cls, requests: Sequence[Sequence[int]], *, block_tokens: int = 512, prompt_tokens=None,
                   output_tokens=None, gpu_blocks=None, source: str = "requests") -> BlockRequests:
        """Requests given as lists of full-block ids; prompts default to whole blocks, one output token."""
        counts = np.array([len(r) for r in requests], np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        blocks = np.array([b for r in requests for b in r], np.int64) if counts.sum() else np.zeros(0, np.int64)
        n = len(counts)
        out = cls(offsets, blocks,
                  counts * block_tokens if prompt_tokens is None else np.asarray(prompt_tokens, np.int64),
                  np.ones(n, np.int64) if output_tokens is None else np.asarray(output_tokens, np.int64),
                  np.zeros(n, np.int64) if gpu_blocks is None else np.asarray(gpu_blocks, np.int64),
                  block_tokens, source)
        out.validate()
        return out

    def validate(self) -> None:
        """Raise :class:`TraceError` naming the request (and source line) at fault."""
        bt = self.block_tokens
        if not isinstance(bt, int) or isinstance(bt, bool) or bt < 1:
            raise ConfigError(f"{self.source}: block_tokens must be an int >= 1, got {bt!r}")
        n = len(self.prompt_tokens)
        for name in ("output_tokens", "gpu_blocks"):
            if len(getattr(self, name)) != n:
                raise TraceError(f"{self.source}: {name} has {len(getattr(self, name))} values for {n} requests")
        if len(self.offsets) != n + 1 or self.offsets[0] != 0 or self.offsets[-1] != len(self.blocks) \
                or (np.diff(self.offsets) < 0).any():
            raise TraceError(f"{self.source}: offsets must run from 0 to {len(self.blocks)} without going back")
        counts = np.diff(self.offsets)

        def fail(bad, msg):
            r = int(np.flatnonzero(bad)[0])
            line = f" (line {int(self.lines[r])})" if self.lines is not None else ""
            raise TraceError(f"{self.source}: request {r}{line}: {msg(r)}")

        owner = np.repeat(np.arange(n), counts)  # request of each block
        if (neg := self.blocks < 0).any():
            fail(np.bincount(owner[neg], minlength=n) > 0,
                 lambda r: f"block ids must be >= 0, got {int(self.request(r).min())}")
        fail_if = [
            (self.prompt_tokens // bt != counts,
             lambda r: f"{int(counts[r])} full blocks given for {int(self.prompt_tokens[r])} prompt tokens "
                       f"(expected prompt_tokens // {bt} = {int(self.prompt_tokens[r] // bt)})"),
            (self.output_tokens < 1, lambda r: f"output_tokens must be >= 1, got {int(self.output_tokens[r])}"),
            ((self.gpu_blocks < 0) | (self.gpu_blocks > counts),
             lambda r: f"gpu_blocks must be in [0, {int(counts[r])}], got {int(self.gpu_blocks[r])}"),
        ]
        for bad, msg in fail_if:
            if bad.any():
                fail(bad, msg)
        if len(self.blocks):
            order = np.lexsort((self.blocks, owner))
            same = (np.diff(owner[order]) == 0) & (np.diff(self.blocks[order]) == 0)
            if same.any():
                fail(np.bincount(owner[order][1:][same], minlength=n) > 0,
                     lambda r: "a block id appears twice in one request")


def from_mooncake(source, *, block_tokens: int = 512, partial_block: str = "drop", limit: int | None = None) -> BlockRequests:
    """Requests of a Mooncake JSON Lines file (or parsed :class:`~kvgym.traces.mooncake.Requests`).

    ``partial_block``: ``"drop"`` (vLLM's rule: a prompt's last, partly filled block has no key)
    or ``"keep"`` (every ``hash_ids`` entry is a full block: prompts rounded up to whole blocks).
    An ``output_length`` of 0 counts as 1 (vLLM generates at least one token).
    """
    from kvgym.traces.mooncake import Requests, read_requests

    if partial_block not in ("drop", "keep"):
        raise ConfigError(f"partial_block={partial_block!r}; valid: drop, keep")
    req = source if isinstance(source, Requests) else read_requests(source, block_tokens=block_tokens, limit=limit)
    counts = np.diff(req.offsets)
    if partial_block == "keep":
        keep, prompt = counts, counts * block_tokens
    else:
        keep, prompt = req.input_length // block_tokens, req.input_length
    starts = req.offsets[:-1]
    idx = np.concatenate([np.arange(s, s + k) for s, k in zip(starts, keep)]) if len(keep) else np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
    out = BlockRequests(offsets, req.hash_ids[idx.astype(np.int64)], prompt.astype(np.int64),
                        np.maximum(req.output_length, 1).astype(np.int64), np.zeros(len(keep), np.int64),
                        block_tokens, str(source if not isinstance(source, Requests) else "mooncake requests"),
                        req.lines)
    out.validate()
    return out


@dataclass(frozen=True)
class VllmCounts:
    """What vLLM's CPU tier did over a replay; counts are blocks unless said otherwise.

    ``blocks`` = ``gpu_hits + hits + misses`` (full prompt blocks over all requests);
    ``hits``: blocks the lookups found (the CPU-cached prefix after the GPU's), all loaded, so
    ``loads == hits``; ``misses``: blocks recomputed by prefill; ``stores``: blocks written to the
    CPU tier; ``skipped_stores``: store candidates held back by ``store_threshold`` (vLLM's own
    ``stores_skipped`` counter: once per offer, retries included); ``failed_stores``:
    ``prepare_store`` calls that returned None (no room; nothing stored); ``evictions``: blocks
    evicted from the CPU tier.
    """

    requests: int
    blocks: int
    gpu_hits: int
    hits: int
    misses: int
    loads: int
    stores: int
    skipped_stores: int
    failed_stores: int
    evictions: int

    @property
    def hit_rate(self) -> float:
        """CPU-tier hits per full prompt block."""
        return self.hits / self.blocks if self.blocks else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "hit_rate": self.hit_rate}


def block_key(block: int) -> bytes:
    """vLLM's offload key of block id ``block`` (KV group 0)."""
    from vllm.v1.kv_offload.base import make_offload_key

    return make_offload_key(int(block).to_bytes(8, "big"), 0)


def key_block(key: bytes) -> int:
    """The block id of an offload key made by :func:`block_key`."""
    return int.from_bytes(key[:-4], "big")


def make_manager(num_chunks: int, cache_policy: str = "lru", store_threshold: int = 1, *,
                 cache_policy_module_path: str | None = None, max_tracker_size: int = 64_000):
    """vLLM's ``CPUOffloadingManager``, with every bad argument reported in one line."""
    import importlib

    from kvgym.integrations.vllm_compat import require_vllm

    require_vllm()
    from vllm.v1.kv_offload.cpu.manager import CPUOffloadingManager
    from vllm.v1.kv_offload.cpu.policies.factory import CachePolicyFactory

    for name, v, lo in (("num_chunks", num_chunks, 1), ("store_threshold", store_threshold, 0),
                        ("max_tracker_size", max_tracker_size, 1)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
            raise ConfigError(f"replay_vllm: {name}={v!r} must be an int >= {lo}")
    if not isinstance(cache_policy, str) or not cache_policy:
        raise ConfigError(f"replay_vllm: cache_policy={cache_policy!r} must be a policy or class name")
    where = f"cache_policy_module_path {cache_policy_module_path!r}"
    if cache_policy not in CachePolicyFactory._registry:
        if cache_policy_module_path is None:
            raise ConfigError(f"unknown vLLM cache policy {cache_policy!r}; built in: "
                              f"{', '.join(sorted(CachePolicyFactory._registry))} (an exported policy also "
                              "needs cache_policy_module_path)")
        if cache_policy_module_path.endswith(".py") or "/" in cache_policy_module_path:
            raise ConfigError(f"{where} is an import path (my_policy for my_policy.py on PYTHONPATH), not a file")
        try:
            module = importlib.import_module(cache_policy_module_path)
        except ModuleNotFoundError as e:
            raise ConfigError(f"{where}: no such module ({e}); put its folder on PYTHONPATH") from None
        cls = getattr(module, cache_policy, None)
        from vllm.v1.kv_offload.cpu.policies.base import CachePolicy

        if not (isinstance(cls, type) and issubclass(cls, CachePolicy)):
            found = sorted(n for n, v in vars(module).items()
                           if isinstance(v, type) and issubclass(v, CachePolicy) and v.__module__ == module.__name__)
            raise ConfigError(f"{where} does not define a CachePolicy class {cache_policy!r} "
                              f"(it defines: {', '.join(found) or 'none'})")
    return CPUOffloadingManager(int(num_chunks), cache_policy=cache_policy,
                                cache_policy_module_path=cache_policy_module_path,
                                store_threshold=int(store_threshold), max_tracker_size=int(max_tracker_size))


class _Connector:
    """The offloading connector's scheduler side, reduced to its manager calls (module docstring)."""

    def __init__(self, mgr, block_tokens: int, prefill_tokens: int | None, log: list | None):
        self.mgr, self.bt, self.prefill_tokens, self.log = mgr, block_tokens, prefill_tokens, log
        self.hits = self.loads = self.stores = self.failed = self.evictions = 0

    def _note(self, r: int, event: str, keys) -> None:
        if self.log is not None and keys:
            self.log.append((r, event, [key_block(k) for k in keys]))

    def request(self, r: int, blocks: np.ndarray, prompt: int, output: int, gpu: int) -> None:
        from vllm.v1.kv_offload.base import LookupResult, ReqContext

        mgr, bt = self.mgr, self.bt
        ctx = ReqContext(req_id=str(r))
        mgr.on_new_request(ctx)
        keys = [block_key(b) for b in blocks]
        for i, k in enumerate(keys):
            ctx.set_offload_key_position(k, (i + 1) * bt)
        h = 0
        for k in keys[gpu:]:
            if mgr.lookup(k, ctx) is LookupResult.MISS:
                break
            h += 1
        self.hits += h
        nxt = 0
        if h:
            load = keys[gpu:gpu + h]
            mgr.prepare_load(load, ctx)
            mgr.complete_load(load, ctx)
            self.loads += h
            nxt = gpu + h
            self._note(r, "load", load)
        computed = (gpu + h) * bt
        step = prompt if self.prefill_tokens is None else self.prefill_tokens
        while computed < prompt:  # prefill steps
            computed = min(prompt, computed + step)
            nxt = self._offer(r, ctx, keys, nxt, min(len(keys), computed // bt))
        for _ in range(output):  # decode steps, then the finishing step: retries of a failed store
            if nxt >= len(keys):
                break
            nxt = self._offer(r, ctx, keys, nxt, len(keys))
        mgr.on_request_finished(ctx)

    def _offer(self, r: int, ctx, keys: list, nxt: int, upto: int) -> int:
        """Offer ``keys[nxt:upto]`` for storing; returns the next block to offer."""
        if upto <= nxt:
            return nxt
        out = self.mgr.prepare_store(keys[nxt:upto], ctx)
        if out is None:
            self.failed += 1
            return nxt
        self.evictions += len(out.evicted_keys)
        self._note(r, "evict", out.evicted_keys)
        if out.keys_to_store:
            self.stores += len(out.keys_to_store)
            self.mgr.complete_store(out.keys_to_store, ctx)
            self._note(r, "store", out.keys_to_store)
        return upto


def replay_vllm(trace, num_chunks: int, cache_policy: str = "lru", store_threshold: int = 1, *,
                cache_policy_module_path: str | None = None, max_tracker_size: int = 64_000,
                prefill_tokens: int | None = None, log: list | None = None) -> VllmCounts:
    """Replay ``trace`` through vLLM's ``CPUOffloadingManager`` (see the module docstring).

    Args:
        trace: :class:`BlockRequests`, a Mooncake JSON Lines path, or parsed Mooncake ``Requests``.
        num_chunks: CPU-tier capacity in blocks.
        cache_policy: ``lru``, ``arc``, or a class name in ``cache_policy_module_path``.
        store_threshold: vLLM's admission threshold (offers before a block is stored; < 2: off).
        prefill_tokens: tokens computed per prefill step (vLLM's token budget; None: whole prompt).
        log: if given, ``(request, event, block ids)`` tuples are appended to it, with event
            ``load`` (blocks loaded), ``evict`` (victims, in order) or ``store`` (blocks stored).
    """
    req = trace if isinstance(trace, BlockRequests) else from_mooncake(trace)
    mgr = make_manager(num_chunks, cache_policy, store_threshold, cache_policy_module_path=cache_policy_module_path,
                       max_tracker_size=max_tracker_size)
    return drive_manager(mgr, req, prefill_tokens=prefill_tokens, log=log)


def drive_manager(mgr, req: BlockRequests, *, prefill_tokens: int | None = None, log: list | None = None) -> VllmCounts:
    """Drive an existing manager (:func:`make_manager`) with ``req``; see :func:`replay_vllm`."""
    if prefill_tokens is not None and (not isinstance(prefill_tokens, int) or prefill_tokens < 1):
        raise ConfigError(f"replay_vllm: prefill_tokens={prefill_tokens!r} must be an int >= 1 or None")
    c = _Connector(mgr, req.block_tokens, prefill_tokens, log)
    for r in range(len(req)):
        c.request(r, req.request(r), int(req.prompt_tokens[r]), int(req.output_tokens[r]), int(req.gpu_blocks[r]))
    blocks, gpu = len(req.blocks), int(req.gpu_blocks.sum())
    return VllmCounts(requests=len(req), blocks=blocks, gpu_hits=gpu, hits=c.hits, misses=blocks - gpu - c.hits,
                      loads=c.loads, stores=c.stores, skipped_stores=int(mgr.stores_skipped_in_current_batch),
                      failed_stores=c.failed, evictions=c.evictions)
