"""Serving baselines and admission policies, rule by rule, on hand-traced examples.

The vLLM mirrors are checked against orders traced by hand through vLLM 0.33.0's
``LRUCachePolicy`` / ``ARCCachePolicy`` / ``CPUOffloadingManager._record_accesses`` (the calls are
the ones its manager makes: insert, on_request_access, on_store_miss, on_request_finished, evict).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from kvgym.baselines.admission import TinyLFUSketch
from kvgym.sim.policy import make_admission, make_policy
from kvgym.sim.serving import ServingConfig, ServingEngine
from kvgym.sim.tiers import Tier
from kvgym.traces.format import PageTable
from kvgym.traces.requests import RequestTrace


def fake_ctx(n: int, cap: int | None = None, tokens=None, parent=None):
    tok = np.full(n, 4, np.int64) if tokens is None else np.asarray(tokens, np.int64)
    pages = PageTable(seq=np.zeros(n, np.int32), layer=np.zeros(n, np.int32), token_start=np.zeros(n, np.int64),
                      token_end=tok, fp16_bytes=np.full(n, 2560, np.int64))
    return SimpleNamespace(n_pages=n, tier_of=np.full(n, -1, np.int8), page_bytes=np.ones(n, np.int64),
                           tiers=(Tier("t", cap, 0.0, 0.0, 1.0),), pages=pages, req=-1, block_pos=-1,
                           kids=np.zeros(n, np.int64), session_of_request=np.array([7, 8, 9]))


def bound(name: str, ctx, **params):
    p = make_policy(name, **params)
    p.bind(ctx)
    return p


def insert(p, ctx, b: int, req: int = -1, pos: int = -1, step: int = 0) -> None:
    ctx.req, ctx.block_pos = req, pos
    ctx.tier_of[b] = 0
    p.on_insert(b, 0, step)


def order(p, cands) -> list[int]:
    """Eviction order: repeatedly the lowest score (ties: the earliest candidate), without hooks."""
    c = np.asarray(cands, np.int64)
    s = p.scores(c, 0)
    return [int(x) for x in c[np.argsort(s, kind="stable")]]


A = np.array


def test_vllm_lru_ranks():
    ctx = fake_ctx(20)
    p = bound("vllm_lru", ctx)
    for j, b in enumerate((10, 11, 12)):       # request 0 stores its chain: ranks (1, -j)
        insert(p, ctx, b, req=0, pos=j)
    assert order(p, [10, 11, 12]) == [12, 11, 10]          # tails rank below heads
    p.on_request_finished(0, A([10, 11, 12]), A([0, 1, 2]), {10, 11, 12}, set(), 0)
    assert order(p, [10, 11, 12]) == [12, 11, 10]          # re-touched tail to head: head newest
    p.on_request_load(1, A([10, 11]), A([0, 1]), 0)        # request 1 (rank 5) loads 10, 11
    insert(p, ctx, 13, req=1, pos=2)                       # ... and stores 13 at position 2
    p.on_request_offer(1, A([13]), A([2]), 0)
    assert order(p, [10, 11, 12, 13]) == [12, 13, 11, 10]
    p.on_request_finished(1, A([10, 11, 13]), A([0, 1, 2]), {13}, {10, 11}, 0)
    assert order(p, [10, 11, 12, 13]) == [12, 13, 11, 10]
    # A request access never lowers a rank: request 2 touching 12 at position 0 lifts it to the top
    # of its own (new, highest) request rank only.
    p.on_request_offer(2, A([12]), A([0]), 0)
    assert order(p, [10, 11, 12, 13]) == [13, 11, 10, 12]


def test_vllm_lru_is_fifo_without_request_hooks():
    ctx = fake_ctx(5)
    p = bound("vllm_lru", ctx)
    for b in (3, 1, 4):
        insert(p, ctx, b)
    assert p.on_access is None                            # hits do not move anything
    assert order(p, [1, 3, 4]) == [3, 1, 4]


def test_vllm_arc_rules():
    ctx = fake_ctx(10, cap=3)
    p = bound("vllm_arc", ctx)
    for b in (1, 2, 3):
        insert(p, ctx, b)
    # Finished: all three only inserted -> MRU moves tail to head: T1 = [3, 2, 1].
    p.on_request_finished(0, A([1, 2, 3]), A([0, 1, 2]), {1, 2, 3}, set(), 0)
    assert list(p.t1) == [3, 2, 1]
    assert order(p, [1, 2, 3])[0] == 3                     # |T1| = 3 >= int(target) = 0: T1's LRU
    p.on_evict(3, 0, 0)
    assert list(p.b1) == [3]
    p.on_store_miss(1, A([3]), A([2]), 0)                  # B1 ghost hit: target += max(1, 0/1)
    assert p.target == 1.0
    insert(p, ctx, 3)
    assert list(p.t1) == [2, 1, 3] and not p.b1
    p.on_request_finished(1, A([1, 3]), A([0, 2]), {3}, {1}, 0)  # 1 reused: promoted once to T2
    assert list(p.t1) == [2, 3] and list(p.t2) == [1]
    assert order(p, [1, 2, 3])[0] == 2                     # |T1| = 2 >= int(1)
    assert order(p, [1])[0] == 1                           # T1 has no candidate: T2's LRU
    p.on_evict(2, 0, 0)
    p.on_evict(1, 0, 0)
    assert list(p.b1) == [2] and list(p.b2) == [1]
    p.on_store_miss(2, A([1]), A([0]), 0)                  # B2 ghost hit: target -= max(1, |B1|/|B2|)
    assert p.target == 0.0


def test_vllm_arc_ghosts_are_trimmed_to_capacity():
    ctx = fake_ctx(10, cap=2)
    p = bound("vllm_arc", ctx)
    for b in range(5):
        insert(p, ctx, b)
    for b in range(5):
        p.on_evict(b, 0, 0)
    assert list(p.b1) == [3, 4]


def test_lmcache_lru_touches_loaded_prefix_tail_to_head():
    ctx = fake_ctx(10)
    p = bound("lmcache_lru", ctx)
    for b in (1, 2, 3):
        insert(p, ctx, b)
    p.on_request_load(0, A([1, 2]), A([0, 1]), 0)
    assert order(p, [1, 2, 3]) == [3, 2, 1]
    lru = bound("lru", fake_ctx(10))
    for s, b in enumerate((1, 2, 3)):
        lru.on_insert(b, 0, s)
    for s, b in enumerate((1, 2), start=3):               # plain LRU touches in chain order
        lru.on_access(b, 0, s)
    assert order(lru, [1, 2, 3]) == [3, 1, 2]


def test_radix_lru_evicts_leaves_only():
    ctx = fake_ctx(5)
    p = bound("radix_lru", ctx)
    for s, b in enumerate((0, 1, 2)):                     # chain 0 <- 1 <- 2
        insert(p, ctx, b, step=s)
    ctx.kids[0], ctx.kids[1] = 1, 1
    assert order(p, [0, 1, 2])[0] == 2                    # 0 is least recent, but only 2 is a leaf
    ctx.kids[1] = 0                                       # 2 evicted: 1 becomes a leaf
    assert order(p, [0, 1])[0] == 1


def test_session_aware_keeps_active_sessions_chains():
    ctx = fake_ctx(6)
    ctx.pages.token_start[:] = [0, 4, 8, 0, 4, 8]         # two chains of 3 blocks
    p = bound("session_aware", ctx)
    for s, (b, r) in enumerate([(0, 0), (1, 0), (2, 0), (3, 1), (4, 1), (5, 1)]):
        ctx.req = r
        insert(p, ctx, b, req=r, step=s)
    ctx.req = 0
    p.on_access(0, 0, 10)                                 # session of request 0 is active again
    assert order(p, range(6)) == [5, 4, 3, 2, 1, 0]       # idle session first, deepest first


def test_hits_per_token_is_gdsf():
    ctx = fake_ctx(3, tokens=[4, 2, 4])
    p = bound("hits_per_token", ctx)
    for b in (0, 1, 2):
        insert(p, ctx, b)
    p.on_access(0, 0, 1)                                  # f0 = 2
    # H = 0 + f * tokens / 2560: block 1 (2 tokens) is worth least, then 2, then 0.
    assert order(p, [0, 1, 2]) == [1, 2, 0]
    p.on_evict(1, 0, 2)
    assert p.inflation == 1 * 2 / 2560
    insert(p, ctx, 1)
    assert p.h[1] == 2 / 2560 + 2 / 2560


def test_cost_aware_tiered_weighs_load_against_recompute():
    """In serving mode the refetch cost of ``cost_aware_tiered`` (GreedyDual on what getting a block
    back costs) is the load time from a lower copy, else the recompute time at its position."""
    tr = RequestTrace.from_chains([0.0], [13], [1], [[0, 1, 2, 3]], block_tokens=4)
    cfg = ServingConfig(profile="seed-toy", tiers=("tier0_gpu_fast", "tier2_host_ram"), capacities=(8, 8),
                        geometry="stories260k", gpu="toy")
    eng = ServingEngine(tr, cfg, [make_policy("cost_aware_tiered", freq_weight=0.0, size_weight=0.0),
                                  make_policy("lru")], make_admission("always"))
    eng._add(1, 0)                                        # block 0 has a host copy: 740 us to get back
    cost = eng.ctx[0].refetch_cost_us(A([0, 1]), 1)
    assert cost[0] == 740.0
    # Block 1 (position 1) must be recomputed: one iteration of 4 tokens at positions 4..7.
    assert cost[1] == eng.compute.iteration_us(4, (8 * 9 - 4 * 5) // 2, 0, 8)
    p = eng.policies[0]
    for b in (0, 1):
        eng._add(0, b)
        p.on_insert(b, 0, 0)
    # Recomputing a toy block takes microseconds, far less than the 740 us load: 1 goes first.
    assert order(p, [0, 1]) == [1, 0]
    assert p.H[0] == 740.0 + 1.0 and p.H[1] == cost[1] + 1.0     # H = L + (refetch + min_cost_us)


def test_threshold_admission_mirrors_vllm_tracker():
    a = make_admission("threshold", store_threshold=2, max_tracker_size=3)
    a.on_offer(A([1, 2, 3]))
    assert dict(a.counts) == {1: 1, 2: 1, 3: 1}
    a.on_offer(A([1, 4]))                                 # 1 tracked: +1, protected; 4 evicts the oldest (2)
    assert list(a.counts.items()) == [(3, 1), (1, 2), (4, 1)]
    assert list(a.admit(A([1, 2, 4]))) == [True, False, False]
    a.on_offer(A([5, 6]))
    assert list(a.counts.items()) == [(4, 1), (5, 1), (6, 1)]
    b = make_admission("threshold", store_threshold=2, max_tracker_size=2)
    b.on_offer(A([1, 2]))
    b.on_offer(A([1, 2, 3]))                              # every tracked key protected: 3 is not tracked
    assert dict(b.counts) == {1: 2, 2: 2} and not b.admit(A([3]))[0]
    one = make_admission("threshold", store_threshold=1)
    assert one.counts is None and one.admit(A([9]))[0]


def test_tinylfu_sketch():
    s = TinyLFUSketch(100)
    s.increment(42)
    assert s.estimate(42) == 1
    s.increment(42)
    s.increment(42)
    assert s.estimate(42) == 3 and s.estimate(99) == 0
    for _ in range(30):
        s.increment(7)
    assert s.estimate(7) == 15                            # 4-bit counters saturate
    small = TinyLFUSketch(10)                             # 2 words, reset at 100 samples
    for k in range(100):
        small.increment(1000 + k)
    assert small.samples < 100                            # the 100th sample halved every counter
    assert sum((w).bit_count() for w in small.table) > 0


def test_presence_lfu_and_tinylfu_thresholds():
    ctx = SimpleNamespace(tiers=(Tier("host", 100, 0, 0, 1.0),), page_bytes=np.ones(5, np.int64), n_pages=5)
    t, p = make_admission("tinylfu"), make_admission("presence_lfu", min_lfu_count=2)
    for a in (t, p):
        a.bind(ctx)
        for _ in range(2):
            a.on_reference(3)
        for _ in range(3):
            a.on_reference(4)
    assert list(t.admit(A([0, 3, 4]))) == [False, True, True]   # estimate >= 2
    assert list(p.admit(A([0, 3, 4]))) == [False, False, True]  # estimate > 2
