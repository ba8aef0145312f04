"""Mooncake FAST'25 JSON Lines importer: every block reference kept, exact layout, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvgym.cli import main
from kvgym.errors import ConfigError, TraceError
from kvgym.traces.geometry import geometry
from kvgym.traces.mooncake import first_appearance_ids, import_mooncake, read_requests
from kvgym.traces.parquet import read_trace

SYNTH = "traces/mooncake_fast25_synthetic_trace.jsonl"


def _write(tmp_path, lines, name="t.jsonl"):
    p = tmp_path / name
    p.write_text("".join(line + "\n" for line in lines))
    return p


def _req(ts, n_in, ids, n_out=1):
    return json.dumps({"timestamp": ts, "input_length": n_in, "output_length": n_out, "hash_ids": ids})


@pytest.mark.shared
def test_synthetic_trace_keeps_every_block_reference(shared_dir):
    path = shared_dir / SYNTH
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    ids = [h for r in rows for h in r["hash_ids"]]
    tr = import_mooncake(path)
    # Counted directly from the file, and pinned.
    assert len(tr) == len(ids) == 121_877
    assert len(tr.pages) == len(np.unique(tr.page)) == len(set(ids)) == 43_924
    assert tr.meta["requests"] == len(rows) == 3_993
    # The access sequence is the file's id sequence under a first-appearance renumbering.
    first: dict[int, int] = {}
    expect = [first.setdefault(h, len(first)) for h in ids]
    np.testing.assert_array_equal(tr.page, expect)
    np.testing.assert_array_equal(tr.step, np.repeat(np.arange(len(rows)), [len(r["hash_ids"]) for r in rows]))
    # One page per 512-token block of all 32 layers of Llama-3.1-8B: 512 * 131072 B = 64 MiB.
    assert set(tr.pages.fp16_bytes.tolist()) == {512 * geometry("llama-3.1-8b").kv_bytes_per_token()} == {64 << 20}
    assert tr.meta["source_sha256"] == "bd070915a98fc0ed264d7cfef2ce746002eb3076a695ec31ba2674c0111ec131"
    assert tr.meta["source"] == path.name  # no absolute path in metadata


@pytest.mark.shared
def test_synthetic_trace_per_layer(shared_dir):
    tr = import_mooncake(shared_dir / SYNTH, geometry="qwen2.5-7b", per_layer=True, limit=50)
    block = import_mooncake(shared_dir / SYNTH, geometry="qwen2.5-7b", limit=50)
    L = 28
    assert len(tr) == L * len(block) and len(tr.pages) == L * len(block.pages)
    # Per-layer pages add up to the block's bytes: 512 tokens * 4 heads * 128 * 2 * 2 = 1 MiB each.
    assert set(tr.pages.fp16_bytes.tolist()) == {1 << 20}
    assert int(tr.pages.fp16_bytes.sum()) == int(block.pages.fp16_bytes.sum())
    # Layer-major within a request, page = block * L + layer.
    n0 = int((block.step == 0).sum())
    np.testing.assert_array_equal(tr.page[: L * n0], (block.page[:n0][None, :] * L + np.arange(L)[:, None]).ravel())
    np.testing.assert_array_equal(tr.pages.layer[:L], np.arange(L))
    np.testing.assert_array_equal(np.unique(tr.page // L), np.unique(block.page))


def test_small_file_exact_layout(tmp_path):
    p = _write(tmp_path, [
        _req(0, 1000, [7, 8]),          # 2 blocks
        "",                             # blank lines are skipped
        _req(5, 0, []),                 # no prompt blocks: an empty step
        _req(5, 1025, [7, 8, 9]),       # shares the 2-block prefix
        _req(9.5, 512, [3]),
    ])
    tr = import_mooncake(p, geometry="stories260k")
    np.testing.assert_array_equal(tr.step, [0, 0, 2, 2, 2, 3])
    np.testing.assert_array_equal(tr.page, [0, 1, 0, 1, 2, 3])
    np.testing.assert_array_equal(tr.pages.seq, [0, 0, 2, 3])
    np.testing.assert_array_equal(tr.pages.token_start, [0, 512, 1024, 0])
    np.testing.assert_array_equal(tr.pages.token_end, [512, 1024, 1536, 512])
    # stories260k: 5 layers * 4 kv heads * 8 dims * 2 (K,V) * 2 B = 640 B per token.
    np.testing.assert_array_equal(tr.pages.fp16_bytes, [512 * 640] * 4)
    req = read_requests(p)
    np.testing.assert_array_equal(req.lines, [1, 3, 4, 5])
    assert tr.meta["block_refs"] == 6 and tr.meta["distinct_blocks"] == 4 and tr.meta["requests"] == 4
    pl = import_mooncake(p, geometry="stories260k", per_layer=True)
    np.testing.assert_array_equal(pl.page[:10], [0, 5, 1, 6, 2, 7, 3, 8, 4, 9])
    np.testing.assert_array_equal(pl.step, [0] * 10 + [2] * 15 + [3] * 5)
    assert set(pl.pages.fp16_bytes.tolist()) == {512 * 128}


def test_first_appearance_ids():
    dense, first = first_appearance_ids(np.array([50, 3, 50, 9, 3, 1]))
    np.testing.assert_array_equal(dense, [0, 1, 0, 2, 1, 3])
    np.testing.assert_array_equal(first, [0, 1, 3, 5])


@pytest.mark.parametrize("bad, line, words", [
    ('{"timestamp": 0, "input_length": 1000, "output_length": 1, "hash_i', 2, "not a valid JSON"),
    (_req(1, 600, [1, "x"]), 2, "hash_ids[1] must be an integer"),
    (_req(1, 600, [1, 2.5]), 2, "hash_ids[1] must be an integer"),
    (_req(1, 600, [1, True]), 2, "hash_ids[1] must be an integer"),
    (_req(1, 1025, [1, 2]), 2, "shorter than ceil(input_length/512) = ceil(1025/512) = 3"),
    (_req(1, 10, [1, 2]), 2, "longer than"),
    (_req(-1, 10, [1]), 2, "'timestamp' must be a finite number >= 0"),
    (_req(1, -10, []), 2, "'input_length' must be in [0, 2**63)"),
    (_req(1, 10, [-5]), 2, "hash_ids[0] must be in [0, 2**63)"),
    ('[1, 2, 3]', 2, "expected a JSON object"),
    ('{"timestamp": 1, "input_length": 1, "output_length": 1}', 2, "missing field 'hash_ids'"),
    (_req(1, 10, {"a": 1}), 2, "'hash_ids' must be a list"),
])
def test_malformed_line_names_file_and_line(tmp_path, bad, line, words):
    p = _write(tmp_path, [_req(0, 512, [0]), bad, _req(9, 512, [0])])
    with pytest.raises(TraceError) as e:
        import_mooncake(p)
    assert f"{p}:{line}:" in str(e.value) and words in str(e.value)


def test_timestamps_going_backwards(tmp_path):
    p = _write(tmp_path, [_req(0, 512, [0]), _req(100, 512, [0]), _req(100, 512, [1]), _req(99, 512, [2])])
    with pytest.raises(TraceError, match=r":4: timestamp 99 goes backwards \(line 3 has 100"):
        import_mooncake(p)


def test_bad_options(tmp_path):
    p = _write(tmp_path, [_req(0, 512, [0])])
    with pytest.raises(ConfigError, match="limit must be a positive int"):
        import_mooncake(p, limit=0)
    with pytest.raises(ConfigError, match="block_tokens must be a positive int"):
        import_mooncake(p, block_tokens=0)
    with pytest.raises(ConfigError, match="unknown model geometry 'gpt-9'"):
        import_mooncake(p, geometry="gpt-9")


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(TraceError, match="no requests"):
        import_mooncake(_write(tmp_path, ["", "  "]))
    with pytest.raises(TraceError, match="cannot open"):
        import_mooncake(tmp_path / "nope.jsonl")


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4),
                     max_leaves=12)
_field = st.sampled_from(["timestamp", "input_length", "output_length", "hash_ids"])
_fields = st.fixed_dictionaries({}, optional={
    "timestamp": st.one_of(st.integers(-5, 10**20), st.floats(allow_nan=True), _json),
    "input_length": st.one_of(st.integers(-5, 4000), _json),
    "output_length": st.one_of(st.integers(-5, 40), _json),
    "hash_ids": st.one_of(st.lists(st.integers(-3, 2**70), max_size=10), _json),
})


@st.composite
def _broken_line(draw) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:  # a valid-looking line cut anywhere
        good = _req(draw(st.integers(0, 10)), 1000, [1, 2]).encode()
        return good[: draw(st.integers(0, len(good)))]
    if kind == 1:  # arbitrary bytes (bad UTF-8, NUL, deep brackets...)
        return draw(st.binary(max_size=40)).replace(b"\n", b" ") or b"{"
    if kind == 2:  # any JSON value
        return json.dumps(draw(_json)).encode()
    d = draw(_fields)  # an object with some fields, of any type
    return json.dumps(d).encode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_broken_line(), min_size=1, max_size=4), where=st.integers(0, 3))
def test_fuzz_only_trace_errors(tmp_path, lines, where):
    good = [_req(i, 1000, [i, i + 1]).encode() for i in range(3)]
    data = good[:where] + lines + good[where:]
    p = tmp_path / "fuzz.jsonl"
    p.write_bytes(b"\n".join(data) + b"\n")
    try:
        tr = import_mooncake(p, geometry="stories260k")
    except TraceError as e:
        assert str(p) in str(e)
    else:
        # Whatever parsed is a whole, valid trace of at least the good requests' blocks.
        assert len(tr) == tr.meta["block_refs"] >= 6


def test_deeply_nested_line(tmp_path):
    p = _write(tmp_path, ["[" * 100_000])
    with pytest.raises(TraceError, match=r":1: not a valid JSON"):
        import_mooncake(p)


@pytest.mark.shared
def test_cli_import(shared_dir, tmp_path, capsys):
    out = tmp_path / "mc.parquet"
    assert main(["trace", "import", str(shared_dir / SYNTH), "--limit", "100", "--per-layer",
                 "--geometry", "stories260k", "-o", str(out)]) == 0
    tr = read_trace(out)
    ref = import_mooncake(shared_dir / SYNTH, geometry="stories260k", per_layer=True, limit=100)
    np.testing.assert_array_equal(tr.page, ref.page)
    np.testing.assert_array_equal(tr.step, ref.step)
    assert tr.meta["requests"] == 100 and tr.meta["params"]["per_layer"] is True
    msg = capsys.readouterr().out
    assert f"100 requests, {len(ref)} accesses" in msg
    # Same input and options give a byte-identical file.
    (tmp_path / "again").mkdir()
    out2 = tmp_path / "again" / "mc.parquet"
    assert main(["trace", "import", str(shared_dir / SYNTH), "--limit", "100", "--per-layer",
                 "--geometry", "stories260k", "-o", str(out2)]) == 0
    assert out.read_bytes() == out2.read_bytes()


def test_cli_import_error_is_one_line(tmp_path, capsys):
    p = _write(tmp_path, [_req(0, 2000, [1])])
    assert main(["trace", "import", str(p), "-o", str(tmp_path / "x.parquet")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{p}:1:" in err and "shorter than ceil(input_length/512) = ceil(2000/512) = 4" in err
