"""Request traces: validation (one line naming file and row or line), Parquet round trip, Mooncake
import of every registered dataset, the block-stream import, and the request generators."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from kvgym.bundled import mooncake_synthetic
from kvgym.errors import ConfigError, TraceError
from kvgym.traces.datasets import DATASETS, DatasetError, fetch
from kvgym.traces.requests import (
    RequestTrace,
    import_requests,
    read_requests,
    requests_from_mooncake,
    validate_requests,
    write_requests,
)
from kvgym.workloads.serving import make_requests, request_workload_names

SYNTH = mooncake_synthetic()


def small(**kw) -> RequestTrace:
    args = {"arrival_us": [0.0, 5.0, 9.0], "prompt_tokens": [9, 13, 4], "output_tokens": [6, 1, 2],
            "chains": [[0, 1, 2], [0, 1, 3, 4], [5]], "session": [3, 3, -1], "out_chains": [[3], [], []],
            "block_tokens": 4}
    args.update(kw)
    return RequestTrace.from_chains(args.pop("arrival_us"), args.pop("prompt_tokens"), args.pop("output_tokens"),
                                    args.pop("chains"), **args)


def test_block_table_and_counts():
    t = small()
    assert len(t) == 3 and t.n_blocks == 6 and t.block_refs == 8
    bt = t.block_table
    assert list(bt.parent) == [-1, 0, 1, 1, 3, -1]
    assert list(bt.position) == [0, 1, 2, 2, 3, 0]
    assert list(bt.tokens) == [4, 4, 1, 4, 1, 4]   # 2 and 4 are partial tails; 3 is R0's output block


def test_parquet_round_trip_is_byte_identical(tmp_path):
    t = small(meta={"generator": "test", "seed": 1})
    a, b = write_requests(t, tmp_path / "a" / "r.parquet"), write_requests(t, tmp_path / "b" / "r.parquet")
    assert a.read_bytes() == b.read_bytes()
    r = read_requests(a)
    for f in ("arrival_us", "prompt_tokens", "output_tokens", "offsets", "blocks", "session", "out_offsets", "out_blocks"):
        assert np.array_equal(getattr(r, f), getattr(t, f)), f
    assert r.block_tokens == 4 and r.meta == {"generator": "test", "seed": 1}
    assert not list(tmp_path.glob("**/.*tmp"))


@pytest.mark.parametrize("change, words", [
    ({"chains": [[0, 1, 2], [0, 2, 3, 4], [5]]}, ("row 1: block 2 at position 1 follows block 0, but row 0 has it "
                                                  "after block 1")),
    ({"prompt_tokens": [9, -13, 4]}, "row 1: prompt_tokens must be >= 0, got -13"),
    ({"output_tokens": [6, 1, -2]}, "row 2: output_tokens must be >= 0, got -2"),
    ({"arrival_us": [0.0, 5.0, 4.0]}, "row 2: arrival 4.0 us goes backwards"),
    ({"prompt_tokens": [9, 12, 4]}, "row 1: the prompt chain has 4 blocks, but ceil(prompt_tokens / 4)"),
    ({"out_chains": [[3, 6], [], []]}, "row 0: out_blocks has 2 ids; the output completes 1 blocks"),
    ({"chains": [[0, 1, 2], [0, 1, 3, 4], [7]]}, "block ids must be dense 0..7; id 5 is unused"),
    ({"session": [3, -2, -1]}, "row 1: session must be >= 0 or -1"),
    ({"chains": [[0, 1, 2], [0, 1, 3, 4], [2]]}, "row 2: block 2 at position 0 follows the chain head, but row 0"),
])
def test_bad_input_names_file_and_row(change, words):
    with pytest.raises(TraceError) as e:
        small(**change)
    msg = str(e.value)
    assert words in msg and "\n" not in msg and msg.startswith("requests: ")


def test_block_size_contradiction():
    # Block 2 is a 1-token tail in row 0 but a full block of row 1.
    with pytest.raises(TraceError, match="row 1: block 2 holds 4 tokens here but 1 in row 0"):
        small(chains=[[0, 1, 2], [0, 1, 2, 3], [4]], out_chains=[[], [], []], prompt_tokens=[9, 13, 4])


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def req(ts, n_in, ids, n_out=3):
    return {"timestamp": ts, "input_length": n_in, "output_length": n_out, "hash_ids": ids}


@pytest.mark.parametrize("rows, line, words", [
    ([req(0, 1024, [7, 8]), req(5, 1024, [9, 8])], 2, ("block 1 at position 1 follows block 2, but line 1 has it "
                                                      "after block 0")),
    ([req(0, 1024, [7, 8]), req(5, -3, [])], 2, "'input_length' must be in [0, 2**63)"),
    ([req(0, 1024, [7, 8]), req(5, 10, [7], n_out=-1)], 2, "'output_length' must be in [0, 2**63)"),
    ([req(10, 1024, [7, 8]), req(5, 512, [7])], 2, "timestamp 5 goes backwards"),
])
def test_mooncake_bad_input_is_one_line_naming_file_and_line(tmp_path, rows, line, words):
    p = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(TraceError) as e:
        requests_from_mooncake(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}:{line}: ") and words in msg and "\n" not in msg


def test_parquet_bad_rows_name_the_file(tmp_path):
    t = small()
    p = write_requests(t, tmp_path / "r.parquet")
    table = pq.read_table(p)
    bad = table.set_column(1, "prompt_tokens", __import__("pyarrow").array([9, 13, -4]))
    pq.write_table(bad.replace_schema_metadata(table.schema.metadata), tmp_path / "bad.parquet")
    with pytest.raises(TraceError, match=rf"^{tmp_path / 'bad.parquet'}: row 2: prompt_tokens must be >= 0"):
        read_requests(tmp_path / "bad.parquet")
    from kvgym.traces.format import Trace
    from kvgym.traces.parquet import write_trace

    decode = write_trace(Trace.from_pages([0, 1, 0]), tmp_path / "decode.parquet")
    with pytest.raises(TraceError, match="not a kvgym request trace \\(a kvgym decode trace"):
        read_requests(decode)


def test_mooncake_import_keeps_every_block():
    t = requests_from_mooncake(SYNTH)
    assert (len(t), t.block_refs, t.n_blocks) == (3993, 121_877, 43_924)
    assert t.arrival_us[-1] == 1_022_025 * 1000.0 and t.meta["generator"] == "mooncake-import"
    u = requests_from_mooncake(SYNTH, limit=50, output_blocks="unique")
    assert len(u.out_blocks) == int(sum((u.prompt_tokens + u.output_tokens - 1) // 512 - u.prompt_tokens // 512))
    assert u.out_blocks.min() == requests_from_mooncake(SYNTH, limit=50).n_blocks


def test_every_registered_dataset_imports_as_requests(tmp_path):
    mini = write_jsonl(tmp_path / "mini.jsonl", [req(0, 1000, [1, 2]), req(3, 600, [1, 4])])
    for name, d in DATASETS.items():
        if d.bundled is not None:
            assert len(import_requests(name, root=tmp_path / "data", limit=100)) == 100, name
        else:  # pinned and not shipped: only the verified file installs; the format imports as a path
            with pytest.raises(DatasetError, match="sha256"):
                fetch(name, root=tmp_path / "data", source=mini)
    assert len(import_requests(mini)) == 2
    assert import_requests(write_requests(small(), tmp_path / "s.parquet")).n_blocks == 6
    with pytest.raises(ConfigError, match="output_blocks='all'"):
        requests_from_mooncake(mini, output_blocks="all")


def test_block_stream_import_from_the_cli(tmp_path, capsys):
    """The libcachesim cross-check as a user runs it: import one block per step, run with 1%."""
    from kvgym.cli import main

    out = tmp_path / "stream.parquet"
    assert main(["trace", "import", str(SYNTH), "--block-stream", "--limit", "300", "-o", str(out)]) == 0
    assert "one block per step" in capsys.readouterr().out
    js = tmp_path / "m.json"
    # 1% of the 7,352 distinct blocks = 73 blocks, given in pages (one page per block).
    assert main(["run", "--trace", str(out), "--scenario", "h200_10pct_fp16_no_prefetch", "--set",
                 "profile=single-tier", "--set", 'capacities=["73 pages", null]', "--set", "first_touch=backing",
                 "--json", str(js)]) == 0
    misses = json.loads(js.read_text())["metrics"]["misses"]
    lcs = pytest.importorskip("libcachesim")
    ids = requests_from_mooncake(SYNTH, limit=300).blocks
    cache = lcs.LRU(int(0.01 * len(np.unique(ids))), hashpower=14)
    assert misses == sum(not cache.get(lcs.Request(obj_size=1, obj_id=int(x) + 1)) for x in ids) == 7693


@pytest.mark.parametrize("name", request_workload_names())
def test_generators_are_deterministic_and_valid(name, tmp_path):
    a, b = make_requests(name, seed=4), make_requests(name, seed=4)
    pa_, pb = write_requests(a, tmp_path / "a.parquet"), write_requests(b, tmp_path / "b.parquet")
    assert pa_.read_bytes() == pb.read_bytes()
    assert a.meta["generator"] == name and a.meta["seed"] == 4
    validate_requests(read_requests(pa_))
    assert not np.array_equal(make_requests(name, seed=5).prompt_tokens[:5], a.prompt_tokens[:5])


def test_generator_structure():
    rag = make_requests("rag", seed=1, requests=50, docs=10, doc_tokens=512, system_tokens=512, docs_per_request=2)
    # Instruction block then the first document's block: the first document is a shared prefix.
    heads = {tuple(rag.chain(r)[:2]) for r in range(len(rag))}
    assert len(heads) <= 10 and len({rag.chain(r)[0] for r in range(len(rag))}) == 1
    sp = make_requests("system_prompt", seed=1, prompts=2, system_tokens=1024)
    assert len({tuple(sp.chain(r)[:2]) for r in range(len(sp))}) == 2
    ag = make_requests("agent", seed=1, sessions=3)
    for r in range(len(ag)):   # each step of an agent extends its previous step's sequence
        prev = [q for q in range(r) if ag.session[q] == ag.session[r]]
        if prev:
            q = prev[-1]
            seq = list(ag.chain(q)[: ag.prompt_tokens[q] // 512]) + list(ag.out_chain(q))
            assert list(ag.chain(r)[: len(seq)]) == seq
    with pytest.raises(ConfigError, match="workload 'rag': docs_per_request=20 is out of range"):
        make_requests("rag", docs=10, docs_per_request=20)
    with pytest.raises(ConfigError, match="unknown parameters"):
        make_requests("chat", turns=3)
