"""The built-in policies and prefetchers: registry, docs, parameter errors, exact victim
sequences, the KV heuristics, the prefetchers, and engine invariants for every pair."""

from __future__ import annotations

import sys
from itertools import pairwise

import numpy as np
import pytest

from kvgym.baselines.common import cache_setup
from kvgym.baselines.sequential import successors
from kvgym.errors import ConfigError
from kvgym.sim.context import Future
from kvgym.sim.engine import Engine
from kvgym.sim.policy import make_policy, make_prefetcher, policy_names, prefetcher_names
from kvgym.sim.scenario import Scenario
from kvgym.traces.format import PageTable, Trace

ORIGINAL = ["lru", "windowed_recency", "heavy_hitter", "cost_aware", "predictive", "regret_aware"]
CLASSIC = ["fifo", "lfu", "arc", "sieve", "s3fifo", "clock"]
KV = ["streaming_llm", "h2o", "cost_aware_tiered"]
ORACLES = ["belady", "belady_size"]
POLICIES = ORIGINAL + CLASSIC + KV + ORACLES
PREFETCHERS = ["none", "sequential", "markov", "oracle_lookahead"]


def test_every_policy_and_prefetcher_is_registered():
    assert set(POLICIES) <= set(policy_names())
    assert set(PREFETCHERS) <= set(prefetcher_names())


@pytest.mark.parametrize("name", sorted(set(POLICIES) | set(policy_names())) + PREFETCHERS)
def test_docstring_states_rule_source_parameters(name):
    obj = make_prefetcher(name) if name in PREFETCHERS else make_policy(name)
    doc = sys.modules[type(obj).__module__].__doc__ or ""
    assert f"``{name}``" in doc
    assert "Rule" in doc and "Source" in doc
    assert "Parameters" in doc or "No parameters" in doc
    assert obj.privileged == (name in ORACLES + ["oracle_lookahead"])


BAD = [
    ("windowed_recency", {"window_size": 0}, "window_size"),
    ("windowed_recency", {"window_size": 2.5}, "window_size"),
    ("cost_aware", {"size_penalty": float("nan")}, "size_penalty"),
    ("cost_aware", {"freq_weight": "2"}, "freq_weight"),
    ("regret_aware", {"regret_horizon": 0}, "regret_horizon"),
    ("regret_aware", {"decay": -0.5}, "decay"),
    ("regret_aware", {"regret_weight": float("inf")}, "regret_weight"),
    ("clock", {"bits": 0}, "bits"),
    ("clock", {"bits": 17}, "bits"),
    ("clock", {"bits": True}, "bits"),
    ("s3fifo", {"small_size_ratio": 0.0}, "small_size_ratio"),
    ("s3fifo", {"small_size_ratio": 1.0}, "small_size_ratio"),
    ("s3fifo", {"ghost_size_ratio": -1}, "ghost_size_ratio"),
    ("s3fifo", {"move_to_main_threshold": 0}, "move_to_main_threshold"),
    ("streaming_llm", {"sink_tokens": -1}, "sink_tokens"),
    ("streaming_llm", {"window_tokens": None}, "window_tokens"),
    ("h2o", {"window_tokens": -4}, "window_tokens"),
    ("cost_aware_tiered", {"min_cost_us": 0}, "min_cost_us"),
    ("cost_aware_tiered", {"size_weight": -1}, "size_weight"),
    ("lru", {"window": 3}, "window"),
]


@pytest.mark.parametrize("name,params,field", BAD)
def test_bad_policy_parameters(name, params, field):
    with pytest.raises(ConfigError, match=field) as e:
        make_policy(name, **params)
    assert name in str(e.value)


@pytest.mark.parametrize("name,params,field", [
    ("markov", {"min_confidence": 0}, "min_confidence"),
    ("markov", {"max_prefetches": -1}, "max_prefetches"),
    ("sequential", {"depth": 0}, "depth"),
    ("oracle_lookahead", {"horizon": 0}, "horizon"),
    ("oracle_lookahead", {"depth": 1.5}, "depth"),
    ("none", {"depth": 1}, "depth"),
])
def test_bad_prefetcher_parameters(name, params, field):
    with pytest.raises(ConfigError, match=field):
        make_prefetcher(name, **params)


def test_cache_setup_checks_capacity():
    pages = PageTable.uniform(4, 4096)
    with pytest.raises(ConfigError, match="capacity_bytes"):
        cache_setup(pages, 4095)
    with pytest.raises(ConfigError, match="capacity_bytes"):
        cache_setup(pages, 0)
    setup = cache_setup(pages, 8192)
    assert [t.capacity_bytes for t in setup.tiers] == [8192, None] and setup.backing == 1


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown policy 'nope'; valid: .*s3fifo"):
        make_policy("nope")
    with pytest.raises(ConfigError, match="unknown prefetcher 'nope'; valid: markov"):
        make_prefetcher("nope")


# -- exact victims on a tiny single-cache trace (worked by hand; libcachesim agrees) --------

class Recorder:
    """Wraps a policy and records its tier-0 victims (everything else is delegated)."""

    def __init__(self, policy):
        self.inner = policy
        self.victims: list[int] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def on_evict(self, page, tier, step):
        if tier == 0:
            self.victims.append(page)
        if self.inner.on_evict is not None:
            self.inner.on_evict(page, tier, step)


def run_cache(policy, pages, capacity_pages: int, **params):
    trace = Trace.from_pages(pages, fp16_bytes=1)
    rec = Recorder(make_policy(policy, **params))
    future = Future(trace.page, len(trace.pages)) if rec.privileged else None
    m = Engine(cache_setup(trace.pages, capacity_pages), rec, future=future).run(trace)
    return m.misses, rec.victims


TRACE = [0, 1, 2, 1, 0, 3, 4, 0, 1]


@pytest.mark.parametrize("policy,misses,victims", [
    ("lru", 6, [2, 1, 3]),         # hits refresh recency
    ("fifo", 7, [0, 1, 2, 3]),     # hits change nothing
    ("clock", 7, [2, 0, 1, 3]),    # 0 and 1 referenced: second chance, then 2 goes
    ("sieve", 7, [2, 0, 1, 3]),    # hand clears 0 and 1, evicts 2, restarts at the oldest
    ("lfu", 5, [2, 3]),            # 0 and 1 have count 2
    ("arc", 5, [2, 3]),            # 0 and 1 moved to T2; T1 (2, then 3) is larger than p = 0
    ("s3fifo", 7, [2, 0, 1, 3]),   # small queue of 0 pages: main is a 2-bit clock
    ("belady", 5, [2, 3]),         # 2 and 3 are never used again
    ("belady_size", 5, [2, 3]),
])
def test_victims_by_hand(policy, misses, victims):
    assert run_cache(policy, TRACE, 3) == (misses, victims)


def test_s3fifo_small_queue_and_ghost():
    # 20-page cache: small queue of int(20 * 0.1) = 2 pages, main 18, ghost 18.
    misses, victims = run_cache("s3fifo", list(range(20)) + [20, 21, 0, 20, 22], 20)
    # 0, 1 enter small; before the first eviction 2..19 find small full and enter main.
    # 20: small evicts 0 (counter 0 < 2) to the ghost; 20 enters small. 21: 1 goes the same way.
    # 0: ghost hit; small still within its share, so small evicts 20 (to the ghost); 0 enters main.
    # 20: ghost hit; main now over its share (19 > 18) evicts its oldest, 2. 22: main over (19), 3 goes.
    assert victims == [0, 1, 20, 2, 3]
    assert misses == 25


def test_arc_ghost_hit_moves_p():
    pol = make_policy("arc")
    trace = Trace.from_pages([0, 1, 2, 0, 3, 1], fp16_bytes=1)
    rec = Recorder(pol)
    Engine(cache_setup(trace.pages, 3), rec).run(trace)
    # 0 hits: T2 = [0]. 3 evicts T1's LRU 1 into B1 (|T1| = 2 > p = 0). 1 is a B1 ghost hit:
    # p += max(|B2|/|B1|, 1) = 1 page; REPLACE evicts T1's LRU 2 (|T1| = 2 > 1); 1 enters T2.
    assert rec.victims == [1, 2]
    assert pol.p == 1.0 and list(pol.t1) == [3] and list(pol.t2) == [0, 1]
    assert list(pol.b1) == [2] and list(pol.b2) == []


def test_clock_with_two_bit_counters():
    # bits=2: counters reach 3. At 3: queue 0 (2), 1 (1), 2 (0): the hand lowers 0 and 1 and
    # moves them to the head, evicts 2. At 4: 0 (1), 1 (0), 3 (0): 0 lowered and moved, 1 goes.
    assert run_cache("clock", [0, 0, 0, 1, 1, 2, 3, 4], 3, bits=2) == (5, [2, 1])


# -- KV heuristics -------------------------------------------------------------------

def seq_pages(n: int, tokens: int = 16, seq=None) -> PageTable:
    i = np.arange(n, dtype=np.int64)
    return PageTable(seq=np.zeros(n, np.int32) if seq is None else np.asarray(seq, np.int32),
                     layer=np.zeros(n, np.int32), token_start=i * tokens, token_end=(i + 1) * tokens,
                     fp16_bytes=np.full(n, 4096, np.int64))


def test_streaming_llm_keeps_sinks_and_window():
    pages = seq_pages(10)
    trace = Trace.from_pages(np.arange(10), pages)  # decode: one new 16-token page per step
    rec = Recorder(make_policy("streaming_llm", sink_tokens=4, window_tokens=32))
    eng = Engine(cache_setup(pages, 4 * 4096), rec)
    eng.run(trace)
    # Page 0 holds the sinks; the window (last 32 tokens) covers the two newest pages.
    assert rec.victims == [1, 2, 3, 4, 5, 6]
    assert sorted(eng.residents(0).tolist()) == [0, 7, 8, 9]


def test_streaming_llm_per_sequence_lengths():
    # Two sequences of 4 pages, interleaved; cache of 5 pages.
    seq = [0, 0, 0, 0, 1, 1, 1, 1]
    pages = PageTable(seq=np.array(seq, np.int32), layer=np.zeros(8, np.int32),
                      token_start=np.array([0, 16, 32, 48] * 2), token_end=np.array([16, 32, 48, 64] * 2),
                      fp16_bytes=np.full(8, 4096, np.int64))
    trace = Trace.from_pages([0, 4, 1, 5, 2, 6, 3, 7], pages)
    rec = Recorder(make_policy("streaming_llm", sink_tokens=1, window_tokens=16))
    eng = Engine(cache_setup(pages, 5 * 4096), rec)
    eng.run(trace)
    # At 6 (seq 1 now 48 tokens): middle pages are 1 (seq 0: 48 - 32 = 16 tokens from its end)
    # and 5 (seq 1: 48 - 32): a tie, 1 was inserted first. At 3 (seq 0 now 64): 5 and 2 are both
    # 16 from their ends, 5 came first. At 7 (seq 1 now 64): 2 and 6 tie, 2 goes. Sinks 0, 4 stay.
    assert rec.victims == [1, 5, 2]
    assert sorted(eng.residents(0).tolist()) == [0, 3, 4, 6, 7]


def test_h2o_evicts_least_attention_outside_the_window():
    pages = seq_pages(6)
    trace = Trace.from_pages([0, 1, 2, 3, 1, 4], pages, weight=[5.0, 0.1, 3.0, 1.0, 0.2, 0.5])
    rec = Recorder(make_policy("h2o", window_tokens=0))
    Engine(cache_setup(pages, 3 * 4096), rec).run(trace)
    # 3 evicts 1 (0.1); 1 comes back (0.1 + 0.2) and evicts 3 (1.0 > 0.3? no: 3 has 1.0, 1 is new)...
    # at the second miss of 1 the candidates are 0 (5.0), 2 (3.0), 3 (1.0): 3 goes; at 4: 0, 2, 1 (0.3): 1 goes.
    assert rec.victims == [1, 3, 1]


def test_h2o_window_and_frequency_fallback():
    pages = seq_pages(5)
    trace = Trace.from_pages([0, 0, 0, 1, 2, 3, 4], pages)  # no weights: access counts stand in
    rec = Recorder(make_policy("h2o", window_tokens=16))
    Engine(cache_setup(pages, 3 * 4096), rec).run(trace)
    # At 3: window = page 3 (it is not resident yet), candidates 0 (3 accesses), 1, 2 (1 each): 1 goes.
    # At 4: 2 goes (1 access) before 0 (3) and 3 (now recent? no: page 4 is the newest, 3 is out).
    assert rec.victims == [1, 2]


def test_cost_aware_tiered_scores():
    """GDSF priorities by hand: H = L + (1 + freq) * (refetch + 1 µs) / bytes (default exponents 1)."""
    pages = PageTable(seq=np.zeros(4, np.int32), layer=np.zeros(4, np.int32), token_start=np.arange(4) * 16,
                      token_end=np.arange(1, 5) * 16, fp16_bytes=np.array([4096, 4096, 16384, 1024]))
    scen = Scenario(name="t", profile="seed-toy", capacities=(64000, 128000, 500000, 4000000), cost_model="serial",
                    decode="parity", quantization="fp8")
    setup = scen.build(pages)
    pol = make_policy("cost_aware_tiered")
    trace = Trace.from_pages([0, 1, 0, 2, 3, 0], pages)
    Engine(setup, pol).run(trace)
    assert setup.page_bytes.tolist() == [2048, 2048, 8192, 512]  # fp8: half the fp16 bytes
    # Refetch from tier 1 (seed-toy: α 60+20 µs, β 40 bytes/µs) plus fp8's 10 µs decode penalty, + 1 µs.
    cost = [((80.0 + 2048 / 40.0) + 10.0) + 1.0, ((80.0 + 2048 / 40.0) + 10.0) + 1.0,
            ((80.0 + 8192 / 40.0) + 10.0) + 1.0, ((80.0 + 512 / 40.0) + 10.0) + 1.0]
    assert cost == pytest.approx([142.2, 142.2, 295.8, 103.8], rel=1e-15)
    want = [(4.0 * cost[0]) / 2048.0, (2.0 * cost[1]) / 2048.0, (2.0 * cost[2]) / 8192.0, (2.0 * cost[3]) / 512.0]
    assert pol.inflation == 0.0 and pol.scores(np.arange(4), 6).tolist() == want
    # The big page goes first, then 1 (one use), then 0; 3 (small: costly per byte) stays.
    assert np.argsort(pol.scores(np.arange(4), 6), kind="stable").tolist() == [2, 1, 0, 3]


def test_cost_aware_tiered_inflation_ages_pages():
    """Tier 0 holds two pages: C's arrival evicts A (tied with B, inserted first), L becomes H(A),
    and C's priority starts from L."""
    pages = PageTable.uniform(3, 4000)
    scen = Scenario(name="t", profile="seed-toy", capacities=(8000, 128000, 500000, 4000000), cost_model="serial")
    pol = make_policy("cost_aware_tiered")
    Engine(scen.build(pages), pol).run(Trace.from_pages([0, 1, 2], pages))
    value = (2.0 * ((80.0 + 4000 / 40.0) + 1.0)) / 4000.0  # (1 + 1 use) * (refetch + 1) / bytes
    assert pol.inflation == value and pol.H[2] == value + value and pol.H[1] == value


# -- prefetchers ----------------------------------------------------------------------

def test_sequential_successors_with_head_groups():
    # seq 0 layer 0: blocks 0,1 with two head groups each; seq 0 layer 1: blocks 0,1; seq 1: one block.
    pages = PageTable(seq=np.array([0, 0, 0, 0, 0, 0, 1], np.int32), layer=np.array([0, 0, 0, 0, 1, 1, 0], np.int32),
                      token_start=np.array([0, 0, 16, 16, 0, 16, 0]), token_end=np.array([16, 16, 32, 32, 16, 32, 16]),
                      fp16_bytes=np.full(7, 1024, np.int64))
    assert successors(pages).tolist() == [2, 3, -1, -1, 5, -1, -1]


def test_sequential_prefetch_in_engine():
    pages = seq_pages(12)
    trace = Trace.from_pages(np.arange(12), pages)
    scen = Scenario(name="s", profile="seed-toy", capacities=(5 * 4096, 128000, 500000, 4000000), cost_model="serial",
                    prefetch=True, max_prefetch=2)
    m = Engine(scen.build(pages), make_policy("lru"), make_prefetcher("sequential", depth=2)).run(trace)
    # Step 0 misses 0 and prefetches 1, 2; step 1 hits 1 and prefetches 3 (2 is resident); ...
    assert (m.misses, m.prefetch_issued, m.prefetch_useful, m.prefetch_wasted) == (1, 11, 11, 0)


def test_markov_list_matches_the_original_rule():
    pre = make_prefetcher("markov", min_confidence=2, max_prefetches=2)
    pages = seq_pages(8)
    pre.bind(Engine(cache_setup(pages, 8 * 4096), make_policy("lru")).ctx)
    for p in [0, 1, 0, 2, 0, 1, 0, 3, 0, 3, 0]:
        pre.on_access(p, -1, 0)
    # Successors of 0 in first-seen order with their counts; the top two are 1 and 3.
    assert pre.next[0] == {1: 2, 2: 1, 3: 2}
    assert pre.successors(0) == [1, 3]
    assert pre.propose(0, np.array([0])) == [1, 3]
    assert pre.propose(0, np.array([2])) == []  # 2 -> 0 once: below min_confidence
    pre2 = make_prefetcher("markov", min_confidence=2, max_prefetches=1)
    pre2.bind(pre.ctx)
    for p in [0, 2, 0, 1, 0, 1, 0, 2, 0]:
        pre2.on_access(p, -1, 0)
    # Top-1 first (2 and 1 tie at 2; 2 was recorded first), then the filter.
    assert pre2.propose(0, np.array([0])) == [2]
    assert pre2.propose(0, np.array([0, 2])) == []  # the step's own pages are never proposed


def test_oracle_lookahead_and_none():
    pages = seq_pages(6)
    trace = Trace.from_pages([0, 1, 2, 0, 3, 4, 5, 1], pages)
    scen = Scenario(name="s", profile="seed-toy", capacities=(3 * 4096, 128000, 500000, 4000000), cost_model="serial",
                    prefetch=True, max_prefetch=2)
    future = Future(trace.page, len(pages))

    def run(policy, prefetcher, **kw):
        pre = make_prefetcher(prefetcher, **kw)
        return Engine(scen.build(pages), make_policy(policy), pre, future=future).run(trace)

    # Each step prefetches the next page not in tier 0; every prefetch is used. With LRU the
    # prefetch of 3 (step 2) evicts 0, needed at step 3: what to evict is the policy's choice.
    m = run("lru", "oracle_lookahead", depth=1)
    assert (m.misses, m.prefetch_issued, m.prefetch_useful) == (2, 6, 6)
    m = run("belady", "oracle_lookahead", depth=1)
    assert (m.misses, m.prefetch_issued, m.prefetch_useful) == (1, 6, 6)
    m0 = run("lru", "none")
    assert (m0.misses, m0.prefetch_issued) == (7, 0)
    with pytest.raises(ConfigError, match="privileged future view"):
        Engine(scen.build(pages), make_policy("lru"), make_prefetcher("oracle_lookahead"))
    with pytest.raises(ConfigError, match="privileged future view"):
        Engine(scen.build(pages), make_policy("belady"))


# -- every policy x prefetcher in a 4-tier hierarchy, variable sizes, multi-page steps --

def random_run(seed: int, n_pages: int = 40, n_steps: int = 90):
    rng = np.random.Generator(np.random.PCG64(seed))
    sizes = rng.integers(1500, 4700, n_pages)
    i = np.arange(n_pages)
    pages = PageTable(seq=(i % 3).astype(np.int32), layer=((i // 3) % 2).astype(np.int32),
                      token_start=(i // 6) * 16, token_end=(i // 6 + 1) * 16, fp16_bytes=sizes.astype(np.int64))
    steps, acc = [], []
    for s in range(n_steps):
        k = int(rng.integers(1, 4))
        hot = rng.random() < 0.6
        chosen = rng.choice(8 if hot else n_pages, size=k, replace=False)
        steps += [s] * k
        acc += chosen.tolist()
    weight = rng.random(len(acc)).astype(np.float32)
    return Trace.from_pages(acc, pages, steps=steps, weight=weight)


def checked_chunks(trace, eng):
    """One step per chunk; the engine's invariants are checked between steps."""
    for a, z in pairwise(trace.step_bounds()):
        yield trace.step[a:z], trace.page[a:z], trace.weight[a:z]
        eng.check_invariants()


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("lower", ["lru", "same"])
def test_every_policy_keeps_invariants(policy, lower):
    trace = random_run(3)
    for prefetcher in PREFETCHERS:
        # lower_policy "same" also places first touches straight into tier 0 (first_touch "create").
        scen = Scenario(name="r", profile="seed-toy", capacities=(16000, 24000, 60000, None), cost_model="overlap",
                        quantization="int4", prefetch=True, max_prefetch=2, lower_policy=lower,
                        first_touch="create" if lower == "same" else "backing")
        setup = scen.build(trace.pages)
        setup.check_steps(trace.step, trace.page)
        pol, pre = make_policy(policy), make_prefetcher(prefetcher)
        future = Future(trace.page, len(trace.pages))
        eng = Engine(setup, pol, pre, future=future)
        for _ in eng.simulate(checked_chunks(trace, eng)):
            raise AssertionError("no decision expected")
        eng.check_invariants()
        m = eng.m
        assert m.hits + m.misses == m.accesses == len(trace)
        assert m.prefetch_useful + m.prefetch_wasted == m.prefetch_issued
        if prefetcher == "none":
            assert m.prefetch_issued == 0


class ScoresTwice:
    """Asks the policy for scores of other candidate sets before every real decision."""

    def __init__(self, policy):
        self.inner = policy

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def scores(self, cands, step):
        self.inner.scores(cands[::-1], step)
        self.inner.scores(cands[: max(1, len(cands) // 2)], step)
        return self.inner.scores(cands, step)


@pytest.mark.parametrize("policy", POLICIES)
def test_scores_have_no_side_effects(policy):
    trace = random_run(5)
    scen = Scenario(name="r", profile="seed-toy", capacities=(16000, 24000, 60000, None), cost_model="serial",
                    lower_policy="same")
    setup = scen.build(trace.pages)
    future = Future(trace.page, len(trace.pages))
    plain = Engine(setup, make_policy(policy), future=future).run(trace)
    twice = Engine(setup, ScoresTwice(make_policy(policy)), future=future).run(trace)
    assert plain.to_dict() == twice.to_dict()
    assert sum(plain.evictions) > 20
