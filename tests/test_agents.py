"""Learned agents: oracle labels, history features, losses, split bookkeeping, save/load safety,
tiny-budget training smoke runs of both commands, and the learning test on ``periodic_reuse``."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sb3_contrib")

from kvgym.agents import load_agent
from kvgym.agents.features import PastView, history_rows
from kvgym.agents.labels import FutureView, OracleAgent, oracle_slot
from kvgym.agents.task import TaskArgs, gap_closed, policy_misses
from kvgym.errors import ConfigError
from kvgym.workloads import make_trace

SCEN = "h200_10pct_fp16_no_prefetch"


# -- oracle labels and history features ------------------------------------------------------
def test_future_view_next_use_exact():
    f = FutureView(np.array([0, 1, 0, 2, 1, 0]))
    # After position 0: page 0 next at 2, page 1 at 1, page 2 at 3; page 3 never (n = 6).
    assert f.next_use(np.array([0, 1, 2, 3]), 0).tolist() == [2, 1, 3, 6]
    assert f.next_use(np.array([0, 1, 2]), 3).tolist() == [5, 4, 6]
    assert f.next_use(np.array([0]), 5).tolist() == [6]
    assert oracle_slot(np.array([5, 6, 6, -1]), np.array([True, True, True, False])) == 1


def test_history_rows_exact_and_blind_to_the_future():
    step = np.arange(8)
    page = np.array([0, 1, 0, 2, 0, 1, 3, 3])
    v = PastView(step, page)
    # At position 6 (step 6): page 0 read at 0, 2, 4; page 1 at 1, 5; page 2 at 3.
    assert v.last_steps(np.array([0, 1, 2]), 6).tolist() == [[4, 2, 0], [5, 1, -1], [3, -1, -1]]
    rows = history_rows(v, np.array([0, 1, 2]), 6, 6)
    sq = lambda x: x / (x + 16.0)
    np.testing.assert_allclose(rows[0], [sq(2), sq(2), 0.5 + 0.5 * np.tanh((2 - 2) / 16)], rtol=1e-6)
    np.testing.assert_allclose(rows[1], [sq(4), 1.0, 0.5 + 0.5 * np.tanh((4 - 1) / 16)], rtol=1e-6)
    np.testing.assert_allclose(rows[2], [1.0, 1.0, 1.0])
    # Changing every access from position 6 on changes nothing before it.
    other = PastView(step, np.r_[page[:6], [0, 1]])
    np.testing.assert_array_equal(history_rows(other, np.array([0, 1, 2]), 6, 6), rows)


def test_oracle_agent_through_env_equals_belady():
    trace = make_trace("rag_burst", 1000)
    from kvgym.envs.evaluate import evaluate

    m = evaluate(OracleAgent(trace), SCEN, trace, k=32)
    assert m.misses == policy_misses(SCEN, trace, "belady") == 153
    assert policy_misses(SCEN, trace, "lru") == 254
    assert gap_closed(153, 254, 153) == 100.0 and gap_closed(254, 254, 153) == 0.0
    assert gap_closed(10, 10, 10) is None


def test_losses_exact():
    from kvgym.agents.imitation import loss_fn

    scores = torch.tensor([[0.0, 0.0, 0.0, -1e9]])
    mask = torch.tensor([[True, True, True, False]])
    dist = torch.tensor([[1.0, 5.0, 5.0, -1.0]])
    # Uniform softmax over 3 valid slots; target 1/2 on slots 1 and 2: CE = log 3.
    assert float(loss_fn("listwise", scores, mask, dist)) == pytest.approx(np.log(3), rel=1e-6)
    # Two ordered pairs (1 > 0, 2 > 0), each softplus(0) = log 2 (weighted or not: equal weights).
    assert float(loss_fn("pairwise", scores, mask, dist)) == pytest.approx(np.log(2), rel=1e-6)
    assert float(loss_fn("pairwise", scores, mask, dist, weighted=True)) == pytest.approx(np.log(2), rel=1e-6)
    # Unequal gaps: pair (2 > 0) is 3x farther apart in log distance than pair (1 > 0).
    s2 = torch.tensor([[0.0, 1.0, 0.0]])
    d2 = torch.tensor([[1.0, 2.0, 8.0]])  # log1p: 0.693, 1.099, 2.197
    m2 = torch.ones(1, 3, dtype=torch.bool)
    sp = torch.nn.functional.softplus
    w = torch.log1p(d2[0])
    pairs = [(1, 0), (2, 0), (2, 1)]
    want = sum(float((w[i] - w[j]) * sp(-(s2[0, i] - s2[0, j]))) for i, j in pairs) / float(
        sum(w[i] - w[j] for i, j in pairs))
    assert float(loss_fn("pairwise", s2, m2, d2, weighted=True)) == pytest.approx(want, rel=1e-6)


# -- split bookkeeping ------------------------------------------------------------------------
def test_task_splits_are_disjoint_and_hold_out_workloads():
    from kvgym.envs.config import Splits

    t = TaskArgs(train_workloads=("rag_burst", "periodic_reuse"), holdout_workloads=("long_tail_mix",),
                 train_seeds=2, validation_seeds=1, test_seeds=2)
    sp = Splits()
    tr, va, te = t.traces("train"), t.traces("validation"), t.traces("test")
    assert all(sp.split_of(x.seed) == "train" and not x.holdout for x in tr)
    assert all(sp.split_of(x.seed) == "validation" and not x.holdout for x in va)
    assert all(sp.split_of(x.seed) == "test" for x in te)
    assert {x.workload for x in tr} == {x.workload for x in va} == {"rag_burst", "periodic_reuse"}
    assert {x.workload for x in te if x.holdout} == {"long_tail_mix"}
    # periodic_reuse ignores its seed: one trace per split, not two.
    assert [x.label for x in tr] == ["rag_burst#0", "rag_burst#1", "periodic_reuse#0"]
    with pytest.raises(ConfigError, match="must not overlap"):
        TaskArgs(train_workloads=("rag_burst",), holdout_workloads=("rag_burst",))
    with pytest.raises(ConfigError, match="unknown workloads"):
        TaskArgs(train_workloads=("nope",))


# -- loading is local-only and tensor-only ---------------------------------------------------
@pytest.mark.parametrize("url", ["https://example.com/agent.zip", "s3://bucket/agent", "hf://org/agent"])
def test_load_agent_refuses_urls(url):
    with pytest.raises(ConfigError, match="only local paths"):
        load_agent(url)


def test_load_agent_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_agent(tmp_path / "missing")
    with pytest.raises(ConfigError, match="agent.json"):
        load_agent(tmp_path)


class _Evil:
    def __reduce__(self):
        return (exec, ("raise SystemExit('pickle executed')",))


def test_imitation_model_is_loaded_weights_only(tmp_path):
    from kvgym.agents.agent import write_manifest

    with open(tmp_path / "model.pt", "wb") as f:
        pickle.dump({"w": _Evil()}, f)
    write_manifest(tmp_path, {"kind": "imitation", "model": "model.pt", "scorer": {"n_features": 14,
                              "n_context": 13, "hidden": 8}, "features": [], "history_features": []})
    with pytest.raises(ConfigError, match="not a scorer state dict"):
        load_agent(tmp_path)


# -- training smoke runs (tiny budgets) ------------------------------------------------------
TINY = ["train_workloads=periodic_reuse,rag_burst", "holdout_workloads=long_tail_mix", "train_seeds=1",
        "validation_seeds=1", "test_seeds=1", "progress=false"]


def _sets(items) -> list[str]:
    return [x for s in items for x in ("--set", s)]


def _recording_make_trace(monkeypatch):
    import kvgym.workloads as wl

    calls = []
    real = wl.make_trace

    def rec(name, seed=0, **kw):
        calls.append((name, seed))
        return real(name, seed, **kw)

    monkeypatch.setattr(wl, "make_trace", rec)
    return calls


def test_train_imitation_command_save_load_eval_and_split(tmp_path, monkeypatch, capsys):
    from kvgym.agents.task import reset_ledger
    from kvgym.cli import main
    from kvgym.envs.config import Splits

    reset_ledger()
    calls = _recording_make_trace(monkeypatch)
    out = tmp_path / "imitation-s0"
    rc = main(["train", "imitation", *_sets(TINY + ["dagger_iters=1", "epochs=1"]),
               "--out", str(out), "--no-test"])
    assert rc == 0
    # Training read train and validation traces of the training workloads only.
    sp = Splits()
    assert calls and all(sp.split_of(s) in ("train", "validation") for _, s in calls)
    assert {n for n, _ in calls} == {"periodic_reuse", "rag_burst"}
    m = json.loads((out / "metrics.json").read_text())
    assert m["traces_read"] and all(r.split(":")[0] in ("train", "validation") for r in m["traces_read"])
    assert [h["iteration"] for h in m["history"]] == [0, 1]
    assert sorted(p.name for p in out.iterdir()) == ["agent.json", "config.json", "metrics.json", "model.pt"]
    assert (out / "model.pt").stat().st_size < 1_000_000
    # Load it and run it through the harness's evaluate (masked actions, history features).
    agent = load_agent(out / "model.pt")
    from kvgym.envs.evaluate import evaluate

    trace = make_trace("long_tail_mix", 1100)
    mt = evaluate(agent, SCEN, trace, k=32)
    assert mt.accesses == len(trace) and mt.misses >= policy_misses(SCEN, trace, "belady")
    # The held-out evaluation and the report (now the test split may be read).
    rc = main(["train", "report", "--zoo", str(tmp_path)])
    assert rc == 2  # no heldout.json yet: a one-line error
    assert "heldout.json" in capsys.readouterr().err


def test_imitation_learns_periodic_reuse(tmp_path):
    """A cycle of 9 pages through 8 slots: LRU never hits; Belady-imitation must learn to keep pages."""
    from kvgym.agents.imitation import ImitationArgs, train
    from kvgym.envs.evaluate import evaluate

    args = ImitationArgs(train_workloads=("periodic_reuse",), holdout_workloads=(), train_seeds=1,
                         validation_seeds=1, test_seeds=1, dagger_iters=1, epochs=4, progress=False, seed=0)
    m = train(args, tmp_path, log=lambda *_: None)
    trace = make_trace("periodic_reuse", 1100)
    lru, bel = policy_misses(SCEN, trace, "lru"), policy_misses(SCEN, trace, "belady")
    assert (lru, bel) == (320, 47)
    misses = evaluate(load_agent(tmp_path), SCEN, trace, k=32).misses
    assert misses <= 100, (misses, m["history"])  # LRU 320
    assert gap_closed(misses, lru, bel) >= 80.0


def test_train_ppo_command_save_load_and_kvgym_eval(tmp_path, capsys):
    from kvgym.cli import main

    out = tmp_path / "ppo-s0"
    sets = TINY + ["total_timesteps=128", "n_steps=64", "batch_size=64", "n_epochs=1", "n_envs=1",
                   "eval_freq=64"]
    rc = main(["train", "ppo", *_sets(sets), "--out", str(out)])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["agent.json", "config.json", "heldout.json", "metrics.json",
                                                     "policy.pt"]
    m = json.loads((out / "metrics.json").read_text())
    assert m["timesteps"] >= 128 and all(r.split(":")[0] in ("train", "validation") for r in m["traces_read"])
    h = json.loads((out / "heldout.json").read_text())
    assert [r["trace"] for r in h["traces"]] == ["periodic_reuse#1100", "rag_burst#1100", "long_tail_mix#1100"]
    assert all(r["misses"] >= r["belady"] for r in h["traces"])
    # The harness's own command evaluates the saved agent by path.
    capsys.readouterr()
    rc = main(["eval", "--agent", str(out), "--scenario", SCEN, "--workload", "periodic_reuse"])
    assert rc == 0
    assert "agent:ppo-s0" in capsys.readouterr().out
    # And the report places it among the baselines and the oracle.
    rc = main(["train", "report", "--zoo", str(tmp_path)])
    assert rc == 0
    md = (tmp_path / "leaderboard.md").read_text()
    assert "| ppo |" in md or "**ppo**" in md
    rep = json.loads((tmp_path / "leaderboard.json").read_text())
    assert rep["policies"]["belady"]["mean"] == 100.0 and rep["policies"]["lru"]["mean"] == 0.0


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


def test_imitation_same_seed_same_bytes(tmp_path):
    from kvgym.agents.imitation import ImitationArgs, train

    args = ImitationArgs(train_workloads=("periodic_reuse",), holdout_workloads=(), train_seeds=1,
                         validation_seeds=1, test_seeds=1, dagger_iters=1, epochs=1, progress=False, seed=3)
    train(args, tmp_path / "a", log=lambda *_: None)
    train(args, tmp_path / "b", log=lambda *_: None)
    for f in ("model.pt", "agent.json", "config.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_zoo_names_and_no_torch_on_import(tmp_path, monkeypatch):
    import subprocess
    import sys

    # zoo:NAME is a folder of the project's zoo, never of the current folder.
    monkeypatch.chdir(tmp_path)
    planted = tmp_path / "artifacts" / "agents" / "planted"
    planted.mkdir(parents=True)
    (planted / "agent.json").write_text("{}")
    with pytest.raises(ConfigError, match="no agent 'planted' in the zoo .*; valid: imitation-s0"):
        load_agent("zoo:planted")
    assert load_agent("zoo:imitation-s0").kind == "imitation"
    with pytest.raises(ConfigError, match="zoo:NAME"):
        load_agent("zoo:../x")
    code = ("import argparse, sys, kvgym.agents, kvgym.commands.train as t; "
            "t.register(argparse.ArgumentParser().add_subparsers()); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
