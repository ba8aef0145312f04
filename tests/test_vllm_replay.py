"""replay_vllm drives vLLM's real CPUOffloadingManager as the offloading connector does.

Hand-worked examples (block_tokens 1, so a request of n blocks has n prompt tokens); the numbers
follow vLLM 0.33.0's own LRU and ARC rules (vllm/v1/kv_offload/cpu/policies/lru.py, arc.py).
"""

from __future__ import annotations

import json

import pytest

from kvgym.errors import ConfigError, TraceError
from kvgym.integrations.vllm_compat import VllmMissing, require_vllm

try:
    require_vllm()
except VllmMissing as e:
    pytest.skip(str(e), allow_module_level=True)

from kvgym.cli import main
from kvgym.integrations.vllm_peer import peer_counts, resolve_capacity
from kvgym.integrations.vllm_replay import BlockRequests, VllmCounts, from_mooncake, replay_vllm

FOUR = [[1, 2, 3], [1, 2, 4, 5], [6, 7, 8], [9, 6]]


def reqs(lists, **kw) -> BlockRequests:
    return BlockRequests.from_lists(lists, block_tokens=1, **kw)


def test_lru_hand_worked():
    """Capacity 4. vLLM's LRU ranks a request's blocks tail first while it runs and re-touches
    them tail to head when it finishes (the head ends most recent).

    r0 [1,2,3]: miss, store 1,2,3.           order after r0 (LRU first): 3 2 1
    r1 [1,2,4,5]: hits 1,2 (loaded); 4 misses; store 4,5 needs 1 chunk: evict 3 -> 5 4 2 1
    r2 [6,7,8]: store 3 blocks: evict 5, 4, 2 (the loaded 2 is not protected)  -> 1 8 7 6
    r3 [9,6]: 9 misses, so 6 is recomputed though cached (prefix rule); store 9: evict 1.
    """
    log = []
    c = replay_vllm(reqs(FOUR), 4, "lru", log=log)
    assert c == VllmCounts(requests=4, blocks=12, gpu_hits=0, hits=2, misses=10, loads=2, stores=9,
                           skipped_stores=0, failed_stores=0, evictions=5)
    assert log == [(0, "store", [1, 2, 3]), (1, "load", [1, 2]), (1, "evict", [3]), (1, "store", [4, 5]),
                   (2, "evict", [5, 4, 2]), (2, "store", [6, 7, 8]), (3, "evict", [1]), (3, "store", [9])]


def test_arc_hand_worked():
    """Same stream under vLLM's ARC: a reuse moves a block to T2 once, when its request finishes;
    stores stay in T1. After r1: T1 = 5 4, T2 = 2 1; r2 evicts T1's 5, 4 then T2's 2 (target 0);
    after r2 T1 = 8 7 6 (insertions re-ordered tail to head), T2 = 1; r3 evicts T1's LRU, 8."""
    log = []
    c = replay_vllm(reqs(FOUR), 4, "arc", log=log)
    assert (c.hits, c.stores, c.evictions) == (2, 9, 5)
    assert [e for e in log if e[1] == "evict"] == [(1, "evict", [3]), (2, "evict", [5, 4, 2]), (3, "evict", [8])]


def test_store_threshold_counts_offers():
    """store_threshold 2: a block is stored at its second offer. r0 offers 1,2,3 (all skipped);
    r1 misses at 1 and offers 1,2,4,5: 1, 2 stored, 4, 5 skipped; r2 hits 1, 2 and stores 4."""
    log = []
    c = replay_vllm(reqs([[1, 2, 3], [1, 2, 4, 5], [1, 2, 4]]), 4, "lru", 2, log=log)
    assert c == VllmCounts(requests=3, blocks=10, gpu_hits=0, hits=2, misses=8, loads=2, stores=3,
                           skipped_stores=5, failed_stores=0, evictions=0)
    assert log == [(1, "store", [1, 2]), (2, "load", [1, 2]), (2, "store", [4])]


def test_failed_store_is_all_or_nothing_and_retried_every_step():
    """Three new blocks never fit two chunks: the store fails at prefill, at each of the 2 decode
    steps and at the finishing step (output_tokens 3), and nothing is stored."""
    c = replay_vllm(reqs([[1, 2, 3]], output_tokens=[3]), 2, "lru")
    assert (c.stores, c.failed_stores, c.evictions) == (0, 4, 0)


def test_chunked_prefill_evicts_own_blocks_tail_first():
    """prefill_tokens 2: blocks 1,2 are stored at the first step; storing 3,4 at the second needs
    one chunk and evicts 2 (vLLM's LRU ranks a running request's blocks tail first)."""
    log = []
    c = replay_vllm(reqs([[1, 2, 3, 4]]), 3, "lru", prefill_tokens=2, log=log)
    assert (c.stores, c.evictions) == (4, 1)
    assert log == [(0, "store", [1, 2]), (0, "evict", [2]), (0, "store", [3, 4])]


def test_gpu_held_blocks_are_offered_when_nothing_loads():
    """The GPU holds block 1 of both requests. r0 looks up from block 2 (miss) and, loading
    nothing, offers every block from 0: 1, 2, 3 are stored. r1 loads 2, 3 and offers nothing."""
    log = []
    c = replay_vllm(reqs([[1, 2, 3], [1, 2, 3]], gpu_blocks=[1, 1]), 3, "lru", log=log)
    assert c == VllmCounts(requests=2, blocks=6, gpu_hits=2, hits=2, misses=2, loads=2, stores=3,
                           skipped_stores=0, failed_stores=0, evictions=0)
    assert log == [(0, "store", [1, 2, 3]), (1, "load", [2, 3])]


def test_mooncake_partial_block(tmp_path):
    f = tmp_path / "t.jsonl"
    rows = [{"timestamp": 0, "input_length": 1100, "output_length": 2, "hash_ids": [7, 8, 9]},
            {"timestamp": 5, "input_length": 1024, "output_length": 1, "hash_ids": [7, 8]}]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    drop, keep = from_mooncake(f), from_mooncake(f, partial_block="keep")
    assert drop.blocks.tolist() == [7, 8, 7, 8] and drop.prompt_tokens.tolist() == [1100, 1024]
    assert keep.blocks.tolist() == [7, 8, 9, 7, 8] and keep.prompt_tokens.tolist() == [1536, 1024]
    assert replay_vllm(f, 8).hits == 2 and replay_vllm(keep, 8).hits == 2


def test_bad_input_one_line(tmp_path, capsys):
    with pytest.raises(TraceError, match=r"^requests: request 1: a block id appears twice in one request$"):
        reqs([[1], [2, 3, 2]])
    with pytest.raises(ConfigError, match=r"^unknown vLLM cache policy 'lfu'; built in: arc, lru"):
        replay_vllm(reqs(FOUR), 4, "lfu")
    with pytest.raises(ConfigError, match=r"no such module"):
        replay_vllm(reqs(FOUR), 4, "Mine", cache_policy_module_path="no_such_kvgym_module")
    with pytest.raises(ConfigError, match=r"import path .* not a file"):
        replay_vllm(reqs(FOUR), 4, "Mine", cache_policy_module_path="my_policy.py")
    (tmp_path / "kvg_empty_policy_mod.py").write_text("X = 1\n")
    import sys
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(ConfigError, match=r"does not define a CachePolicy class 'Mine' \(it defines: none\)$"):
            replay_vllm(reqs(FOUR), 4, "Mine", cache_policy_module_path="kvg_empty_policy_mod")
    finally:
        sys.path.remove(str(tmp_path))
    with pytest.raises(ConfigError, match=r"num_chunks=0 must be an int >= 1"):
        replay_vllm(reqs(FOUR), 0)
    assert main(["vllm", "replay", str(tmp_path / "missing.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.jsonl: no such file" in err[0]


@pytest.mark.shared
def test_peer_counts_on_the_synthetic_trace(shared_dir):
    """Pinned: vLLM's LRU at 10% of the synthetic trace's 40,148 distinct full blocks. vLLM's LRU
    evicts a request's blocks tail first, so its cache stays prefix-closed: every recomputed
    block is stored (misses == stores); ARC's is not (it stores fewer)."""
    path = shared_dir / "traces/mooncake_fast25_synthetic_trace.jsonl"
    req = from_mooncake(path)
    assert resolve_capacity("10%", req) == 4015
    lru = peer_counts(path, 4015, "lru", 1)
    assert lru == VllmCounts(requests=3993, blocks=117888, gpu_hits=0, hits=30343, misses=87545, loads=30343,
                             stores=87545, skipped_stores=0, failed_stores=0, evictions=83530)
    arc = peer_counts(path, 4015, "arc", 1)
    assert (arc.hits, arc.stores, arc.evictions) == (30637, 87238, 83223)
