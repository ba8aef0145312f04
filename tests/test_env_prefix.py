"""``kvgym/PrefixCache-v0``: checkers, a hand-worked episode, PolicyAgent = engine for every serving
baseline, masks, rewards, seeding, threads, errors, MaskablePPO."""

from __future__ import annotations

import gc
import threading

import gymnasium as gym
import numpy as np
import pytest
from _env_helpers import checker_warnings
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import data_equivalence

import kvgym  # noqa: F401  (registers the ids)
from kvgym.envs.agents import PolicyAgent
from kvgym.envs.config import NoDecisionError
from kvgym.envs.evaluate import evaluate_prefix
from kvgym.envs.prefix import PrefixCacheEnv
from kvgym.envs.registration import SERVING_ENV_IDS, SERVING_PRESETS
from kvgym.errors import ConfigError
from kvgym.sim.policy import Policy, admission_names, make_policy, serving_policy_names
from kvgym.sim.serving import ServingConfig, simulate_serving
from kvgym.traces.requests import RequestTrace
from kvgym.workloads.serving import make_requests

# llama-3.1-8b (kvgym/data/compute.json): hidden 4096, MLP 14336, vocab 128256, 32 layers of 32
# query heads (8 KV heads) of 128; the h200 entry's peak and achieved fractions.
P_LAYER = 4096 * 4096 + 2 * 4096 * 1024 + 4096 * 4096 + 3 * 4096 * 14336
KV_PER_TOKEN = 32 * 8 * 128 * 2 * 2
FLOPS_PER_US = 989.4e12 * 0.5 / 1e6
BYTES_PER_US = 4.8e12 * 0.966 / 1e6


def prefill_us(start: int, end: int) -> float:
    """An iteration computing prompt positions [start, end) and sampling nothing, written out again."""
    n, pairs = end - start, (end * (end + 1) - start * (start + 1)) // 2
    flops = 2 * 32 * P_LAYER * n + 4 * 32 * 32 * 128 * pairs
    by = 2 * (32 * P_LAYER + 4096 * 128256) + end * KV_PER_TOKEN
    return max(float(flops) / FLOPS_PER_US, float(by) / BYTES_PER_US)


def squash(x, tau):
    return x / (x + tau)


# A small two-tier setting with evictions in both tiers (about 450 in tier 0 and 380 in tier 1).
SMALL = {"capacities": [24, 64]}
SMALL_CFG = ServingConfig(name="prefix-cache", tiers=("hbm", "host"), capacities=(24, 64), write_policy="write_through")


@pytest.fixture(scope="module")
def rag():
    return make_requests("rag", seed=3, requests=40, docs=30)


# -- registration and checkers -----------------------------------------------------------------
def test_serving_ids_are_registered_with_their_kwargs():
    for env_id, (entry, kwargs) in SERVING_PRESETS.items():
        assert gym.spec(env_id).entry_point == entry and gym.spec(env_id).kwargs == kwargs
    env = gym.make("kvgym/PrefixCache-RAG-v0", k=8)   # keyword arguments merge into the preset's config
    assert env.unwrapped.config["workload"] == "rag" and env.unwrapped.config["k"] == 8
    assert env.unwrapped.serving.capacities == (64, 256) and env.unwrapped.config["sample"] == 2
    env = gym.make("kvgym/PrefixCache-RAG-v0", serving={"capacities": [32, 128]})   # merged key by key
    assert env.unwrapped.serving.capacities == (32, 128) and env.unwrapped.serving.write_policy == "write_through"


def small_kwargs(env_id: str) -> dict:
    """Small episodes with every slot valid at the first decisions (the checkers step unmasked; a
    leaf-only mask can leave a single valid victim, so these take any evictable block)."""
    kw = {"k": 2, "sample": 0, "victims": "any"}
    if "Mooncake" not in env_id:
        kw["workload_params"] = {"requests": 60} if "RAG" in env_id else {"sessions": 12}
    else:
        kw.update(episode_requests=60, serving={"capacities": [400, 2000]})
    return kw


@pytest.mark.parametrize("env_id", SERVING_ENV_IDS)
def test_gymnasium_and_sb3_checkers_pass(env_id):
    assert checker_warnings(env_id, **small_kwargs(env_id)) == []


@pytest.mark.parametrize("env_id", SERVING_ENV_IDS)
def test_presets_run_on_their_own_traces(env_id):
    env = gym.make(env_id)
    obs, info = env.reset(seed=0)
    assert obs in env.observation_space and obs["action_mask"].any() and info["phase"] in ("evict", "admit")
    for _ in range(30):
        obs, _r, term, trunc, info = env.step(int(np.flatnonzero(obs["action_mask"])[0]))
        assert obs in env.observation_space
        if term or trunc:
            break
    env.close()


# -- a hand-worked episode ----------------------------------------------------------------------------
# Blocks of 4 tokens; one GPU tier of 4 blocks; no timing (one request at a time, in order).
#   R0 [0, 1] (8 tokens): nothing cached, both blocks inserted (tier 0: 0 1).
#   R1 [2, 3, 4] (12 tokens): 2 and 3 fill tier 0; block 4 needs room. The candidates are 0 and 1
#      (R1 pins its own); block 0 has a resident child (1), so under `leaves` only 1 is valid.
#   R2 [0, 1] (8 tokens): a GPU hit covers at most (8 - 1) // 4 = 1 block.
#      Evicting 1 at D1: R2's prefix is [0] (4 tokens saved); inserting 1 needs room: R1's blocks
#      2, 3, 4 are unpinned, and only 4 is a leaf (D2). R2 computes 4 tokens.
#      Evicting 0 at D1: R2's prefix is empty (0 is its first block); it computes all 8 tokens.
# Booking: R0 is booked when R1's admission starts, before D1 (no action); R1 at the first step
# after R2's admission starts (D1's step); R2 at the end.
HAND = RequestTrace.from_chains([0.0, 1.0, 2.0], [8, 12, 8], [1, 1, 1], [[0, 1], [2, 3, 4], [0, 1]], block_tokens=4)
HAND_SERVING = {"tiers": ["hbm"], "capacities": [4], "timing": False}


def test_hand_worked_episode_every_number():
    env = PrefixCacheEnv(trace=HAND, serving=HAND_SERVING, reward="prefill_us", k=4)
    obs, info = env.reset(seed=0)
    # R0 (8 tokens, nothing cached) was booked before the first decision: reset reports it.
    assert (info["requests"], info["prefill_tokens"], info["prefill_us"]) == (1, 8, prefill_us(0, 8))
    # D1, in R1's admission: only block 1 is valid (block 0 continues into 1).
    assert info["phase"] == "evict" and info["tier"] == 0
    assert env.candidate_pages().tolist() == [1, -1, -1, -1] and obs["action_mask"].tolist() == [1, 0, 0, 0]
    # Tier 0's event clock: R0 access/insert 0 (1, 2) and 1 (3, 4); R1 access/insert 2 (5, 6) and
    # 3 (7, 8), access 4 (9): block 1 was last used 5 events ago; C = 4.
    row = obs["candidates"][0]
    expect = [squash(5, 4), squash(1, 4), squash(1, 4), squash(1, 16), 1.0, 0.0, 0.0,
              squash(prefill_us(4, 8), 10_000), squash(5, 4), 1.0]
    assert np.allclose(row, np.float32(expect), rtol=0, atol=1e-7)
    # Context: occupancy 4/4, eviction, tier 0, 2 of 3 requests begun, 2 candidates of 4 residents,
    # 1 valid of 1 + k, no batch.
    assert np.allclose(obs["context"], np.float32([1.0, 0.0, 0.0, 2 / 3, 0.5, 1 / 5, 0.0]), atol=1e-7)
    obs, r, term, trunc, info = env.step(0)
    assert (info["requests"], info["prefill_tokens"]) == (1, 12) and r == -prefill_us(0, 12)
    assert env.candidate_pages().tolist() == [4, -1, -1, -1] and not (term or trunc)   # D2: only 4 is a leaf
    obs, r, term, trunc, info = env.step(0)
    assert term and not trunc and (info["requests"], info["prefill_tokens"]) == (1, 4) and r == -prefill_us(4, 8)
    m = info["metrics"]
    assert m.prefill_tokens_computed == 8 + 12 + 4 and m.prefix_hits == [1] and m.evictions == [2]


def test_hand_worked_episode_any_victim():
    env = PrefixCacheEnv(trace=HAND, serving=HAND_SERVING, victims="any", reward="prefill_tokens", k=4)
    obs, info = env.reset(seed=0)
    # Both candidates, least recently used first: block 0 (a parent: children 1 -> squash(1, 1)).
    assert env.candidate_pages().tolist() == [0, 1, -1, -1] and obs["candidates"][0, 5] == 0.5
    obs, r, term, _trunc, info = env.step(0)                 # evict block 0: R2's prefix breaks
    assert r == -12.0 and env.candidate_pages().tolist() == [2, 3, 4, -1]   # R2 pins its resident block 1
    obs, r, term, _trunc, info = env.step(0)
    assert term and r == -8.0 and info["metrics"].prefill_tokens_computed == 28 and info["metrics"].prefix_hits == [0]


def test_config_keeps_a_trace_object(rag):
    env = PrefixCacheEnv(trace=rag, serving=SMALL, k=8)
    assert env.config["trace"] is rag and env.config["serving"]["capacities"] == [24, 64]


def test_rewards_add_up_to_the_metric(rag):
    for reward in ("prefill_tokens", "prefill_us"):
        env = PrefixCacheEnv(trace=rag, serving=SMALL, reward=reward, k=8)
        obs, info = env.reset(seed=1)
        pre_tokens = info["prefill_tokens"]
        total, tokens = 0.0, 0
        rng = np.random.default_rng(0)
        while True:
            valid = np.flatnonzero(obs["action_mask"])
            obs, r, term, trunc, info = env.step(int(rng.choice(valid)))
            total += r
            tokens += info["prefill_tokens"]
            if term or trunc:
                break
        m = info["metrics"]
        assert pre_tokens + tokens == m.prefill_tokens_computed
        if reward == "prefill_tokens":
            assert -total == tokens
    for reward, field in (("ttft_us", "ttft_mean_us"), ("ttft_p90_us", "ttft_p90_us")):
        env = PrefixCacheEnv(trace=rag, serving=SMALL, reward=reward, k=8, reward_scale=1e-3)
        obs, _ = env.reset(seed=1)
        rewards = []
        while True:
            obs, r, term, trunc, info = env.step(int(np.flatnonzero(obs["action_mask"])[0]))
            rewards.append(r)
            if term or trunc:
                break
        assert rewards[:-1] == [0.0] * (len(rewards) - 1)
        assert rewards[-1] == -getattr(info["metrics"], field) * 1e-3 and rewards[-1] < 0


# -- PolicyAgent = the engine -----------------------------------------------------------------------
@pytest.mark.parametrize("name", serving_policy_names())
def test_policy_agent_equals_the_engine_for_every_serving_baseline(name, rag):
    """A baseline played through the env (its own choice among every evictable block) gives the
    engine's metrics exactly, deciding tier 0 only, and deciding tiers 0 and 1."""
    env_m = evaluate_prefix(PolicyAgent(name), rag, k="all", victims="any", serving=SMALL, lower="lru")
    assert env_m.to_dict() == simulate_serving(rag, SMALL_CFG, name, lower="lru").to_dict()
    env_m = evaluate_prefix(PolicyAgent(name), rag, k="all", victims="any", serving=SMALL, evict_tiers=[0, 1])
    assert env_m.to_dict() == simulate_serving(rag, SMALL_CFG, name, lower=name).to_dict()


class LeafFirst(Policy):
    """``inner`` restricted by the env's ``leaves`` rule: its lowest score among the leaves of the tier
    (every candidate when none is a leaf), ties to the earliest inserted. Written for this test."""

    HOOKS = ("on_access", "on_insert", "on_evict", "on_request_load", "on_request_offer", "on_store_miss",
             "on_request_finished")

    def __init__(self, inner):
        self.inner = inner

    def bind(self, ctx):
        super().bind(ctx)
        self.inner.bind(ctx)
        for h in self.HOOKS:
            setattr(self, h, getattr(self.inner, h))

    def scores(self, cands, step):
        s = np.asarray(self.inner.scores(cands, step))
        leaf = self.ctx.kids[cands] == 0
        if not leaf.any():
            leaf[:] = True
        rank = np.empty(len(s))
        rank[np.argsort(s, kind="stable")] = np.arange(len(s))
        return rank + (~leaf) * len(s)


@pytest.mark.parametrize("name", serving_policy_names())
def test_policy_agent_under_the_leaf_mask_equals_the_leaf_first_policy(name, rag):
    env_m = evaluate_prefix(PolicyAgent(name), rag, k="all", serving=SMALL, lower="lru")
    ref = simulate_serving(rag, SMALL_CFG, LeafFirst(make_policy(name)), lower="lru")
    assert env_m.to_dict() == ref.to_dict()


@pytest.mark.parametrize("admission", admission_names())
def test_policy_agent_plays_the_admission_policy(admission, rag):
    """With admission decisions, PolicyAgent stores exactly what the configured admission policy admits."""
    params = {"store_threshold": 2} if admission == "threshold" else {}
    spec = f"{admission}(store_threshold=2)" if params else admission
    env = gym.make("kvgym/PrefixCacheAdmit-v0", trace=rag, serving=SMALL, admission=spec, victims="any", k=24, sample=0)
    agent = PolicyAgent("vllm_lru")
    from kvgym.envs.evaluate import play

    m = play(agent, env)
    ref = simulate_serving(rag, SMALL_CFG, "vllm_lru", lower="lru", admission=admission, admission_params=params)
    assert m.to_dict() == ref.to_dict() and agent.decisions > 0
    assert admission == "always" or m.stores_skipped[1] > 0


def test_slot_zero_is_radix_lru_under_leaves_and_lru_under_any(rag):
    for victims, ref in (("leaves", "radix_lru"), ("any", "lru")):
        env = PrefixCacheEnv(trace=rag, serving=SMALL, victims=victims, k=4)
        env.reset(seed=0)
        while True:
            _obs, _r, term, trunc, info = env.step(0)
            if term or trunc:
                break
        assert info["metrics"].to_dict() == simulate_serving(rag, SMALL_CFG, ref, lower="lru").to_dict()


# -- masks and prefix closure ----------------------------------------------------------------------------
def test_leaf_mask_keeps_each_tier_prefix_closed(rag):
    """Under `leaves`, every valid victim has no resident child in its tier, and tier 0 stays
    prefix-closed (every resident block's parent is resident) through a random episode."""
    env = PrefixCacheEnv(trace=rag, serving=SMALL, evict_tiers=[0, 1], k=64, sample=0)
    obs, info = env.reset(seed=2)
    ep = env.unwrapped._ep
    parent = rag.block_table.parent
    rng = np.random.default_rng(2)
    n = 0
    while True:
        view = ep.views[info["tier"]]
        shown = env.candidate_pages()[obs["action_mask"].astype(bool)]
        assert len(shown) and (view.ctx.kids[shown] == 0).all()
        res0 = np.flatnonzero(ep.views[0].resident)
        assert ((parent[res0] < 0) | ep.views[0].resident[np.maximum(parent[res0], 0)]).all()
        obs, _r, term, trunc, info = env.step(int(rng.choice(np.flatnonzero(obs["action_mask"]))))
        n += 1
        if term or trunc:
            break
    assert n > 300


def test_masked_and_malformed_actions(rag):
    env = PrefixCacheEnv(trace=rag, serving=SMALL, k=64)
    obs, _ = env.reset(seed=0)
    bad = int(np.flatnonzero(obs["action_mask"] == 0)[0])
    with pytest.raises(ValueError, match=f"action {bad} is invalid for this evict decision"):
        env.step(bad)
    with pytest.raises(ValueError, match="not an integer"):
        env.step(0.5)
    assert env.action_masks().dtype == bool and (env.action_masks() == obs["action_mask"].astype(bool)).all()
    obs, *_ = env.step(np.int64(0))     # numpy integers are fine
    obs, *_ = env.step(np.array([0]))
    env.close()
    assert not env.action_masks().any()


# -- seeding, episodes, threads ----------------------------------------------------------------------
def rollout(env, seed, agent_seed=0):
    rng = np.random.default_rng(agent_seed)
    obs, info = env.reset(seed=seed)
    out = [obs, info["trace"]]
    while True:
        obs, r, term, trunc, info = env.step(int(rng.choice(np.flatnonzero(obs["action_mask"]))))
        out.append((obs, r, term, trunc, info["prefill_tokens"]))
        if term or trunc:
            out.append(info["metrics"].to_dict())
            return out


def test_seeded_rollouts_are_reproducible():
    kw = {"workload_params": {"sessions": 12}, "k": 8, "sample": 4}
    a = rollout(gym.make("kvgym/PrefixCache-v0", **kw), seed=3)
    b = rollout(gym.make("kvgym/PrefixCache-v0", **kw), seed=3)
    c = rollout(gym.make("kvgym/PrefixCache-v0", **kw), seed=4)
    assert data_equivalence(a, b, exact=True)
    assert not data_equivalence(a, c, exact=True)     # another trace from the split, other samples


def test_windows_truncate_and_whole_traces_terminate():
    env = gym.make("kvgym/PrefixCache-Mooncake-v0", episode_requests=40, serving={"capacities": [400, 2000]})
    obs, info = env.reset(seed=5)
    start, stop = info["window"]
    assert stop - start == 40 and info["trace"] == "mooncake-synthetic"
    term = trunc = False
    while not (term or trunc):
        obs, _r, term, trunc, info = env.step(int(np.flatnonzero(obs["action_mask"])[0]))
    assert trunc and not term and info["metrics"].requests == 40
    obs, info = env.reset(seed=5, options={"window": (0, 60)})
    assert info["window"] == (0, 60)
    with pytest.raises(ConfigError, match="option 'window'"):
        env.reset(options={"window": (10, 5)})
    with pytest.raises(ConfigError, match="unknown option key"):
        env.reset(options={"tracee": 1})


def test_reset_many_times_and_close_leave_no_thread(rag):
    before = threading.active_count()
    env = PrefixCacheEnv(trace=rag, serving=SMALL, k=8)
    for seed in range(25):
        obs, _ = env.reset(seed=seed)   # each reset abandons the previous episode mid-way
        env.step(int(np.flatnonzero(obs["action_mask"])[0]))
    assert threading.active_count() == before + 1
    env.close()
    assert threading.active_count() == before
    with pytest.raises(ResetNeeded):
        env.step(0)
    env.reset(seed=0)
    del env          # dropped mid-episode without close(): its thread still ends
    gc.collect()
    assert threading.active_count() == before


def test_step_before_reset_and_after_the_end():
    env = PrefixCacheEnv(trace=HAND, serving=HAND_SERVING, k=4)
    with pytest.raises(ResetNeeded):
        env.step(0)
    env.reset(seed=0)
    env.step(0)
    env.step(0)
    with pytest.raises(ResetNeeded):
        env.step(0)
    assert env.metrics().requests == 3


def test_a_trace_that_needs_no_decision():
    env = PrefixCacheEnv(trace=HAND, serving={"tiers": ["hbm"], "capacities": [16], "timing": False}, k=4)
    with pytest.raises(NoDecisionError, match="need no decision"):
        env.reset(seed=0)
    assert env.metrics().requests == 3 and env.metrics().prefill_tokens_computed == 8 + 12 + 4


def test_render_ansi(rag):
    env = PrefixCacheEnv(trace=rag, serving=SMALL, k=8, render_mode="ansi")
    env.reset(seed=0)
    env.step(0)
    text = env.render()
    assert "tier 0 hbm" in text and "/ 24 blocks" in text and "last action: evict slot 0" in text


def test_invalid_configuration_is_rejected_at_make():
    cases = [({"k": 1}, "k=1"), ({"reward": "stall"}, "reward='stall'"), ({"victims": "all"}, "victims"),
             ({"evict_tiers": [2]}, "evict_tiers"), ({"evict_tiers": [1], "serving": {"tiers": ["hbm"], "capacities": [8]}},
                                                     "names a tier"),
             ({"admit": True, "serving": {"write_policy": "write_back"}}, "admit=true needs"),
             ({"evict_tiers": []}, "no decision left"), ({"policy": "belady"}, "policy"),
             ({"admission": "threshold(n=2)"}, "unknown parameters"), ({"nonsense": 1}, "unknown config keys"),
             ({"serving": {"capacities": ["5%"]}}, "capacities"), ({"workload": "topk_drift"}, "workload")]
    for kw, msg in cases:
        with pytest.raises(ConfigError, match=msg):
            gym.make("kvgym/PrefixCache-v0", **kw)


def test_a_request_too_big_for_tier_0_is_one_config_error():
    env = PrefixCacheEnv(trace=HAND, serving={"tiers": ["hbm"], "capacities": [2], "timing": False}, k=2)
    with pytest.raises(ConfigError, match="does not fit serving config.*request 1 needs 3 blocks"):
        env.reset(seed=0)


# -- learning --------------------------------------------------------------------------------------
def test_maskable_ppo_smoke():
    from sb3_contrib import MaskablePPO

    env = gym.make("kvgym/PrefixCacheAdmit-v0", workload_params={"sessions": 12}, k=8, reward_scale=1e-3)
    model = MaskablePPO("MultiInputPolicy", env, seed=0, n_steps=128, batch_size=64, n_epochs=1)
    model.learn(256)
    m = evaluate_prefix(model, make_requests("chat", seed=1100, sessions=12), env_id="kvgym/PrefixCacheAdmit-v0", k=8)
    assert m.requests > 0 and m.prefill_tokens_computed > 0
