"""llama2.c numpy model, attention records, selection rules, and `kvgym trace capture`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kvgym.cli import main
from kvgym.errors import ConfigError, TraceError
from kvgym.traces.capture import (
    AttentionRecord,
    page_mass,
    parse_select,
    plot_record,
    record_stats,
    record_to_trace,
    select_pages,
)
from kvgym.traces.geometry import geometry
from kvgym.traces.llama2c import (
    BOS,
    Llama2cConfig,
    Tokenizer,
    generate,
    load_checkpoint,
    random_model,
    write_checkpoint,
)
from kvgym.traces.parquet import read_trace

STORY = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
TINY = Llama2cConfig(dim=16, hidden_dim=24, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=32, seq_len=64)


@pytest.fixture(scope="module")
def stories(shared_dir):
    model = load_checkpoint(shared_dir / "models/stories260K.bin")
    return model, Tokenizer.load(shared_dir / "models/tok512.bin", model.config.vocab_size)


@pytest.mark.shared
def test_stories260k_greedy_story(stories):
    model, tok = stories
    assert model.config == Llama2cConfig(64, 172, 5, 8, 4, 512, 512, True)
    assert model.sha256 == "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696"
    rec = generate(model, 200)
    assert rec.tokens[0] == BOS and len(rec.tokens) == 201
    text = tok.decode(rec.tokens)
    assert text.startswith(STORY), text[:200]
    # The record: per (step, layer, kv head) a distribution over the pages seen so far.
    assert rec.mass.shape == (200, 5, 4, 13)
    np.testing.assert_allclose(rec.mass.sum(axis=-1), 1.0, atol=1e-5)
    for t in (0, 15, 16, 199):
        assert not rec.mass[t, :, :, t // 16 + 1:].any()
    assert rec.geometry == geometry("stories260k", tokens_per_page=16)


@pytest.mark.shared
def test_tokenizer_round_trip(stories):
    _, tok = stories
    ids = tok.encode(STORY)
    assert ids[:4] == [403, 407, 261, 378]  # "Once", " upon", " a", " time"
    assert tok.decode([BOS] + ids) == STORY
    # Characters outside the vocabulary fall back to their UTF-8 bytes (ids 3..258).
    ids = tok.encode("Zoë 😀")
    assert ids == [410, 469, 414, 198, 174, 410, 243, 162, 155, 131]  # "ë" and "😀" as <0xNN> bytes
    assert tok.decode([BOS] + ids) == "Zoë 😀"


@pytest.mark.shared
def test_stories260k_capture_cli(shared_dir, tmp_path, capsys):
    out = tmp_path / "s.parquet"
    assert main(["trace", "capture", "--checkpoint", str(shared_dir / "models/stories260K.bin"), "--tokens", "40",
                 "--select", "topk:2", "--heads-per-page", "2", "-o", str(out), "--stats", str(tmp_path / "s.json")]) == 0
    tr = read_trace(out)
    assert tr.meta["text"].startswith("Once upon a time, there was")
    assert tr.meta["geometry"] == geometry("stories260k", tokens_per_page=16, heads_per_page=2).to_dict()
    # 3 pages of 16 tokens x 5 layers x 2 head groups; 16 * 2 heads * 8 dims * 2 * 2 B = 1024 B each.
    assert len(tr.pages) == 30 and set(tr.pages.fp16_bytes.tolist()) == {1024}
    # Steps 0-15 see one page, then two: min(2, pages) accesses per (layer, group).
    assert len(tr) == 10 * (16 * 1 + 24 * 2)
    assert str(shared_dir) not in str(tr.meta) and str(shared_dir.resolve()) not in str(tr.meta)


def test_random_checkpoint_capture_end_to_end(tmp_path, capsys):
    ckpt = write_checkpoint(random_model(TINY, seed=3), tmp_path / "tiny.bin")
    model = load_checkpoint(ckpt)
    assert model.config == TINY and model.geometry().name == "llama2c"
    out = tmp_path / "t.parquet"
    args = ["trace", "capture", "--checkpoint", str(ckpt), "--tokens", "40", "--tokens-per-page", "4",
            "--select", "topk:3", "-o", str(out), "--record", str(tmp_path / "r.npz")]
    assert main(args) == 0
    assert "40 steps" in capsys.readouterr().out
    tr = read_trace(out)
    rec = AttentionRecord.load(tmp_path / "r.npz")
    assert rec.mass.shape == (40, 2, 2, 10) and rec.model == "tiny.bin"
    # The record equals a direct decode of the same checkpoint.
    np.testing.assert_array_equal(rec.mass, generate(model, 40, tokens_per_page=4).mass)
    # Accesses per step: for each of the 2 layers, min(3, pages seen) pages.
    per_step = np.bincount(tr.step, minlength=40)
    np.testing.assert_array_equal(per_step, [2 * min(3, t // 4 + 1) for t in range(40)])
    # Weights are the (head-mean) page masses of the chosen pages, the 3 largest.
    t, layer = 37, 1
    m = rec.mass[t, layer].mean(axis=0)[:10]
    rows = (tr.step == t) & (tr.pages.layer[tr.page] == layer)
    blocks = tr.pages.token_start[tr.page[rows]] // 4
    assert sorted(blocks.tolist()) == sorted(np.argsort(-m, kind="stable")[:3].tolist())
    np.testing.assert_allclose(tr.weight[rows], m[blocks], rtol=1e-6)
    # Same checkpoint and options: a byte-identical trace.
    (tmp_path / "again").mkdir()
    assert main(args[:-4] + ["-o", str(tmp_path / "again" / "t.parquet")]) == 0
    assert (tmp_path / "again" / "t.parquet").read_bytes() == out.read_bytes()


def test_unshared_classifier_and_sampling(tmp_path):
    cfg = Llama2cConfig(16, 24, 1, 2, 1, 32, 16, shared_classifier=False)
    m = random_model(cfg, seed=1)
    back = load_checkpoint(write_checkpoint(m, tmp_path / "u.bin"))
    np.testing.assert_array_equal(back.wcls, m.wcls)
    assert not np.array_equal(back.wcls, back.tok_emb)
    a = generate(back, 16, temperature=1.0, seed=5)
    b = generate(back, 16, temperature=1.0, seed=5)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert a.geometry.kv_heads == 1 and a.geometry.q_heads == 2


def test_checkpoint_errors(tmp_path, capsys):
    ckpt = write_checkpoint(random_model(TINY), tmp_path / "tiny.bin")
    data = ckpt.read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[:1000])
    with pytest.raises(TraceError, match=r"cut.bin: truncated checkpoint"):
        load_checkpoint(tmp_path / "cut.bin")
    (tmp_path / "short.bin").write_bytes(data[:10])
    with pytest.raises(TraceError, match="too short"):
        load_checkpoint(tmp_path / "short.bin")
    with pytest.raises(TraceError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "none.bin")
    m = load_checkpoint(ckpt)
    with pytest.raises(ConfigError, match="tokens must be an int in"):
        generate(m, 65)

    assert main(["trace", "capture", "--checkpoint", str(ckpt), "--tokens", "5", "--prompt", "hi", "-o",
                 str(tmp_path / "x.parquet")]) == 2
    assert "--prompt needs a tokenizer" in capsys.readouterr().err


def test_page_mass_and_selection_rules():
    att = np.array([[0.1, 0.2, 0.3, 0.4, 0.0]], np.float32)
    np.testing.assert_allclose(page_mass(att, 2), [[0.3, 0.7, 0.0]])
    m = np.array([[0.1, 0.4, 0.1, 0.4],
                  [0.7, 0.1, 0.1, 0.1],
                  [0.25, 0.25, 0.25, 0.25]])
    top2 = select_pages(m, parse_select("topk:2"))
    # Ties go to the earlier block.
    np.testing.assert_array_equal(top2, [[0, 1, 0, 1], [1, 1, 0, 0], [1, 1, 0, 0]])
    half = select_pages(m, parse_select("mass:0.5"))
    np.testing.assert_array_equal(half, [[0, 1, 0, 1], [1, 0, 0, 0], [1, 1, 0, 0]])
    full = select_pages(m, parse_select("mass:1"))
    np.testing.assert_array_equal(full.sum(axis=1), [4, 4, 4])
    assert select_pages(m, parse_select("all")).all() and select_pages(m, parse_select("topk:9")).all()
    assert str(parse_select("mass:0.9")) == "mass:0.9"
    for bad in ("topk:0", "topk:x", "mass:0", "mass:1.5", "every", "all:3"):
        with pytest.raises(ConfigError, match="expected 'all', 'topk:K'"):
            parse_select(bad)


def _handmade_record() -> AttentionRecord:
    # 4 steps, 2 layers, 2 KV heads, 2 tokens per page -> 2 pages.
    mass = np.zeros((4, 2, 2, 2), np.float32)
    mass[0, :, :, 0] = 1
    mass[1, :, :, 0] = 1
    mass[2] = [[[0.25, 0.75], [0.75, 0.25]], [[1.0, 0.0], [0.5, 0.5]]]
    mass[3] = [[[0.5, 0.5], [0.5, 0.5]], [[0.8, 0.2], [0.6, 0.4]]]
    return AttentionRecord(tokens=np.arange(5), mass=mass, tokens_per_page=2,
                           geometry=geometry("stories260k", kv_heads=2), model="hand")


def test_record_to_trace_exact():
    rec = _handmade_record()
    tr = record_to_trace(rec, "topk:1")
    # page = block * 2 layers + layer; ties pick block 0.
    np.testing.assert_array_equal(tr.step, [0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(tr.page, [0, 1, 0, 1, 0, 1, 0, 1])
    np.testing.assert_allclose(tr.weight, [1, 1, 1, 1, 0.5, 0.75, 0.5, 0.7])
    assert len(tr.pages) == 4 and tr.pages.layer.tolist() == [0, 1, 0, 1]
    assert tr.pages.token_start.tolist() == [0, 0, 2, 2]
    per_head = record_to_trace(rec, "mass:0.7", heads_per_page=1)
    # page = (block * 2 + layer) * 2 + head
    np.testing.assert_array_equal(per_head.step, [0] * 4 + [1] * 4 + [2] * 5 + [3] * 7)
    np.testing.assert_array_equal(per_head.page[8:13], [4, 1, 2, 3, 7])
    np.testing.assert_allclose(per_head.weight[8:13], [0.75, 0.75, 1.0, 0.5, 0.5])
    assert set(per_head.pages.fp16_bytes.tolist()) == {2 * 1 * 8 * 2 * 2}
    assert per_head.meta["page_id"] == "(block * layers + layer) * head_groups + group"


def test_record_stats_exact():
    s = record_stats(_handmade_record(), k=1)
    l0, l1 = s["layers"]
    # Recent page: page 0 at steps 0-1, page 1 at steps 2-3.
    assert l0["recent_page_share"] == pytest.approx((1 + 1 + 0.5 + 0.5) / 4)
    assert l1["recent_page_share"] == pytest.approx((1 + 1 + 0.25 + 0.3) / 4)
    # First page, from step 2 on (when it is no longer the current page).
    assert l0["first_page_share"] == pytest.approx(0.5) and l1["first_page_share"] == pytest.approx(0.725)
    # Top-1 coverage over steps with more than one page.
    assert l0["topk_coverage"] == pytest.approx(0.625) and l1["topk_coverage"] == pytest.approx(0.725)
    assert s["recent_page_share"] == pytest.approx((0.75 + 0.6375) / 2)


ARTIFACT = Path(__file__).resolve().parent.parent / "artifacts" / "traces" / "stories260k_topk8.parquet"


@pytest.mark.shared
def test_committed_trace_matches_a_fresh_capture(stories):
    model, _ = stories
    committed = read_trace(ARTIFACT)
    assert committed.meta["params"] == {"select": "topk:8", "steps": 512, "tokens_per_page": 16, "heads_per_page": None}
    assert committed.meta["text"].startswith(STORY) and len(committed) == 18_240
    # Selection at step t depends on step t's masses only: the first 64 steps must match exactly.
    fresh = record_to_trace(generate(model, 64), "topk:8")
    n = int(np.searchsorted(committed.step, 64))
    np.testing.assert_array_equal(committed.step[:n], fresh.step)
    np.testing.assert_array_equal(committed.page[:n], fresh.page)
    np.testing.assert_array_equal(committed.weight[:n], fresh.weight)


@pytest.mark.slow
@pytest.mark.shared
def test_committed_trace_is_reproduced_byte_for_byte(shared_dir, tmp_path):
    out = tmp_path / ARTIFACT.name
    assert main(["trace", "capture", "--checkpoint", str(shared_dir / "models/stories260K.bin"), "--tokens", "512",
                 "--select", "topk:8", "-o", str(out)]) == 0
    assert out.read_bytes() == ARTIFACT.read_bytes()
    assert (tmp_path / "stories260k_topk8.pages.parquet").read_bytes() == ARTIFACT.with_name(
        "stories260k_topk8.pages.parquet").read_bytes()


def test_record_plot_and_files_are_deterministic(tmp_path):
    rec = generate(random_model(TINY, seed=4), 24, tokens_per_page=4)
    a, b = rec.save(tmp_path / "a.npz"), rec.save(tmp_path / "b.npz")
    assert a.read_bytes() == b.read_bytes()
    back = AttentionRecord.load(a)
    np.testing.assert_array_equal(back.mass, rec.mass)
    np.testing.assert_array_equal(back.tokens, rec.tokens)
    assert back.geometry == rec.geometry and back.meta == rec.meta and back.prompt_len == 1
    assert plot_record(rec, tmp_path / "a.png").read_bytes() == plot_record(rec, tmp_path / "b.png").read_bytes()
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(TraceError, match="not an attention record"):
        AttentionRecord.load(tmp_path / "bad.npz")
