"""One harness for every agent: baselines through the env equal whole-trace runs of the engine."""

from __future__ import annotations

import numpy as np
import pytest

import kvgym  # noqa: F401
from kvgym.envs.agents import PolicyAgent, RandomAgent
from kvgym.envs.diagnostics import candidate_report
from kvgym.envs.evaluate import eligible_bound, evaluate
from kvgym.errors import ConfigError
from kvgym.sim.engine import simulate
from kvgym.sim.policy import policy_names, prefetcher_names
from kvgym.sim.scenario import Scenario
from kvgym.traces.format import PageTable, Trace
from kvgym.workloads import make_trace, workload_names

TOY = Scenario(name="toy-same", profile="seed-toy", capacities=(64000, 128000, 500000, 4000000),
               cost_model="serial", decode="parity", lower_policy="same")
TOY_LRU = Scenario(name="toy-lru-fp8", profile="seed-toy", capacities=(48000, 96000, 400000, 4000000),
                   cost_model="serial", decode="parity", quantization="fp8")
H200 = Scenario(name="h200-fp8", capacities=("5%", "2%", None, None), quantization="fp8")
H200_CREATE = Scenario(name="h200-create", capacities=("6%", None, None, None), first_touch="create")


def zipf_trace(seed: int, n_pages: int = 120, n: int = 500, per_step: int = 1, page_bytes: int = 4096,
               layers: int = 1) -> Trace:
    rng = np.random.default_rng(seed)
    p = (rng.zipf(1.2, n) - 1) % n_pages
    return Trace.from_pages(p, PageTable.uniform(n_pages, page_bytes, layers=layers), steps=np.arange(n) // per_step,
                            weight=rng.random(n).astype(np.float32))


def toy_test_set() -> list[Trace]:
    """The test set: two kv-hierarchy-lab patterns (test-split seeds) and a Zipf stream."""
    names = [n for n in ("long_tail_mix", "adversarial_burst") if n in workload_names()]
    return [make_trace(n, 1100) for n in names] + [zipf_trace(0)]


@pytest.mark.parametrize("policy", policy_names())
def test_every_baseline_through_the_env_equals_the_fast_path(policy):
    """PolicyAgent with k large enough to show every tier-0 resident gives the engine's metrics, exactly."""
    cases = [(TOY, t) for t in toy_test_set()] + [(TOY_LRU, toy_test_set()[0])]
    cases.append((H200, zipf_trace(1, n_pages=400, n=900, per_step=3, page_bytes=65536, layers=4)))
    cases.append((H200_CREATE, zipf_trace(2, n_pages=300, n=600, per_step=3, page_bytes=65536, layers=4)))
    for scenario, trace in cases:
        agent = PolicyAgent(policy)
        m = evaluate(agent, scenario, trace, k="all")
        assert m.to_dict() == simulate(trace, scenario, policy).to_dict(), (policy, scenario.name)
        assert agent.outside == 0 and agent.decisions == m.evictions[0]


@pytest.mark.parametrize("policy,prefetcher", [("lru", "sequential"), ("predictive", "markov"),
                                               ("belady", "oracle_lookahead")])
def test_baselines_with_a_prefetcher_equal_the_fast_path(policy, prefetcher):
    if policy not in policy_names() or prefetcher not in prefetcher_names():
        pytest.skip(f"{policy}/{prefetcher} not registered")
    sc = Scenario(name="toy-pf", profile="seed-toy", capacities=(64000, 128000, 500000, 4000000),
                  cost_model="serial", decode="parity", lower_policy="same", prefetch=True)
    trace = make_trace("prefetch_friendly", 1100) if "prefetch_friendly" in workload_names() else zipf_trace(2)
    m = evaluate(PolicyAgent(policy), sc, trace, k="all", prefetcher=prefetcher)
    assert m.prefetch_issued > 0
    assert m.to_dict() == simulate(trace, sc, policy, prefetcher).to_dict()


def test_outside_rate_with_a_small_k():
    """LRU's own choice is always the LRU tail's first slot; LFU's often is not among 4 shown."""
    trace = zipf_trace(3, n_pages=300, n=2000)
    sc = Scenario(profile="seed-toy", capacities=(128000, 256000, 1000000, 8000000), cost_model="serial")
    lru, lfu = PolicyAgent("lru"), PolicyAgent("lfu")
    m_lru = evaluate(lru, sc, trace, k=4, sample=1)
    evaluate(lfu, sc, trace, k=4, sample=1)
    assert lru.decisions > 500 and lru.outside == 0
    assert m_lru.to_dict() == simulate(trace, sc, "lru").to_dict()
    assert 0 < lfu.outside < lfu.decisions and lfu.outside_rate == lfu.outside / lfu.decisions


def test_candidate_report():
    trace = zipf_trace(4, n_pages=300, n=1500)
    sc = Scenario(profile="seed-toy", capacities=(128000, 256000, 1000000, 8000000), cost_model="serial")
    rows = {r["policy"]: r for r in candidate_report(sc, trace, ["lru", "lfu", "belady"], k=6, sample=2)}
    assert rows["lru"]["outside_rate"] == 0 and rows["lru"]["hit_rate"] == rows["lru"]["hit_rate_full"]
    assert rows["lfu"]["outside_rate"] > 0
    for r in rows.values():
        assert 0 <= r["belady_shown_rate"] <= 1 and r["decisions"] > 100
    assert rows["belady"]["belady_shown_rate"] < 1  # 6 of ~30 residents: the farthest is not always shown
    full = {r["policy"]: r for r in candidate_report(sc, trace, ["belady"], k=eligible_bound(sc, trace))}
    assert full["belady"]["belady_shown_rate"] == 1.0 and full["belady"]["outside_rate"] == 0


def test_evaluate_any_agent_kind_and_determinism():
    trace = zipf_trace(5, n_pages=300, n=1500)
    sc = Scenario(profile="seed-toy", capacities=(128000, 256000, 1000000, 8000000), cost_model="serial")
    a = evaluate(RandomAgent(seed=1), sc, trace, k=8)
    b = evaluate(RandomAgent(seed=1), sc, trace, k=8)
    c = evaluate(lambda obs, info: 0, sc, trace, k=8)  # a plain callable: always the LRU slot
    assert a.to_dict() == b.to_dict() and a.accesses == len(trace)
    assert c.to_dict() == simulate(trace, sc, "lru").to_dict()
    w = evaluate(lambda obs, info: 0, sc, trace, k=8, window=(300, 900))
    assert w.accesses == 600
    roomy = Trace.from_pages([0, 1, 0, 1], fp16_bytes=4096)
    m = evaluate(RandomAgent(), sc, roomy)  # never needs a decision: metrics still come back
    assert (m.accesses, m.misses, m.evictions[0]) == (4, 2, 0)
    with pytest.raises(ConfigError, match="act"):
        evaluate(object(), sc, trace)
    with pytest.raises(ConfigError, match="attach"):
        PolicyAgent("lru").act({}, {})
    with pytest.raises(ConfigError, match="unknown policy"):
        PolicyAgent("no_such_policy")


def test_diagnostics_info_flag():
    import gymnasium as gym

    trace = zipf_trace(6, n_pages=300, n=800)
    sc = Scenario(profile="seed-toy", capacities=(128000, 256000, 1000000, 8000000), cost_model="serial")
    env = gym.make("kvgym/Evict-v0", scenario=sc, trace=trace, k=4, diagnostics=True)
    _, info = env.reset(seed=0)
    flags = [info["belady_in_candidates"]]
    for _ in range(100):
        _obs, _r, term, trunc, info = env.step(0)
        if term or trunc:
            break
        flags.append(info["belady_in_candidates"])
    assert set(flags) == {True, False}
    checked, shown = env.unwrapped.belady_stats
    assert checked == len(flags) and shown == sum(flags)
