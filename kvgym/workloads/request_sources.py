"""Request traces by spec: the one resolver the serving env, the harness and the command line share.

A spec is one of:

- a :class:`~kvgym.traces.requests.RequestTrace` (used as is);
- a registered request workload, ``name`` or ``name(k=v,...)`` (:mod:`kvgym.workloads.serving`:
  ``chat``, ``agent``, ``system_prompt``, ``rag``), generated with the given seed;
- a registered dataset, ``name`` or ``name(k=v,...)`` (:mod:`kvgym.traces.datasets`, e.g.
  ``mooncake-synthetic(limit=400)``), imported by :func:`~kvgym.traces.requests.requests_from_mooncake`
  with its options (``output_blocks``, ``block_tokens``) and a window of requests: ``start`` (default
  0) and ``limit`` (how many from ``start``; default: to the end), cut by
  :func:`~kvgym.traces.requests.slice_requests` (block ids renumbered); the seed plays no part;
- a file path: a kvgym request-trace Parquet (recognised by its schema, :func:`is_request_file`)
  or a Mooncake JSON Lines file (imported with the same options).
"""

from __future__ import annotations

from pathlib import Path

from kvgym.callspec import parse_call
from kvgym.errors import ConfigError
from kvgym.traces.requests import META_KEY, RequestTrace, import_requests

IMPORT_OPTIONS = ("start", "limit", "output_blocks", "block_tokens")


def is_request_file(path) -> bool:
    """Whether ``path`` is a Parquet file holding a kvgym request trace (its schema's metadata says so)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.is_file() or p.suffix != ".parquet":
        return False
    try:
        return META_KEY in (pq.read_schema(p).metadata or {})
    except (pa.ArrowInvalid, OSError):
        return False


def _looks_like_path(s: str) -> bool:
    return s.endswith((".parquet", ".jsonl", ".json")) or "/" in s or "\\" in s or Path(s).is_file()


def source_kind(spec) -> str:
    """``trace``, ``file``, ``workload`` or ``dataset`` (unknown names are errors listing the valid ones)."""
    from kvgym.traces.datasets import DATASETS
    from kvgym.workloads.serving import request_workload_names

    if isinstance(spec, RequestTrace):
        return "trace"
    if isinstance(spec, Path) or (isinstance(spec, str) and _looks_like_path(spec)):
        return "file"
    if not isinstance(spec, str):
        raise ConfigError(f"request trace {spec!r}: expected a RequestTrace, a path, a request workload or a dataset")
    name, _ = parse_call(spec, "request trace")
    if name in request_workload_names():
        return "workload"
    if name in DATASETS:
        return "dataset"
    raise ConfigError(f"request trace {spec!r}: not a file, a request workload ({', '.join(request_workload_names())}) "
                      f"or a dataset ({', '.join(sorted(DATASETS))})")


def request_trace(spec, seed: int = 0, params: dict | None = None) -> RequestTrace:
    """The request trace a spec names (see the module docstring); ``params`` add to the spec's own."""
    kind = source_kind(spec)
    if kind == "trace":
        return spec
    if kind == "file":
        p = Path(spec)
        if not p.is_file():
            raise ConfigError(f"request trace {p}: no such file")
        if p.suffix == ".parquet" and not params:
            return import_requests(p)
        return _import(p, params or {})
    name, own = parse_call(spec, "request trace")
    full = {**own, **(params or {})}
    if kind == "workload":
        from kvgym.workloads.serving import make_requests

        return make_requests(name, seed, **full)
    return _import(name, full)


def _import(what, params: dict) -> RequestTrace:
    """Import a dataset or a Mooncake file with ``params`` (its options and a window of requests)."""
    from kvgym.params import need_int
    from kvgym.traces.requests import slice_requests

    if bad := sorted(set(params) - set(IMPORT_OPTIONS)):
        raise ConfigError(f"request trace {what!r}: unknown options {bad}; valid: {', '.join(IMPORT_OPTIONS)}")
    opts = dict(params)
    start = need_int(f"request trace {what!r}", "start", opts.pop("start", 0), 0)
    limit = opts.pop("limit", None)
    if limit is not None:
        need_int(f"request trace {what!r}", "limit", limit, 1)
    trace = import_requests(what, limit=None if limit is None else start + limit, **opts)
    if start == 0:
        return trace
    if start >= len(trace):
        raise ConfigError(f"request trace {what!r}: start={start} but it has {len(trace)} requests")
    return slice_requests(trace, start, len(trace))
