"""Serving mode against a peer: with unit blocks, one tier, no timing and no pinning, the serving
engine's tier-0 misses (prompt block references not resident when referenced) equal libcachesim's
misses on the same block stream (every request's ``hash_ids`` in order), for LRU, FIFO, ARC, SIEVE
and S3-FIFO with libcachesim's defaults (small queue 10%, ghost 90%, move-to-main threshold 2),
at 1%, 5% and 10% of the distinct blocks of the Mooncake synthetic trace.

``cache_partial_tail=True`` makes each prompt's last block a cached block like any other (it is
one of the trace's ``hash_ids``); ``pin=False`` lets a request evict its own earlier blocks, as
a block stream does. The default run takes the first 300 requests (7,721 block references); the
slow test the whole trace (3,993 requests, 121,877 references). libcachesim is a dev dependency
(``make venv``); the comparison skips without it.
"""

from __future__ import annotations

import numpy as np
import pytest

from kvgym.bundled import mooncake_synthetic
from kvgym.sim.serving import ServingConfig, simulate_serving
from kvgym.traces.requests import requests_from_mooncake

POLICIES = ("lru", "fifo", "arc", "sieve", "s3fifo")
FRACTIONS = ("1%", "5%", "10%")
SYNTH = mooncake_synthetic()


def lcs_misses(blocks: np.ndarray, capacity: int, policy: str) -> int:
    lcs = pytest.importorskip("libcachesim")
    cls = {"lru": lcs.LRU, "fifo": lcs.FIFO, "arc": lcs.ARC, "sieve": lcs.Sieve, "s3fifo": lcs.S3FIFO}[policy]
    cache = cls(capacity, hashpower=14)
    return sum(not cache.get(lcs.Request(obj_size=1, obj_id=int(x) + 1)) for x in blocks)


def serving_misses(trace, fraction: str, policy: str) -> int:
    cfg = ServingConfig(tiers=("hbm",), capacities=(fraction,), timing=False, pin=False, cache_partial_tail=True)
    m = simulate_serving(trace, cfg, policy)
    assert m.accesses == trace.block_refs
    return m.misses


def capacity(trace, fraction: str) -> int:
    return int(float(fraction[:-1]) / 100 * trace.n_blocks)


@pytest.mark.parametrize("policy", POLICIES)
def test_mooncake_prefix_matches_libcachesim(policy):
    t = requests_from_mooncake(SYNTH, limit=300)
    assert (t.block_refs, [capacity(t, f) for f in FRACTIONS]) == (7721, [73, 367, 735])
    for f in FRACTIONS:
        assert serving_misses(t, f, policy) == lcs_misses(t.blocks, capacity(t, f), policy), f


@pytest.mark.slow
@pytest.mark.parametrize("fraction", FRACTIONS)
@pytest.mark.parametrize("policy", POLICIES)
def test_mooncake_full_trace_matches_libcachesim(policy, fraction):
    t = requests_from_mooncake(SYNTH)
    assert [capacity(t, f) for f in FRACTIONS] == [439, 2196, 4392]
    assert serving_misses(t, fraction, policy) == lcs_misses(t.blocks, capacity(t, fraction), policy)

