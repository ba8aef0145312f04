"""Request traces for serving mode: arrivals, prompt block chains, output lengths, sessions.

A :class:`RequestTrace` is columnar, one row per request in arrival order:

- ``arrival_us`` (float64, finite, >= 0, non-decreasing): arrival time, µs.
- ``prompt_tokens``, ``output_tokens`` (int64, >= 0): prompt length and tokens generated.
- ``offsets`` (int64[n + 1]) / ``blocks`` (int64): the prompt as a chain of block ids in CSR
  form, request ``r``'s chain is ``blocks[offsets[r]:offsets[r + 1]]``. Block ``j`` of the chain
  holds prompt tokens ``[j * block_tokens, (j + 1) * block_tokens)``; the last block is partial
  when ``prompt_tokens % block_tokens != 0``. So ``len(chain) == ceil(prompt_tokens / block_tokens)``.
- ``session`` (int64, -1 = none): turns of one conversation or agent loop share a session id.
- ``out_offsets`` / ``out_blocks`` (CSR, optional per request): ids of the *full* blocks that the
  request's output completes, for reuse by a later turn. With ``F = prompt_tokens // block_tokens``
  full prompt blocks, the request's sequence holds ``prompt_tokens + output_tokens - 1`` tokens
  of KV when it finishes (the last sampled token is never fed back), so its output completes
  ``floor((prompt_tokens + output_tokens - 1) / block_tokens) - F`` blocks (none when
  ``output_tokens == 0``); a request lists either none of them or all of them, in order. The
  first one (position ``F``) contains the prompt's partial tail, if any, plus output tokens.
- ``block_tokens``: tokens per block (Mooncake's 512 by default; any positive size).
- ``meta``: JSON-serialisable (generator, parameters, seed, source).

**Block ids** are dense (every id in ``[0, n_blocks)`` is used) and name *content*: the same
id is the same KV, so it must always follow the same predecessor. The **sequence chain** of a
request is ``chain[:F] + out_blocks``; over all prompt chains and sequence chains, every block id
has one parent (the id before it, -1 at position 0) and one token count (``block_tokens``, or the
partial tail's count). A chain that puts an id after a different predecessor than an earlier
one, or gives it a different size, contradicts that earlier request. Derived per block:
``parent``, ``position`` (chain index) and ``tokens`` (:meth:`RequestTrace.block_table`).

:func:`validate_requests` checks all of it and raises :class:`~kvgym.errors.TraceError` naming
the file and the row (or, for imported JSON Lines, the line). On disk a request trace is one
Parquet file (list columns for the chains) with a schema version and the metadata under the key
``kvgym_requests``; writes are atomic and deterministic (same trace, same bytes).
:func:`requests_from_mooncake` imports a Mooncake JSON Lines file (every dataset of the
registry); :func:`import_requests` resolves a registry name or a path first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kvgym.errors import ConfigError, TraceError

SCHEMA_VERSION = 1
META_KEY = b"kvgym_requests"
BLOCK_TOKENS = 512
OUTPUT_BLOCKS = ("none", "unique")


@dataclass(frozen=True)
class BlockTable:
    """Per block id: ``parent`` (-1 at a chain head), ``position`` (chain index) and ``tokens``."""

    parent: np.ndarray
    position: np.ndarray
    tokens: np.ndarray


@dataclass(frozen=True, eq=False)
class RequestTrace:
    """Columnar serving requests in arrival order (see the module docstring for every field)."""

    arrival_us: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    offsets: np.ndarray
    blocks: np.ndarray
    session: np.ndarray | None = None
    out_offsets: np.ndarray | None = None
    out_blocks: np.ndarray | None = None
    block_tokens: int = BLOCK_TOKENS
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.prompt_tokens)
        if self.session is None:
            object.__setattr__(self, "session", np.full(n, -1, np.int64))
        if self.out_offsets is None:
            object.__setattr__(self, "out_offsets", np.zeros(n + 1, np.int64))
            object.__setattr__(self, "out_blocks", np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.prompt_tokens)

    @classmethod
    def from_chains(cls, arrival_us, prompt_tokens, output_tokens, chains, *, session=None, out_chains=None,
                    block_tokens: int = BLOCK_TOKENS, meta: dict | None = None, source: str = "requests") -> RequestTrace:
        """Build and validate a trace from per-request lists of block ids (tests, generators)."""
        offsets, blocks = _csr(chains)
        out_offsets, out_blocks = _csr(out_chains if out_chains is not None else [[] for _ in chains])
        t = cls(np.asarray(arrival_us, np.float64), np.asarray(prompt_tokens, np.int64),
                np.asarray(output_tokens, np.int64), offsets, blocks,
                None if session is None else np.asarray(session, np.int64), out_offsets, out_blocks,
                int(block_tokens), dict(meta or {}))
        validate_requests(t, source)
        return t

    def chain(self, r: int) -> np.ndarray:
        return self.blocks[self.offsets[r]:self.offsets[r + 1]]

    def out_chain(self, r: int) -> np.ndarray:
        return self.out_blocks[self.out_offsets[r]:self.out_offsets[r + 1]]

    @cached_property
    def n_blocks(self) -> int:
        """Distinct block ids (ids are dense: ``0 .. n_blocks - 1``)."""
        hi = max(int(self.blocks.max()) if len(self.blocks) else -1,
                 int(self.out_blocks.max()) if len(self.out_blocks) else -1)
        return hi + 1

    @property
    def block_refs(self) -> int:
        """Prompt block references (the length of the concatenated chains)."""
        return len(self.blocks)

    @cached_property
    def block_table(self) -> BlockTable:
        """Parent, chain position and token count of every block id (valid traces only)."""
        e = _entries(self)
        n = self.n_blocks
        parent = np.full(n, -1, np.int64)
        position = np.zeros(n, np.int64)
        tokens = np.zeros(n, np.int64)
        # Every occurrence of an id agrees (validated), so any occurrence may write.
        parent[e.block] = e.parent
        position[e.block] = e.position
        tokens[e.block] = e.tokens
        return BlockTable(parent, position, tokens)


def _csr(chains) -> tuple[np.ndarray, np.ndarray]:
    lens = [len(c) for c in chains]
    offsets = np.zeros(len(lens) + 1, np.int64)
    np.cumsum(lens, out=offsets[1:])
    flat = np.concatenate([np.asarray(c, np.int64) for c in chains]) if lens and offsets[-1] else np.zeros(0, np.int64)
    return offsets, flat.astype(np.int64)


def n_out_blocks(prompt_tokens, output_tokens, block_tokens: int) -> np.ndarray:
    """Full blocks a request's output completes (see the module docstring)."""
    p = np.asarray(prompt_tokens, np.int64)
    o = np.asarray(output_tokens, np.int64)
    return np.where(o > 0, (p + o - 1) // block_tokens - p // block_tokens, 0)


@dataclass(frozen=True)
class _Entries:
    """Every block occurrence of the prompt and sequence chains, in file order."""

    block: np.ndarray
    parent: np.ndarray
    position: np.ndarray
    tokens: np.ndarray
    row: np.ndarray


def _entries(t: RequestTrace) -> _Entries:
    B = t.block_tokens
    n = len(t)
    plen = np.diff(t.offsets)
    olen = np.diff(t.out_offsets)
    full = t.prompt_tokens // B
    # Each row contributes its prompt chain, then its output blocks (positions full, full+1, ...).
    p_row = np.repeat(np.arange(n, dtype=np.int64), plen)
    p_pos = np.arange(len(t.blocks), dtype=np.int64) - t.offsets[p_row]
    p_par = np.where(p_pos > 0, np.r_[np.int64(-1), t.blocks[:-1]] if len(t.blocks) else t.blocks, -1)
    last = p_pos == plen[p_row] - 1
    p_tok = np.where(last, t.prompt_tokens[p_row] - p_pos * B, B)
    o_row = np.repeat(np.arange(n, dtype=np.int64), olen)
    o_pos = np.arange(len(t.out_blocks), dtype=np.int64) - t.out_offsets[o_row] + full[o_row]
    o_first = o_pos == full[o_row]
    prev_out = np.r_[np.int64(-1), t.out_blocks[:-1]] if len(t.out_blocks) else t.out_blocks
    # The first output block follows the last full prompt block (or heads the chain).
    head = np.where(full[o_row] > 0, t.blocks[np.maximum(t.offsets[o_row] + full[o_row] - 1, 0)] if len(t.blocks) else -1, -1)
    o_par = np.where(o_first, head, prev_out)
    o_tok = np.full(len(o_row), B, np.int64)
    row = np.concatenate([p_row, o_row])
    kind = np.concatenate([np.zeros(len(p_row), np.int64), np.ones(len(o_row), np.int64)])
    order = np.lexsort((kind, row), axis=-1) if len(row) else np.zeros(0, np.int64)
    cat = lambda a, b: np.concatenate([a, b])[order]
    return _Entries(cat(t.blocks, t.out_blocks), cat(p_par, o_par), cat(p_pos, o_pos), cat(p_tok, o_tok), row[order])


def _where(source: str, lines, r: int) -> str:
    return f"{source}:{int(lines[r])}" if lines is not None else f"{source}: row {r}"


def _check_csr(offsets, values, n: int, name: str, source: str) -> None:
    if not isinstance(offsets, np.ndarray) or offsets.ndim != 1 or len(offsets) != n + 1:
        raise TraceError(f"{source}: {name} offsets must be a 1-D array of length {n + 1}")
    if not isinstance(values, np.ndarray) or values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
        raise TraceError(f"{source}: {name} must be a 1-D integer array")
    if offsets[0] != 0 or offsets[-1] != len(values) or (np.diff(offsets) < 0).any():
        raise TraceError(f"{source}: {name} offsets must rise from 0 to {len(values)}")


def validate_requests(t: RequestTrace, source: str = "requests", lines: np.ndarray | None = None) -> None:
    """Check every invariant of the module docstring; raise :class:`TraceError` naming the row.

    ``lines`` (optional, one per request) are source line numbers, used instead of row numbers
    in messages (``file:line``).
    """
    n = len(t)
    if not isinstance(t.block_tokens, (int, np.integer)) or isinstance(t.block_tokens, bool) or t.block_tokens <= 0:
        raise TraceError(f"{source}: block_tokens must be a positive int, got {t.block_tokens!r}")
    for name in ("arrival_us", "prompt_tokens", "output_tokens", "session"):
        v = getattr(t, name)
        if not isinstance(v, np.ndarray) or v.ndim != 1 or len(v) != n:
            raise TraceError(f"{source}: column {name!r} must be a 1-D array of length {n}")
    for name in ("prompt_tokens", "output_tokens", "session"):
        if not np.issubdtype(getattr(t, name).dtype, np.integer):
            raise TraceError(f"{source}: column {name!r} must be integer, got {getattr(t, name).dtype}")
    _check_csr(t.offsets, t.blocks, n, "blocks", source)
    _check_csr(t.out_offsets, t.out_blocks, n, "out_blocks", source)
    a = t.arrival_us
    if (bad := np.flatnonzero(~np.isfinite(a) | (a < 0))).size:
        r = int(bad[0])
        raise TraceError(f"{_where(source, lines, r)}: arrival_us must be a finite number >= 0, got {a[r]}")
    if (bad := np.flatnonzero(np.diff(a) < 0)).size:
        r = int(bad[0]) + 1
        raise TraceError(f"{_where(source, lines, r)}: arrival {a[r]} us goes backwards (the request before "
                         f"arrives at {a[r - 1]} us); requests must be in arrival order")
    for name in ("prompt_tokens", "output_tokens"):
        v = getattr(t, name)
        if (bad := np.flatnonzero(v < 0)).size:
            r = int(bad[0])
            raise TraceError(f"{_where(source, lines, r)}: {name} must be >= 0, got {int(v[r])} (a negative length)")
    if (bad := np.flatnonzero(t.session < -1)).size:
        r = int(bad[0])
        raise TraceError(f"{_where(source, lines, r)}: session must be >= 0 or -1 (none), got {int(t.session[r])}")
    B = int(t.block_tokens)
    need = -(-t.prompt_tokens // B)
    if (bad := np.flatnonzero(np.diff(t.offsets) != need)).size:
        r = int(bad[0])
        raise TraceError(f"{_where(source, lines, r)}: the prompt chain has {int(t.offsets[r + 1] - t.offsets[r])} "
                         f"blocks, but ceil(prompt_tokens / {B}) = ceil({int(t.prompt_tokens[r])} / {B}) = {int(need[r])}")
    olen = np.diff(t.out_offsets)
    n_out = n_out_blocks(t.prompt_tokens, t.output_tokens, B)
    if (bad := np.flatnonzero((olen != 0) & (olen != n_out))).size:
        r = int(bad[0])
        raise TraceError(f"{_where(source, lines, r)}: out_blocks has {int(olen[r])} ids; the output completes "
                         f"{int(n_out[r])} blocks (list all of them, or none)")
    for name, v in (("blocks", t.blocks), ("out_blocks", t.out_blocks)):
        if (bad := np.flatnonzero(v < 0)).size:
            raise TraceError(f"{source}: {name} holds a negative block id {int(v[bad[0]])}")
    nb = t.n_blocks
    used = np.zeros(max(nb, 0), bool)
    used[t.blocks] = True
    used[t.out_blocks] = True
    if nb and not used.all():
        raise TraceError(f"{source}: block ids must be dense 0..{nb - 1}; id {int(np.flatnonzero(~used)[0])} is unused")
    _check_chains(t, source, lines)


def _check_chains(t: RequestTrace, source: str, lines) -> None:
    e = _entries(t)
    if not len(e.block):
        return
    nb = t.n_blocks
    # The reference occurrence of each id is its first one in file order.
    first = np.full(nb, len(e.block), np.int64)
    np.minimum.at(first, e.block, np.arange(len(e.block), dtype=np.int64))
    ref = first[e.block]
    bad_parent = e.parent != e.parent[ref]
    bad_tokens = e.tokens != e.tokens[ref]
    bad = np.flatnonzero(bad_parent | bad_tokens)
    if not bad.size:
        return
    i = int(bad[0])
    j = int(ref[i])
    b = int(e.block[i])
    r, r0 = int(e.row[i]), int(e.row[j])
    earlier = _where(source, lines, r0).rsplit(": ", 1)[-1] if lines is None else f"line {int(lines[r0])}"
    if bad_parent[i]:
        what = lambda p: "the chain head" if p < 0 else f"block {int(p)}"
        raise TraceError(f"{_where(source, lines, r)}: block {b} at position {int(e.position[i])} follows "
                         f"{what(e.parent[i])}, but {earlier} has it after {what(e.parent[j])}: a block id names "
                         "one prefix, so this chain contradicts the earlier one")
    raise TraceError(f"{_where(source, lines, r)}: block {b} holds {int(e.tokens[i])} tokens here but "
                     f"{int(e.tokens[j])} in {earlier}: a block id names one content")



def slice_requests(t: RequestTrace, start: int, stop: int) -> RequestTrace:
    """Requests ``[start, stop)`` of ``t`` as a trace of their own: block ids renumbered densely in
    order of first appearance (prompt chain, then output blocks, request by request), arrivals
    and sessions kept. ``meta`` records the source's meta and the window."""
    from kvgym.traces.mooncake import first_appearance_ids

    n = len(t)
    if not (isinstance(start, (int, np.integer)) and isinstance(stop, (int, np.integer)) and 0 <= start < stop <= n):
        raise ConfigError(f"slice_requests: window ({start}, {stop}) must satisfy 0 <= start < stop <= {n}")
    p0, p1 = int(t.offsets[start]), int(t.offsets[stop])
    o0, o1 = int(t.out_offsets[start]), int(t.out_offsets[stop])
    plen, olen = np.diff(t.offsets[start:stop + 1]), np.diff(t.out_offsets[start:stop + 1])
    # One sequence of every id occurrence, in the order the renumbering follows.
    kind = np.concatenate([np.zeros(p1 - p0, np.int64), np.ones(o1 - o0, np.int64)])
    row = np.concatenate([np.repeat(np.arange(stop - start), plen), np.repeat(np.arange(stop - start), olen)])
    ids = np.concatenate([t.blocks[p0:p1], t.out_blocks[o0:o1]])
    order = np.lexsort((kind, row))
    dense = np.empty(len(ids), np.int64)
    dense[order] = first_appearance_ids(ids[order])[0]
    s = slice(start, stop)
    out = RequestTrace(t.arrival_us[s].copy(), t.prompt_tokens[s].copy(), t.output_tokens[s].copy(),
                       t.offsets[start:stop + 1] - p0, dense[:p1 - p0], t.session[s].copy(),
                       t.out_offsets[start:stop + 1] - o0, dense[p1 - p0:], t.block_tokens,
                       {"generator": "slice", "window": [int(start), int(stop)], "source": t.meta})
    validate_requests(out, f"requests [{start}, {stop})")
    return out

# -- Parquet ---------------------------------------------------------------------------------
COLUMNS = ("arrival_us", "prompt_tokens", "output_tokens", "session", "blocks", "out_blocks")


def write_requests(t: RequestTrace, path: str | Path, *, row_group_size: int = 1 << 16) -> Path:
    """Validate and write ``t`` to ``path`` (atomic, byte-identical for equal traces)."""
    from kvgym.files import atomic_write
    from kvgym.traces.parquet import _write_parquet

    validate_requests(t, str(path))
    table = pa.table({
        "arrival_us": pa.array(t.arrival_us.astype(np.float64)),
        "prompt_tokens": pa.array(t.prompt_tokens.astype(np.int64)),
        "output_tokens": pa.array(t.output_tokens.astype(np.int64)),
        "session": pa.array(t.session.astype(np.int64)),
        "blocks": pa.LargeListArray.from_arrays(pa.array(t.offsets.astype(np.int64)), pa.array(t.blocks.astype(np.int64))),
        "out_blocks": pa.LargeListArray.from_arrays(pa.array(t.out_offsets.astype(np.int64)),
                                                    pa.array(t.out_blocks.astype(np.int64))),
    })
    header = {"schema": SCHEMA_VERSION, "kind": "requests", "block_tokens": int(t.block_tokens),
              "n_blocks": int(t.n_blocks), "meta": t.meta}
    table = table.replace_schema_metadata({META_KEY: json.dumps(header, sort_keys=True)})
    return atomic_write(path, lambda tmp: _write_parquet(table, tmp, row_group_size), "request trace")


def _list_column(table: pa.Table, name: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    col = table.column(name).combine_chunks()
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)):
        raise TraceError(f"{path}: column {name!r} must be a list of block ids, got {col.type}")
    if col.null_count:
        raise TraceError(f"{path}: column {name!r}, row {int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])}: null")
    offsets = col.offsets.to_numpy().astype(np.int64)
    values = col.values.to_numpy(zero_copy_only=False)
    if values.dtype.kind not in "iu":
        raise TraceError(f"{path}: column {name!r} must hold integer block ids, got {col.type.value_type}")
    return offsets - offsets[0], values[offsets[0]:offsets[-1]].astype(np.int64)


def read_requests(path: str | Path) -> RequestTrace:
    """Read and validate a request trace written by :func:`write_requests`."""
    path = Path(path)
    if not path.is_file():
        raise TraceError(f"{path}: no such request trace file")
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise TraceError(f"{path}: not a Parquet file ({e})") from None
    md = pf.schema_arrow.metadata or {}
    if META_KEY not in md:
        what = "a kvgym decode trace" if b"kvgym" in md else "not a kvgym file"
        raise TraceError(f"{path}: not a kvgym request trace ({what}; no {META_KEY.decode()!r} metadata)")
    try:
        header = json.loads(md[META_KEY])
    except json.JSONDecodeError as e:
        raise TraceError(f"{path}: corrupt {META_KEY.decode()!r} metadata ({e})") from None
    if header.get("schema") != SCHEMA_VERSION:
        raise TraceError(f"{path}: request trace schema {header.get('schema')!r}, this kvgym reads {SCHEMA_VERSION}")
    names = pf.schema_arrow.names
    for c in COLUMNS:
        if c not in names:
            raise TraceError(f"{path}: missing column {c!r} (has {names})")
    table = pf.read(columns=list(COLUMNS))
    cols = {}
    for c in ("arrival_us", "prompt_tokens", "output_tokens", "session"):
        col = table.column(c)
        if col.null_count:
            raise TraceError(f"{path}: column {c!r} has nulls")
        cols[c] = col.to_numpy()
    if cols["arrival_us"].dtype.kind != "f":
        raise TraceError(f"{path}: column 'arrival_us' must be floating point (µs), got {cols['arrival_us'].dtype}")
    offsets, blocks = _list_column(table, "blocks", path)
    out_offsets, out_blocks = _list_column(table, "out_blocks", path)
    bt = header.get("block_tokens")
    t = RequestTrace(cols["arrival_us"].astype(np.float64), cols["prompt_tokens"].astype(np.int64),
                     cols["output_tokens"].astype(np.int64), offsets, blocks, cols["session"].astype(np.int64),
                     out_offsets, out_blocks, bt if isinstance(bt, int) and not isinstance(bt, bool) else -1,
                     header.get("meta", {}))
    validate_requests(t, str(path))
    return t


# -- Mooncake ----------------------------------------------------------------------------------
def requests_from_mooncake(path: str | Path, *, block_tokens: int = BLOCK_TOKENS, limit: int | None = None,
                           output_blocks: str = "none") -> RequestTrace:
    """Import a Mooncake JSON Lines trace (``timestamp`` ms, ``input_length``, ``output_length``,
    ``hash_ids``) as a request trace: arrivals in µs (``timestamp * 1000``), hash ids renumbered
    densely in order of first appearance, no sessions.

    ``output_blocks``: ``none`` (outputs form no reusable blocks, as the file says nothing of
    them) or ``unique`` (each request's output blocks get fresh ids used by no other request:
    they occupy cache space when written through, as in vLLM, but are never hit).
    Errors name the file and line.
    """
    from kvgym.traces.mooncake import first_appearance_ids
    from kvgym.traces.mooncake import read_requests as read_jsonl

    if output_blocks not in OUTPUT_BLOCKS:
        raise ConfigError(f"{path}: output_blocks={output_blocks!r}; valid: {', '.join(OUTPUT_BLOCKS)}")
    req = read_jsonl(path, block_tokens=block_tokens, limit=limit)
    dense, first = first_appearance_ids(req.hash_ids)
    n = len(req)
    prompt, output = req.input_length.astype(np.int64), req.output_length.astype(np.int64)
    if output_blocks == "unique":
        counts = n_out_blocks(prompt, output, block_tokens)
        out_offsets = np.zeros(n + 1, np.int64)
        np.cumsum(counts, out=out_offsets[1:])
        out = len(first) + np.arange(int(out_offsets[-1]), dtype=np.int64)
    else:
        out_offsets, out = np.zeros(n + 1, np.int64), np.zeros(0, np.int64)
    p = Path(path)
    from kvgym.traces.datasets import sha256_file

    meta = {"generator": "mooncake-import", "source": p.name, "source_sha256": sha256_file(p),
            "params": {"block_tokens": block_tokens, "limit": limit, "output_blocks": output_blocks}}
    t = RequestTrace(req.timestamp_ms * 1000.0, prompt, output, req.offsets.astype(np.int64), dense,
                     np.full(n, -1, np.int64), out_offsets, out, int(block_tokens), meta)
    validate_requests(t, str(p), lines=req.lines)
    return t


def import_requests(name_or_path: str | Path, *, root: str | Path | None = None, **kw) -> RequestTrace:
    """A request trace from a registered dataset name (fetched if needed) or a local file:
    ``.parquet`` is read as a kvgym request trace, anything else as Mooncake JSON Lines."""
    from kvgym.traces.datasets import fetch

    p = Path(name_or_path)
    if p.suffix == ".parquet" and p.is_file():
        if kw:
            raise ConfigError(f"{p}: options {sorted(kw)} apply to imports, not to a kvgym request trace")
        return read_requests(p)
    return requests_from_mooncake(fetch(name_or_path, root=root), **kw)

