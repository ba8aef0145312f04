"""Trace files: Parquet on disk, with a schema version and metadata, read only after full checks.

A trace ``X.parquet`` holds the accesses (columns ``step``, ``page``, optional ``weight``); its
page table lives beside it in ``X.pages.parquet``. The access file's key-value metadata
``kvgym`` is JSON: ``{"schema": 2, "pages_file": ..., "n_pages": ..., "pair_id": ..., "meta":
{...}}``; the page table's ``kvgym_pages`` metadata is ``{"schema": 2, "n_pages": ...,
"pair_id": ...}``.

**A pair is one unit.** ``pair_id`` is a digest of the trace's whole content (page table,
accesses, metadata), written into both files. :func:`write_trace` writes both files to
temporaries first, then renames the page table, then the access file; a reader checks that both
ids are equal. So a writer killed at any point leaves either the old pair, the new pair, or a
pair that is refused with one line (never a mismatched pair that loads). Files of schema 1 (no
``pair_id``) still load, with every other check.

**Nothing is trusted.** Every read checks, before anything is simulated: that both files are
Parquet and not corrupt (any decoder failure is one :class:`TraceError` line), the header's
types, the column types (integer columns must be stored as integers: no float truncation, no
string parsing; no nulls; no value outside the target type: no wrap), page sizes (at most
:data:`~kvgym.traces.format.MAX_PAGE_BYTES` each, and totals that cannot overflow), that the page
table has the header's ``n_pages`` rows, and every access row (:func:`check_access_rows`: steps
non-decreasing and >= 0, page ids inside the table, weights finite and >= 0). The simulator's
compiled code relies on these checks and has no bounds checks of its own.

:func:`iter_chunks` reads a large trace in row groups (each chunk checked as it is read), so it
never has to fit in memory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kvgym.errors import KvgymError, TraceError
from kvgym.files import check_output, publish, temp_path
from kvgym.traces.format import (
    PAGE_COLUMNS,
    PAGE_DTYPES,
    PageTable,
    Trace,
    check_access_rows,
    validate,
    validate_pages,
)

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
ROW_GROUP = 1 << 20
#: Most pages in a table (page ids are int64; tables this large do not fit memory anyway).
MAX_PAGES = 1 << 40
_INT_RANGE = {np.int32: (-(2**31), 2**31 - 1), np.int64: (-(2**63), 2**63 - 1)}


def pages_path(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(p.name[: -len(".parquet")] + ".pages.parquet" if p.name.endswith(".parquet") else p.name + ".pages.parquet")


# -- writing ----------------------------------------------------------------------------------
def pair_id(trace: Trace) -> str:
    """A digest of the trace's content (page table, accesses, metadata): the id both files carry."""
    h = hashlib.sha256()
    h.update(json.dumps({"n_pages": len(trace.pages), "meta": trace.meta}, sort_keys=True, default=str).encode())
    for name, col in sorted(trace.pages.columns().items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(col, dtype="<i8").tobytes())
    for name, col, dt in (("step", trace.step, "<i8"), ("page", trace.page, "<i8"), ("weight", trace.weight, "<f4")):
        if col is not None:
            h.update(name.encode())
            h.update(np.ascontiguousarray(col, dtype=dt).tobytes())
    return h.hexdigest()[:32]


def _write_parquet(table: pa.Table, tmp: Path, row_group_size: int) -> None:
    # Fixed writer settings so the same trace gives a byte-identical file.
    pq.write_table(table, tmp, row_group_size=row_group_size, compression="zstd", write_statistics=True)


def write_trace(trace: Trace, path: str | Path, *, row_group_size: int = ROW_GROUP) -> Path:
    """Validate and write ``trace`` to ``path`` and its page table beside it, as one unit (see the
    module docstring). Returns ``path``. A bad output path is one line, and leaves nothing."""
    validate(trace, str(path))
    path = check_output(path, "trace")
    pp = check_output(pages_path(path), "page table")
    pid = pair_id(trace)
    pages = pa.table({k: pa.array(v) for k, v in trace.pages.columns().items()}).replace_schema_metadata(
        {"kvgym_pages": json.dumps({"schema": SCHEMA_VERSION, "n_pages": len(trace.pages), "pair_id": pid},
                                   sort_keys=True)})
    cols = {"step": pa.array(trace.step.astype(np.int64)), "page": pa.array(trace.page.astype(np.int64))}
    if trace.weight is not None:
        cols["weight"] = pa.array(trace.weight.astype(np.float32))
    header = {"schema": SCHEMA_VERSION, "pages_file": pp.name, "n_pages": len(trace.pages), "pair_id": pid,
              "meta": trace.meta}
    table = pa.table(cols).replace_schema_metadata({"kvgym": json.dumps(header, sort_keys=True)})
    tmps: list[Path] = []
    try:
        for tbl, final in ((pages, pp), (table, path)):
            tmps.append(temp_path(final))
            _write_parquet(tbl, tmps[-1], row_group_size)
    except OSError as e:
        for t in tmps:
            t.unlink(missing_ok=True)
        raise TraceError(f"trace {path}: cannot write ({e.strerror or e})") from None
    except BaseException:
        for t in tmps:
            t.unlink(missing_ok=True)
        raise
    # Both files are complete: the page table first, then the access file (the one users name).
    publish(tmps[0], pp)
    publish(tmps[1], path)
    return path


# -- reading ----------------------------------------------------------------------------------
def _arrow(path, what: str, fn):
    """Run a pyarrow call on file ``path``; any decoder failure becomes one TraceError line."""
    try:
        return fn()
    except KvgymError:
        raise
    except Exception as e:  # noqa: BLE001 - corrupt files fail inside pyarrow in many ways
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise TraceError(f"{path}: {what} ({type(e).__name__}: {first})") from None


def _json_meta(md, key: bytes, path) -> dict | None:
    if not md or key not in md:
        return None
    try:
        d = json.loads(md[key].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise TraceError(f"{path}: corrupt {key.decode()!r} metadata ({str(e)[:120]})") from None
    if not isinstance(d, dict):
        raise TraceError(f"{path}: corrupt {key.decode()!r} metadata (a JSON {type(d).__name__}, expected an object)")
    return d


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_header(header: dict, path) -> dict:
    schema = header.get("schema")
    if schema not in READABLE_SCHEMAS or not _is_int(schema):
        raise TraceError(f"{path}: trace schema {schema!r}; this kvgym reads {', '.join(map(str, READABLE_SCHEMAS))}")
    n = header.get("n_pages")
    if not _is_int(n) or not 0 <= n <= MAX_PAGES:
        raise TraceError(f"{path}: header 'n_pages' must be an int in [0, 2**40], got {n!r:.60}")
    pid = header.get("pair_id")
    if pid is not None and not isinstance(pid, str):
        raise TraceError(f"{path}: header 'pair_id' must be a string, got {pid!r:.60}")
    if schema >= 2 and pid is None:
        raise TraceError(f"{path}: header has no 'pair_id' (schema {schema} requires it)")
    meta = header.get("meta", {})
    if not isinstance(meta, dict):
        raise TraceError(f"{path}: header 'meta' must be an object, got {type(meta).__name__}")
    return header


def _open(path: str | Path) -> tuple[Path, pq.ParquetFile, dict]:
    if not str(path).strip():
        raise TraceError("trace: an empty path")
    path = Path(path)
    if not path.is_file():
        raise TraceError(f"{path}: no such trace file" if not path.exists() else f"{path}: not a file")
    pf = _arrow(path, "not a Parquet file", lambda: pq.ParquetFile(path))
    schema = _arrow(path, "unreadable Parquet schema", lambda: pf.schema_arrow)
    header = _json_meta(schema.metadata, b"kvgym", path)
    if header is None:
        raise TraceError(f"{path}: not a kvgym trace (no 'kvgym' metadata)")
    _check_header(header, path)
    for c in ("step", "page"):
        if c not in schema.names:
            raise TraceError(f"{path}: missing column {c!r} (has {schema.names})")
    for c in ("step", "page", "weight"):
        if c in schema.names:
            t = schema.field(c).type
            ok = pa.types.is_floating(t) if c == "weight" else pa.types.is_integer(t)
            if not ok:
                want = "a floating-point" if c == "weight" else "an integer"
                raise TraceError(f"{path}: column {c!r} must be {want} column, got {t}")
    return path, pf, header


def _int_column(arr: pa.Array, name: str, dtype, source, offset: int = 0, lo: int | None = None,
                hi: int | None = None) -> np.ndarray:
    """An integer Arrow column as ``dtype``, refusing non-integer types, nulls and values outside
    ``dtype`` (or ``[lo, hi]``): nothing is truncated or wrapped."""
    if not pa.types.is_integer(arr.type):
        raise TraceError(f"{source}: column {name!r} must be an integer column, got {arr.type}")
    if arr.null_count:
        row = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
        raise TraceError(f"{source}: column {name!r}, row {offset + row}: null value")
    v = arr.to_numpy(zero_copy_only=False)
    tlo, thi = _INT_RANGE[dtype]
    lo = tlo if lo is None else max(lo, tlo)
    hi = thi if hi is None else min(hi, thi)
    if len(v):
        if v.dtype == np.uint64:
            bad = np.flatnonzero(v > np.uint64(hi))
        else:
            bad = np.flatnonzero((v < lo) | (v > hi))
        if bad.size:
            r = int(bad[0])
            raise TraceError(f"{source}: column {name!r}, row {offset + r}: {int(v[r])} is outside [{lo}, {hi}]")
    return v.astype(dtype)


def _pages_table(path: Path, header: dict) -> PageTable:
    pp = pages_path(path)
    if not pp.is_file():
        raise TraceError(f"{path}: page table {pp.name} not found beside it")
    pf = _arrow(pp, "not a Parquet file", lambda: pq.ParquetFile(pp))
    schema = _arrow(pp, "unreadable Parquet schema", lambda: pf.schema_arrow)
    ph = _json_meta(schema.metadata, b"kvgym_pages", pp) or {}
    if ph.get("pair_id") != header.get("pair_id"):
        raise TraceError(f"{path}: the page table {pp.name} belongs to another write of this trace (pair id "
                         f"{ph.get('pair_id')!r}, the trace says {header.get('pair_id')!r}); rewrite the trace")
    n = header["n_pages"]
    rows = _arrow(pp, "unreadable Parquet footer", lambda: pf.metadata.num_rows)
    if rows != n:
        raise TraceError(f"{path}: header says {n} pages, page table {pp.name} has {rows} rows")
    for c in PAGE_COLUMNS:
        if c not in schema.names:
            raise TraceError(f"{pp}: missing page column {c!r} (has {schema.names})")
    t = _arrow(pp, "corrupt Parquet data", lambda: pf.read(columns=[c for c in PAGE_DTYPES if c in schema.names]))
    if t.num_rows != n:
        raise TraceError(f"{path}: header says {n} pages, page table {pp.name} has {t.num_rows} rows")
    cols = {c: _int_column(_arrow(pp, "corrupt Parquet data", lambda c=c: t.column(c).combine_chunks()), c,
                           PAGE_DTYPES[c], pp) for c in t.column_names}
    pages = PageTable(**cols)
    validate_pages(pages, str(pp))
    return pages


def read_pages(path: str | Path) -> PageTable:
    """The page table of trace ``path``, checked against the trace's header (pair id, ``n_pages``)."""
    path, _, header = _open(path)
    return _pages_table(path, header)


def iter_chunks(path: str | Path, rows: int = ROW_GROUP) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """Yield checked ``(step, page, weight)`` chunks of at most ``rows`` accesses."""
    path, pf, header = _open(path)
    n_pages = header["n_pages"]
    has_w = "weight" in pf.schema_arrow.names
    cols = ["step", "page"] + (["weight"] if has_w else [])
    offset, prev = 0, -1
    batches = _arrow(path, "corrupt Parquet data", lambda: pf.iter_batches(batch_size=rows, columns=cols))
    while True:
        batch = _arrow(path, "corrupt Parquet data", lambda: next(batches, None))
        if batch is None:
            break
        step = _int_column(batch.column("step"), "step", np.int64, path, offset)
        page = _int_column(batch.column("page"), "page", np.int64, path, offset)
        w = None
        if has_w:
            wc = batch.column("weight")
            if wc.null_count:
                row = int(np.flatnonzero(wc.is_null().to_numpy(zero_copy_only=False))[0])
                raise TraceError(f"{path}: column 'weight', row {offset + row}: null value")
            w = wc.to_numpy(zero_copy_only=False).astype(np.float32)
        check_access_rows(step, page, w, n_pages, str(path), offset, prev)
        offset += len(step)
        prev = int(step[-1]) if len(step) else prev
        yield step, page, w
    expected = _arrow(path, "unreadable Parquet footer", lambda: pf.metadata.num_rows)
    if offset != expected:
        raise TraceError(f"{path}: read {offset} access rows, the file's footer says {expected}")


def read_trace(path: str | Path) -> Trace:
    """Read and check a whole trace into memory."""
    path, _, header = _open(path)
    pages = _pages_table(path, header)
    chunks = list(iter_chunks(path))
    if chunks:
        step = np.concatenate([c[0] for c in chunks])
        page = np.concatenate([c[1] for c in chunks])
        w = np.concatenate([c[2] for c in chunks]) if chunks[0][2] is not None else None
    else:
        step = page = np.zeros(0, np.int64)
        w = None
    return Trace(step, page, pages, w, header.get("meta", {}))
