"""Regret analysis: observed runs equal engine runs, gap closed, good decisions, windows, attribution, report, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kvgym.cli import main
from kvgym.errors import ConfigError
from kvgym.oracle.belady import belady
from kvgym.workloads import resolve_trace
from kvgym.oracle.nextuse import future
from kvgym.oracle.observe import observe
from kvgym.oracle.plots import plot_gap_closed
from kvgym.oracle.regret import analyze, gap_closed, summarize
from kvgym.oracle.report import render, write_report
from kvgym.sim.catalog import default_scenario, resolve_scenario
from kvgym.sim.engine import Engine
from kvgym.sim.policy import make_policy, make_prefetcher, policy_names
from kvgym.sim.scenario import Scenario
from kvgym.traces.format import PageTable, Trace

P = 4096


def _trace(seed=0, n_pages=24, n=160, layers=2, per_step=2):
    rng = np.random.default_rng(seed)
    page = rng.integers(0, n_pages, n)
    step = np.repeat(np.arange(n // per_step + 1), per_step)[:n]
    return Trace(step.astype(np.int64), page.astype(np.int64), PageTable.uniform(n_pages, P, layers=layers),
                 meta={"generator": "random"})


def _scenario(**kw):
    d = {"name": "toy", "profile": "seed-toy", "capacities": (6 * P, 8 * P, 40 * P, None), "cost_model": "serial"}
    d.update(kw)
    return Scenario(**d)


@pytest.mark.parametrize("kw", [{}, {"cost_model": "overlap", "lower_policy": "same"},
                                {"prefetch": True, "max_prefetch": 2, "first_touch": "create"}])
def test_observed_runs_equal_engine_runs_for_every_policy(kw):
    trace = _trace(1)
    scen = _scenario(**kw)
    setup = scen.build(trace.pages)
    fut = future(trace.page, len(trace.pages))
    for name in policy_names():
        pre = make_prefetcher("sequential") if scen.prefetch else None
        want = Engine(setup, make_policy(name), make_prefetcher("sequential") if scen.prefetch else None,
                      future=fut).run(trace).to_dict()
        obs = observe(trace, setup, make_policy(name), prefetcher=pre, future=fut, decisions=True)
        assert obs.metrics.to_dict() == want, name
        assert obs.decisions == want["evictions"][0] == len(obs.evict_page), name
        assert int((obs.loc == 0).sum()) == want["hits"], name


def test_gap_closed_and_good_decisions_of_lru_and_belady():
    trace, scen = _trace(2), _scenario()
    cache = {}
    lru = analyze(trace, scen, "lru", cache=cache)
    opt = analyze(trace, scen, "belady", cache=cache)
    want = belady(trace.page, 6, step=trace.step).misses
    assert lru.misses_oracle == opt.misses_oracle == opt.misses == want
    assert lru.misses_lru == lru.misses > want
    assert lru.gap_closed == 0.0 and opt.gap_closed == 100.0
    assert opt.good_ratio == 1.0 and 0.0 < lru.good_ratio < 1.0
    assert gap_closed(5, 10, 0) == 50.0 and gap_closed(12, 10, 10) is None and gap_closed(15, 10, 0) == -50.0
    # Windows add up to the run's misses, the oracle's and LRU's.
    w = lru.windows
    assert w["misses"].sum() == lru.misses and w["oracle_misses"].sum() == want
    assert w["lru_misses"].sum() == lru.misses_lru and w["accesses"].sum() == len(trace)
    assert w["cumulative_regret"].iloc[-1] == lru.misses - want
    assert lru.summary()["regret_misses"] == lru.misses - want


def test_agent_decider_path():
    trace, scen = _trace(3), _scenario()
    res = analyze(trace, scen, None, decider=lambda d, eng: int(d.candidates[-1]), label="mru-ish")
    assert res.label == "mru-ish" and res.decisions == res.metrics["evictions"][0] > 0
    with pytest.raises(ConfigError, match="window"):
        analyze(trace, scen, "lru", window=0)


def test_attribution_hand_worked():
    # Tier 0 holds 2 pages; accesses 0 1 2 0, one per step; serial seed-toy costs.
    trace = Trace(np.arange(4, dtype=np.int64), np.array([0, 1, 2, 0], np.int64), PageTable.uniform(3, P))
    scen = _scenario(capacities=(2 * P, 8 * P, 40 * P, None))
    r = analyze(trace, scen, "lru")
    ev = r.evictions
    assert ev["page"].tolist() == [0, 1]
    first = ev.iloc[0]
    # LRU evicts page 0 at step 2 (Belady would evict page 1, never used again): a bad decision,
    # repaid at step 3 by a promotion from tier 1: (60 + 20) us + 4096 B / 40 B/us = 182.4 us.
    assert (first.evict_step, first.insert_step, first.age_steps, first.return_step) == (2, 0, 2, 3)
    assert first.return_tier == "tier1_gpu_overflow" and first.miss == 1 and not first.good
    assert first.cost_us == pytest.approx(80.0 + 4096 / 40)
    second = ev.iloc[1]
    assert (second.page, second.return_pos, second.miss, second.cost_us, bool(second.good)) == (1, -1, 0, 0.0, True)
    assert (r.decisions, r.good_decisions) == (2, 1)
    by_layer = summarize(ev, "layer")
    assert by_layer["misses"].tolist() == [1] and by_layer["cost_us"].tolist() == [pytest.approx(182.4)]
    assert summarize(ev, "age_bucket")["age_bucket"].tolist() == ["2-3"]
    top = r.top_evictions(1)
    assert top["page"].tolist() == [0]


def test_report_files_are_deterministic(tmp_path):
    trace, scen = _trace(4), _scenario()
    cache = {}
    results = [analyze(trace, scen, p, trace_label="random", cache=cache) for p in ("lru", "regret_aware")]
    a = write_report(results, tmp_path / "a", command="kvgym regret ...")
    assert sorted(a) == ["attribution_age.png", "attribution_layer.png", "gap_closed.png", "regret.json",
                         "regret_over_time.png", "report.md"]
    # Same inputs, same bytes: the text files, and a plot (PNG without version or date).
    assert render(results, "kvgym regret ...", {}) == render(results, "kvgym regret ...", {})
    b = plot_gap_closed(results, tmp_path / "b.png")
    assert b.read_bytes() == a["gap_closed.png"].read_bytes()
    text = a["report.md"].read_text()
    assert "| random | regret_aware |" in text and "![Gap closed by workload](gap_closed.png)" in text
    doc = json.loads(a["regret.json"].read_text())
    assert doc["format"] == "kvgym-regret/1" and [r["policy"] for r in doc["results"]] == ["lru", "regret_aware"]
    assert doc["results"][0]["windows"]["misses"] == results[0].windows["misses"].tolist()
    assert str(tmp_path) not in text


def test_scenario_and_trace_lookup(tmp_path):
    assert resolve_scenario(None) is default_scenario() is resolve_scenario("default")
    assert default_scenario().capacities == ("auto:0.5", None, None, None)
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"scenario": _scenario().to_dict()}))
    assert resolve_scenario(str(f)) == _scenario()
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        resolve_scenario(str(tmp_path / "bad.json"))
    with pytest.raises(ConfigError, match="unknown scenario"):
        resolve_scenario("no_such_scenario")
    trace, label = resolve_trace("periodic_reuse(length=40)", seed=1)
    assert len(trace) == 40 and label == "periodic_reuse(length=40)"


def test_cli_oracle_and_regret(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["oracle", "mixed_locality(length=120)", "--scenario", "small_fp16_no_prefetch",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Belady MIN" in text and "conservative" in text and "pages entering" in text
    doc = json.loads((out / "bounds.json").read_text())
    assert doc["belady_misses"] <= doc["lru_flat_misses"] and (out / "mrc.png").stat().st_size > 0
    out2 = tmp_path / "r"
    assert main(["regret", "--policy", "lru", "--policy", "regret_aware(regret_weight=3)", "--trace",
                 "mixed_locality(length=120)", "--scenario", "small_fp16_no_prefetch", "--out", str(out2)]) == 0
    text = capsys.readouterr().out
    assert "regret_aware(regret_weight=3)" in text and (out2 / "report.md").is_file()
    assert main(["regret", "--policy", "lru", "--trace", "mixed_locality", "--scenario", "nope"]) == 2
    assert "unknown scenario 'nope'" in capsys.readouterr().err
