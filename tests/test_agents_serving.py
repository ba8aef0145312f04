"""Family c, the serving-mode agents (``kvgym.agents.serving``): the next-reference index and
PrefixBelady on hand-worked cases, the family's windows and ledger, a tiny training run end to end
(CleanRL-style smoke test), the agent acting in ``kvgym/PrefixCache-v0``, and the committed report."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import needs_extra

from kvgym.errors import ConfigError
from kvgym.traces.requests import RequestTrace

ROOT = Path(__file__).resolve().parents[1]


def _trace():
    # Four requests; chains (block ids): [0, 1], [2], [0, 3], [2].
    return RequestTrace.from_chains([0, 1, 2, 3], [1024, 512, 1024, 512], [1, 1, 1, 1], [[0, 1], [2], [0, 3], [2]])


def test_next_request_of_every_block():
    from kvgym.agents.serving import NEVER, NextRequest

    nxt = NextRequest(_trace())
    assert nxt.after([0, 1, 2, 3], 0).tolist() == [0, 0, 1, 2]
    assert nxt.after([0, 1, 2, 3], 1).tolist() == [2, NEVER, 1, 2]
    assert nxt.after([0, 1, 2, 3], 3).tolist() == [NEVER, NEVER, 3, NEVER]


def test_prefix_belady_evicts_the_leaf_used_last():
    from kvgym.agents.serving import PrefixBelady

    pol = PrefixBelady(_trace())
    # At request 1: next references 0 -> 2, 1 -> never, 2 -> 1, 3 -> 2; block 2 has a resident child.
    pol.ctx = SimpleNamespace(req=1, kids=np.array([0, 0, 1, 0]))
    s = pol.scores(np.array([0, 1, 2, 3]), 0)
    assert np.argsort(s, kind="stable").tolist() == [1, 0, 3, 2]  # never used, then request 2 (ties in order), non-leaf last
    pol.ctx = SimpleNamespace(req=3, kids=np.array([0, 0, 0, 0]))
    assert int(np.argmin(pol.scores(np.array([2, 3]), 0))) == 1  # 3 is never used again, 2 is used by request 3


def test_gate_hands_over_after_five_settled_pairs():
    from kvgym.agents.serving import ServingGate

    # Decision i is asked at request i with candidates [A_i (slot 0, radix_lru), B_i (the agent's slot 1)];
    # request i + 1 references A_i. The gate starts with radix_lru, so it evicts A_i, which comes back
    # first: each pair counts for the agent. With decay 0.995 the agent's lead after k settled pairs is
    # (1 - 0.995^k) / 0.005, the decayed weight too: it exceeds 4 + 2% of that from k = 5 on (4.95 > 4.10;
    # k = 4 gives 3.97), and request 5's decision is the first one settled by five pairs.
    n = 8
    trace = RequestTrace.from_chains(range(n), [512] * n, [1] * n, [[0]] + [[i] for i in range(1, n)])
    env = SimpleNamespace(request=0)
    env.candidate_pages = lambda: np.array([env.request + 1, 100 + env.request])
    gate = ServingGate(lambda obs: 1)
    gate.begin(env, trace)
    got = []
    for r in range(n - 1):
        env.request = r
        got.append(gate({}))
    assert got == [0, 0, 0, 0, 0, 1, 1]
    assert gate.followed.tolist() == [2, 5]


def test_family_windows_split_by_time_and_the_ledger_guards_test():
    from kvgym.agents.benchmark import LEDGER, SplitLeakError, load_benchmark

    fam = load_benchmark().serving
    w = {s: fam.windows(s) for s in ("train", "validation", "test")}
    assert w["train"][0][0] == 0 and w["test"][-1][1] == 3993
    assert w["train"][-1][1] == w["validation"][0][0] == 3194 and w["validation"][-1][1] == w["test"][0][0] == 3594
    assert all(b - a in (99, 100, 101) for s in w.values() for a, b in s)
    with pytest.raises(SplitLeakError):
        fam.cases("test")
    with LEDGER.development(), pytest.raises(SplitLeakError):
        fam.cases("test")


def test_a_bad_serving_family_is_one_line():
    from kvgym.agents.benchmark import Benchmark

    spec = json.loads((ROOT / "agents" / "benchmark.json").read_text())
    spec["serving"]["fractions"] = [0.8, 0.1, 0.2]
    with pytest.raises(ConfigError, match=r"^b: serving: fractions must be three positive shares"):
        Benchmark(spec, "b")
    spec["serving"]["fractions"] = [0.8, 0.1, 0.1]
    spec["serving"]["baselines"] = ["radix_lru", "belady"]
    with pytest.raises(ConfigError, match=r"baselines must list serving policies"):
        Benchmark(spec, "b")


def test_tiny_training_run_end_to_end(tmp_path):
    needs_extra("agents", "torch")
    from kvgym.agents.benchmark import LEDGER, load_benchmark
    from kvgym.agents.serving import ServingArgs, load, make_env, rollout, train

    args = ServingArgs(seed=3, rounds=2, epochs=1, max_train_windows=1, max_validation_windows=1, progress=False)
    meta = train(args, tmp_path / "serving-s3")
    assert [h["round"] for h in meta["history"]] == [0, 1] and meta["best_round"] in (0, 1)
    assert meta["history"][1]["samples"] > meta["history"][0]["samples"] > 0
    assert meta["ledger"] and all(r.startswith(("train:", "validation:")) for r in meta["ledger"])
    agent = load(tmp_path / "serving-s3")
    fam = load_benchmark().serving
    with LEDGER.development():
        w = fam.cases("validation")[0]
    env = make_env(fam)
    misses, samples = rollout(env, w, agent, 0, record=True)
    assert 0 < misses <= w.trace.block_refs and samples
    # Every teacher label is a shown, valid slot.
    assert all(t.any() and not (t & ~m).any() for _, _, m, t in samples)
    env.close()


def test_env_reports_the_request_being_placed():
    import gymnasium as gym

    env = gym.make("kvgym/PrefixCache-v0", k=8)
    obs, _ = env.reset(seed=0)
    u = env.unwrapped
    seen = []
    while True:
        seen.append(u.request)
        obs, _, term, trunc, _ = env.step(int(np.flatnonzero(obs["action_mask"])[0]))
        if term or trunc:
            break
    assert u.request == -1
    # The request whose placement (admission, growth or store) needed room: any running one.
    assert 0 <= min(seen) and max(seen) < u.metrics().requests and len(set(seen)) > 1


def test_committed_report_is_what_the_report_command_writes(tmp_path):
    needs_extra("agents", "torch")
    import shutil

    from kvgym.agents.serving import render, report

    zoo = ROOT / "artifacts" / "agents" / "serving"
    for f in zoo.glob("serving-s*"):
        shutil.copytree(f, tmp_path / f.name)
    rep = json.loads(json.dumps(report(tmp_path, log=lambda *_: None)))
    assert rep == json.loads((zoo / "leaderboard.json").read_text())
    assert render(rep) == (zoo / "leaderboard.md").read_text()
