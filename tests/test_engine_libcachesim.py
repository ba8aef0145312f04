"""Single-tier uniform-size LRU equals libcachesim's LRU miss count on a Zipf trace.

libcachesim (GPL) is an optional dev dependency, never vendored: the test needs the ``dev`` extra.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import needs_extra

from kvgym.sim import run
from kvgym.sim.scenario import Scenario
from kvgym.traces.format import Trace

lcs = needs_extra("dev", "libcachesim")


def lcs_lru_misses(pages: np.ndarray, capacity_objects: int) -> int:
    cache = lcs.LRU(capacity_objects)
    misses = 0
    req = lcs.Request()
    req.obj_size = 1
    for p in pages.tolist():
        req.obj_id = int(p)
        misses += not cache.get(req)
    return misses


@pytest.mark.parametrize("cap", [10, 100, 1000])
def test_lru_matches_libcachesim_on_zipf(cap):
    rng = np.random.default_rng(7)
    pages = (rng.zipf(1.1, 50_000) - 1) % 20_000
    size = 4096
    t = Trace.from_pages(pages, fp16_bytes=size)
    sc = Scenario(profile="single-tier", capacities=(cap * size, None))
    ours = run(t, sc)
    assert ours.misses == lcs_lru_misses(pages, cap)
    assert run(t, sc, engine="reference").misses == ours.misses
