"""The LP lower bound for variable page sizes: LP <= exhaustive optimum <= belady_size; exact on uniform sizes."""

from __future__ import annotations

from functools import cache
from itertools import combinations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvgym.baselines.common import cache_setup
from kvgym.errors import ConfigError, SimulationError
from kvgym.oracle.belady import belady
from kvgym.oracle.lp import lp_bound
from kvgym.oracle.nextuse import future
from kvgym.sim.engine import Engine
from kvgym.sim.policy import make_policy
from kvgym.traces.format import PageTable, Trace


def exhaustive_min(page, step, size, cap) -> int:
    """Fewest tier-0 misses over every eviction sequence the engine allows (pinned steps, evict
    one unpinned page at a time until the incoming page fits)."""
    page, step = list(page), list(step)
    n = len(page)
    pinned_of = {s: frozenset(p for p, t in zip(page, step) if t == s) for s in set(step)}

    @cache
    def best(i: int, cache: frozenset) -> int:
        if i == n:
            return 0
        p = page[i]
        if p in cache:
            return best(i + 1, cache)
        used = sum(size[q] for q in cache)
        pinned = pinned_of[step[i]]
        cands = sorted(cache - pinned)
        out = None
        # Any set of victims reachable by evicting one at a time until p fits: the last one
        # evicted was needed, i.e. without it p would not fit.
        for r in range(len(cands) + 1):
            for vs in combinations(cands, r):
                freed = sum(size[v] for v in vs)
                if used - freed + size[p] > cap:
                    continue
                if r and all(used - freed + size[v] + size[p] <= cap for v in vs):
                    continue  # evicting fewer would already have made room
                v = best(i + 1, (cache - frozenset(vs)) | {p})
                out = v if out is None else min(out, v)
        return 1 + out

    return best(0, frozenset())


def _policy_misses(page, step, size, cap, name: str) -> int:
    n_pages = len(size)
    pages = PageTable(seq=np.zeros(n_pages, np.int32), layer=np.zeros(n_pages, np.int32),
                      token_start=np.arange(n_pages) * 16, token_end=np.arange(n_pages) * 16 + 16,
                      fp16_bytes=np.asarray(size, np.int64), bytes=np.asarray(size, np.int64))
    trace = Trace(np.asarray(step, np.int64), np.asarray(page, np.int64), pages)
    pol = make_policy(name)
    return Engine(cache_setup(pages, cap), pol, future=future(trace.page, n_pages)).run(trace).misses


@st.composite
def tiny_traces(draw, uniform: bool):
    n_pages = draw(st.integers(1, 5))
    size = [4] * n_pages if uniform else draw(st.lists(st.sampled_from([1, 2, 3, 4]), min_size=n_pages,
                                                        max_size=n_pages))
    n = draw(st.integers(1, 10))
    page = draw(st.lists(st.integers(0, n_pages - 1), min_size=n, max_size=n))
    step = sorted(draw(st.lists(st.integers(0, 6), min_size=n, max_size=n)))
    widest = max(sum(size[p] for p in {pp for pp, s in zip(page, step) if s == t}) for t in set(step))
    cap = draw(st.integers(max(widest, max(size)), sum(size) + 1))
    return page, step, size, cap


@settings(max_examples=60, deadline=None)
@given(tiny_traces(uniform=False))
def test_lp_below_exhaustive_below_belady_size(case):
    page, step, size, cap = case
    lp = lp_bound(page, step, size, cap)
    opt = exhaustive_min(page, step, size, cap)
    assert lp.value <= opt + 1e-6
    assert lp.bound <= opt
    assert opt <= _policy_misses(page, step, size, cap, "belady_size")


@settings(max_examples=40, deadline=None)
@given(tiny_traces(uniform=True))
def test_lp_equals_belady_on_uniform_sizes(case):
    page, step, size, cap = case
    lp = lp_bound(page, step, size, cap)
    b = belady(page, cap // 4, step=step).misses
    assert lp.uniform and lp.value == b == exhaustive_min(page, step, size, cap)


def test_lp_equals_belady_on_larger_uniform_traces():
    rng = np.random.default_rng(4)
    for _ in range(10):
        n_pages = int(rng.integers(2, 30))
        page = rng.integers(0, n_pages, 300)
        step = np.sort(rng.integers(0, 120, 300))
        widest = max(len(set(page[step == s].tolist())) for s in np.unique(step))
        cap = int(rng.integers(widest, n_pages + 1))
        lp = lp_bound(page, step, np.full(n_pages, 512), cap * 512 + 100)  # 100 spare bytes: floor to pages
        assert lp.value == belady(page, cap, step=step).misses


def test_lp_hand_worked_fractional():
    # Pages 0 (2 bytes) and 1 (1 byte), capacity 2 bytes, one access per step: 0 1 0 1.
    # Keeping page 0 over step 1 leaves 1 spare byte for it: x <= 1/2. Page 1 over step 2 has no
    # spare byte (page 0 is pinned there): x = 0. LP = 2 first touches + 1/2 + 1 = 3.5 misses;
    # the integer optimum misses all 4 (the LP's ceiling).
    lp = lp_bound([0, 1, 0, 1], [0, 1, 2, 3], [2, 1], 2)
    assert lp.compulsory == 2 and not lp.uniform and lp.intervals == 2
    assert lp.value == pytest.approx(3.5) and lp.bound == 4
    assert exhaustive_min([0, 1, 0, 1], [0, 1, 2, 3], [2, 1], 2) == 4
    by = lp_bound([0, 1, 0, 1], [0, 1, 2, 3], [2, 1], 2, cost="bytes")
    assert by.compulsory == 3 and by.value == pytest.approx(3 + 2 * 0.5 + 1)


def test_lp_errors():
    with pytest.raises(ConfigError, match="cost"):
        lp_bound([0], [0], [1], 1, cost="time")
    with pytest.raises(ConfigError, match="max_accesses"):
        lp_bound([0, 1, 0], [0, 1, 2], [1, 1], 1, max_accesses=2)
    with pytest.raises(SimulationError, match="needs 3 bytes"):
        lp_bound([0, 1], [0, 0], [2, 1], 2)


def test_oracle_report_and_regret_with_variable_sizes():
    from kvgym.oracle.bounds import oracle_bounds, oracle_columns
    from kvgym.oracle.regret import analyze
    from kvgym.sim.scenario import Scenario

    rng = np.random.default_rng(9)
    size = rng.choice([1024, 2048, 4096], 30).astype(np.int64)
    pages = PageTable(seq=np.zeros(30, np.int32), layer=(np.arange(30) % 3).astype(np.int32),
                      token_start=np.arange(30) * 16, token_end=np.arange(30) * 16 + 16, fp16_bytes=size, bytes=size)
    trace = Trace(np.arange(400, dtype=np.int64), rng.integers(0, 30, 400).astype(np.int64), pages)
    scen = Scenario(name="mixed", profile="seed-toy", capacities=(20000, 10**8, 10**8, None), cost_model="serial")
    rep = oracle_bounds(trace, scen, label="mixed")
    assert not rep.uniform and rep.lp is not None and rep.lp.intervals > 0
    assert max(rep.belady_misses, rep.lp.bound) <= rep.belady_size_misses  # both are lower bounds
    assert any("LP lower bound" in line for line in rep.lines())
    assert oracle_columns(trace, scen) == {"oracle_misses": rep.belady_size_misses, "oracle": "belady_size"}
    r = analyze(trace, scen, "lru")
    assert r.oracle_kind == "belady_size" and r.misses_oracle == rep.belady_size_misses
