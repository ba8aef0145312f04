"""Trace files: Parquet on disk, with a schema version and metadata.

A trace ``X.parquet`` holds the accesses (columns ``step``, ``page``, optional ``weight``);
its page table lives beside it in ``X.pages.parquet``. The access file's key-value metadata
``kvgym`` is JSON: ``{"schema": 1, "pages_file": ..., "n_pages": ..., "meta": {...}}``.
Writes are atomic (temporary file, then rename), so an interrupted write leaves no partial
file. :func:`iter_chunks` reads a large trace in row groups so it never has to fit in memory.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kvgym.errors import TraceError
from kvgym.traces.format import (
    PAGE_COLUMNS,
    PAGE_DTYPES,
    PageTable,
    Trace,
    check_access_rows,
    validate,
    validate_pages,
)

SCHEMA_VERSION = 1
ROW_GROUP = 1 << 20


def pages_path(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(p.name[: -len(".parquet")] + ".pages.parquet" if p.name.endswith(".parquet") else p.name + ".pages.parquet")


def _atomic_write_table(table: pa.Table, path: Path, row_group_size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        # Fixed writer settings so the same trace gives a byte-identical file.
        pq.write_table(table, tmp, row_group_size=row_group_size, compression="zstd",
                       write_statistics=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_trace(trace: Trace, path: str | Path, *, row_group_size: int = ROW_GROUP) -> Path:
    """Validate and write ``trace`` to ``path`` (and its page table beside it). Returns ``path``."""
    validate(trace, str(path))
    path = Path(path)
    pp = pages_path(path)
    _atomic_write_table(pa.table({k: pa.array(v) for k, v in trace.pages.columns().items()}), pp, row_group_size)
    cols = {"step": pa.array(trace.step.astype(np.int64)), "page": pa.array(trace.page.astype(np.int64))}
    if trace.weight is not None:
        cols["weight"] = pa.array(trace.weight.astype(np.float32))
    header = {"schema": SCHEMA_VERSION, "pages_file": pp.name, "n_pages": len(trace.pages), "meta": trace.meta}
    table = pa.table(cols).replace_schema_metadata({"kvgym": json.dumps(header, sort_keys=True)})
    _atomic_write_table(table, path, row_group_size)
    return path


def _header(pf: pq.ParquetFile, path: Path) -> dict:
    md = pf.schema_arrow.metadata or {}
    if b"kvgym" not in md:
        raise TraceError(f"{path}: not a kvgym trace (no 'kvgym' metadata)")
    try:
        header = json.loads(md[b"kvgym"])
    except json.JSONDecodeError as e:
        raise TraceError(f"{path}: corrupt 'kvgym' metadata ({e})") from None
    if header.get("schema") != SCHEMA_VERSION:
        raise TraceError(f"{path}: trace schema {header.get('schema')!r}, this kvgym reads {SCHEMA_VERSION}")
    names = pf.schema_arrow.names
    for c in ("step", "page"):
        if c not in names:
            raise TraceError(f"{path}: missing column {c!r} (has {names})")
    return header


def read_pages(path: str | Path) -> PageTable:
    """The page table of trace ``path``."""
    pp = pages_path(path)
    if not pp.exists():
        raise TraceError(f"{path}: page table {pp.name} not found beside it")
    t = pq.read_table(pp)
    names = t.column_names
    for c in PAGE_COLUMNS:
        if c not in names:
            raise TraceError(f"{pp}: missing page column {c!r} (has {names})")
    cols = {c: t.column(c).to_numpy().astype(PAGE_DTYPES[c]) for c in names if c in PAGE_DTYPES}
    pages = PageTable(**cols)
    validate_pages(pages, str(pp))
    return pages


def _open(path: str | Path) -> tuple[Path, pq.ParquetFile, dict]:
    path = Path(path)
    if not path.exists():
        raise TraceError(f"{path}: no such trace file")
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise TraceError(f"{path}: not a Parquet file ({e})") from None
    return path, pf, _header(pf, path)


def read_meta(path: str | Path) -> dict:
    return _open(path)[2]["meta"]


def iter_chunks(path: str | Path, rows: int = ROW_GROUP) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """Yield validated ``(step, page, weight)`` chunks of at most ``rows`` accesses."""
    path, pf, header = _open(path)
    n_pages = int(header["n_pages"])
    has_w = "weight" in pf.schema_arrow.names
    cols = ["step", "page"] + (["weight"] if has_w else [])
    offset, prev = 0, -1
    for batch in pf.iter_batches(batch_size=rows, columns=cols):
        step = batch.column("step").to_numpy().astype(np.int64)
        page = batch.column("page").to_numpy().astype(np.int64)
        w = batch.column("weight").to_numpy().astype(np.float32) if has_w else None
        check_access_rows(step, page, w, n_pages, str(path), offset, prev)
        offset += len(step)
        prev = int(step[-1]) if len(step) else prev
        yield step, page, w


def read_trace(path: str | Path) -> Trace:
    """Read and validate a whole trace into memory."""
    path, pf, header = _open(path)
    pages = read_pages(path)
    if len(pages) != int(header["n_pages"]):
        raise TraceError(f"{path}: header says {header['n_pages']} pages, page table has {len(pages)}")
    chunks = list(iter_chunks(path))
    if chunks:
        step = np.concatenate([c[0] for c in chunks])
        page = np.concatenate([c[1] for c in chunks])
        w = np.concatenate([c[2] for c in chunks]) if chunks[0][2] is not None else None
    else:
        step = page = np.zeros(0, np.int64)
        w = None
    return Trace(step, page, pages, w, header.get("meta", {}))
