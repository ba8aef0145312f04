"""The env on the compiled engine: external decisions replay exactly through the specification,
candidate selection, observations."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import kvgym  # noqa: F401
from kvgym.envs.episode import DONE, EVICT, Episode
from kvgym.sim import run
from kvgym.sim.engine import Engine
from kvgym.sim.policy import Prefetcher
from kvgym.sim.scenario import Scenario
from kvgym.traces.format import PageTable, Trace


def mixed_trace(seed: int, n_pages: int = 300, n: int = 2000, per_step: int = 4, layers: int = 4,
                weight: bool = True) -> Trace:
    """Half sequential sweeps, half Zipf: both reuse and next-block structure."""
    rng = np.random.default_rng(seed)
    seqp = np.arange(n) % n_pages
    zipf = (rng.zipf(1.3, n) - 1) % n_pages
    p = np.where(rng.random(n) < 0.5, seqp, zipf)
    w = rng.random(n).astype(np.float32) if weight else None
    return Trace.from_pages(p, PageTable.uniform(n_pages, 65536, layers=layers), steps=np.arange(n) // per_step,
                            weight=w)


SCENARIOS = {
    "h200-overlap": Scenario(capacities=("5%", None, None, None)),
    "cascade-fp8": Scenario(capacities=("10%", "10%", "20%", None), quantization="fp8"),
    "toy-serial-int4": Scenario(profile="seed-toy", capacities=(262144, 819200, 16_000_000, None),
                                cost_model="serial", quantization="int4", decode="parity"),
    "h100-backing1": Scenario(profile="h100-datasheet", capacities=("3%", "5%", "50%"), backing_tier=1),
    "create-first-touch": Scenario(capacities=("5%", "3%", "10%", None), first_touch="create"),
}


def episode(trace, scenario, k, sample, **kw) -> Episode:
    setup = scenario.build(trace.pages)
    return Episode(setup, trace.step, trace.page, trace.weight, k=k, sample=sample, seed=7, regret_horizon=32,
                   diagnostics=kw.pop("diagnostics", False), **kw)


def replay(trace, scenario, victims, prefetcher=None):
    """The specification engine driven by the same victims (and prefetches)."""
    eng = Engine(scenario.build(trace.pages), None, prefetcher, external=True)
    gen = eng.simulate([(trace.step, trace.page, trace.weight)])
    it = iter(victims)
    try:
        next(gen)
        while True:
            gen.send(next(it))
    except StopIteration:
        pass
    return eng.m


@pytest.mark.parametrize("name", list(SCENARIOS))
@pytest.mark.parametrize("k,sample", [(8, 2), (400, 0)])
def test_random_decisions_replay_exactly_through_the_specification(name, k, sample):
    """Random victims chosen in the env, sent to the specification engine: identical metrics."""
    trace, sc = mixed_trace(1), SCENARIOS[name]
    ep = episode(trace, sc, k, sample, prefetch_decisions=False)
    rng = np.random.default_rng(3)
    victims, status = [], ep.start()
    while status != DONE:
        n = int(ep.mask.sum())
        assert n == ep.n_sel == min(k, ep.n_eligible) and ep.mask[n:].sum() == 0
        shown = ep.sel[:n]
        assert len(set(shown.tolist())) == n and set(shown.tolist()) <= set(ep.eligible().tolist())
        a = int(rng.integers(n))
        victims.append(int(ep.sel[a]))
        status = ep.act(a)
    assert len(victims) > 100
    assert ep.metrics().to_dict() == replay(trace, sc, victims).to_dict()


def test_pinned_heavy_tier0_sampling_falls_back_to_the_tail():
    """Each step pins ~95% of tier 0: rejection over slots rarely finds the few eligible pages, so
    unfilled sample slots extend the LRU tail; every slot still holds a distinct eligible page."""
    rng = np.random.default_rng(9)
    hot = rng.permutation(400)
    steps = [np.sort(rng.choice(hot[: 120 + (s % 5) * 4], size=100, replace=False)) for s in range(60)]
    page = np.concatenate(steps)
    trace = Trace.from_pages(page, PageTable.uniform(400, 65536, layers=4),
                             steps=np.repeat(np.arange(60), [len(x) for x in steps]))
    sc = Scenario(capacities=(105 * 65536, None, None, None))
    ep = episode(trace, sc, 6, 5, prefetch_decisions=False)
    status, n_dec, victims = ep.start(), 0, []
    while status != DONE:
        elig = ep.eligible()
        shown = ep.sel[:ep.n_sel]
        assert ep.n_sel == min(6, len(elig)) and len(set(shown.tolist())) == ep.n_sel
        assert set(shown.tolist()) <= set(elig.tolist())
        victims.append(int(ep.sel[0]))
        status = ep.act(0)
        n_dec += 1
    assert n_dec > 200
    assert ep.metrics().to_dict() == run(trace, sc, "lru").to_dict()


class Replay(Prefetcher):
    """Proposes, at each step, the pages the env's agent chose to prefetch in that step."""

    def __init__(self, plan):
        self.plan = plan

    def propose(self, step, pages):
        return self.plan.get(step, [])


@pytest.mark.parametrize("scenario", [
    Scenario(capacities=("5%", "3%", None, None), prefetch=True, max_prefetch=2, first_touch="create"),
    Scenario(capacities=("10%", "10%", "20%", None), prefetch=True, max_prefetch=3, quantization="int4"),
    Scenario(profile="seed-toy", capacities=(262144, 819200, 16_000_000, None), cost_model="serial",
             prefetch=True, decode="parity", quantization="fp8"),
], ids=["overlap-create", "cascade-int4", "serial"])
def test_prefetch_decisions_replay_exactly_through_the_specification(scenario):
    trace = mixed_trace(2)
    ep = episode(trace, scenario, 8, 2, prefetch_decisions=True)
    rng = np.random.default_rng(0)
    victims, plan, n_pf = [], {}, 0
    status = ep.start()
    while status != DONE:
        a = int(rng.integers(int(ep.mask.sum())))
        if status == EVICT:
            victims.append(int(ep.sel[a]))
        else:
            n_pf += 1
            assert ep.mask[0] == 1  # slot 0 = no prefetch, always valid
            if a > 0:
                plan.setdefault(ep.step, []).append(int(ep.sel[a - 1]))
        status = ep.act(a)
    mc = ep.metrics()
    assert n_pf > 100 and mc.prefetch_issued > 100
    assert mc.prefetch_issued == mc.prefetch_useful + mc.prefetch_wasted
    assert mc.to_dict() == replay(trace, scenario, victims, Replay(plan)).to_dict()


def test_hand_computed_episode():
    """seed-toy serial costs, 4 KiB pages, tier 0 = 2 pages, trace 0 1 2 0 2 (one per step).

    Backing (disk) -> HBM: (2500 + 20) + 4096 / 2 = 4568 µs; pool <-> HBM: (60 + 20) + 4096 / 40
    = 182.4 µs. Decisions (slots sorted least recently used first): step 2 evicts page 0 (slot 0),
    step 3 evicts page 2 (slot 1: page 1 was used before page 2), step 4 evicts page 1 (slot 0).
    """
    trace = Trace.from_pages([0, 1, 2, 0, 2], fp16_bytes=4096)
    sc = Scenario(profile="seed-toy", capacities=(8192, 128000, 500000, 4000000), cost_model="serial",
                  decode="parity")
    env = gym.make("kvgym/Evict-v0", scenario=sc, trace=trace, k=4, sample=0)
    obs, info = env.reset(seed=0)
    u = env.unwrapped
    assert u.candidate_pages().tolist() == [0, 1, -1, -1]
    assert obs["action_mask"].tolist() == [1, 1, 0, 0] and info["phase"] == "evict"
    f = u.feature_names
    c = obs["candidates"]
    assert c[0, f.index("recency")] == np.float32(2 / 18) and c[1, f.index("recency")] == np.float32(1 / 17)
    assert c[0, f.index("frequency")] == np.float32(0.2) and c[0, f.index("size")] == 1.0
    assert c[0, f.index("tier")] == np.float32(1 / 3) and c[0, f.index("evicted_ago")] == 1.0
    assert c[2:].sum() == 0
    rewards = []
    obs, r, term, trunc, info = env.step(0)
    rewards.append(r)
    assert u.candidate_pages().tolist() == [1, 2, -1, -1]
    assert obs["candidates"][:, f.index("evicted_ago")].tolist()[:2] == [1.0, 1.0]
    obs, r, term, trunc, info = env.step(1)
    rewards.append(r)
    assert u.candidate_pages().tolist() == [1, 0, -1, -1]
    obs, r, term, trunc, info = env.step(0)
    rewards.append(r)
    assert term and not trunc
    m = info["metrics"]
    assert (m.accesses, m.hits, m.misses, m.full_misses, m.first_touch_misses) == (5, 0, 5, 3, 3)
    assert m.tier_hits == [0, 2, 0, 0] and m.evictions == [3, 0, 0, 0]
    assert m.link_bytes_demand == [0, 8192, 0, 12288] and m.link_bytes_demotion == [0, 12288, 0, 0]
    assert m.stall_us == pytest.approx(3 * 4568 + 5 * 182.4, rel=1e-12)
    # Serial model: the reward is the running sum's growth between decisions (the first two
    # misses' 2 * 4568 µs come before the first decision and belong to no action).
    assert rewards == pytest.approx([-(182.4 + 4568), -2 * 182.4, -2 * 182.4], rel=1e-12)
    assert sum(rewards) == pytest.approx(-(m.stall_us - 2 * 4568), rel=1e-12)
    assert replay(trace, sc, [0, 2, 1]).to_dict() == m.to_dict()


@pytest.mark.parametrize("lower", ["lru", "same"])
def test_always_slot_zero_is_lru(lower):
    """Slot 0 is the least recently used page even when only a sample is shown: acting 0 reproduces LRU."""
    trace = mixed_trace(4, n_pages=400, n=3000)
    sc = Scenario(capacities=("8%", "5%", None, None), lower_policy=lower)
    env = gym.make("kvgym/Evict-v0", scenario=sc, trace=trace, k=6, sample=3)
    _, info = env.reset(seed=1)
    n, done = 0, False
    while not done:
        assert env.unwrapped.eligible_pages().size > 6 or n < 50  # the sampled regime is exercised
        _obs, _r, term, trunc, info = env.step(0)
        n += 1
        done = term or trunc
    assert info["metrics"].to_dict() == run(trace, sc, "lru", engine="reference").to_dict()


def test_candidates_are_tail_plus_seeded_sample():
    trace = mixed_trace(5, n_pages=400, n=1500)
    sc = Scenario(capacities=("10%", None, None, None))

    def shown(seed, n=60):
        env = gym.make("kvgym/Evict-v0", scenario=sc, trace=trace, k=8, sample=3)
        env.reset(seed=seed)
        u = env.unwrapped
        out = []
        for _ in range(n):
            used = u._sim.engine.state["used"]  # the order of last use
            elig = u.eligible_pages()
            tail = elig[np.argsort(used[elig])][:5]  # the LRU tail (k - sample = 5)
            cands = u.candidate_pages()
            assert len(elig) > 8
            assert cands.tolist() == sorted(cands.tolist(), key=lambda p: used[p])
            assert set(tail.tolist()) <= set(cands.tolist())
            out.append(cands.copy())
            env.step(0)
        return out

    a, b, c = shown(0), shown(0), shown(1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_sampled_candidates_cover_the_eligible_pages_evenly():
    """Over many decisions every eligible page outside the tail is drawn about equally often."""
    n_pages = 60
    rng = np.random.default_rng(11)
    page = rng.permutation(np.repeat(np.arange(n_pages), 200))  # uniform reuse: little LRU structure
    trace = Trace.from_pages(page, PageTable.uniform(n_pages, 4096))
    sc = Scenario(profile="seed-toy", capacities=(50 * 4096, None, None, None), cost_model="serial")
    env = gym.make("kvgym/Evict-v0", scenario=sc, trace=trace, k=6, sample=4)
    env.reset(seed=3)
    u = env.unwrapped
    drawn = np.zeros(n_pages)
    eligible = np.zeros(n_pages)
    done = False
    while not done:
        used = u._sim.engine.state["used"]
        elig = u.eligible_pages()
        tail = set(elig[np.argsort(used[elig])][:2].tolist())
        rest = [p for p in elig.tolist() if p not in tail]
        eligible[rest] += 1
        drawn[[p for p in u.candidate_pages().tolist() if p >= 0 and p not in tail]] += 1
        _o, _r, term, trunc, _i = env.step(0)
        done = term or trunc
    rate = drawn[eligible > 0] / eligible[eligible > 0]
    assert eligible.sum() > 80_000  # ~1,500 per page: the rates below are within 5 standard deviations
    assert rate.min() > 0.6 * rate.mean() and rate.max() < 1.4 * rate.mean()


def test_observations_stay_in_their_space_in_both_phases():
    trace = mixed_trace(6)
    env = gym.make("kvgym/EvictPrefetch-v0", scenario=Scenario(capacities=("5%", None, None, None), prefetch=True),
                   trace=trace, k=8, sample=2)
    obs, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    phases = set()
    for _ in range(600):
        assert obs in env.observation_space
        assert np.isfinite(obs["candidates"]).all() and np.isfinite(obs["context"]).all()
        phases.add(info["phase"])
        valid = np.flatnonzero(obs["action_mask"])
        obs, _r, term, trunc, info = env.step(int(valid[rng.integers(len(valid))]))
        if term or trunc:
            obs, info = env.reset()
    assert phases == {"evict", "prefetch"}
