"""Trace files are checked before anything is simulated (issue 16, defects 1, 4, 8 and 9, trace
cases): one regression test per reported case, each exact about the line it must print."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kvgym.cli import main
from kvgym.errors import TraceError
from kvgym.sim import run
from kvgym.sim.catalog import get_scenario
from kvgym.traces import parquet
from kvgym.traces.format import PageTable, Trace
from kvgym.traces.parquet import iter_chunks, pages_path, read_pages, read_trace, write_trace
from kvgym.workloads import make_trace

SCEN = get_scenario("h200_25pct_fp16_no_prefetch")


@pytest.fixture
def trace_file(tmp_path):
    return write_trace(make_trace("rag_burst", seed=0), tmp_path / "t.parquet")


def _rewrite(path: Path, table: pa.Table, metadata=None) -> None:
    """Rewrite one file of a pair by hand (keeping its kvgym metadata unless given)."""
    md = pq.read_schema(path).metadata if metadata is None else metadata
    pq.write_table(table.replace_schema_metadata(md), path)


def _one_line_error(argv, capsys) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, (rc, err)
    return err[0]


# -- defect 1: a page table shorter than the trace --------------------------------------------
@pytest.mark.parametrize("rows", [10, 95])
def test_short_page_table_is_refused_by_run_and_stats(trace_file, capsys, rows):
    pp = pages_path(trace_file)
    _rewrite(pp, pq.read_table(pp).slice(0, rows))
    want = f"{trace_file}: header says 96 pages, page table t.pages.parquet has {rows} rows"
    for argv in (["run", "--trace", str(trace_file), "--scenario", SCEN.name], ["trace", "stats", str(trace_file)]):
        assert _one_line_error(argv, capsys).endswith(want)
    with pytest.raises(TraceError, match="header says 96 pages"):
        run(str(trace_file), SCEN, "lru")  # the chunked path (a trace larger than memory) too


def test_page_ids_outside_the_table_are_refused_in_chunks(trace_file):
    t = pq.read_table(trace_file)
    page = t.column("page").to_numpy().copy()
    page[250] = 96
    _rewrite(trace_file, t.set_column(1, "page", pa.array(page)))
    with pytest.raises(TraceError, match=r"column 'page', row 250: page id 96 outside the page table \[0, 96\)"):
        run(str(trace_file), SCEN, "lru", chunk_rows=64)


def test_in_memory_traces_are_validated_by_run():
    pages = PageTable.uniform(4, 4096)
    bad = Trace(np.arange(3, dtype=np.int64), np.array([0, 1, 7]), pages)  # made directly: never validated
    with pytest.raises(TraceError, match=r"column 'page', row 2: page id 7 outside the page table \[0, 4\)"):
        run(bad, SCEN, "lru")


# -- defect 4: a trace and its page table are one unit ------------------------------------------
def test_pair_from_two_writes_is_refused(tmp_path):
    a = write_trace(make_trace("rag_burst", seed=0), tmp_path / "a.parquet")
    b = write_trace(make_trace("rag_burst", seed=1), tmp_path / "b.parquet")
    os.replace(pages_path(b), pages_path(a))  # same row count, another write
    with pytest.raises(TraceError, match=r"a.parquet: the page table a.pages.parquet belongs to another write"):
        read_trace(a)
    with pytest.raises(TraceError, match="belongs to another write"):
        read_pages(a)


def test_a_write_stopped_between_the_two_renames_leaves_no_loadable_mismatch(tmp_path, monkeypatch):
    path = write_trace(make_trace("rag_burst", seed=0), tmp_path / "t.parquet")
    old = read_trace(path)
    calls = []
    real = parquet.publish

    def publish(tmp, final):
        calls.append(Path(final).name)
        if len(calls) == 2:  # the page table is in place, the trace not yet: "kill -9" here
            raise KeyboardInterrupt
        real(tmp, final)

    monkeypatch.setattr(parquet, "publish", publish)
    with pytest.raises(KeyboardInterrupt):
        write_trace(make_trace("rag_burst", seed=5), path)
    assert calls == ["t.pages.parquet", "t.parquet"]
    with pytest.raises(TraceError, match="belongs to another write"):
        read_trace(path)
    monkeypatch.setattr(parquet, "publish", real)
    write_trace(old, path)  # rewriting heals it
    assert len(read_trace(path)) == len(old)


WRITER = """
import sys
from kvgym.traces.parquet import write_trace
from kvgym.workloads import make_trace
a, b = make_trace("topk_drift", seed=0, prompt_tokens=2048), make_trace("topk_drift", seed=1, prompt_tokens=2048)
print("ready", flush=True)
while True:
    for t in (a, b):
        write_trace(t, sys.argv[1])
"""


@pytest.mark.slow
def test_kill_9_while_overwriting_never_leaves_a_loadable_mismatch(tmp_path):
    path = tmp_path / "t.parquet"
    a, b = make_trace("topk_drift", seed=0, prompt_tokens=2048), make_trace("topk_drift", seed=1, prompt_tokens=2048)
    want = {parquet.pair_id(a), parquet.pair_id(b)}
    rng = np.random.default_rng(0)
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.2, 1.5)))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        try:
            t = read_trace(path)
        except TraceError as e:
            assert "belongs to another write" in str(e)
            outcomes["refused"] += 1
            continue
        assert parquet.pair_id(t) in want  # a whole, consistent pair (one of the two written)
        outcomes["loaded"] += 1
    print(f"\nkill -9 while overwriting, 12 kills: {outcomes}")
    assert outcomes["loaded"] > 0


# -- defect 8: tracebacks instead of one clear line -------------------------------------------
def _header_cases():
    return [
        ("a list", lambda h: json.dumps([1, 2]), "corrupt 'kvgym' metadata (a JSON list, expected an object)"),
        ("missing n_pages", lambda h: json.dumps({k: v for k, v in h.items() if k != "n_pages"}),
         "header 'n_pages' must be an int in [0, 2**40], got None"),
        ("string n_pages", lambda h: json.dumps({**h, "n_pages": "96"}), "header 'n_pages' must be an int"),
        ("float n_pages", lambda h: json.dumps({**h, "n_pages": 96.0}), "header 'n_pages' must be an int"),
        ("not JSON", lambda h: "{", "corrupt 'kvgym' metadata"),
        ("not UTF-8", lambda h: b"\xff\xfe", "corrupt 'kvgym' metadata"),
        ("schema 7", lambda h: json.dumps({**h, "schema": 7}), "trace schema 7; this kvgym reads 1, 2"),
    ]


@pytest.mark.parametrize("name,make,message", _header_cases(), ids=[c[0] for c in _header_cases()])
def test_bad_headers_are_one_line(trace_file, capsys, name, make, message):
    t = pq.read_table(trace_file)
    header = json.loads(t.schema.metadata[b"kvgym"])
    _rewrite(trace_file, t, {b"kvgym": make(header)})
    assert message in _one_line_error(["run", "--trace", str(trace_file)], capsys)


@pytest.mark.parametrize("column,values,message", [
    ("step", lambda n: pa.array(["0"] * n), "column 'step' must be an integer column, got string"),
    ("step", lambda n: pa.array([None] * n, pa.int64()), "column 'step', row 0: null value"),
    ("page", lambda n: pa.array(np.zeros(n) + 0.5), "column 'page' must be an integer column, got double"),
    ("weight", lambda n: pa.array(["1"] * n), "column 'weight' must be a floating-point column, got string"),
    ("weight", lambda n: pa.array([None] * n, pa.float32()), "column 'weight', row 0: null value"),
])
def test_bad_access_columns_are_one_line(tmp_path, capsys, column, values, message):
    path = write_trace(make_trace("streaming", seed=0, prompt_tokens=256, decode_steps=4), tmp_path / "s.parquet")
    t = pq.read_table(path)
    i = t.column_names.index(column)
    _rewrite(path, t.set_column(i, column, values(t.num_rows)))
    assert _one_line_error(["run", "--trace", str(path)], capsys).endswith(message)


@pytest.mark.parametrize("cut", [0.0, 0.3, 0.9])
@pytest.mark.parametrize("which", ["trace", "pages"])
def test_truncated_or_garbage_files_are_one_line(trace_file, capsys, cut, which):
    f = trace_file if which == "trace" else pages_path(trace_file)
    data = f.read_bytes()
    f.write_bytes(data[: int(cut * len(data))] if cut else b"PAR1 not parquet at all PAR1")
    line = _one_line_error(["trace", "stats", str(trace_file)], capsys)
    assert line.startswith("kvgym trace stats: error: ") and str(f) in line


# -- defect 9: bad values that were silently accepted -----------------------------------------
@pytest.mark.parametrize("column,value,message", [
    ("fp16_bytes", 2.5, "column 'fp16_bytes' must be an integer column, got double"),
    ("fp16_bytes", "4096", "column 'fp16_bytes' must be an integer column, got string"),
    ("layer", 2**32 + 1, "column 'layer', row 3: 4294967297 is outside [-2147483648, 2147483647]"),
    ("fp16_bytes", 2**62, "column 'fp16_bytes', row 3: page bytes must be <= 2**40, got 4611686018427387904"),
    ("token_start", 2**63,
     "column 'token_start', row 3: 9223372036854775808 is outside [-9223372036854775808, 9223372036854775807]"),
])
def test_bad_page_values_are_refused(trace_file, capsys, column, value, message):
    pp = pages_path(trace_file)
    t = pq.read_table(pp)
    col = t.column(column).to_pylist()
    col[3] = value
    if isinstance(value, float):
        col = [float(x) for x in col]
    elif isinstance(value, str):
        col = [str(x) for x in col]
    typ = pa.uint64() if isinstance(value, int) and value >= 2**63 else None
    _rewrite(pp, t.set_column(t.column_names.index(column), column, pa.array(col, typ)))
    for argv in (["run", "--trace", str(trace_file)], ["trace", "stats", str(trace_file)]):
        assert _one_line_error(argv, capsys).endswith(message)


def test_fractional_steps_are_refused_not_truncated(trace_file):
    t = pq.read_table(trace_file)
    _rewrite(trace_file, t.set_column(0, "step", pa.array(t.column("step").to_numpy() + 0.25)))
    with pytest.raises(TraceError, match="column 'step' must be an integer column, got double"):
        list(iter_chunks(trace_file))


def test_page_table_totals_cannot_overflow():
    n = 4
    pages = PageTable.uniform(n, 1 << 40)
    from kvgym.traces.format import validate_pages

    validate_pages(pages)  # 4 TiB in all: fine
    big = PageTable.uniform(1 << 22, 1 << 40)  # 2**62 bytes in all
    with pytest.raises(TraceError, match="sums to more than 2\\*\\*61 bytes"):
        validate_pages(big)
