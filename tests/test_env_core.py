"""The env's simulation backends: exact semantics, backend equivalence, candidate selection."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import kvgym  # noqa: F401
from kvgym.envs.core import DONE, EVICT, CompiledSim
from kvgym.envs.kernels import N_FEATURES, n_context, np_sum
from kvgym.envs.reference import ReferenceSim
from kvgym.sim.engine import Engine, simulate
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


def run_sim(cls, trace, scenario, k, sample, actions_seed=3, **kw):
    setup = scenario.build(trace.pages)
    sim = cls(setup, trace.step, trace.page, trace.weight, k=k, sample=sample, seed=7, regret_horizon=32,
              diagnostics=True, obs_shapes=((k, N_FEATURES), n_context(len(setup.tiers))), **kw)
    rng = np.random.default_rng(actions_seed)
    status = sim.start()
    seen = []
    while status != DONE:
        seen.append((sim.obs_c.copy(), sim.obs_g.copy(), sim.mask.copy(), sim.sel[:sim.n_sel].copy(),
                     sim.belady_covered(), tuple(sim.totals())))
        status = sim.act(int(rng.integers(int(sim.mask.sum()))))
    return sim.metrics(), seen


@pytest.mark.parametrize("name", list(SCENARIOS))
@pytest.mark.parametrize("k,sample", [(8, 2), (400, 0)])
def test_compiled_and_reference_backends_are_identical(name, k, sample):
    """Same actions -> bit-identical observations, reward totals and final metrics on both backends."""
    trace = mixed_trace(1)
    mc, oc = run_sim(CompiledSim, trace, SCENARIOS[name], k, sample, prefetch_decisions=False)
    mr, orf = run_sim(ReferenceSim, trace, SCENARIOS[name], k, sample)
    assert len(oc) == len(orf) > 100
    for a, b in zip(oc, orf):
        for x, y in zip(a, b):
            assert np.array_equal(x, y)
    assert mc.to_dict() == mr.to_dict()


def test_low_density_sampling_is_identical():
    """A tier 0 holding a tiny share of a big page table: the sampled candidates still agree."""
    trace = mixed_trace(3, n_pages=20000, n=3000, per_step=2)
    sc = Scenario(capacities=("0.3%", None, None, None))
    mc, oc = run_sim(CompiledSim, trace, sc, 16, 8, prefetch_decisions=False)
    mr, orf = run_sim(ReferenceSim, trace, sc, 16, 8)
    assert mc.to_dict() == mr.to_dict()
    assert all(np.array_equal(a[3], b[3]) for a, b in zip(oc, orf))


def test_pinned_heavy_tier0_sampling_falls_back_identically():
    """Each step pins ~95% of tier 0: rejection over slots rarely finds the few eligible pages, so
    unfilled sample slots extend the LRU tail; both backends still show the same candidates."""
    rng = np.random.default_rng(9)
    hot = rng.permutation(400)
    steps = [np.sort(rng.choice(hot[: 120 + (s % 5) * 4], size=100, replace=False)) for s in range(60)]
    page = np.concatenate(steps)
    trace = Trace.from_pages(page, PageTable.uniform(400, 65536, layers=4),
                             steps=np.repeat(np.arange(60), [len(x) for x in steps]))
    sc = Scenario(capacities=(105 * 65536, None, None, None))
    mc, oc = run_sim(CompiledSim, trace, sc, 6, 5, prefetch_decisions=False)
    mr, orf = run_sim(ReferenceSim, trace, sc, 6, 5)
    assert len(oc) > 200 and mc.to_dict() == mr.to_dict()
    assert all(np.array_equal(a[3], b[3]) for a, b in zip(oc, orf))


def test_sample_slots_draws_uniformly_and_gives_up():
    from kvgym.envs.kernels import sample_slots

    slots = np.arange(1000, dtype=np.int64)
    pin = np.zeros(1000, np.int64)
    pin[10:] = 1  # only 10 eligible of 1000
    mark = np.zeros(1000, np.int64)
    out = np.zeros(8, np.int64)
    got = sample_slots(slots, 1000, 8, np.uint64(3), pin, 1, mark, 7, out, 0)
    assert got < 8 and set(out[:got].tolist()) <= set(range(10))  # 64 * 8 proposals were not enough
    pin[:] = 0
    counts = np.zeros(50, np.int64)
    for seed in range(4000):
        mark[:] = 0
        got = sample_slots(slots[:50], 50, 5, np.uint64(seed), pin, 1, mark, 7, out, 0)
        assert got == 5 and len(set(out[:5].tolist())) == 5
        counts[out[:5]] += 1
    assert counts.min() > 0.8 * 400 and counts.max() < 1.2 * 400  # uniform: 4000 * 5 / 50 each


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
def test_prefetch_decisions_replay_exactly_through_the_reference_engine(scenario):
    trace = mixed_trace(2)
    setup = scenario.build(trace.pages)
    k = 8
    sim = CompiledSim(setup, trace.step, trace.page, trace.weight, k=k, sample=2, seed=5, regret_horizon=32,
                      diagnostics=False, obs_shapes=((k, N_FEATURES), n_context(len(setup.tiers))),
                      prefetch_decisions=True)
    rng = np.random.default_rng(0)
    victims, plan, n_pf = [], {}, 0
    status = sim.start()
    while status != DONE:
        a = int(rng.integers(int(sim.mask.sum())))
        if status == EVICT:
            victims.append(int(sim.sel[a]))
        else:
            n_pf += 1
            assert sim.mask[0] == 1  # slot 0 = no prefetch, always valid
            if a > 0:
                plan.setdefault(sim.step, []).append(int(sim.sel[a - 1]))
        status = sim.act(a)
    mc = sim.metrics()
    eng = Engine(setup, None, Replay(plan), external=True)
    gen = eng.simulate([(trace.step, trace.page, trace.weight)])
    it = iter(victims)
    try:
        next(gen)
        while True:
            gen.send(next(it))
    except StopIteration:
        pass
    assert n_pf > 100 and mc.prefetch_issued > 100
    assert mc.prefetch_issued == mc.prefetch_useful + mc.prefetch_wasted
    assert mc.to_dict() == eng.m.to_dict()


def test_hand_computed_episode():
    """seed-toy serial costs, 4 KiB pages, tier 0 = 2 pages, trace 0 1 2 0 2 (one per step).

    Backing (disk) -> HBM: (2500 + 20) + 4096 / 2 = 4568 µs; pool <-> HBM: (60 + 20) + 4096 / 40
    = 182.4 µs. Decisions (slots sorted least recently used first): step 2 evicts page 0 (slot 0),
    step 3 evicts page 2 (slot 1: keys are 1 and 2), step 4 evicts page 1 (slot 0).
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
    assert rewards == pytest.approx([-(182.4 + 4568), -2 * 182.4, -2 * 182.4], rel=1e-12)
    assert sum(rewards) == pytest.approx(-(m.stall_us - 2 * 4568), rel=1e-12)
    # The same victims through the reference engine give the same metrics.
    ref = Engine(sc.build(trace.pages), None, external=True)
    gen = ref.simulate([(trace.step, trace.page, None)])
    next(gen)
    for v in (0, 2):
        gen.send(v)
    with pytest.raises(StopIteration):
        gen.send(1)
    assert ref.m.to_dict() == m.to_dict()


@pytest.mark.parametrize("lower", ["lru", "same"])
def test_always_slot_zero_is_lru(lower):
    """Slot 0 is the least recently used page even when only a sample is shown: acting 0 reproduces LRU."""
    trace = mixed_trace(4, n_pages=400, n=3000)
    sc = Scenario(capacities=("8%", "5%", None, None), lower_policy=lower)
    env = gym.make("kvgym/Evict-v0", scenario=sc, trace=trace, k=6, sample=3)
    obs, info = env.reset(seed=1)
    n, done = 0, False
    while not done:
        assert env.unwrapped.eligible_pages().size > 6 or n < 50  # the sampled regime is exercised
        _obs, _r, term, trunc, info = env.step(0)
        n += 1
        done = term or trunc
    assert info["metrics"].to_dict() == simulate(trace, sc, "lru").to_dict()


def test_candidates_are_tail_plus_seeded_sample():
    trace = mixed_trace(5, n_pages=400, n=1500)
    sc = Scenario(capacities=("10%", None, None, None))

    def shown(seed, n=60):
        env = gym.make("kvgym/Evict-v0", scenario=sc, trace=trace, k=8, sample=3, backend="reference")
        env.unwrapped.attach_policy(lambda: __import__("kvgym.sim.policy", fromlist=["x"]).make_policy("lru"))
        env.reset(seed=seed)
        u = env.unwrapped
        out = []
        for _ in range(n):
            ctx = u._sim.engine.ctx
            elig = u.eligible_pages()
            key = np.maximum(ctx.last_access[elig], ctx.insert_step[elig])
            order = np.lexsort((np.arange(len(elig)), key))  # eligible come in insertion order
            cands = u.candidate_pages()
            assert len(elig) > 8
            assert cands[:8].tolist() == sorted(cands[:8].tolist(), key=lambda p: (key[elig.tolist().index(p)],
                                                                                 elig.tolist().index(p)))
            assert set(elig[order[:5]].tolist()) <= set(cands.tolist())  # the LRU tail (k - sample = 5)
            out.append(cands.copy())
            env.step(0)
        return out

    a, b, c = shown(0), shown(0), shown(1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


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


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 127, 128, 129, 300, 1000, 4097])
def test_compiled_sum_matches_numpy_bit_for_bit(n):
    rng = np.random.default_rng(n)
    a = rng.random(n) * 1e3
    assert np_sum(a, n) == a.sum()
