"""A hand-worked 4-tier example, every metric pinned, for both cost models.

Setup: profile ``seed-toy`` (tier costs below), capacities T0 1600 B, T1 1200 B, T2 1600 B,
T3 1,000,000 B (backing, never full); LRU in every tier; fp16 (no decode cost); prefetch on with
a prefetcher that proposes page D once, at step 4.

Pages (bytes): A=800, B=400, C=400, D=800, E=1200, F=400 (ids 0..5), one sequence.
Trace (20 accesses, 11 steps):
    s0: A B | s1: C A | s2: D | s3: B E | s4: A (+prefetch D) | s5: F C | s6: D B D
    s7: E | s8: A F | s9: C B | s10: A B

Transfer costs (α = src.read + dst.write µs, β = min bandwidth, bytes/µs):
    T3->T0: 2500+20 = 2520 + b/2     T2->T0: 400+20 = 420 + b/8     T1->T0: 60+20 = 80 + b/40
    T0->T1: 20+60 = 80 + b/40        T1->T2: 60+350 = 410 + b/8     T2->T3: 400+2000 = 2400 + b/2
    tier-0 hit (serial): 20.

Working (tier 0: LRU by order of use, every access and insertion being a use; lower tiers:
arrival order, the page that entered the tier first leaves first; pinned pages are skipped.
"X->Tn" = demotion; tier 0 listed least recently used first, lower tiers oldest arrival first):
    s0  A, B first touches (cold insert T3, promote).        T0 [A B] 1200
    s1  C first touch (fits, T0 1600); A hit.                 T0 [B C A]
    s2  D: evict B->T1, C->T1 (T1 800).                       T0 [A D] | T1 [B C]
    s3  B: T1 hit; evict A->T1. E: evict D->T1 needs room: C->T2, A->T2; D->T1.
                                                              T0 [B E] | T1 [D] | T2 [C A]
    s4  A: T2 hit. evict B->T1; evict E->T1 (D->T2, B->T2 first).
        T0 [A] T1 [E] T2 [C D B] (T2 peak 1600). Prefetch D from T2 -> T0 [A D].
    s5  F first touch: evict A->T1 (E->T2 needs room: C pinned, so B->T3). C: T2 hit.
                                                              T0 [D F C] | T1 [A] | T2 [E] | T3 [B]
    s6  D hit (prefetch useful); B: T3 hit, evict F->T1; D hit.   T0 [C B D] | T1 [A F]
    s7  E: T2 hit. evict C->T1 (A->T2 first); evict B->T1; evict D->T1 (F->T2, C->T2 first).
                                                              T0 [E] | T1 [B D] | T2 [A F C]
    s8  A: T2 hit. evict E->T1 (B->T2; D->T2 needs room: F pinned, C->T3). F: T2 hit.
                                                              T0 [A F] | T1 [E] | T2 [B D] | T3 [C]
    s9  C: T3 hit. B: T2 hit: evict A->T1 (E->T2 first, D->T3 first).
                                                              T0 [F C B] | T1 [A] | T2 [E] | T3 [D]
    s10 A: T1 hit: evict F->T1. B hit.                        T0 [C A B] | T1 [F] | T2 [E] | T3 [D]

Counts: hits 4 (s1 A, s6 D D, s10 B); tier hits T1 2 (s3 B, s10 A), T2 6 (s4 A, s5 C, s7 E,
s8 A F, s9 B), T3 2 (s6 B, s9 C); full misses 6 = first touches. Evictions T0 14, T1 11,
T2 3. Bytes: demand link3 4800 (8 transfers), link2 4000 (6), link1 1200 (2); prefetch link2
800 (1); demotions link1 9200 (14), link2 7600 (11), link3 1600 (3). Peaks: 1600, 1200, 1600,
1200 (E's cold insert).

Serial total (µs): T3->T0 8*2520+4800/2 = 22560; T2->T0 6*420+4000/8 = 3020; prefetch
420+800/8 = 520; T1->T0 2*80+1200/40 = 190; T0->T1 14*80+9200/40 = 1350; T1->T2
11*410+7600/8 = 5460; T2->T3 3*2400+1600/2 = 8000; hits 4*20 = 80. Total 41180.

Overlap (one FIFO channel per link; a copy takes α + bytes/β; compute = distinct fp16 bytes /
80 B/µs, floor 0): per-step stall (µs) 5640, 2720, 2920, 3120, 1490, 5320, 2720, 2000, 1960,
3345, 190 = 31425; compute 15+15+10+20+10+10+15+15+15+10+15 = 150; total 31575. E.g. s4
(t0 14460): link2 runs D's demotion 14460-14970 and B's -15430, then A's promotion 15430-15950
(stall 1490); the prefetch of D is issued at 15950 and lands at 16470, before s6 starts
(21290), so it is not late. s7 (t0 24025): link2 runs A->T2 24025-24535, F->T2 -24995,
C->T2 -25455, then E's promotion -26025 (stall 2000).
"""

from __future__ import annotations

import numpy as np
import pytest

from kvgym.sim import run
from kvgym.sim.policy import Prefetcher
from kvgym.sim.scenario import Scenario
from kvgym.traces.format import PageTable, Trace

A, B, C, D, E, F = range(6)
SIZES = [800, 400, 400, 800, 1200, 400]
STEPS = [[A, B], [C, A], [D], [B, E], [A], [F, C], [D, B, D], [E], [A, F], [C, B], [A, B]]


class OnceD(Prefetcher):
    name = "once-d"

    def propose(self, step, pages):
        return [D] if step == 4 else []


def trace() -> Trace:
    step = np.array([s for s, pp in enumerate(STEPS) for _ in pp], np.int64)
    page = np.array([p for pp in STEPS for p in pp], np.int64)
    n = len(SIZES)
    pt = PageTable(seq=np.zeros(n, np.int32), layer=np.zeros(n, np.int32), token_start=np.arange(n) * 16,
                   token_end=np.arange(n) * 16 + 16, fp16_bytes=np.array(SIZES, np.int64))
    return Trace(step, page, pt)


def scenario(cost_model: str, prefetch: bool = True) -> Scenario:
    return Scenario(name="handworked", profile="seed-toy", capacities=(1600, 1200, 1600, 1_000_000),
                    cost_model=cost_model, prefetch=prefetch)


COMMON = {"accesses": 20, "hits": 4, "misses": 16, "full_misses": 6, "first_touch_misses": 6, "tier_hits": [4, 2, 6, 2],
              "evictions": [14, 11, 3, 0], "link_bytes_demand": [0, 1200, 4000, 4800], "link_bytes_prefetch": [0, 0, 800, 0],
              "link_bytes_demotion": [0, 9200, 7600, 1600], "prefetch_issued": 1, "prefetch_useful": 1, "prefetch_wasted": 0,
              "prefetch_late": 0, "peak_bytes": [1600, 1200, 1600, 1200], "steps": 11, "tokens": 11}


@pytest.mark.parametrize("cost_model,times", [
    ("serial", {"stall_us": 41180.0, "compute_us": 0.0, "total_time_us": 41180.0}),
    ("overlap", {"stall_us": 31425.0, "compute_us": 150.0, "total_time_us": 31575.0}),
])
@pytest.mark.parametrize("engine", ["reference", "compiled"])
def test_handworked_every_metric(cost_model, times, engine):
    m = run(trace(), scenario(cost_model), "lru", OnceD(), engine=engine)
    got = m.to_dict()
    for k, v in {**COMMON, **times}.items():
        assert got[k] == v, k
    assert m.bytes_moved == 1200 + 4000 + 4800 + 800 + 9200 + 7600 + 1600
    assert m.hit_rate == 0.2


def test_compiled_engine_matches_the_specification_on_handworked_trace():
    for cm in ("serial", "overlap"):
        for prefetch in (False, True):
            s = scenario(cm, prefetch=prefetch)
            want = run(trace(), s, "lru", OnceD(), engine="reference").to_dict()
            assert run(trace(), s, "lru", OnceD()).to_dict() == want


def test_first_touch_create_moves_nothing():
    """Under first_touch="create" the six first touches are placed in T0 for free; the rest of the
    run is unchanged in kind. Checked numbers: the demand bytes on link 3 drop by the 4000 bytes of
    first touches and the 6 T3->T0 transfers (6*2520 + 4000/2 = 17120 µs) vanish from the serial
    total; the victims chosen are the same as with backing first touches, because promotion
    and creation make room identically."""
    s = scenario("serial").with_(first_touch="create")
    m = run(trace(), s, "lru", OnceD())
    assert m.full_misses == m.first_touch_misses == 6
    assert m.link_bytes_demand == [0, 1200, 4000, 800]
    assert m.evictions == [14, 11, 3, 0]
    assert m.total_time_us == 41180.0 - 17120.0
    # T3 now only receives demotions: B (s5, 400), C (s8, 400), D (s9, 800, after C left).
    assert m.peak_bytes[3] == 800
