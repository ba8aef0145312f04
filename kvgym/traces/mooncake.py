"""Import Mooncake FAST'25 request traces (JSON Lines) as kvgym block traces.

Input: one JSON object per line with ``timestamp`` (ms, arrival time), ``input_length`` (prompt
tokens), ``output_length`` (generated tokens) and ``hash_ids``: one prefix-block id per
``block_tokens``-token block of the prompt (512 in the released traces), so
``len(hash_ids) == ceil(input_length / block_tokens)``; equal ids are the same prefix KV block.
Blank lines are skipped. Lines must be in arrival order (a timestamp smaller than the previous
line's is an error); equal timestamps keep file order.

Output (a prefix-cache trace, the setting Mooncake's KV store serves):

- **step** = the request's index in arrival order (0, 1, ...; a request with no blocks leaves
  its step empty). All blocks of one request are needed together, so they share a step.
  With ``block_stream=True`` instead every block reference is its own step (0, 1, ...): no two
  blocks are pinned together, the block stream of classic cache studies (and of the
  libcachesim cross-check); a bounded tier of ``"N pages"`` then behaves as a libcachesim cache
  of N unit objects.
- **pages**: distinct hash ids, numbered 0, 1, ... in order of first appearance. Every block
  reference of every request is kept, in ``hash_ids`` order, so total accesses = total ids in
  the file and distinct pages = distinct ids.
- **bytes**: by default one page per block, holding K and V of ``block_tokens`` tokens for *all*
  layers of the chosen model geometry: ``fp16_bytes = block_tokens * geometry.kv_bytes_per_token()``
  (512 tokens of Llama-3.1-8B = 64 MiB). With ``per_layer=True`` each block is expanded into one
  page per layer (``block_tokens * kv_heads * head_dim * 2 * 2`` bytes each, 2 MiB for
  Llama-3.1-8B); page ``block * layers + layer``; a request's accesses are then layer-major
  (every block of layer 0, then of layer 1, ...), the order a forward pass reads them.
  A block is sized as a whole block even when the prompt ends inside it (a paged cache allocates
  whole blocks). Stored bytes under fp8/int4/int2 follow from the scenario's quantization.
- page table: ``seq`` = index of the request that first used the block, ``layer`` (0 in block
  mode), token span = the block's position in that request's prompt.

Malformed input raises :class:`~kvgym.errors.TraceError` naming file and line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kvgym.errors import ConfigError, TraceError
from kvgym.params import is_int
from kvgym.traces.datasets import sha256_file
from kvgym.traces.format import PageTable, Trace, validate
from kvgym.traces.geometry import ModelGeometry
from kvgym.traces.geometry import geometry as geometry_preset

BLOCK_TOKENS = 512
_INT64_MAX = (1 << 63) - 1


@dataclass(frozen=True, eq=False)
class Requests:
    """Columnar Mooncake requests in arrival order.

    ``timestamp_ms``, ``input_length``, ``output_length``: one value per request;
    request ``r``'s block ids are ``hash_ids[offsets[r]:offsets[r + 1]]``.
    """

    timestamp_ms: np.ndarray
    input_length: np.ndarray
    output_length: np.ndarray
    offsets: np.ndarray
    hash_ids: np.ndarray
    lines: np.ndarray  # 1-based source line of each request (for messages)

    def __len__(self) -> int:
        return len(self.input_length)

    @property
    def block_refs(self) -> int:
        return len(self.hash_ids)


def _non_negative_int(v, field: str, where: str) -> int:
    if not is_int(v):
        raise TraceError(f"{where}: {field!r} must be an integer, got {v!r:.60}")
    if not 0 <= v <= _INT64_MAX:
        raise TraceError(f"{where}: {field!r} must be in [0, 2**63), got {v}")
    return v


def read_requests(path: str | Path, *, block_tokens: int = BLOCK_TOKENS, limit: int | None = None) -> Requests:
    """Parse and check a Mooncake JSON Lines file (at most ``limit`` requests if given)."""
    path = Path(path)
    if not isinstance(block_tokens, int) or block_tokens <= 0:
        raise ConfigError(f"{path}: block_tokens must be a positive int, got {block_tokens!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"{path}: limit must be a positive int (requests), got {limit!r}")
    try:
        fh = path.open("rb")
    except OSError as e:
        raise TraceError(f"{path}: cannot open ({e.strerror or e})") from None
    ts: list[float] = []
    inl: list[int] = []
    outl: list[int] = []
    counts: list[int] = []
    ids: list[int] = []
    lines: list[int] = []
    prev_ts, prev_line = -math.inf, 0
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            if limit is not None and len(inl) >= limit:
                break
            if not raw.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                d = json.loads(raw)
            except (ValueError, RecursionError) as e:
                # ValueError covers JSONDecodeError, bad UTF-8 and over-long integers.
                raise TraceError(f"{where}: not a valid JSON object (truncated line?): {e}"[:300]) from None
            if not isinstance(d, dict):
                raise TraceError(f"{where}: expected a JSON object, got {type(d).__name__}")
            for key in ("timestamp", "input_length", "output_length", "hash_ids"):
                if key not in d:
                    raise TraceError(f"{where}: missing field {key!r}")
            t = d["timestamp"]
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
                raise TraceError(f"{where}: 'timestamp' must be a finite number >= 0 (ms), got {t!r:.60}")
            if t < prev_ts:
                raise TraceError(f"{where}: timestamp {t} goes backwards (line {prev_line} has {prev_ts}); "
                                 "requests must be in arrival order")
            n_in = _non_negative_int(d["input_length"], "input_length", where)
            n_out = _non_negative_int(d["output_length"], "output_length", where)
            h = d["hash_ids"]
            if not isinstance(h, list):
                raise TraceError(f"{where}: 'hash_ids' must be a list of integers, got {type(h).__name__}")
            for j, x in enumerate(h):
                if not is_int(x):
                    raise TraceError(f"{where}: hash_ids[{j}] must be an integer, got {x!r:.60}")
                if not 0 <= x <= _INT64_MAX:
                    raise TraceError(f"{where}: hash_ids[{j}] must be in [0, 2**63), got {x}")
            need = -(-n_in // block_tokens)
            if len(h) != need:
                what = "shorter" if len(h) < need else "longer"
                raise TraceError(f"{where}: hash_ids has {len(h)} ids, {what} than ceil(input_length/"
                                 f"{block_tokens}) = ceil({n_in}/{block_tokens}) = {need}")
            prev_ts, prev_line = t, lineno
            ts.append(float(t))
            inl.append(n_in)
            outl.append(n_out)
            counts.append(len(h))
            ids.extend(h)
            lines.append(lineno)
    if not inl:
        raise TraceError(f"{path}: no requests (empty file)")
    offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return Requests(np.array(ts, np.float64), np.array(inl, np.int64), np.array(outl, np.int64), offsets,
                    np.array(ids, np.int64), np.array(lines, np.int64))


def first_appearance_ids(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map values to dense ids 0.. in order of first appearance.

    Returns ``(dense, first)``: ``dense[i]`` is the id of ``values[i]``; ``first[k]`` is the
    position where id ``k`` first appears.
    """
    if len(values) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    uniq_first, inverse = np.unique(values, return_index=True, return_inverse=True)[1:]
    order = np.argsort(uniq_first, kind="stable")  # sorted-unique index -> rank of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse.ravel()].astype(np.int64), uniq_first[order].astype(np.int64)


def import_mooncake(path: str | Path, *, geometry: str | ModelGeometry = "llama-3.1-8b", per_layer: bool = False,
                    block_tokens: int = BLOCK_TOKENS, limit: int | None = None, block_stream: bool = False) -> Trace:
    """Read a Mooncake JSON Lines trace into a kvgym :class:`Trace` (see the module docstring)."""
    path = Path(path)
    if block_stream and per_layer:
        raise ConfigError(f"{path}: block_stream and per_layer exclude each other (a block stream has one page per block)")
    geo = geometry_preset(geometry) if isinstance(geometry, str) else geometry
    req = read_requests(path, block_tokens=block_tokens, limit=limit)
    n_req = len(req)
    counts = np.diff(req.offsets)
    req_of_ref = np.repeat(np.arange(n_req, dtype=np.int64), counts)
    pos_in_req = np.arange(req.block_refs, dtype=np.int64) - req.offsets[req_of_ref]
    block, first = first_appearance_ids(req.hash_ids)
    n_blocks = len(first)
    layer_bytes = block_tokens * geo.kv_heads * geo.head_dim * 2 * 2
    start = pos_in_req[first] * block_tokens
    if per_layer:
        L = geo.layers
        # Layer-major within a request: request r's c blocks give c*L rows, row k of it is
        # (layer k // c, block k % c); its rows start at offsets[r] * L.
        k = np.arange(req.block_refs * L, dtype=np.int64) - np.repeat(req.offsets[:-1] * L, counts * L)
        c = np.repeat(counts, counts * L)
        layer = k // c
        ref = np.repeat(req.offsets[:-1], counts * L) + k % c
        page = block[ref] * L + layer
        step = req_of_ref[ref]
        pages = PageTable(seq=np.repeat(req_of_ref[first], L).astype(np.int32),
                          layer=np.tile(np.arange(L, dtype=np.int32), n_blocks),
                          token_start=np.repeat(start, L), token_end=np.repeat(start + block_tokens, L),
                          fp16_bytes=np.full(n_blocks * L, layer_bytes, np.int64))
    else:
        page, step = block, (np.arange(req.block_refs, dtype=np.int64) if block_stream else req_of_ref)
        pages = PageTable(seq=req_of_ref[first].astype(np.int32), layer=np.zeros(n_blocks, np.int32),
                          token_start=start, token_end=start + block_tokens,
                          fp16_bytes=np.full(n_blocks, layer_bytes * geo.layers, np.int64))
    meta = {
        "generator": "mooncake-import",
        "source": path.name,
        "source_sha256": sha256_file(path),
        "params": {"geometry": geo.name, "per_layer": bool(per_layer), "block_tokens": block_tokens,
                   "limit": limit, "block_stream": bool(block_stream)},
        "geometry": geo.with_(tokens_per_page=block_tokens).to_dict(),
        "requests": n_req,
        "block_refs": int(req.block_refs),
        "distinct_blocks": int(n_blocks),
        "timestamp_ms": [float(req.timestamp_ms[0]), float(req.timestamp_ms[-1])],
        "input_tokens": int(req.input_length.sum()),
        "output_tokens": int(req.output_length.sum()),
        "step": "block reference index" if block_stream else "request index in arrival order",
    }
    trace = Trace(step.astype(np.int64), page.astype(np.int64), pages, None, meta)
    validate(trace, str(path))
    return trace
