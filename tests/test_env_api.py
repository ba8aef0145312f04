"""The Gymnasium surface: registration, checkers, seeding, episodes, rewards, rendering, misuse errors."""

from __future__ import annotations

import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from _env_helpers import checker_warnings
from gymnasium.error import ResetNeeded

import kvgym
from kvgym.envs.config import EnvConfig, Splits, split_files
from kvgym.envs.evict import NoDecisionError
from kvgym.envs.registration import DECODE_ENV_IDS, ENV_IDS, PRESETS, register_envs
from kvgym.errors import ConfigError
from kvgym.sim.scenario import Scenario
from kvgym.traces.format import PageTable, Trace
from kvgym.workloads import workload_names

SMALL = Scenario(name="small-h200", capacities=("5%", None, None, None))


def mixed_trace(seed: int = 0, n_pages: int = 256, n: int = 3000, per_step: int = 4, page_bytes: int = 65536) -> Trace:
    rng = np.random.default_rng(seed)
    p = np.where(rng.random(n) < 0.5, np.arange(n) % n_pages, (rng.zipf(1.3, n) - 1) % n_pages)
    return Trace.from_pages(p, PageTable.uniform(n_pages, page_bytes, layers=4), steps=np.arange(n) // per_step,
                            weight=rng.random(n).astype(np.float32), meta={"generator": "test", "seed": seed})


def small_kwargs(env_id: str) -> dict:
    """A small trace every preset accepts: 4 KiB pages for the toy tiers, 64 KiB for the others."""
    if "Toy" in env_id:
        return {"trace": mixed_trace(page_bytes=4096, n_pages=128), "k": 4, "sample": 1}
    return {"trace": mixed_trace(), "k": 8, "sample": 2, "scenario": SMALL}


# -- registration -----------------------------------------------------------------------------
def test_registration_is_idempotent_and_complete():
    assert set(ENV_IDS) <= set(gym.registry)
    assert {"kvgym/Evict-v0", "kvgym/EvictPrefetch-v0"} <= set(ENV_IDS)
    assert register_envs() == []  # already registered by `import kvgym`
    import importlib

    importlib.reload(kvgym)  # importing again registers nothing new and warns about nothing
    assert register_envs() == []
    for env_id, (entry, kwargs) in PRESETS.items():
        assert gym.spec(env_id).entry_point == entry and gym.spec(env_id).kwargs == kwargs


def test_import_kvgym_stays_light():
    code = "import sys, kvgym, gymnasium as gym; assert 'kvgym/Evict-v0' in gym.registry; " \
           "print(sorted(m for m in ('torch', 'numba', 'kvgym.sim._engine') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_make_with_module_prefix():
    env = gym.make("kvgym:kvgym/Evict-v0", **small_kwargs("kvgym/Evict-v0"))
    obs, info = env.reset(seed=0)
    assert obs in env.observation_space and info["phase"] == "evict"


# -- checkers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("env_id", DECODE_ENV_IDS)
def test_gymnasium_and_sb3_checkers_pass(env_id):
    """check_env on the made env and on .unwrapped, and SB3's check_env, for every registered id.

    The checkers step with unmasked random actions, so ``k`` is kept small enough that every slot
    is valid on this trace (a masked slot raises ValueError, by design)."""
    assert checker_warnings(env_id, **small_kwargs(env_id)) == []


@pytest.mark.parametrize("env_id", DECODE_ENV_IDS)
def test_presets_reset_on_their_default_workload(env_id):
    spec = gym.spec(env_id)
    wl = spec.kwargs.get("workload", "topk_drift")
    if wl not in workload_names():
        pytest.skip(f"workload {wl!r} is not registered")
    env = gym.make(env_id)
    obs, info = env.reset(seed=0)
    assert obs in env.observation_space and obs["action_mask"].any()
    assert info["trace"].startswith(wl + "#") and int(info["trace"].split("#")[1]) in Splits().seeds("train")
    for _ in range(20):
        valid = np.flatnonzero(obs["action_mask"])
        obs, _r, term, trunc, info = env.step(int(valid[0]))
        if term or trunc:
            break


# -- seeding and episodes ---------------------------------------------------------------------
def rollout(env, seed, n=300, agent_seed=0):
    rng = np.random.default_rng(agent_seed)
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for _ in range(n):
        valid = np.flatnonzero(obs["action_mask"])
        obs, r, term, trunc, _info = env.step(int(valid[rng.integers(len(valid))]))
        out.append((obs, r, term, trunc))
        if term or trunc:
            break
    return out


def same(a, b) -> bool:
    from gymnasium.utils.env_checker import data_equivalence

    return data_equivalence(a, b, exact=True)


@pytest.mark.parametrize("env_id", ["kvgym/Evict-v0", "kvgym/EvictPrefetch-v0"])
def test_seeded_rollouts_are_reproducible(env_id):
    kw = {"trace": mixed_trace(1, n_pages=400), "scenario": Scenario(capacities=("10%", None, None, None)), "k": 8,
              "sample": 4}
    a = rollout(gym.make(env_id, **kw), seed=3)
    b = rollout(gym.make(env_id, **kw), seed=3)
    c = rollout(gym.make(env_id, **kw), seed=4)
    assert same(a, b)
    assert not same(a, c)  # another seed draws other candidate samples


def test_workload_traces_come_from_the_requested_split():
    splits = Splits(train=(0, 5), validation=(5, 8), test=(100, 103))
    env = gym.make("kvgym/Evict-Toy-v0", split="test", splits=splits)
    seeds = set()
    for s in range(6):
        _, info = env.reset(seed=s)
        seeds.add(int(info["trace"].split("#")[1]))
    assert seeds <= {100, 101, 102} and len(seeds) > 1
    _, info = env.reset(seed=0, options={"trace": "rag_burst"})  # a workload name: same split
    assert info["trace"].split("#")[0] == "rag_burst" and int(info["trace"].split("#")[1]) in range(100, 103)


def test_splits_and_split_files_validate():
    with pytest.raises(ConfigError, match="overlap"):
        Splits(train=(0, 10), validation=(5, 20), test=(20, 30))
    with pytest.raises(ConfigError, match="train"):
        Splits(train=(5, 5))
    s = Splits()
    assert s.split_of(1050) == "validation" and s.split_of(5000) is None
    assert Splits.from_dict(s.to_dict()) == s
    files = [f"t{i}.parquet" for i in range(10)]
    a, b = split_files(files, seed=1), split_files(list(reversed(files)), seed=1)
    assert a == b and sorted(f for v in a.values() for f in v) == sorted(files) and len(a["train"]) == 8
    with pytest.raises(ConfigError):
        split_files(files, fractions=(0.5, 0.5, 0.5))


def test_whole_trace_terminates_and_a_window_truncates():
    trace = mixed_trace(2)
    env = gym.make("kvgym/Evict-v0", trace=trace, scenario=SMALL, k=8)

    def run(options=None):
        obs, info = env.reset(seed=0, options=options)
        while True:
            obs, _r, term, trunc, info = env.step(0)
            if term or trunc:
                return term, trunc, info, obs

    term, trunc, info, obs = run()
    assert term and not trunc and info["metrics"].accesses == len(trace)
    assert info["metrics"].to_dict() == env.unwrapped.metrics().to_dict()
    assert obs in env.observation_space and not obs["action_mask"].any()
    term, trunc, info, _ = run({"window": (400, 2000)})
    assert trunc and not term and info["metrics"].accesses == 1600
    assert env.unwrapped.window == (400, 2000)
    term, trunc, info, _ = run({"window": (0, len(trace))})
    assert term and not trunc


def test_random_windows_start_on_step_boundaries():
    trace = mixed_trace(3)
    env = gym.make("kvgym/Evict-v0", trace=trace, scenario=SMALL, k=8, episode_rows=1000)
    starts = set()
    for s in range(5):
        env.reset(seed=s)
        a, b = env.unwrapped.window
        assert a % 4 == 0 and b - a == 1000  # 4 accesses per step
        starts.add(a)
    assert len(starts) > 1


@pytest.mark.parametrize("reward,key", [("stall", "stall_us"), ("misses", "misses"), ("bytes", "bytes_moved")])
def test_rewards_add_up_to_the_episode_totals(reward, key):
    trace = mixed_trace(4)
    env = gym.make("kvgym/Evict-v0", trace=trace, scenario=SMALL, k=8, reward=reward, reward_scale=0.5)
    _, info = env.reset(seed=0)
    start = {"stall_us": env.unwrapped.metrics().stall_us, "misses": env.unwrapped.metrics().misses,
             "bytes_moved": env.unwrapped.metrics().bytes_moved}
    total, comp = 0.0, 0.0
    while True:
        _obs, r, term, trunc, info = env.step(0)
        total += r
        comp += info[key]
        assert r == pytest.approx(-0.5 * info[key])
        if term or trunc:
            break
    m = info["metrics"]
    end = {"stall_us": m.stall_us, "misses": m.misses, "bytes_moved": m.bytes_moved}
    assert comp == pytest.approx(end[key] - start[key], rel=1e-9)
    assert total == pytest.approx(-0.5 * (end[key] - start[key]), rel=1e-9)


def test_episode_accesses_and_position():
    trace = mixed_trace(7)
    env = gym.make("kvgym/Evict-v0", trace=trace, scenario=SMALL, k=8)
    env.reset(seed=0, options={"window": (100, 900)})
    u = env.unwrapped
    step, page = u.episode_accesses()
    assert np.array_equal(page, trace.page[100:900]) and np.array_equal(step, trace.step[100:900])
    assert not page.flags.writeable
    pos = u.position
    # The access waiting for room is a page that is not in tier 0 (it is being fetched).
    assert 0 <= pos < 800 and page[pos] not in set(u.eligible_pages().tolist())


def test_masks_and_info_types():
    env = gym.make("kvgym/Evict-v0", trace=mixed_trace(), scenario=SMALL, k=8)
    obs, info = env.reset(seed=0)
    m = env.unwrapped.action_masks()
    assert m.dtype == bool and m.shape == (8,)
    assert info["action_mask"].dtype == np.int8 and np.array_equal(info["action_mask"], m.astype(np.int8))
    assert obs["action_mask"].dtype == np.int8
    assert set(info) >= {"stall_us", "misses", "bytes_moved", "phase", "trace", "window"}


def test_trace_sources_file_name_and_list(tmp_path):
    from kvgym.traces.parquet import write_trace

    trace = mixed_trace(5)
    path = write_trace(trace, tmp_path / "t.parquet")
    env = gym.make("kvgym/Evict-v0", trace=str(path), scenario=SMALL, k=8)
    obs, info = env.reset(seed=0)
    assert info["trace"] == "t.parquet"
    env2 = gym.make("kvgym/Evict-v0", trace=trace, scenario=SMALL, k=8)
    assert same(obs, env2.reset(seed=0)[0])
    env3 = gym.make("kvgym/Evict-v0", trace=[trace, mixed_trace(6)], scenario="h200_5pct_fp16_no_prefetch", k=8)
    labels = {env3.reset(seed=s)[1]["trace"] for s in range(8)}
    assert labels == {"test#5", "test#6"}


# -- rendering ----------------------------------------------------------------------------------
def test_render_ansi_and_rgb():
    for mode in ("ansi", "rgb_array"):
        env = gym.make("kvgym/Evict-v0", trace=mixed_trace(), scenario=SMALL, k=8, render_mode=mode)
        env.reset(seed=0)
        first = env.render()
        for _ in range(30):
            env.step(0)
        out = env.render()
        if mode == "ansi":
            assert isinstance(out, str) and "hbm" in out and "host" in out and "last decisions:" in out
            assert out.count("\n  #") == 8 and "#29 " in out
        else:
            assert out.dtype == np.uint8 and out.shape == (96, 256, 3)
            assert not np.array_equal(first, out)
            assert (out == [229, 57, 53]).all(axis=-1).any()  # some misses drawn in the timeline
    env = gym.make("kvgym/Evict-v0", trace=mixed_trace(), scenario=SMALL, k=8, disable_env_checker=True)
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="render_mode"):
        assert env.render() is None


# -- misuse -------------------------------------------------------------------------------------
def test_step_before_reset_and_after_the_end():
    env = gym.make("kvgym/Evict-v0", trace=mixed_trace(), scenario=SMALL, k=8)
    with pytest.raises(ResetNeeded):
        env.step(0)
    with pytest.raises(ResetNeeded, match="reset"):
        env.unwrapped.step(0)
    env.reset(seed=0)
    while True:
        _, _, term, trunc, _ = env.unwrapped.step(0)
        if term or trunc:
            break
    with pytest.raises(ResetNeeded, match="reset"):
        env.unwrapped.step(0)


def test_masked_and_malformed_actions():
    trace = Trace.from_pages([0, 1, 2, 0, 2], fp16_bytes=4096)
    sc = Scenario(profile="seed-toy", capacities=(8192, 128000, 500000, 4000000), cost_model="serial")
    env = gym.make("kvgym/Evict-v0", trace=trace, scenario=sc, k=4)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action 3 is invalid .*action_mask=\[1, 1, 0, 0\].*valid actions: \[0, 1\]"):
        env.step(3)
    with pytest.raises(ValueError, match="action 7 is invalid"):
        env.step(7)
    with pytest.raises(ValueError, match="action -1 is invalid"):
        env.step(-1)
    with pytest.raises(ValueError, match="not an integer"):
        env.step(0.5)
    env.step(np.array([1]))  # a one-element integer array is fine (vectorised agents)


def test_unknown_option_key_and_bad_window():
    env = gym.make("kvgym/Evict-v0", trace=mixed_trace(), scenario=SMALL, k=8)
    with pytest.raises(ConfigError, match=r"unknown option key\(s\) \['seed_offset'\]; valid: trace, window"):
        env.reset(options={"seed_offset": 1})
    with pytest.raises(ConfigError, match="window"):
        env.reset(options={"window": (10, 5)})
    with pytest.raises(ConfigError, match="window"):
        env.reset(options={"window": (0, 10**9)})


def test_traces_that_do_not_fit_the_scenario():
    env = gym.make("kvgym/Evict-v0", scenario=Scenario(profile="seed-toy", cost_model="serial"), k=4)
    with pytest.raises(ConfigError, match=r"trace test#0 does not fit scenario 'default'.*larger than tier"):
        env.reset(options={"trace": mixed_trace()})  # 64 KiB pages, 64,000-byte tier 0
    crowded = Trace.from_pages(np.arange(40), fp16_bytes=4096, steps=np.zeros(40, np.int64))
    with pytest.raises(ConfigError, match="does not fit.*step 0 needs 163840 bytes"):
        env.reset(options={"trace": crowded})
    roomy = Trace.from_pages([0, 1, 0, 1], fp16_bytes=4096)
    with pytest.raises(NoDecisionError, match="never needs a tier-0 eviction"):
        env.reset(options={"trace": roomy})
    assert env.unwrapped.metrics().accesses == 4  # the finished run is still readable
    with pytest.raises(ConfigError, match="not a file and not a workload"):
        env.reset(options={"trace": "no_such_workload"})


def test_invalid_configuration_is_rejected_at_make():
    bad = [{"k": 1}, {"k": 8, "sample": 8}, {"reward": "latency"}, {"reward_scale": 0},
           {"prefetcher": "no_such_prefetcher"}, {"render_mode": "svg"}, {"episode_rows": 0},
           {"split": "holdout"}, {"scenario": "no_such_scenario"},
           {"scenario": {"profile": "seed-toy", "capacities": [1]}}]
    for kw in bad:
        with pytest.raises(ConfigError), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gymnasium warns about the unknown render mode before we refuse it
            gym.make("kvgym/Evict-v0", disable_env_checker=True, **kw)
    with pytest.raises(ConfigError, match="unknown keys"):
        EnvConfig.from_dict({"kk": 3})
    with pytest.raises(ConfigError, match="prefetch"):
        gym.make("kvgym/EvictPrefetch-v0", prefetcher="markov")
