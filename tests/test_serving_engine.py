"""Serving-mode engine rules: exact TTFT cases, prefix semantics, batching, pinning, sessions, errors."""

from __future__ import annotations

import numpy as np
import pytest

from kvgym.errors import ConfigError, SimulationError
from kvgym.sim.policy import make_admission, make_policy, serving_policy_names
from kvgym.sim.serving import ServingConfig, ServingEngine, simulate_serving
from kvgym.sim.serving.compiled import CompiledServing
from kvgym.sim.tiers import profile
from kvgym.traces.requests import RequestTrace
from kvgym.workloads.serving import make_requests

B = 512
KV_PER_TOKEN = 32 * 8 * 128 * 2 * 2          # llama-3.1-8b fp16 bytes per token
BLOCK_BYTES = B * KV_PER_TOKEN                # 64 MiB
# llama-3.1-8b: hidden 4096, MLP 14336, vocab 128256, 32 layers, 32 query heads of 128.
P_LAYER = 4096 * 4096 + 2 * 4096 * 1024 + 4096 * 4096 + 3 * 4096 * 14336
FLOPS_PER_US = 989.4e12 * 0.5 / 1e6           # the h200 entry of kvgym/data/compute.json
BYTES_PER_US = 4.8e12 * 0.966 / 1e6


def prefill_us(start: int, end: int, sampled: int = 1) -> float:
    """The compute model written out again: linear layers, LM head, causal attention; roofline."""
    n, pairs = end - start, (end * (end + 1) - start * (start + 1)) // 2
    flops = 2 * 32 * P_LAYER * n + 2 * 4096 * 128256 * sampled + 4 * 32 * 32 * 128 * pairs
    by = 2 * (32 * P_LAYER + 4096 * 128256) + end * KV_PER_TOKEN
    return max(float(flops) / FLOPS_PER_US, float(by) / BYTES_PER_US)


def engine(trace, cfg, policy="lru", lower="lru", admission="always", **adm):
    pols = [make_policy(policy)] + [make_policy(lower) for _ in cfg.tiers[1:]]
    return ServingEngine(trace, cfg, pols, make_admission(admission, **adm))


def test_infinite_cache_no_reuse_ttft_is_queueing_plus_prefill():
    # R0 and R1 arrive together; one request runs at a time, so R1 queues behind R0's prefill and
    # its 2 decode tokens. Distinct blocks: nothing is ever reused.
    tr = RequestTrace.from_chains([0.0, 0.0, 5e6], [1000, 3000, 700], [3, 1, 1],
                                  [[0, 1], [2, 3, 4, 5, 6, 7], [8, 9]])
    cfg = ServingConfig(capacities=(None, None), max_running=1)
    eng = engine(tr, cfg)
    m = eng.run()
    p0, p1, p2 = prefill_us(0, 1000), prefill_us(0, 3000), prefill_us(0, 700)
    d1 = prefill_us(1000, 1001)  # decode token at position 1000 (attends 1001 keys)
    d2 = prefill_us(1001, 1002)
    r0_done = ((0.0 + p0) + d1) + d2
    assert eng.first_us[0] == 0.0 + p0 and eng.finish_us[0] == r0_done
    assert eng.admit_us[1] == r0_done                  # queueing = R0's whole run
    assert eng.first_us[1] == eng.admit_us[1] + p1     # TTFT = queueing + prefill
    assert eng.first_us[2] == 5e6 + p2                 # arrives to an idle engine: TTFT = prefill
    assert m.prefix_hits == [0, 0] and m.prefill_tokens_computed == 4700 and m.hits == 0
    assert m.queue_mean_us == (0.0 + r0_done) / 3 + 0.0 and m.tpot_mean_us == (r0_done - p0) / 2


def test_full_reuse_ttft_is_load_time_or_overlap():
    # R0 computes 3 blocks plus a 1-token tail; without a GPU prefix cache they survive only in the
    # host tier (write-through). R1, the same prompt later, loads all 3 and computes 1 token.
    P = 3 * B + 1
    tr = RequestTrace.from_chains([0.0, 1e7], [P, P], [1, 1], [[0, 1, 2, 3], [0, 1, 2, 4]])
    # h200-measured's host->GPU copies follow its measured curve: the first copy on an idle link,
    # the next two queued behind it (kvgym.sim.tiers.Link).
    link = profile("h200-measured").link(2, 0)
    assert link.curve is not None
    load = link.time_us(BLOCK_BYTES) + 2 * link.time_us(BLOCK_BYTES, True)
    last = prefill_us(3 * B, P)
    for overlap, end in (("async", (1e7 + load) + last), ("sync", (1e7 + load) + last),
                         ("layerwise", max(1e7 + last, 1e7 + ((1e7 + load) - 1e7) / 32 + last, (1e7 + load) + last / 32))):
        cfg = ServingConfig(capacities=(8, 8), gpu_prefix_cache=False, load_overlap=overlap)
        eng = engine(tr, cfg)
        m = eng.run()
        assert m.prefix_hits == [0, 3] and m.loads == [0, 3] and m.link_bytes_load == [0, 3 * BLOCK_BYTES]
        assert m.prefill_tokens_computed == P + 1 and m.prefill_tokens_saved == 3 * B
        assert eng.first_us[1] == end, overlap
    assert end - 1e7 < load + last  # layer-by-layer overlap hides the compute behind the loads


def test_prefix_semantics_cached_later_block_is_not_used():
    # Tier 0 holds 4 blocks (LRU). R0 = [0, 1, 2, tail] caches 0, 1, 2; R1, the same prompt,
    # re-touches them in chain order (0 least recent); R2 = [5, tail] needs 2 slots with 1 free,
    # so block 0 goes. R3 = [0, 1, 2, tail]: block 0 is missing, so blocks 1 and 2 are recomputed
    # although they are cached: no prefix hit, two broken-prefix blocks (still resident hits).
    P = 3 * 4 + 1
    tr = RequestTrace.from_chains([0.0, 1e6, 2e6, 3e6], [P, P, 5, P], [1, 1, 1, 1],
                                  [[0, 1, 2, 3], [0, 1, 2, 4], [5, 6], [0, 1, 2, 7]], block_tokens=4)
    cfg = ServingConfig(profile="seed-toy", tiers=("tier0_gpu_fast",), capacities=(4,), geometry="stories260k",
                        gpu="toy")
    eng = engine(tr, cfg)
    m = eng.run()
    assert list(eng.prefix) == [0, 3, 0, 0]
    assert m.prefix_hits == [3] and m.broken_prefix_blocks == 2
    assert m.hits == 3 + 2 and m.accesses == 3 + 3 + 1 + 3
    assert m.prefill_tokens_computed == P + 1 + 5 + P
    assert sorted(eng.resident[0]) == [0, 1, 2] and m.evictions == [2]   # 0 (by R2), then 5 (by R3's tail)
    # With room for everything, R3 reuses [0, 1, 2] (its usable limit: (13 - 1) // 4 = 3 blocks).
    m2 = engine(tr, cfg.with_(capacities=(9,))).run()
    assert m2.prefix_hits == [3 + 3] and m2.broken_prefix_blocks == 0 and m2.prefill_tokens_computed == P + 1 + 5 + 1


def test_lookup_rules_per_block_and_gpu_prefix_first():
    # Block 0 only in the host, block 1 only on the GPU. per_block: a 2-block prefix (host, GPU);
    # gpu_prefix_first: no GPU prefix (block 0 is not there), then the host has 0 but not 1.
    tr = RequestTrace.from_chains([0.0], [9], [1], [[0, 1, 2]], block_tokens=4)
    cfg = ServingConfig(profile="seed-toy", tiers=("tier0_gpu_fast", "tier2_host_ram"), capacities=(8, 8),
                        geometry="stories260k", gpu="toy")
    for lookup, want in (("per_block", (2, [1, 0])), ("gpu_prefix_first", (1, [1]))):
        e = engine(tr, cfg.with_(lookup=lookup))
        e._add(1, 0)
        e._add(0, 1)
        assert e._lookup(0) == want, lookup
    e = engine(tr, cfg.with_(gpu_prefix_cache=False))
    e._add(0, 0)
    assert e._lookup(0) == (0, [])  # tier 0 is never a source without a GPU prefix cache


def test_store_batch_is_all_or_nothing_and_retried():
    # The host holds 1 block; R0 offers 2 new blocks at once: nothing is stored. The batch stays
    # pending and is offered again after each of R0's 2 decode tokens and at its finish: 4 failed
    # batches (vLLM re-offers from next_stored_chunk_idx at every step of the request).
    tr = RequestTrace.from_chains([0.0], [9], [3], [[0, 1, 2]], block_tokens=4)
    cfg = ServingConfig(profile="seed-toy", tiers=("tier0_gpu_fast", "tier2_host_ram"), capacities=(4, 1),
                        geometry="stories260k", gpu="toy")
    m = engine(tr, cfg).run()
    assert m.stores == [0, 0] and m.stores_failed == [0, 4]
    # Below the threshold an offer stores nothing and fails nothing: no retry, 2 blocks skipped once.
    eng = engine(tr, cfg.with_(timing=False), admission="threshold", store_threshold=2)
    m = eng.run()
    assert m.stores_skipped == [0, 2] and m.stores_failed == [0, 0] and dict(eng.admission.counts) == {0: 1, 1: 1}


def test_continuous_batching_budget_and_running_limit():
    # Three 600-token prompts arrive at once; budget 1000 tokens per iteration, at most 2 running.
    tr = RequestTrace.from_chains([0.0, 0.0, 0.0], [600, 600, 600], [2, 2, 2], [[0, 1], [2, 3], [4, 5]])
    cfg = ServingConfig(capacities=(None, None), token_budget=1000, max_running=2)
    eng = engine(tr, cfg)
    m = eng.run()
    # it1: R0 600 + R1 400 (chunk); it2: R0 decode (pos 600) + R1 200; it3: R1 decode + R2 ... R2 waits
    # for a running slot until R0 finishes at the end of it2.
    from kvgym.sim.serving.compute import BatchCompute
    from kvgym.traces.geometry import geometry
    bc = BatchCompute.of(geometry("llama-3.1-8b"), "h200")
    it1 = bc.iteration_us(1000, 600 * 601 // 2 + 400 * 401 // 2, 1, 600 + 400)
    it2 = bc.iteration_us(1 + 200, 601 + (600 * 601 - 400 * 401) // 2, 1 + 1, 601 + 600)
    assert eng.first_us[0] == 0.0 + it1 and eng.finish_us[0] == (0.0 + it1) + it2
    assert eng.first_us[1] == (0.0 + it1) + it2
    assert eng.admit_us[2] == eng.finish_us[0]          # the running limit, not the budget, held it
    it3 = bc.iteration_us(1 + 600, 601 + 600 * 601 // 2, 1 + 1, 601 + 600)
    assert eng.first_us[2] == eng.admit_us[2] + it3 and eng.finish_us[1] == eng.admit_us[2] + it3
    assert m.iterations == 4 and m.requests == 3


def test_pinning_blocks_admission_until_memory_frees():
    # Tier 0 holds 4 blocks; R0 needs 3 (+ 1 decode block later: reserved), R1 needs 2: it waits.
    tr = RequestTrace.from_chains([0.0, 0.0], [8, 8], [5, 1], [[0, 1], [2, 3]], block_tokens=4)
    cfg = ServingConfig(profile="seed-toy", tiers=("tier0_gpu_fast",), capacities=(4,), geometry="stories260k", gpu="toy")
    eng = engine(tr, cfg)
    eng.run()
    # R0: 2 prompt blocks + growth ceil((8+5-1)/4) - 2 = 1 -> 3 slots; R1 needs 2 more: 5 > 4.
    assert eng.admit_us[1] == eng.finish_us[0]
    assert eng.peak[0] == 4                              # R0 finished holding 3; R1 then 2 + R0's cached
    with pytest.raises(SimulationError, match="request 0 needs 4 blocks in tier 0 at once"):
        engine(RequestTrace.from_chains([0.0], [13], [1], [[0, 1, 2, 3]], block_tokens=4), cfg.with_(capacities=(3,)))


def test_output_blocks_are_reused_by_the_next_turn():
    tr = make_requests("chat", seed=3, sessions=3, turns_min=2, turns_max=2, gap_s_mean=60.0, rate_per_s=0.01)
    # Turn 2 of each session re-sends turn 1 whole: its chain starts with turn 1's sequence chain.
    for r in range(len(tr)):
        s = tr.session[r]
        later = [q for q in range(r + 1, len(tr)) if tr.session[q] == s]
        if later:
            F = int(tr.prompt_tokens[r]) // B
            seq = list(tr.chain(r)[:F]) + list(tr.out_chain(r))
            assert list(tr.chain(later[0])[:len(seq)]) == seq
    m = simulate_serving(tr, ServingConfig(capacities=(None, None)))
    # Every second turn reuses the whole previous sequence (far apart in time, unlimited cache).
    want = sum(len(tr.chain(r)[: int(tr.prompt_tokens[r]) // B]) + len(tr.out_chain(r))
               for r in range(len(tr)) if any(tr.session[q] == tr.session[r] for q in range(r + 1, len(tr))))
    system = 2048 // B  # the shared system prompt's blocks, hit by the 2nd and 3rd first turns
    assert m.prefix_hits[0] == want + 2 * system
    assert m.output_blocks == len(tr.out_blocks)


def test_gpu_prefix_cache_off_keeps_nothing_in_tier0():
    tr = RequestTrace.from_chains([0.0, 1e6], [9, 9], [1, 1], [[0, 1, 2], [0, 1, 3]], block_tokens=4)
    cfg = ServingConfig(profile="seed-toy", tiers=("tier0_gpu_fast",), capacities=(4,), geometry="stories260k",
                        gpu="toy", gpu_prefix_cache=False)
    eng = engine(tr, cfg)
    m = eng.run()
    assert m.prefix_hits == [0] and not eng.resident[0] and m.drops == [4]


def test_load_of_a_block_already_in_tier0_lands_in_that_copy():
    # Without a GPU prefix cache lookups skip tier 0. R0 computes blocks 0, 1 (16-token blocks,
    # an 8-token tail) and writes them through to the host; they leave tier 0 when it finishes. R1
    # loads them and decodes 200 tokens; R2 arrives while R1 still holds (and pins) them in tier 0,
    # and loads them again. The second load lands in R1's copy: one slot per block, one pin per
    # holder. (The specification used to add the blocks to tier 0 a second time: 4 slots counted for
    # 2 residents and a pin that outlived R2.)
    tr = RequestTrace.from_chains([0.0, 1e6, 1.1e6], [40, 40, 40], [1, 200, 1], [[0, 1, 2], [0, 1, 3], [0, 1, 4]],
                                  block_tokens=16)
    cfg = ServingConfig(capacities=(30, 10), gpu_prefix_cache=False)
    for cls in (ServingEngine, CompiledServing):
        eng = cls(tr, cfg, [make_policy("lru"), make_policy("lru")], make_admission("always"))
        m = eng.run()
        assert eng.admit_us[2] < eng.finish_us[1] and eng.finish_us[2] < eng.finish_us[1]  # R2 runs beside R1
        assert m.loads == [0, 4] and m.prefix_hits == [0, 4] and m.hits == 2   # R2 finds R1's copies
        assert m.stores == [0, 2] and m.evictions == [4, 0] and m.drops == [0, 0]
        assert list(eng.prefix) == [0, 2, 2] and list(eng.loaded) == [0, 2, 2]
    eng = ServingEngine(tr, cfg, [make_policy("lru"), make_policy("lru")], make_admission("always"))
    eng.run()
    assert eng.pin0.sum() == 0 and eng.used == [0, 2] and [len(r) for r in eng.resident] == [0, 2]


def test_every_serving_policy_runs_in_every_tier_and_keeps_capacity():
    tr = make_requests("agent", seed=2, sessions=4, turns_min=2, turns_max=4)
    for name in serving_policy_names():
        for wp in ("write_through", "write_back"):
            cfg = ServingConfig(capacities=(60, 40), write_policy=wp)
            eng = engine(tr, cfg, policy=name, lower=name, admission="tinylfu")
            m = eng.run()
            assert m.requests == len(tr)
            assert all(p <= c for p, c in zip(eng.peak, (60, 40))), (name, wp)
            assert m.prefill_tokens_computed + m.prefill_tokens_saved == m.prompt_tokens
            assert sum(m.prefix_hit_tokens) == m.prefill_tokens_saved
            # Blocks in the host = stored - evicted (- moved up by exclusive loads).
            moved = m.loads[1] if wp == "write_back" else 0
            assert len(eng.resident[1]) == m.stores[1] - m.evictions[1] - moved, (name, wp)
            assert (m.stores_skipped[1] > 0) == (wp == "write_through")  # tinylfu refuses first offers


def test_determinism_and_time_off_mode():
    tr = make_requests("rag", seed=5, requests=60)
    cfg = ServingConfig(capacities=(30, 60))
    a = simulate_serving(tr, cfg, "vllm_lru", lower="vllm_arc", admission="threshold").to_dict()
    b = simulate_serving(tr, cfg, "vllm_lru", lower="vllm_arc", admission="threshold").to_dict()
    assert a == b
    off = simulate_serving(tr, cfg.with_(timing=False), "lru").to_dict()
    assert off["ttft_mean_us"] == 0.0 and off["makespan_us"] == 0.0 and off["compute_us"] == 0.0


@pytest.mark.parametrize("field, value, words", [
    ("write_policy", "exclusive", "write_policy='exclusive'; valid: write_back, write_through"),
    ("tiers", ("host",), "must start with 'hbm'"),
    ("tiers", ("hbm", "ssd"), "tier 'ssd' is not in profile"),
    ("capacities", (0, None), "capacity must be an int >= 1 (blocks)"),
    ("capacities", ("150%", None), "must be 'N%' with 0 < N <= 100"),
    ("capacities", ("x%", None), "must be 'N%' with 0 < N <= 100"),
    ("max_running", 0, "max_running must be an int >= 1"),
    ("cache_partial_tail", True, "cache_partial_tail needs pin=false"),
    ("gpu", "tpu", "unknown gpu 'tpu'"),
])
def test_bad_config_is_one_clear_error(field, value, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        ServingConfig(**{field: value})
    with pytest.raises(ConfigError, match="unknown keys"):
        ServingConfig.from_dict({"capacity": 3})


def test_serving_only_policies_stay_out_of_decode_sweeps_but_run_in_the_decode_engine():
    from kvgym.sim import run
    from kvgym.sim.policy import policy_names
    from kvgym.sim.scenario import Scenario
    from kvgym.workloads import make_trace

    serving_only = set(serving_policy_names()) - set(policy_names())
    assert serving_only == {"vllm_lru", "vllm_arc", "radix_lru", "lmcache_lru", "hits_per_token", "session_aware"}
    t = make_trace("streaming", seed=1)
    sc = Scenario(profile="h200-measured", capacities=("10%", None, None, None), first_touch="create")
    for name in sorted(serving_only):
        assert run(t, sc, name).accesses == len(t)
    assert np.all(np.isin(sorted(serving_only), serving_policy_names()))
