"""The in-memory trace: columnar access arrays plus a page table.

A **trace** is one row per page access, in order:

- ``step`` (int64, >= 0, non-decreasing): the decode step. All accesses of one step are
  needed in tier 0 at once and are pinned for that step.
- ``page`` (int64): index into the page table, ``0 <= page < len(pages)``.
- ``weight`` (float32, optional, >= 0): attention mass of the access.

The **page table** holds, per page id: ``seq`` (request), ``layer``, ``token_start``,
``token_end`` (token span, end exclusive), ``fp16_bytes`` (in ``[1, 2**40]``, totals at most
``2**61``), and optionally ``bytes``
(stored bytes when an importer knows them; otherwise the scenario's quantization derives them
from ``fp16_bytes``). ``meta`` is a JSON-serialisable dict: generator, parameters, seed,
geometry. :func:`validate` checks every invariant and names the column and row at fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kvgym.errors import TraceError

PAGE_COLUMNS = ("seq", "layer", "token_start", "token_end", "fp16_bytes")
#: Largest page, bytes (1 TiB): with at most 2**21 such pages of total, byte sums stay far from
#: int64 overflow, and quantized footprints (``bits * scalars``) cannot overflow either.
MAX_PAGE_BYTES = 1 << 40
#: Largest total of a page table's bytes (fp16 or stored), so every sum of page bytes fits int64.
MAX_TABLE_BYTES = 1 << 61
PAGE_DTYPES = {"seq": np.int32, "layer": np.int32, "token_start": np.int64, "token_end": np.int64,
               "fp16_bytes": np.int64, "bytes": np.int64}


@dataclass(frozen=True, eq=False)
class PageTable:
    """Per-page attributes, indexed by page id. See the module docstring for units."""

    seq: np.ndarray
    layer: np.ndarray
    token_start: np.ndarray
    token_end: np.ndarray
    fp16_bytes: np.ndarray
    bytes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.fp16_bytes)

    @classmethod
    def uniform(cls, n: int, fp16_bytes: int, *, layers: int = 1, tokens_per_page: int = 16) -> PageTable:
        """``n`` pages of one size: page ``i`` is layer ``i % layers``, token block ``i // layers``."""
        i = np.arange(n, dtype=np.int64)
        block = i // layers
        return cls(seq=np.zeros(n, np.int32), layer=(i % layers).astype(np.int32),
                   token_start=block * tokens_per_page, token_end=(block + 1) * tokens_per_page,
                   fp16_bytes=np.full(n, fp16_bytes, np.int64))

    def columns(self) -> dict[str, np.ndarray]:
        cols = {c: getattr(self, c) for c in PAGE_COLUMNS}
        if self.bytes is not None:
            cols["bytes"] = self.bytes
        return cols


@dataclass(frozen=True, eq=False)
class Trace:
    """Accesses (``step``, ``page``, optional ``weight``) plus their page table and metadata."""

    step: np.ndarray
    page: np.ndarray
    pages: PageTable
    weight: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.page)

    @classmethod
    def from_pages(cls, pages_per_access, pages: PageTable | None = None, *, fp16_bytes: int = 4096,
                   steps=None, weight=None, meta: dict | None = None) -> Trace:
        """Convenience: one access per step unless ``steps`` is given; a uniform page table by default."""
        page = np.asarray(pages_per_access, dtype=np.int64)
        step = np.arange(len(page), dtype=np.int64) if steps is None else np.asarray(steps, dtype=np.int64)
        if pages is None:
            pages = PageTable.uniform(int(page.max()) + 1 if len(page) else 0, fp16_bytes)
        w = None if weight is None else np.asarray(weight, dtype=np.float32)
        t = cls(step=step, page=page, pages=pages, weight=w, meta=dict(meta or {}))
        validate(t)
        return t

    def step_bounds(self) -> np.ndarray:
        """Start offsets of each distinct step, plus ``len(self)`` at the end."""
        if len(self.step) == 0:
            return np.zeros(1, np.int64)
        starts = np.flatnonzero(np.diff(self.step)) + 1
        return np.concatenate(([0], starts, [len(self.step)])).astype(np.int64)

    def window(self, start: int, stop: int) -> Trace:
        """Accesses ``[start, stop)`` (row offsets), sharing the page table."""
        w = None if self.weight is None else self.weight[start:stop]
        return Trace(self.step[start:stop], self.page[start:stop], self.pages, w, dict(self.meta))


def _fail(source: str, column: str, row: int, msg: str) -> TraceError:
    return TraceError(f"{source}: column {column!r}, row {row}: {msg}")


def validate_pages(pages: PageTable, source: str = "page table") -> None:
    n = len(pages)
    for c, v in pages.columns().items():
        if v is None:
            continue
        if not isinstance(v, np.ndarray) or v.ndim != 1 or len(v) != n:
            raise TraceError(f"{source}: page column {c!r} must be a 1-D array of length {n}")
        if not np.issubdtype(v.dtype, np.integer):
            raise TraceError(f"{source}: page column {c!r} must be integer, got {v.dtype}")
    for c in ("fp16_bytes", "bytes"):
        v = getattr(pages, c)
        if v is None or not n:
            continue
        if (bad := np.flatnonzero(v <= 0)).size:
            raise _fail(source, c, int(bad[0]), f"page bytes must be > 0, got {int(v[bad[0]])}")
        if (bad := np.flatnonzero(v > MAX_PAGE_BYTES)).size:
            raise _fail(source, c, int(bad[0]), f"page bytes must be <= 2**40, got {int(v[bad[0]])}")
        if float(np.sum(v, dtype=np.float64)) > MAX_TABLE_BYTES:
            raise TraceError(f"{source}: page column {c!r} sums to more than 2**61 bytes")
    for c in ("token_start", "layer", "seq"):
        v = getattr(pages, c)
        if n and (bad := np.flatnonzero(v < 0)).size:
            raise _fail(source, c, int(bad[0]), f"must be >= 0, got {int(v[bad[0]])}")
    if n and (bad := np.flatnonzero(pages.token_end < pages.token_start)).size:
        raise _fail(source, "token_end", int(bad[0]), "token_end < token_start")


def validate(trace: Trace, source: str = "trace") -> None:
    """Check every trace invariant; raise :class:`TraceError` naming column and row."""
    validate_pages(trace.pages, source)
    n = len(trace.page)
    for c in ("step", "page"):
        v = getattr(trace, c)
        if not isinstance(v, np.ndarray) or v.ndim != 1 or len(v) != n:
            raise TraceError(f"{source}: column {c!r} must be a 1-D array of length {n}")
        if not np.issubdtype(v.dtype, np.integer):
            raise TraceError(f"{source}: column {c!r} must be integer, got {v.dtype}")
    check_access_rows(trace.step, trace.page, trace.weight, len(trace.pages), source, offset=0, prev_step=-1)


def check_access_rows(step, page, weight, n_pages: int, source: str, offset: int, prev_step: int) -> None:
    """Row checks shared by in-memory validation and chunked Parquet reading (rows start at ``offset``)."""
    if len(step) == 0:
        return
    if (bad := np.flatnonzero(step < 0)).size:
        raise _fail(source, "step", offset + int(bad[0]), f"negative step {int(step[bad[0]])}")
    if step[0] < prev_step:
        raise _fail(source, "step", offset, f"steps must be non-decreasing ({int(step[0])} after {prev_step})")
    if (bad := np.flatnonzero(np.diff(step) < 0)).size:
        r = int(bad[0]) + 1
        raise _fail(source, "step", offset + r, f"steps must be non-decreasing ({int(step[r])} after {int(step[r - 1])})")
    if (bad := np.flatnonzero((page < 0) | (page >= n_pages))).size:
        r = int(bad[0])
        raise _fail(source, "page", offset + r, f"page id {int(page[r])} outside the page table [0, {n_pages})")
    if weight is not None:
        if len(weight) != len(step):
            raise TraceError(f"{source}: column 'weight' must have one value per access")
        if (bad := np.flatnonzero(~np.isfinite(weight) | (weight < 0))).size:
            r = int(bad[0])
            raise _fail(source, "weight", offset + r, f"weight must be finite and >= 0, got {weight[r]}")
