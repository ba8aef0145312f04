"""Trace format, Parquet round trip, chunked reading, and errors that name file, column and row."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kvgym.errors import ConfigError, SimulationError, TraceError
from kvgym.sim import run
from kvgym.sim.scenario import Scenario
from kvgym.sim.tiers import profile
from kvgym.traces.format import PageTable, Trace, validate
from kvgym.traces.geometry import geometry
from kvgym.traces.parquet import iter_chunks, pages_path, read_trace, write_trace
from kvgym.traces.quant import quantization


def small_trace(n=50, n_pages=10, seed=0) -> Trace:
    rng = np.random.default_rng(seed)
    return Trace.from_pages(rng.integers(0, n_pages, n), fp16_bytes=65536,
                            steps=np.arange(n) // 3, weight=rng.random(n), meta={"generator": "test", "seed": seed})


def test_round_trip_and_determinism(tmp_path):
    t = small_trace()
    a, b = tmp_path / "x" / "t.parquet", tmp_path / "y" / "t.parquet"
    write_trace(t, a)
    write_trace(t, b)
    assert a.read_bytes() == b.read_bytes()
    assert pages_path(a).read_bytes() == pages_path(b).read_bytes()
    r = read_trace(a)
    assert np.array_equal(r.step, t.step) and np.array_equal(r.page, t.page)
    assert np.array_equal(r.weight, t.weight.astype(np.float32))
    assert np.array_equal(r.pages.fp16_bytes, t.pages.fp16_bytes)
    assert r.meta == {"generator": "test", "seed": 0}


def test_chunked_reading_gives_same_metrics(tmp_path):
    rng = np.random.default_rng(1)
    t = Trace.from_pages(rng.zipf(1.2, 5000) % 300, fp16_bytes=65536, steps=np.arange(5000) // 7)
    p = write_trace(t, tmp_path / "z.parquet", row_group_size=333)
    assert [len(c[0]) for c in iter_chunks(p, rows=1000)][:2] == [1000, 1000]
    sc = Scenario(capacities=("10%", "5%", None, None))
    whole = run(t, sc).to_dict()
    assert run(p, sc, chunk_rows=777).to_dict() == whole  # compiled engine, steps straddle chunks
    assert run(p, sc, chunk_rows=777, engine="reference").to_dict() == whole


def test_geometry_and_quantization_numbers():
    g = geometry("llama-3.1-8b")
    assert g.page_fp16_bytes == 16 * 8 * 128 * 2 * 2 == 65536
    assert geometry("Llama-3.1-70B").layers == 80
    assert geometry("llama-3.1-8b", heads_per_page=2).page_fp16_bytes == 16384
    q4 = quantization("int4")
    # 32768 scalars at 4 bits = 16384 bytes, plus one fp16 scale per 64 scalars = 1024 bytes.
    assert q4.footprint(65536) == 16384 + 1024
    assert quantization("fp8").footprint(65536) == 32768
    assert quantization("int2").footprint(65536) == 8192 + 1024
    assert quantization("fp8").decode_us(65536) == pytest.approx(65536 / 664.7e3)


@pytest.mark.parametrize("make,match", [
    (lambda: geometry("gpt-9"), "unknown model geometry 'gpt-9'; valid: .*llama-3.1-8b"),
    (lambda: profile("nope"), "unknown tier profile 'nope'; valid: h100-datasheet, h200-measured"),
    (lambda: quantization("fp4"), "unknown quantization 'fp4'; valid: fp16, fp8"),
    (lambda: Scenario(capacities=(0, None, None, None)), r"capacities\[0\]=0 is invalid; valid: an int of bytes in \[1, 2\*\*63\)"),
    (lambda: Scenario(capacities=(-5, None, None, None)), r"capacities\[0\]"),
    (lambda: Scenario(capacities=("-3%", None, None, None)), "valid: 'N%' with 0 < N <= 100"),
    (lambda: Scenario(cost_model="magic"), "cost_model='magic' is invalid; valid: one of serial, overlap"),
    (lambda: Scenario(capacities=(1, 2)),
     r"capacities=\(1, 2\) is invalid; valid: a list of 4 entries, one per tier of profile 'h200-measured'"),
    (lambda: Scenario.from_dict({"nmae": "x"}), r"unknown keys \['nmae'\]"),
    (lambda: geometry("llama-3.1-8b", heads_per_page=3), "heads_per_page must divide kv_heads=8"),
])
def test_config_errors_are_clear(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_page_larger_than_tier0():
    t = Trace.from_pages([0, 1], fp16_bytes=65536)
    with pytest.raises(ConfigError, match=r"page 0 \(65536 bytes\) is larger than tier 'hbm' \(1000 bytes\)"):
        run(t, Scenario(capacities=(1000, None, None, None)))


def test_pinned_step_overflowing_tier0():
    t = Trace.from_pages([0, 1, 2], fp16_bytes=65536, steps=[0, 0, 0])
    sc = Scenario(capacities=(2 * 65536, None, None, None))
    with pytest.raises(SimulationError, match="step 0 needs 196608 bytes of distinct pages at once"):
        sc.build(t.pages).check_steps(t.step, t.page)
    for engine in ("compiled", "reference"):
        with pytest.raises(SimulationError, match="step 0 needs 196608 bytes"):
            run(t, sc, engine=engine)
    # The engines themselves also refuse (e.g. a Parquet trace read in chunks is not pre-checked).
    from kvgym.sim.compiled import CompiledEngine
    from kvgym.sim.engine import Engine
    from kvgym.sim.policy import make_policy

    for eng in (Engine, CompiledEngine):
        with pytest.raises(SimulationError, match="every resident is pinned"):
            eng(sc.build(t.pages), make_policy("lru")).run_chunks([(t.step, t.page, None)])


@pytest.mark.parametrize("step,page,match", [
    ([0, -1, 2], [0, 1, 2], "column 'step', row 1: negative step -1"),
    ([0, 2, 1], [0, 1, 2], r"column 'step', row 2: steps must be non-decreasing \(1 after 2\)"),
    ([0, 1, 2], [0, 7, 2], r"column 'page', row 1: page id 7 outside the page table \[0, 3\)"),
    ([0, 1, 2], [0, -2, 2], "column 'page', row 1"),
])
def test_bad_rows_are_named(step, page, match):
    t = Trace(np.array(step, np.int64), np.array(page, np.int64), PageTable.uniform(3, 4096))
    with pytest.raises(TraceError, match=match):
        validate(t, "mytrace")


def test_parquet_errors_name_file_and_column(tmp_path):
    p = tmp_path / "bad.parquet"
    write_trace(small_trace(), p)
    t = pq.read_table(p)
    pq.write_table(t.drop(["page"]).replace_schema_metadata(t.schema.metadata), tmp_path / "nopage.parquet")
    with pytest.raises(TraceError, match=r"nopage.parquet: missing column 'page'"):
        read_trace(tmp_path / "nopage.parquet")
    neg = t.set_column(0, "step", pa.array(np.r_[0, 0, -4, np.zeros(47, np.int64)]))
    pq.write_table(neg.replace_schema_metadata(t.schema.metadata), tmp_path / "neg.parquet")
    pages_path(p).rename(pages_path(tmp_path / "neg.parquet"))
    with pytest.raises(TraceError, match=r"neg.parquet: column 'step', row 2: negative step -4"):
        read_trace(tmp_path / "neg.parquet")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(TraceError, match="junk.parquet: not a Parquet file"):
        read_trace(tmp_path / "junk.parquet")
    with pytest.raises(TraceError, match="no such trace file"):
        read_trace(tmp_path / "missing.parquet")
    pq.write_table(pa.table({"step": [0], "page": [0]}), tmp_path / "plain.parquet")
    with pytest.raises(TraceError, match="not a kvgym trace"):
        read_trace(tmp_path / "plain.parquet")


def test_zero_page_bytes_rejected():
    pt = PageTable.uniform(3, 4096)
    pt.fp16_bytes[1] = 0
    with pytest.raises(TraceError, match="column 'fp16_bytes', row 1: page bytes must be > 0"):
        validate(Trace(np.zeros(1, np.int64), np.zeros(1, np.int64), pt))
