"""The env under vectorisation (SB3 and Gymnasium) and a MaskablePPO train/save/load/evaluate smoke test."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from conftest import needs_extra

import kvgym  # noqa: F401
from kvgym.sim.scenario import Scenario
from kvgym.traces.format import PageTable, Trace

SC = Scenario(name="vec-h200", capacities=("5%", None, None, None))


def trace(seed: int = 0, n_pages: int = 256, n: int = 400) -> Trace:
    rng = np.random.default_rng(seed)
    p = np.where(rng.random(n) < 0.5, np.arange(n) % n_pages, (rng.zipf(1.3, n) - 1) % n_pages)
    return Trace.from_pages(p, PageTable.uniform(n_pages, 65536, layers=4), steps=np.arange(n) // 4)


def make(env_id: str = "kvgym/Evict-v0", seed: int = 0):
    return lambda: gym.make(env_id, trace=trace(seed), scenario=SC, k=8)


def valid_actions(masks: np.ndarray, rng) -> np.ndarray:
    return np.array([int(rng.choice(np.flatnonzero(m))) for m in masks])


@pytest.mark.parametrize("kind", ["dummy", "subproc"])
def test_sb3_vec_envs(kind):
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    fns = [make("kvgym/Evict-v0", 0), make("kvgym/EvictPrefetch-v0", 1)]
    venv = DummyVecEnv(fns) if kind == "dummy" else SubprocVecEnv(fns, start_method="fork")
    try:
        venv.seed(3)
        obs = venv.reset()
        assert obs["candidates"].shape == (2, 8, 11) and obs["action_mask"].shape == (2, 8)
        rng = np.random.default_rng(0)
        dones = 0
        for _ in range(1000):
            masks = np.stack(venv.env_method("action_masks"))
            assert masks.dtype == bool and np.array_equal(masks, obs["action_mask"].astype(bool))
            obs, rewards, done, infos = venv.step(valid_actions(masks, rng))
            assert np.all(rewards <= 0)
            dones += int(done.sum())
            for d, info in zip(done, infos):
                if d:
                    assert "terminal_observation" in info and "metrics" in info
        assert dones >= 1  # auto-reset after the end of an episode
    finally:
        venv.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_gymnasium_vector_envs(kind):
    fns = [make("kvgym/Evict-v0", 0), make("kvgym/Evict-v0", 1)]
    venv = gym.vector.SyncVectorEnv(fns) if kind == "sync" else gym.vector.AsyncVectorEnv(fns, context="fork")
    try:
        obs, _ = venv.reset(seed=[5, 6])
        assert obs["candidates"].shape == (2, 8, 11)
        rng = np.random.default_rng(0)
        ends = 0
        was_done = np.zeros(2, bool)
        for _ in range(700):
            # Next-step autoreset: a sub-env that just ended ignores the action and resets.
            actions = np.where(was_done, 0, valid_actions(np.maximum(obs["action_mask"], was_done[:, None]), rng))
            obs, _rewards, term, trunc, _infos = venv.step(actions)
            was_done = term | trunc
            ends += int(was_done.sum())
            assert obs in venv.observation_space
        assert ends >= 1
    finally:
        venv.close()


@pytest.mark.slow  # importing torch alone takes several seconds
def test_maskable_ppo_train_save_load_evaluate(tmp_path):
    torch, sb3c = needs_extra("agents", "torch", "sb3_contrib")
    from kvgym.envs.evaluate import evaluate
    from kvgym.sim.engine import simulate

    torch.set_num_threads(1)
    env = gym.make("kvgym/Evict-v0", trace=trace(0, n=400), scenario=SC, k=8)
    model = sb3c.MaskablePPO("MultiInputPolicy", env, n_steps=32, batch_size=16, n_epochs=1, seed=0,
                             policy_kwargs={"net_arch": [32]}, device="cpu")
    model.learn(total_timesteps=64)
    path = tmp_path / "maskable_ppo.zip"
    model.save(path)
    loaded = sb3c.MaskablePPO.load(path, device="cpu")
    test_trace = trace(7, n=300)  # a trace the agent never saw
    m1 = evaluate(loaded, SC, test_trace, k=8)
    m2 = evaluate(loaded, SC, test_trace, k=8)
    assert m1.to_dict() == m2.to_dict()  # deterministic predictions, masks respected (no ValueError)
    assert m1.accesses == len(test_trace) and m1.evictions[0] > 50
    lru = simulate(test_trace, SC, "lru")
    assert m1.misses >= lru.full_misses  # sanity: compulsory misses are a floor for any agent


# -- the batched vector env ------------------------------------------------------------------------
def test_batched_vector_env_equals_independent_envs():
    """Sub-env i of EvictVectorEnv behaves exactly as a single env reset with seed + i."""
    from kvgym.envs.vector import EvictVectorEnv

    n = 3
    venv = EvictVectorEnv(n, trace=trace(0, n=160), scenario=SC, k=8)
    singles = [gym.make("kvgym/Evict-v0", trace=trace(0, n=160), scenario=SC, k=8) for _ in range(n)]
    obs, _ = venv.reset(seed=11)
    sobs = [e.reset(seed=11 + i)[0] for i, e in enumerate(singles)]
    rng = np.random.default_rng(2)
    ended = np.zeros(n, bool)
    for _ in range(300):
        for i in range(n):
            if not ended[i]:
                for key in obs:
                    assert np.array_equal(obs[key][i], sobs[i][key]), key
        actions = valid_actions(np.maximum(obs["action_mask"], ended[:, None]), rng)
        obs, rew, term, trunc, _info = venv.step(actions)
        for i in range(n):
            if ended[i]:
                continue
            o, r, t, tr_, _ = singles[i].step(int(actions[i]))
            assert r == pytest.approx(rew[i], rel=1e-12, abs=1e-9) and t == term[i] and tr_ == trunc[i]
            sobs[i] = o
        ended |= term | trunc
    assert ended.any()


def test_batched_vector_env_autoreset_and_episode_statistics():
    from gymnasium.vector import AutoresetMode

    from kvgym.envs.vector import EvictVectorEnv

    venv = EvictVectorEnv(2, trace=trace(1, n=120), scenario=SC, k=8)
    assert venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, _ = venv.reset(seed=0)
    returns, lengths, done_prev = np.zeros(2), np.zeros(2, int), np.zeros(2, bool)
    seen_end = False
    for _ in range(400):
        obs, rew, term, trunc, info = venv.step(np.zeros(2, np.int64))
        if done_prev.any():  # the step after an end: a fresh episode, reward 0, no flags
            assert np.all(rew[done_prev] == 0) and not (term | trunc)[done_prev].any()
            assert obs["action_mask"][done_prev].sum() > 0
            returns[done_prev], lengths[done_prev] = 0, 0
        live = ~done_prev
        returns[live] += rew[live]
        lengths[live] += 1
        done = term | trunc
        if done.any():
            seen_end = True
            assert np.array_equal(info["_episode"], done)
            assert np.allclose(info["episode"]["r"][done], returns[done], rtol=1e-12)
            assert np.array_equal(info["episode"]["l"][done], lengths[done])
            assert obs["action_mask"][done].sum() == 0  # the terminal observation
        done_prev = done
    assert seen_end


def test_batched_vector_env_rejects_invalid_actions():
    from kvgym.envs.vector import EvictVectorEnv

    venv = EvictVectorEnv(2, trace=trace(0), scenario=SC, k=8)
    obs, _ = venv.reset(seed=0)
    bad = int(np.flatnonzero(obs["action_mask"][1] == 0)[0]) if (obs["action_mask"][1] == 0).any() else 8
    with pytest.raises(ValueError, match="env 1"):
        venv.step(np.array([0, bad]))


def test_batched_vector_env_through_sb3_adapter():
    from kvgym.agents.vec_env import sb3_vec_env
    from kvgym.envs.vector import EvictVectorEnv

    venv = sb3_vec_env(EvictVectorEnv(2, trace=trace(0, n=200), scenario=SC, k=8))
    obs = venv.reset()
    assert obs["candidates"].shape == (2, 8, 11)
    rng = np.random.default_rng(0)
    dones = 0
    for _ in range(600):
        masks = np.stack(venv.env_method("action_masks"))
        assert np.array_equal(masks, obs["action_mask"].astype(bool))
        obs, _rewards, done, infos = venv.step(valid_actions(masks, rng))
        for d, info in zip(done, infos):
            if d:  # SB3 semantics: reset in the same step, terminal observation in info
                dones += 1
                assert "terminal_observation" in info and "episode" in info
        assert obs["action_mask"].any(axis=1).all()
    assert dones >= 1


@pytest.mark.slow
def test_maskable_ppo_learns_on_the_batched_vector_env():
    _, sb3c = needs_extra("agents", "torch", "sb3_contrib")
    from kvgym.agents.vec_env import sb3_vec_env
    from kvgym.envs.vector import EvictVectorEnv

    venv = sb3_vec_env(EvictVectorEnv(4, trace=trace(0, n=200), scenario=SC, k=8))
    model = sb3c.MaskablePPO("MultiInputPolicy", venv, n_steps=16, batch_size=32, n_epochs=1, seed=0,
                             policy_kwargs={"net_arch": [16]}, device="cpu")
    model.learn(total_timesteps=128)
    assert model.num_timesteps >= 128
