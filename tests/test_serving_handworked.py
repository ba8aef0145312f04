"""Serving mode worked by hand: four requests, two tiers, every number, under each write policy.

Setup. Blocks of ``B = 4`` tokens of the ``stories260k`` geometry (5 layers, 4 KV heads, head
dim 8: 640 fp16 bytes per token, 2,560 bytes per block). Profile ``seed-toy``: tier 0 =
``tier0_gpu_fast`` with 3 blocks, tier 1 = ``tier2_host_ram`` with 4 blocks. A load of one
block host -> GPU takes ``α + bytes/β = (400 + 20) + 2560 / min(8, 80) = 420 + 320 = 740 µs``.
Compute: GPU ``toy`` (1e6 FLOP/µs, 1e6 bytes/µs). stories260k has hidden 64, MLP 172, vocab 512,
8 query heads: linear parameters per layer ``64*64 + 2*64*32 + 64*64 + 3*64*172 = 45,312``, so
per computed token ``2*5*45,312 = 453,120`` FLOPs, per sampled token ``2*64*512 = 65,536``,
per attended (query, key) pair ``4*5*8*8 = 1,280``; weights ``2*(5*45,312 + 64*512) = 518,656``
bytes per iteration (the memory side never wins below).

Prefill chunks (every request has one output token, so it finishes when its prefill does):

- 9 tokens from 0: N 9, pairs ``9*10/2 = 45``: ``4,078,080 + 65,536 + 57,600 = 4,201,216`` -> 4.201216 µs
- 5 tokens from 4: pairs ``(9*10 - 4*5)/2 = 35``: ``2,265,600 + 65,536 + 44,800 = 2,375,936`` -> 2.375936 µs
- 1 token from 8: pairs ``(90 - 72)/2 = 9``: ``453,120 + 65,536 + 11,520 = 530,176`` -> 0.530176 µs
  (bytes ``518,656 + 9*640 = 524,416`` -> 0.524416 µs, less)

Requests (arrivals 10 ms apart, so none queues). Every prompt is 9 tokens: two full blocks and a
1-token tail (an anonymous slot of its own); the usable limit is ``(9-1)//4 = 2`` blocks.
R0 ``[A, B]``, R1 ``[A, C]``, R2 ``[D, E]``, R3 ``[A, C]``. LRU in both tiers.

**write_through, admission always.**
R0: A, B computed into tier 0; the tail fills the third slot. TTFT 4.201216. Offers A, B to the
host: stored. Host {A, B}.
R1: A is a GPU hit; C computed (free slot); the tail evicts B (the only unpinned block; the host
has a copy, so nothing moves). TTFT 2.375936 (5 tokens). Offers A (present), C (stored). Host
{A, B, C}.
R2: nothing cached. D fills the free slot; E evicts A (LRU: A last touched before C); the tail
evicts C. TTFT 4.201216. Offers D, E: one free host slot, so one eviction: B (least recent: only
R0 touched it) is dropped (no copy anywhere else). Host {A, C, D, E}.
R3: A and C are in the host: a 2-block prefix from tier 1. A loaded into the free GPU slot, C
evicts D, the tail evicts E (both have host copies). 2 loads = 1,480 µs on the link from 30,000.
``async``: the request waits until 31,480 then computes 1 token: TTFT 1,480.530176. Nothing
offered (the loaded prefix is skipped, and nothing follows it).
Totals: prefix hits GPU 1 (R1's A), host 2; prompt tokens 36, computed 9 + 5 + 9 + 1 = 24,
saved 12; stores into the host 5 (12,800 bytes), loads 2 (5,120 bytes); evictions GPU 5 (B, A,
C, D, E, none a drop: all had host copies), host 1 (B, a drop); resident hits 1 (R1's A) of 8
prompt-block references.
``layerwise`` instead: R3 computes in the admission iteration: ``max(30,000 + 0.530176,
30,000 + 1,480/5 + 0.530176, 31,480 + 0.530176/5)`` = 31,480.1060352: TTFT 1,480.1060352.
``sync``: ``max(30,000, 31,480) + 0.530176``: TTFT 1,480.530176.

**write_back.** Nothing is offered; evicted GPU blocks move down.
R0: as above, host {}. R1: the tail evicts B: demoted (host {B}). R2: E evicts A, the tail
evicts C: both demoted (host {B, A, C}). R3: A and C found in the host and *moved* up (they leave
it); C evicts D, the tail evicts E: both demoted (host {B, D, E}). Same TTFTs and prefix hits as
write_through; demotions (stores) into the host 5 (12,800 bytes), loads 2; evictions GPU 5, host
0; no drops.

**write_through, admission threshold (vLLM store_threshold=2).** Offers are counted; a block is
stored once offered twice.
R0 offers A, B: counts 1, 1: both skipped. R1: the tail evicts B, which has no copy: a drop.
Offers A (count 2: stored), C (1: skipped). Host {A}. R2: E evicts A (host copy), the tail evicts
C (a drop). Offers D, E: skipped. R3: A in the host, C nowhere: a 1-block prefix. A loaded; C
recomputed, evicting D (a drop); the tail evicts E (a drop). 1 load = 740 µs: TTFT
``740 + 2.375936`` = 742.375936 (5 tokens). Offers C (after the loaded prefix): count 2: stored.
Totals: prefix hits GPU 1, host 1; computed 9 + 5 + 9 + 5 = 28, saved 8; stores 2 (5,120 bytes),
skipped 5 (A, B, C, D, E), loads 1 (2,560 bytes); evictions GPU 5 of which 4 drops.
"""

from __future__ import annotations

import pytest

from kvgym.sim.serving import ServingConfig, ServingEngine, simulate_serving
from kvgym.traces.requests import RequestTrace

A, B, C, D, E = range(5)


def trace() -> RequestTrace:
    return RequestTrace.from_chains([0.0, 10_000.0, 20_000.0, 30_000.0], [9] * 4, [1] * 4,
                                    [[A, B, 5], [A, C, 6], [D, E, 7], [A, C, 8]], block_tokens=4)


def config(**kw) -> ServingConfig:
    base = {"profile": "seed-toy", "tiers": ("tier0_gpu_fast", "tier2_host_ram"), "capacities": (3, 4),
                "geometry": "stories260k", "gpu": "toy"}
    return ServingConfig(**{**base, **kw})


def run(write_policy="write_through", admission="always", overlap="async", **adm):
    eng = ServingEngine(trace(), config(write_policy=write_policy, load_overlap=overlap),
                        [_lru(), _lru()], _admission(admission, **adm))
    return eng.run(), eng


def _lru():
    from kvgym.sim.policy import make_policy
    return make_policy("lru")


def _admission(name, **kw):
    from kvgym.sim.policy import make_admission
    return make_admission(name, **kw)


PREFILL_9 = 4201216 / 1e6
PREFILL_5 = 2375936 / 1e6
PREFILL_1 = 530176 / 1e6
# TTFTs as the engine computes them: end = arrival + compute, TTFT = end - arrival (float64).
TTFT_0_2 = [(0.0 + PREFILL_9) - 0.0, (10_000.0 + PREFILL_5) - 10_000.0, (20_000.0 + PREFILL_9) - 20_000.0]


def test_block_and_link_numbers():
    res = config().resolve(9, 4)
    assert res.block_bytes == 2560
    from kvgym.sim.serving.links import transfer_us
    from kvgym.sim.tiers import make_link

    assert transfer_us(make_link(res.tiers, (), 1, 0), 2560, 2) == 1480.0   # seed-toy has no curves: α-β
    cm = res.compute
    assert cm.linear_params_per_layer == 45312
    assert cm.flops(9, 45, 1) == 4201216 and cm.bytes_read(9) == 518656 + 9 * 640
    assert cm.iteration_us(9, 45, 1, 9) == PREFILL_9
    assert cm.iteration_us(1, 9, 1, 9) == PREFILL_1


def common_checks(m, eng):
    assert m.requests == 4 and m.prompt_tokens == 36 and m.prompt_blocks == 12
    assert m.accesses == 8 and m.hits == 1 and m.misses == 7
    assert m.prefix_hits[0] == 1 and m.prefix_hit_tokens[0] == 4
    assert m.evictions[0] == 5
    assert list(eng.first_us - trace().arrival_us)[:3] == TTFT_0_2
    assert list(eng.admit_us) == list(trace().arrival_us)  # nobody queues


def test_write_through():
    m, eng = run()
    common_checks(m, eng)
    assert m.prefix_hits == [1, 2] and m.prefix_hit_tokens == [4, 8]
    assert (m.prefill_tokens_computed, m.prefill_tokens_saved) == (24, 12)
    assert m.stores == [0, 5] and m.stores_skipped == [0, 0] and m.stores_failed == [0, 0]
    assert m.loads == [0, 2]
    assert m.link_bytes_store == [0, 12800] and m.link_bytes_load == [0, 5120]
    assert m.evictions == [5, 1] and m.drops == [0, 1]
    assert eng.first_us[3] - 30_000.0 == (31_480.0 + PREFILL_1) - 30_000.0
    assert sorted(eng.resident[1]) == [A, C, D, E] and sorted(eng.resident[0]) == [A, C]


@pytest.mark.parametrize("overlap, end", [("layerwise", 31_480.0 + PREFILL_1 / 5), ("sync", 31_480.0 + PREFILL_1),
                                          ("async", 31_480.0 + PREFILL_1)])
def test_load_overlap_rules(overlap, end):
    m, eng = run(overlap=overlap)
    assert eng.first_us[3] == end
    assert m.ttft_p99_us == end - 30_000.0  # the largest of the four


def test_write_back():
    m, eng = run("write_back")
    common_checks(m, eng)
    assert m.prefix_hits == [1, 2]
    assert (m.prefill_tokens_computed, m.prefill_tokens_saved) == (24, 12)
    assert m.stores == [0, 5] and m.loads == [0, 2]
    assert m.link_bytes_store == [0, 12800] and m.link_bytes_load == [0, 5120]
    assert m.evictions == [5, 0] and m.drops == [0, 0]
    assert list(eng.resident[1]) == [B, D, E] and sorted(eng.resident[0]) == [A, C]
    assert eng.first_us[3] == 31_480.0 + PREFILL_1


def test_write_through_selective_threshold():
    m, eng = run(admission="threshold", store_threshold=2)
    common_checks(m, eng)
    assert m.prefix_hits == [1, 1]
    assert (m.prefill_tokens_computed, m.prefill_tokens_saved) == (28, 8)
    assert m.stores == [0, 2] and m.stores_skipped == [0, 5]
    assert m.loads == [0, 1] and m.link_bytes_load == [0, 2560] and m.link_bytes_store == [0, 5120]
    assert m.evictions == [5, 0] and m.drops == [4, 0]
    assert eng.first_us[3] == (30_000.0 + 740.0) + PREFILL_5
    assert list(eng.resident[1]) == [A, C]


def test_latency_summary_of_write_through():
    m, _ = run()
    ttft = [*TTFT_0_2, (31_480.0 + PREFILL_1) - 30_000.0]
    assert m.ttft_mean_us == (((ttft[0] + ttft[1]) + ttft[2]) + ttft[3]) / 4
    # Nearest rank over the sorted [2.37, 4.20, 4.20, 1480.5]: p50 -> 2nd, p90 and p99 -> 4th.
    assert (m.ttft_p50_us, m.ttft_p90_us, m.ttft_p99_us) == (sorted(ttft)[1], ttft[3], ttft[3])
    assert m.queue_mean_us == 0.0 and m.tpot_mean_us == 0.0
    assert m.iterations == 4 and m.compute_us == ((PREFILL_9 + PREFILL_5) + PREFILL_9) + PREFILL_1
    assert m.requests_per_s == 4 / ((31_480.0 + PREFILL_1) * 1e-6)
    assert m.makespan_us == 31_480.0 + PREFILL_1
    assert m.peak_bytes == [3 * 2560, 4 * 2560]


def test_simulate_serving_is_the_engine():
    assert simulate_serving(trace(), config(), "lru", lower="lru").to_dict() == run()[0].to_dict()
