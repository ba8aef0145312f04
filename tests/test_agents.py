"""Learned agents: oracle labels, history features, losses, references, the safety gate, save/load
safety, and tiny-budget training runs of both commands on a tiny benchmark (real runs: slow set)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from conftest import needs_extra

torch, _ = needs_extra("agents", "torch", "sb3_contrib")

import itertools

from kvgym.agents import load_agent
from kvgym.agents.benchmark import LEDGER, Benchmark
from kvgym.agents.features import FEATURES, EpisodeArrays
from kvgym.agents.labels import FutureView, OracleAgent, oracle_slot, relaxed_boundary
from kvgym.errors import ConfigError
from kvgym.sim import run
from kvgym.sim.catalog import resolve_scenario
from kvgym.traces.format import PageTable, Trace
from kvgym.workloads import make_trace

SCEN = "h200_10pct_fp16_no_prefetch"
TINY_BENCH = {"format": "kvgym-benchmark/1", "scenario": SCEN, "families": [
    {"letter": "e", "name": "patterns", "kind": "workload",
     "variants": [{"name": "rag_burst", "workload": "rag_burst", "params": {}, "capacities": ["10%"]},
                  {"name": "periodic_reuse", "workload": "periodic_reuse", "params": {},
                   "params_by_split": {"test": {"period": 11}}, "capacities": ["10%"]}],
     "seeds": {"train": [0, 2], "validation": [1000, 1001], "test": [1100, 1101]}}]}


def _col(name):
    return FEATURES.index(name)


# -- oracle labels and features -----------------------------------------------------------------
def test_future_view_next_use_exact():
    f = FutureView(np.array([0, 1, 0, 2, 1, 0]))
    assert f.next_use(np.array([0, 1, 2, 3]), 0).tolist() == [2, 1, 3, 6]
    assert f.next_use(np.array([0, 1, 2]), 3).tolist() == [5, 4, 6]
    assert oracle_slot(np.array([5, 6, 6, -1]), np.array([True, True, True, False])) == 1
    assert relaxed_boundary([10, 20, 30, 40, 50], 0.25) == 20.0 and relaxed_boundary([], 0.1) == float("inf")


def test_history_features_exact_and_blind_to_the_future():
    step = np.arange(8)
    page = np.array([0, 1, 0, 2, 0, 1, 3, 3])
    a = EpisodeArrays(step, page, None, PageTable.uniform(4, 4096))
    ctx, tau = a.context(6, np.zeros(3, np.float32))
    # Reuses before position 6: page 0 after 2 steps (twice), page 1 after 4.
    assert tau == pytest.approx((2 * np.log(3) + np.log(5)) / 3)
    assert ctx[:5].tolist() == pytest.approx([tau / (1 + tau), 0.5, 0.0, 0.0, 1 / 33])
    r = a.rows(np.array([0, 1, 2]), 6, 6, tau)
    # page 0: read at 0, 2, 4; page 1 at 1, 5; page 2 at 3; blocks 0, 1, 2 (newest read: 2).
    assert r[:, _col("rec")] == pytest.approx([(np.log(3) - tau) / 4, (np.log(2) - tau) / 4, (np.log(4) - tau) / 4])
    assert r[0, _col("gap_1")] == r[0, _col("gap_2")] == pytest.approx((np.log(3) - tau) / 4)
    assert r[1, _col("gap_1")] == pytest.approx((np.log(5) - tau) / 4) and r[1, _col("gap_2")] == 0
    assert r[:, _col("gap_n")].tolist() == [2 / 32, 1 / 32, 0.0]
    assert r[1, _col("due")] == pytest.approx((np.log(2) - np.log(5)) / 4)
    assert r[0, _col("freq")] == pytest.approx(np.log(4) / (1 + np.log(4)))
    d2 = (1 + 2 ** -1 + 2 ** -2) * 2 ** -1  # half-life 2: accesses at 4, 2, 0 seen from step 6
    assert r[0, _col("decay_2")] == pytest.approx(np.log1p(d2) / 4)
    assert r[:, _col("layer_rank")].tolist() == [0.5, 1.0, 0.0]
    assert r[:, _col("newest_dist")] == pytest.approx([np.log(3) / 4, np.log(2) / 4, 0.0])
    assert r[:, _col("rel_pos")] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert r[:, _col("first_block")].tolist() == [1.0, 0.0, 0.0]
    # Changing every access from position 6 on changes nothing before it.
    b = EpisodeArrays(step, np.r_[page[:6], [0, 1]], None, PageTable.uniform(4, 4096))
    np.testing.assert_array_equal(b.rows(np.array([0, 1, 2]), 6, 6, tau), r)
    assert b.context(6, np.zeros(3, np.float32))[1] == tau


def test_oracle_agent_through_env_equals_belady():
    from kvgym.envs.evaluate import evaluate

    trace = make_trace("rag_burst", 1000)
    scen = resolve_scenario(SCEN)
    m = evaluate(OracleAgent(trace), SCEN, trace, k=32)
    assert m.misses == run(trace, scen, "belady").misses == 153
    assert run(trace, scen, "lru").misses == 254


def test_losses_exact():
    from kvgym.agents.imitation import loss_fn

    scores = torch.tensor([[0.0, 0.0, 0.0, -1e9]])
    mask = torch.tensor([[True, True, True, False]])
    dist = torch.tensor([[1.0, 5.0, 5.0, -1.0]])
    # Uniform softmax over 3 valid slots; target 1/2 on slots 1 and 2: CE = log 3.
    assert float(loss_fn("listwise", scores, mask, dist)) == pytest.approx(np.log(3), rel=1e-6)
    # Two ordered pairs (1 > 0, 2 > 0), each softplus(0) = log 2.
    assert float(loss_fn("pairwise", scores, mask, dist)) == pytest.approx(np.log(2), rel=1e-6)
    assert float(loss_fn("both", scores, mask, dist)) == pytest.approx(np.log(3) + np.log(2), rel=1e-6)
    # Relaxed: with the boundary at 1 every candidate is beyond it: no pair counts, and every one is a
    # target of the listwise loss (uniform target: CE = log 3 again).
    s2 = torch.tensor([[2.0, 0.0, 0.0]])
    m2 = torch.ones(1, 3, dtype=torch.bool)
    d2 = torch.tensor([[1.0, 5.0, 5.0]])
    assert float(loss_fn("pairwise", s2, m2, d2, torch.tensor([1.0]))) == 0.0
    # Boundary 3: pairs (1 > 0) and (2 > 0) count (slot 0 is within it), score gap -2 each.
    sp = float(torch.nn.functional.softplus(torch.tensor(2.0)))
    assert float(loss_fn("pairwise", s2, m2, d2, torch.tensor([3.0]))) == pytest.approx(sp, rel=1e-6)
    lse = float(torch.logsumexp(s2[0], 0))
    assert float(loss_fn("listwise", s2, m2, d2, torch.tensor([3.0]))) == pytest.approx(lse - 0.0, rel=1e-6)


def test_numpy_scorer_matches_torch():
    from kvgym.agents.model import CandidateScorer, NumpyScorer, ScorerConfig, obs_tensors

    torch.manual_seed(0)
    model = CandidateScorer(ScorerConfig(14, 13, 16)).eval()
    fast = NumpyScorer(model)
    rng = np.random.default_rng(0)
    for n in (1, 2, 9, 32):
        obs = {"candidates": rng.random((32, 14)).astype(np.float32), "context": rng.random(13).astype(np.float32),
               "action_mask": np.r_[np.ones(n), np.zeros(32 - n)].astype(np.int8)}
        with torch.inference_mode():
            ref = model(*obs_tensors(obs))[0].numpy()
        got = fast(obs["candidates"], obs["context"], obs["action_mask"].astype(bool))
        np.testing.assert_allclose(got[:n], ref[:n], rtol=1e-5, atol=1e-5)
        assert (got[n:] == ref[n:]).all() and int(np.argmax(got)) == int(np.argmax(ref))


# -- generator-aware references ---------------------------------------------------------------
def _case(workload, seed, params=None, cap="10%"):
    from kvgym.agents.benchmark import Case

    return Case("e", "train", workload, seed, cap, ("workload", workload, json.dumps(params or {}, sort_keys=True), seed),
                SCEN)


def test_references_of_deterministic_patterns_are_belady():
    from kvgym.agents.evaluation import policy_misses

    for w, params in (("periodic_reuse", {}), ("periodic_reuse", {"period": 11}), ("prefetch_friendly", {})):
        c = _case(w, 0, params)
        assert policy_misses(c, "reference") == policy_misses(c, "belady") < policy_misses(c, "lru")


def test_reference_of_independent_draws_keeps_the_likeliest():
    from kvgym.agents.references import reference_policy

    c = _case("long_tail_mix", 3)
    pol = reference_policy(c)
    pol.bind(type("Ctx", (), {"n_pages": len(c.trace.pages)})())
    # Hot pages (p = 0.07 each) are kept before the Zipf tail, the tail by rank: -1/p orders them.
    s = pol.scores(np.array([0, 9, 10, 11, 127]), 5)
    assert s[0] == s[1] > s[2] > s[3] > s[4]
    assert s[0] == pytest.approx(-1 / 0.07, rel=1e-3)
    assert reference_policy(_case("topk_drift", 0)) is None


# -- the safety gate ----------------------------------------------------------------------------
class _Slot:
    """Always the same end of the candidate list: 0 = LRU's victim, -1 = the most recently used."""

    def __init__(self, end):
        self.end = end

    def act(self, obs, info):
        valid = np.flatnonzero(obs["action_mask"])
        return int(valid[0] if self.end == 0 else valid[-1])


def _cycle():
    # A cycle of 9 pages through a tier 0 of 8: LRU misses every access; MRU one in eight.
    return Trace.from_pages(np.arange(720) % 9, fp16_bytes=4096), resolve_scenario(SCEN).with_(
        capacities=("8 pages", None, None, None))


def test_gate_follows_a_good_agent_and_leaves_a_bad_one():
    from kvgym.agents.gate import GateArgs, GatedAgent
    from kvgym.envs.evaluate import evaluate

    trace, scen = _cycle()
    lru, mru = run(trace, scen, "lru").misses, run(trace, scen, "mru").misses
    assert (lru, mru) == (720, 9 + (720 - 9) // 8)  # MRU: 9 first touches, then one miss per 8 accesses
    alone = evaluate(_Slot(-1), scen, trace, k=8).misses
    assert alone == mru
    good = GatedAgent(_Slot(-1), GateArgs(fallback="lru"))
    # The gate starts with LRU; every comparison settles for the agent (LRU's victim comes back first),
    # so after 6 decisions its lead passes the margin (4 + 2% of the decisions) and it keeps the rest:
    # 6 more misses than the agent alone.
    assert evaluate(good, scen, trace, k=8).misses == mru + 6 and good.followed.tolist() == [89, 6, 0]
    bad = GatedAgent(_Slot(0), GateArgs(fallback="mru"))
    # The agent is LRU here: the fallback (MRU) wins every comparison and takes over the same way.
    assert evaluate(bad, scen, trace, k=8).misses == mru + 6 and bad.followed.tolist() == [0, 6, 89]
    with pytest.raises(ConfigError, match="unknown policy"):
        GateArgs(fallback="nope")


# -- the benchmark and the ledger ---------------------------------------------------------------
def test_shipped_benchmark_splits_and_ledger():
    from kvgym.agents.benchmark import SplitLeakError, load_benchmark

    b = load_benchmark()
    assert b.letters() == ["a", "b", "d", "e"] and b.serving.letter == "c"
    for f in b.families.values():
        seeds = [set(f.seeds[s]) for s in ("train", "validation", "test")]
        assert not (seeds[0] & seeds[1] or seeds[0] & seeds[2] or seeds[1] & seeds[2])
    with LEDGER.development():
        tr = b.cases("train", ["e"])
        labels = [c.label for c in tr]
        assert len(labels) == len(set(labels))
        # periodic_reuse ignores its seed: one training trace, not eight.
        assert sum(c.variant == "periodic_reuse" for c in tr) == 1
    with pytest.raises(SplitLeakError, match="test split requested outside LEDGER.evaluation"):
        b.cases("test", ["e"])
    with LEDGER.development(), pytest.raises(SplitLeakError, match="during development"):
        b.cases("test", ["e"])
    with LEDGER.development(), pytest.raises(SplitLeakError, match="cannot start during development"), \
            LEDGER.evaluation():
        pass
    start = len(LEDGER.reads)
    with LEDGER.evaluation():
        te = b.cases("test", ["e"])
    assert LEDGER.since(start) == [f"test:{c.label}" for c in te]
    assert {c.variant for c in te} >= {"prefetch_friendly", "adversarial_prefetch"}
    # No test trace of the sanity tier equals a training trace (seed-free patterns change a parameter).
    assert not {c.digest for c in te} & {c.digest for c in tr}


def test_mooncake_family_is_split_by_time():
    from kvgym.agents.benchmark import load_benchmark
    from kvgym.agents.families import Mooncake

    fam = load_benchmark().families["b"]
    tr, va, te = (Mooncake.windows(fam, s) for s in ("train", "validation", "test"))
    assert tr[0][0] == 0 and all(a[1] == b[0] for a, b in itertools.pairwise(tr))
    assert tr[-1][1] == va[0][0] and va[0][1] == te[0][0] and te[0][1] == 3993
    assert (va[0][0], te[0][0]) == (3194, 3593) and all(b - a <= 400 for a, b in tr)


@pytest.mark.parametrize("edit, msg", [
    (lambda d: d["families"][0]["seeds"].update(test=[1, 3]), "seed ranges of the splits overlap"),
    (lambda d: d["families"][0].update(kind="nope"), "kind 'nope'; valid: capture, mooncake, workload"),
    (lambda d: d.update(format="x"), "expected format"),
    (lambda d: d["families"][0]["variants"][0].update(workload="nope"), "workload 'nope'"),
])
def test_bad_splits_file(edit, msg):
    d = json.loads(json.dumps(TINY_BENCH))
    edit(d)
    with pytest.raises(ConfigError, match=msg):
        Benchmark(d, "bench.json")


# -- loading is local-only and tensor-only ------------------------------------------------------
@pytest.mark.parametrize("url", ["https://example.com/agent.zip", "s3://bucket/agent", "hf://org/agent"])
def test_load_agent_refuses_urls(url):
    with pytest.raises(ConfigError, match="only local paths"):
        load_agent(url)


class _Evil:
    def __reduce__(self):
        return (exec, ("raise SystemExit('pickle executed')",))


def test_imitation_model_is_loaded_weights_only(tmp_path):
    from kvgym.agents.agent import write_manifest

    with open(tmp_path / "model.pt", "wb") as f:
        pickle.dump({"w": _Evil()}, f)
    write_manifest(tmp_path, {"kind": "imitation", "model": "model.pt", "scorer": {"n_features": 14,
                              "n_context": 13, "hidden": 8}, "features": []})
    with pytest.raises(ConfigError, match="not a scorer state dict"):
        load_agent(tmp_path)
    write_manifest(tmp_path, {"kind": "imitation", "model": "model.pt", "scorer": {}, "features": [],
                              "history_features": ["interval"]})
    with pytest.raises(ConfigError, match="retired history features"):
        load_agent(tmp_path)


# -- tiny training runs ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    """An imitation agent and a PPO agent warm-started from it, trained and evaluated on the tiny
    benchmark by the project's commands; the ledger's reads during training are kept."""
    from kvgym.cli import main

    root = tmp_path_factory.mktemp("zoo")
    bench = root / "bench.json"
    bench.write_text(json.dumps(TINY_BENCH))
    common = ["--set", f"benchmark={bench}", "--set", "families=e", "--set", "progress=false"]
    start = len(LEDGER.reads)
    assert main(["train", "imitation", *common, "--set", "dagger_iters=1", "--set", "epochs=2",
                 "--out", str(root / "zoo" / "imitation-s0"), "--no-test"]) == 0
    reads_training = LEDGER.since(start)
    assert main(["train", "ppo", *common, "--set", f"init_from={root / 'zoo' / 'imitation-s0'}",
                 "--set", "total_timesteps=512", "--set", "critic_warmup=128", "--set", "n_steps=64",
                 "--set", "batch_size=64", "--set", "eval_freq=256", "--out", str(root / "zoo" / "ppo-s0")]) == 0
    return root, reads_training


def test_tiny_training_reads_no_test_case_and_saves_tensors(tiny_zoo):
    root, reads = tiny_zoo
    out = root / "zoo" / "imitation-s0"
    assert reads and all(r.split(":")[0] in ("train", "validation") for r in reads)
    m = json.loads((out / "metrics.json").read_text())
    assert m["traces_read"] == reads and [h["iteration"] for h in m["history"]] == [0, 1]
    assert sorted(p.name for p in out.iterdir()) == ["agent.json", "config.json", "metrics.json", "model.pt"]
    man = json.loads((out / "agent.json").read_text())
    assert man["agent_features"] == list(FEATURES) and man["gate"]["fallback"] == "arc"
    ppo = root / "zoo" / "ppo-s0"
    assert sorted(p.name for p in ppo.iterdir()) == ["agent.json", "config.json", "heldout.json", "metrics.json",
                                                     "policy.pt"]
    pm = json.loads((ppo / "metrics.json").read_text())
    assert pm["timesteps"] >= 512 and pm["history"][0]["timesteps"] == 0  # the warm start was scored first
    assert all(r.split(":")[0] in ("train", "validation") for r in pm["traces_read"])


def test_loaded_agents_act_through_the_harness(tiny_zoo):
    from kvgym.agents.gate import GatedAgent
    from kvgym.envs.evaluate import evaluate

    root, _ = tiny_zoo
    gated = load_agent(root / "zoo" / "ppo-s0")
    bare = load_agent(root / "zoo" / "ppo-s0" / "policy.pt", gate=False)
    assert isinstance(gated, GatedAgent) and bare.kind == "ppo"
    trace = make_trace("rag_burst", 1100)
    bel = run(trace, resolve_scenario(SCEN), "belady").misses
    for agent in (gated, bare):
        m1, m2 = (evaluate(agent, SCEN, trace, k=32, sample=16) for _ in range(2))
        assert m1.to_dict() == m2.to_dict() and m1.accesses == len(trace) and m1.misses >= bel


def test_report_per_family(tiny_zoo, capsys):
    from kvgym.agents.imitation import ImitationArgs
    from kvgym.cli import main
    from kvgym.commands.train import evaluate_heldout
    from kvgym.oracle.gap import pooled_gap_closed

    root, _ = tiny_zoo
    zoo = root / "zoo"
    evaluate_heldout(zoo / "imitation-s0", ImitationArgs(benchmark=str(root / "bench.json"), families=("e",)),
                     log=lambda *_: None)
    assert main(["train", "report", "--zoo", str(zoo)]) == 0
    rep = json.loads((zoo / "leaderboard.json").read_text())
    fam = rep["families"]["e"]
    assert fam["traces"] == 2 and set(fam["policies"]) >= {"imitation+gate", "imitation", "ppo+gate", "lru", "mru",
                                                          "s3fifo", "reference"}
    h = json.loads((zoo / "imitation-s0" / "heldout.json").read_text())
    rows = [(r["misses"], r["lru"], r["belady"]) for r in h["traces"]]
    assert fam["policies"]["imitation+gate"]["pooled_gap_closed"] == pytest.approx(pooled_gap_closed(rows))
    assert fam["policies"]["lru"]["pooled_gap_closed"] == 0.0
    md = (zoo / "leaderboard.md").read_text()
    assert "## Family e: patterns" in md and "## Targets (issue 15)" in md


def test_imitation_same_seed_same_bytes(tmp_path):
    from kvgym.agents.imitation import ImitationArgs, train

    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(TINY_BENCH))
    args = ImitationArgs(benchmark=str(bench), families=("e",), dagger_iters=1, epochs=1, progress=False, seed=3,
                         gate_fallback="")
    train(args, tmp_path / "a", log=lambda *_: None)
    train(args, tmp_path / "b", log=lambda *_: None)
    for f in ("model.pt", "agent.json", "config.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_zoo_names_and_no_torch_on_import(tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.chdir(tmp_path)
    planted = tmp_path / "artifacts" / "agents" / "planted"
    planted.mkdir(parents=True)
    (planted / "agent.json").write_text("{}")
    with pytest.raises(ConfigError, match="no agent 'planted' in the zoo"):
        load_agent("zoo:planted")
    with pytest.raises(ConfigError, match="zoo:NAME"):
        load_agent("zoo:../x")
    code = ("import argparse, sys, kvgym.agents, kvgym.commands.train as t; "
            "t.register(argparse.ArgumentParser().add_subparsers()); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_benchmark_command_writes_the_traces_with_their_digests(tmp_path):
    from kvgym.agents.benchmark import trace_digest
    from kvgym.cli import main
    from kvgym.traces.parquet import read_trace

    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(TINY_BENCH))
    assert main(["train", "benchmark", "--benchmark", str(bench), "--out", str(tmp_path / "out"),
                 "--splits", "train,test"]) == 0
    cases = json.loads((tmp_path / "out" / "cases.json").read_text())["cases"]
    # rag_burst seeds 0, 1 and one periodic_reuse (seed-free) in train; one of each in test.
    assert [(c["split"], c["variant"], c["seed"]) for c in cases] == [
        ("train", "rag_burst", 0), ("train", "rag_burst", 1), ("train", "periodic_reuse", 0),
        ("test", "rag_burst", 1100), ("test", "periodic_reuse", 1100)]
    for c in cases:
        assert trace_digest(read_trace(tmp_path / "out" / c["trace"])) == c["digest"]
    assert main(["train", "benchmark", "--benchmark", str(bench), "--out", str(tmp_path / "x"),
                 "--splits", "nope"]) == 2
