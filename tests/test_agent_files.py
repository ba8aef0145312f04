"""Agent files hold no pickles: PPO policies are tensors plus JSON; a legacy SB3 zip loads only
when trusted and its sha256 matches; zoo:NAME is the project's zoo; fingerprints follow the loader
(issue 16, defects 2 and 5)."""

from __future__ import annotations

import hashlib
import json
import pickle
import zipfile

import numpy as np
import pytest
from conftest import needs_extra

needs_extra("agents", "torch", "sb3_contrib")

from kvgym.agents.agent import convert_sb3, load_agent, write_manifest
from kvgym.bench.specs import agent_digest
from kvgym.errors import ConfigError

FEATURES = 6  # candidate features in the tiny policy below (the env's own count does not matter here)


class _Evil:
    def __reduce__(self):
        return (exec, ("raise SystemExit('pickle executed')",))


def _evil_zip(folder):
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / "model.zip", "w") as z:
        z.writestr("data", pickle.dumps(_Evil()))
        z.writestr("policy.pth", pickle.dumps(_Evil()))
    return folder / "model.zip"


def _manifest(folder, **kw):
    write_manifest(folder, {"kind": "ppo", "model": "model.zip", "features": [], "history_features": [], "k": 4, **kw})


def test_sb3_zip_needs_trust_and_a_matching_sha256_before_anything_is_unpickled(tmp_path):
    z = _evil_zip(tmp_path / "a")
    _manifest(tmp_path / "a")
    with pytest.raises(ConfigError, match="is a pickle and can run code.*--trust-pickle"):
        load_agent(tmp_path / "a")
    with pytest.raises(ConfigError, match="no 'sha256' of model.zip recorded"):
        load_agent(tmp_path / "a", trust_pickle=True)
    _manifest(tmp_path / "a", sha256="0" * 64)
    with pytest.raises(ConfigError, match="differs from the 0000"):
        load_agent(tmp_path / "a", trust_pickle=True)
    # Trust and the right digest: only now does SB3's loader open the file (this crafted one is not a
    # valid SB3 archive, so it fails there, as one line).
    _manifest(tmp_path / "a", sha256=hashlib.sha256(z.read_bytes()).hexdigest())
    with pytest.raises(ConfigError, match="cannot load the MaskablePPO model"):
        load_agent(tmp_path / "a", trust_pickle=True)


def _tiny_ppo(tmp_path):
    import gymnasium as gym
    from gymnasium import spaces
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.env_util import DummyVecEnv

    from kvgym.agents.ppo import CandidatePolicy

    class Env(gym.Env):
        observation_space = spaces.Dict({"candidates": spaces.Box(0.0, 1.0, (4, FEATURES), np.float32),
                                         "context": spaces.Box(0.0, 1.0, (3,), np.float32),
                                         "action_mask": spaces.MultiBinary(4)})
        action_space = spaces.Discrete(4)

    model = MaskablePPO(CandidatePolicy, DummyVecEnv([Env]), n_steps=8, batch_size=8, seed=1, device="cpu",
                        policy_kwargs={"features_extractor_kwargs": {"hidden": 8}})
    folder = tmp_path / "ppo"
    folder.mkdir()
    with open(folder / "model.zip", "wb") as f:
        model.save(f)
    return model, folder


def _obs(rng, n_valid):
    return {"candidates": rng.random((4, FEATURES)).astype(np.float32), "context": rng.random(3).astype(np.float32),
            "action_mask": np.r_[np.ones(n_valid), np.zeros(4 - n_valid)].astype(np.int8)}


def test_convert_turns_a_trusted_zip_into_tensors_with_identical_decisions(tmp_path):
    _, folder = _tiny_ppo(tmp_path)
    sha = hashlib.sha256((folder / "model.zip").read_bytes()).hexdigest()
    _manifest(folder)
    with pytest.raises(ConfigError, match="--trust-pickle"):
        convert_sb3(folder, sha256=sha)
    with pytest.raises(ConfigError, match="no 'sha256'"):
        convert_sb3(folder, trust_pickle=True)
    _manifest(folder, sha256=sha)
    zipped = load_agent(folder, trust_pickle=True)
    rng = np.random.default_rng(0)
    obs = [_obs(rng, n) for n in (1, 2, 3, 4) for _ in range(10)]
    before = [zipped._act(o, o["action_mask"].astype(bool)) for o in obs]
    assert convert_sb3(folder, trust_pickle=True).name == "policy.pt"
    assert sorted(p.name for p in folder.iterdir()) == ["agent.json", "policy.pt"]
    m = json.loads((folder / "agent.json").read_text())
    assert m["model"] == "policy.pt" and m["policy"] == {"k": 4, "n_features": FEATURES, "n_context": 3, "hidden": 8}
    assert "sha256" not in m
    converted = load_agent(folder)  # no trust needed: tensors only
    after = [converted._act(o, o["action_mask"].astype(bool)) for o in obs]
    assert after == before
    assert all(a < int(o["action_mask"].sum()) for a, o in zip(after, obs))  # only valid slots


def test_policy_file_is_read_weights_only(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    with open(folder / "policy.pt", "wb") as f:
        pickle.dump({"w": _Evil()}, f)
    write_manifest(folder, {"kind": "ppo", "model": "policy.pt", "features": [], "history_features": [], "k": 4,
                            "policy": {"k": 4, "n_features": FEATURES, "n_context": 3, "hidden": 8}})
    with pytest.raises(ConfigError, match="not a PPO policy state dict"):
        load_agent(folder)
    write_manifest(folder, {"kind": "ppo", "model": "policy.pt", "features": [], "history_features": [], "k": 4,
                            "policy": {"k": 4, "hidden": 8}})
    with pytest.raises(ConfigError, match="'policy' must be an object with keys k, n_features, n_context, hidden"):
        load_agent(folder)


def test_committed_zoo_holds_no_pickle_and_loads_without_trust():
    from kvgym.agents.agent import ZOO_DIR

    ppo = sorted(ZOO_DIR.glob("ppo-s*"))
    assert ppo and not list(ZOO_DIR.rglob("*.zip"))
    for folder in ppo:
        agent = load_agent(f"zoo:{folder.name}")
        assert agent.kind == "ppo" and agent.manifest["env"]["k"] == 32


def test_agent_fingerprint_follows_the_loader(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    folder = tmp_path / "agents" / "mine"
    folder.mkdir(parents=True)
    (folder / "agent.json").write_text("{}")
    (folder / "model.pt").write_bytes(b"one")
    d1 = agent_digest("~/agents/mine")
    assert d1 and d1 == agent_digest(str(folder)) == agent_digest(str(folder / "agent.json"))
    (folder / "model.pt").write_bytes(b"two")  # the agent file is swapped: new cells, no stale reuse
    assert agent_digest("~/agents/mine") not in ("", d1)
    assert agent_digest("policy:lru") == "" and agent_digest(str(tmp_path / "missing")) == ""
    from kvgym.agents.agent import ZOO_DIR

    monkeypatch.chdir(tmp_path)
    assert agent_digest("zoo:imitation-s0") == agent_digest(str(ZOO_DIR / "imitation-s0")) != ""
