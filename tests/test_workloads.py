"""Workload registry, parameter errors, determinism, CLI, and the eight kv-hierarchy-lab patterns."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from kvgym.bundled import parity_dir
from kvgym.cli import main
from kvgym.errors import ConfigError
from kvgym.traces.parquet import pages_path, read_trace, write_trace
from kvgym.workloads import get_workload, make_trace, resolve_trace, workload_names, workloads

PATTERNS = ["chat_continuation", "rag_burst", "periodic_reuse", "long_tail_mix", "prefetch_friendly",
            "adversarial_burst", "mixed_locality", "adversarial_prefetch"]
DECODE = ["streaming", "heavy_hitter", "topk_drift", "retrieval", "multi_turn", "shared_prefix"]
# Small versions of the decode workloads (a few thousand accesses each) for the generic tests.
SMALL = {
    "streaming": {"model": "stories260k", "prompt_tokens": 512, "decode_steps": 20, "window_pages": 4},
    "heavy_hitter": {"model": "stories260k", "prompt_tokens": 512, "decode_steps": 20, "heavy_pages": 4, "window_pages": 4},
    "topk_drift": {"model": "stories260k", "prompt_tokens": 512, "decode_steps": 20, "k": 6},
    "retrieval": {"model": "stories260k", "prompt_tokens": 1024, "decode_steps": 20, "burst_pages": 4, "window_pages": 4},
    "multi_turn": {"model": "stories260k", "prompt_tokens": 256, "turns": 3, "turn_tokens": 64, "reply_tokens": 8, "k": 4},
    "shared_prefix": {"model": "stories260k", "requests": 4, "system_tokens": 64, "doc_tokens": 128, "question_tokens": 16,
                          "decode_steps": 6, "k": 4},
}


def small(name: str) -> dict:
    return SMALL.get(name, {})


# ---- registry and errors --------------------------------------------------------------------

def test_registry_has_the_fourteen_workloads_with_documented_defaults():
    assert sorted(workload_names()) == sorted(PATTERNS + DECODE)
    for name, w in workloads().items():
        assert w.summary, f"{name} has no docstring"
        assert w.defaults, f"{name} has no parameters"
    assert get_workload("periodic_reuse").defaults == {"num_pages": 80, "length": 320, "page_bytes": 4096,
                                                       "period": 9, "stride": 3}


def test_unknown_workload_lists_valid_names():
    with pytest.raises(ConfigError) as e:
        make_trace("no_such_workload")
    msg = str(e.value)
    assert "unknown workload 'no_such_workload'" in msg
    for n in PATTERNS + DECODE:
        assert n in msg


def test_unknown_parameter_lists_valid_parameters():
    with pytest.raises(ConfigError, match=r"unknown parameters \['windw'\]; valid: .*window_pages"):
        make_trace("streaming", windw=3)


@pytest.mark.parametrize("name,params,message", [
    ("streaming", {"prompt_tokens": -5}, r"prompt_tokens=-5 is out of range; valid: 1 <= prompt_tokens"),
    ("topk_drift", {"decode_steps": 0}, r"decode_steps=0 is out of range; valid: 1 <= decode_steps"),
    ("periodic_reuse", {"length": -1}, r"length=-1 is out of range; valid: 1 <= length"),
    ("streaming", {"window_pages": 300},
     (r"window_pages=300 is larger than the pages present \(256 pages at step 0: prompt_tokens=4096, "
      r"tokens_per_page=16, minus sink_pages=1\); valid: 1 <= window_pages <= 256")),
    ("topk_drift", {"k": 1000},
     (r"k=1000 is larger than the pages present \(257 pages at step 0: prompt_tokens=4096, tokens_per_page=16\); "
      r"valid: 1 <= k <= 257")),
    ("topk_drift", {"k": 0}, r"k=0 is too small .* valid: 1 <= k <= 257"),
    ("heavy_hitter", {"heavy_pages": 250}, r"heavy_pages=250 is larger than the pages present .* valid: 1 <= heavy_pages <= 241"),
    ("retrieval", {"burst_pages": 2000}, r"burst_pages=2000 is larger than the pages present"),
    ("multi_turn", {"k": 100}, r"k=100 is larger than the pages present .* valid: 1 <= k <= 65"),
    ("shared_prefix", {"k": 200}, r"k=200 is larger than the pages present .* valid: 1 <= k <= 100"),
    ("topk_drift", {"model": "gpt-9"}, r"parameter 'model': unknown model geometry 'gpt-9'; valid: .*llama-3.1-8b"),
    ("topk_drift", {"drift": 1.5}, r"drift=1.5 is out of range; valid: 0.0 <= drift <= 1.0"),
    ("topk_drift", {"temperature": 0.0}, r"temperature=0.0 is out of range; valid: 0.0 < temperature"),
    ("periodic_reuse", {"period": 30, "num_pages": 78}, r"period=30 is out of range \(the cycle needs 30 distinct pages .* valid: 1 <= period <= 26"),
    ("rag_burst", {"num_pages": 20}, r"num_pages=20 is out of range \(hot_pages=16 plus cold_draws=6 .*\); valid: 22 <= num_pages"),
    ("long_tail_mix", {"hot_share": 1.5}, r"hot_share=1.5 is out of range; valid: 0.0 <= hot_share <= 1.0"),
    ("chat_continuation", {"recent_slots": 13}, r"recent_slots=13 is out of range .* valid: 1 <= recent_slots <= 12"),
    ("streaming", {"prompt_tokens": 4096.0}, r"parameter 'prompt_tokens' must be int \(default 4096\), got 4096.0"),
    ("topk_drift", {"drift": "x"}, r"parameter 'drift' must be float"),
])
def test_invalid_parameters_get_clear_errors(name, params, message):
    with pytest.raises(ConfigError, match=message) as e:
        make_trace(name, **params)
    assert str(e.value).startswith(f"workload {name!r}")


def test_negative_seed_is_an_error():
    with pytest.raises(ConfigError, match="seed must be an int >= 0"):
        make_trace("periodic_reuse", seed=-1)


def test_specs_are_typed_by_the_defaults():
    t, label = resolve_trace("topk_drift(k=8, drift=0.25, model=stories260k, prompt_tokens=1024, decode_steps=4)")
    assert label.startswith("topk_drift(")
    assert {k: t.meta["params"][k] for k in ("k", "drift", "model", "prompt_tokens")} == \
        {"k": 8, "drift": 0.25, "model": "stories260k", "prompt_tokens": 1024}
    with pytest.raises(ConfigError, match=r"parameter 'k' must be int \(default 32\), got 'eight'"):
        resolve_trace("topk_drift(k=eight)")
    with pytest.raises(ConfigError, match="parameter 'k' is not key=value"):
        resolve_trace("topk_drift(k)")
    with pytest.raises(ConfigError, match=r"unknown parameters \['kk'\]; valid: .*key_dim"):
        resolve_trace("topk_drift(kk=3)")


def test_meta_records_generator_params_seed():
    t = make_trace("streaming", seed=5, **small("streaming"))
    assert t.meta["generator"] == "streaming" and t.meta["seed"] == 5
    assert t.meta["params"]["window_pages"] == 4 and t.meta["params"]["sink_mass"] == 0.3
    assert t.meta["geometry"]["name"] == "stories260k"
    json.dumps(t.meta)  # JSON-serialisable


# ---- determinism ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PATTERNS + DECODE)
def test_same_name_params_seed_give_byte_identical_parquet(name, tmp_path):
    a = write_trace(make_trace(name, seed=3, **small(name)), tmp_path / "a" / "t.parquet")
    b = write_trace(make_trace(name, seed=3, **small(name)), tmp_path / "b" / "t.parquet")
    assert a.read_bytes() == b.read_bytes()
    assert pages_path(a).read_bytes() == pages_path(b).read_bytes()
    if name not in ("periodic_reuse", "prefetch_friendly"):  # the only seed-free patterns
        c = make_trace(name, seed=4, **small(name))
        assert not np.array_equal(c.page, read_trace(a).page) or not np.array_equal(c.weight, read_trace(a).weight)


def test_progress_callback_reaches_total():
    seen = []
    make_trace("topk_drift", progress=lambda d, n: seen.append((d, n)), **small("topk_drift"))
    assert seen[0] == (1, 20) and seen[-1] == (20, 20)


# ---- the eight patterns: defining properties -------------------------------------------------

def test_pattern_page_tables_are_uniform_with_page_bytes():
    t = make_trace("rag_burst", page_bytes=5000)
    assert len(t.pages) == 96 and len(t) == 320
    assert (t.pages.fp16_bytes == 5000).all() and (t.pages.layer == 0).all()
    assert np.array_equal(t.step, np.arange(320))
    assert np.array_equal(t.pages.token_start, np.arange(96) * 16)


def check_periodic(page, period=9, stride=3, n=80):
    t = np.arange(len(page))
    assert np.array_equal(page, (t % period) * stride % n)
    assert len(set(page[:period].tolist())) == period  # so the minimal period is exactly `period`


def test_periodic_reuse_has_exactly_period_9():
    check_periodic(make_trace("periodic_reuse").page)
    check_periodic(make_trace("periodic_reuse", period=5, stride=7, num_pages=30).page, 5, 7, 30)


def check_prefetch_friendly(page, n):
    assert np.array_equal(page, np.arange(len(page)) % n)


def test_prefetch_friendly_sweeps_sequentially():
    check_prefetch_friendly(make_trace("prefetch_friendly").page, 48)


def check_chat(page, every=17, recent=8):
    blocks = [set(page[i:i + every].tolist()) for i in range(0, len(page), every)]
    assert all(len(b) <= recent for b in blocks)
    # One slot changes per block, so two consecutive blocks draw from at most recent + 1 pages.
    assert all(len(a | b) <= recent + 1 for a, b in itertools.pairwise(blocks))


def test_chat_continuation_samples_the_last_8_of_a_slowly_changing_working_set():
    t = make_trace("chat_continuation", length=5000)
    check_chat(t.page)
    # Without replacements after step 0, only the last 8 initial slots (pages 4..11) and the one
    # page written at step 0 can appear.
    t = make_trace("chat_continuation", length=2000, replace_every=10_000)
    assert len(set(t.page.tolist()) - set(range(4, 12))) <= 1


def check_rag(page, n, hot=16, hd=14, cd=6):
    r = hd + cd
    for i in range(0, len(page) - r + 1, r):
        assert (page[i:i + hd] < hot).all()
        cold = page[i + hd:i + r]
        assert (cold >= hot).all() and (cold < n).all() and len(set(cold.tolist())) == cd


def test_rag_burst_rounds_of_14_hot_then_6_distinct_cold():
    check_rag(make_trace("rag_burst").page, 96)


def test_long_tail_mix_is_70_percent_hot_and_zipf_1_tail():
    p = make_trace("long_tail_mix", length=200_000, seed=1).page
    hot = p < 10
    assert abs(hot.mean() - 0.7) < 0.006  # 3 sigma ~ 0.0031
    c = np.bincount(p[~hot] - 10, minlength=118)
    # Zipf(1): P(rank r) = (1/r) / H_118, so rank 1 is twice rank 2 and four times rank 4.
    h = (1.0 / np.arange(1, 119)).sum()
    expect = (~hot).sum() / h / np.arange(1, 119)
    assert np.all(np.abs(c[:8] - expect[:8]) < 5 * np.sqrt(expect[:8]))


def check_adversarial_burst(page, n, b=12):
    a, m = n // 3, 2 * n // 3
    r = 3 * b + b // 2
    for i in range(0, len(page) - r + 1, r):
        anchors, mid, rep, late = page[i:i + b], page[i + b:i + 2 * b], page[i + 2 * b:i + 2 * b + b // 2], page[i + 2 * b + b // 2:i + r]
        assert (anchors < a).all() and len(set(anchors.tolist())) == b
        assert ((mid >= a) & (mid < m)).all() and len(set(mid.tolist())) == b
        assert np.array_equal(rep, anchors[:b // 2])
        assert (late >= m).all() and len(set(late.tolist())) == b


def test_adversarial_burst_revisits_the_first_6_anchors():
    check_adversarial_burst(make_trace("adversarial_burst").page, 96)


def check_mixed(page, n, hot=12, warm=20, phase=60, stride=5):
    t = np.arange(len(page))
    ph = (t // phase) % 3
    assert (page[ph == 0] < hot).all()
    assert ((page[ph == 1] >= hot) & (page[ph == 1] < hot + warm)).all()
    assert np.array_equal(page[ph == 2], (t[ph == 2] * stride) % n)


def test_mixed_locality_phases():
    p = make_trace("mixed_locality").page
    check_mixed(p, 112)
    assert len(set(p[:60].tolist())) == 12  # 60 uniform draws over 12 pages hit all of them here


def test_adversarial_prefetch_alternates_halves():
    p = make_trace("adversarial_prefetch", length=4000).page
    assert (p[0::2] < 32).all() and (p[1::2] >= 32).all()
    assert len(set(p[0::2].tolist())) == 32 and len(set(p[1::2].tolist())) == 32


def test_pattern_checks_accept_the_original_traces():
    """The property checks above also hold on kv-hierarchy-lab's own exported traces, and the
    deterministic patterns are identical to the original's."""
    from kvgym.bench.parity import load_cell

    def trace_of(w):
        return load_cell(parity_dir() / "traces" / f"small_fp16_prefetch__{w}.json").trace

    t = trace_of("periodic_reuse")
    check_periodic(t.page)
    assert np.array_equal(t.page, make_trace("periodic_reuse").page)
    t = trace_of("prefetch_friendly")
    assert np.array_equal(t.page, make_trace("prefetch_friendly").page)
    check_chat(trace_of("chat_continuation").page)
    check_rag(trace_of("rag_burst").page, 96)
    check_adversarial_burst(trace_of("adversarial_burst").page, 96)
    check_mixed(trace_of("mixed_locality").page, 112)
    p = trace_of("long_tail_mix").page
    assert (p < 128).all() and abs((p < 10).mean() - 0.7) < 0.07  # 400 draws: 3 sigma = 0.069


# ---- CLI ------------------------------------------------------------------------------------

def test_cli_gen_writes_a_readable_trace(tmp_path, capsys):
    out = tmp_path / "s.parquet"
    rc = main(["trace", "gen", "streaming(model=stories260k, prompt_tokens=512, decode_steps=8)",
               "--seed", "2", "-o", str(out)])
    assert rc == 0
    assert "wrote" in capsys.readouterr().out
    t = read_trace(out)
    ref = make_trace("streaming", seed=2, model="stories260k", prompt_tokens=512, decode_steps=8)
    assert np.array_equal(t.page, ref.page) and np.array_equal(t.weight, ref.weight)
    assert t.meta["params"]["decode_steps"] == 8 and t.meta["seed"] == 2


def test_cli_gen_errors_are_one_line(tmp_path, capsys):
    assert main(["trace", "gen", "nope", "-o", str(tmp_path / "x.parquet")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown workload 'nope'; valid:" in err and "topk_drift" in err
    assert main(["trace", "gen", "topk_drift(k=999999)", "-o", str(tmp_path / "x.parquet")]) == 2
    assert "k=999999 is larger than the pages present" in capsys.readouterr().err
    assert main(["trace", "gen", "topk_drift"]) == 2
    assert "-o/--output" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()


def test_cli_gen_list(capsys):
    assert main(["trace", "gen", "--list"]) == 0
    out = capsys.readouterr().out
    for n in PATTERNS + DECODE:
        assert f"{n}: " in out
    assert "period=9" in out
