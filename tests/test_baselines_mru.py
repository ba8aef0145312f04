"""``mru``: exact victims and misses on hand-worked traces. Victims are read from the specification
engine's hooks (a compiled policy calls no Python hook); the compiled engine must give the same
metrics record."""

from __future__ import annotations

import numpy as np

from kvgym.baselines.common import cache_setup
from kvgym.sim.compiled import CompiledEngine
from kvgym.sim.engine import Engine
from kvgym.sim.policy import make_policy
from kvgym.traces.format import Trace


def _simulate(engine_cls, setup, pol, trace):
    if engine_cls is Engine:
        return Engine(setup, pol).run(trace)
    return CompiledEngine(setup, pol).run_chunks([(trace.step, trace.page, trace.weight)])


def _run(pages, cap, engine):
    trace = Trace.from_pages(pages, fp16_bytes=1)
    setup = cache_setup(trace.pages, cap)
    pol = make_policy("mru")
    victims = []
    inner_evict = pol.on_evict

    def on_evict(page, tier, step):
        if tier == 0:
            victims.append(int(page))
        if inner_evict is not None:
            inner_evict(page, tier, step)

    pol.on_evict = on_evict
    m = _simulate(Engine if engine == "reference" else CompiledEngine, setup, pol, trace)
    return m, victims


def test_a_cyclic_scan_larger_than_the_cache():
    # Cache of 3, cycle 0 1 2 3 twice. 3 evicts 2 (the most recently used), 0 and 1 hit, 2 evicts 1
    # (just used), 3 hits: misses 0 1 2 3 2 = 5 (LRU misses all 8; Belady also 5).
    m, victims = _run([0, 1, 2, 3, 0, 1, 2, 3], 3, "reference")
    assert (m.misses, m.hits) == (5, 3)
    assert victims == [2, 1]
    assert _run([0, 1, 2, 3, 0, 1, 2, 3], 3, "compiled")[0].to_dict() == m.to_dict()


def test_pinned_pages_of_the_step_are_never_victims():
    # Two accesses per step: at step 1 the step's own pages (2, 3) are pinned, so page 2, just
    # used, is not a candidate: 3 evicts the most recently used unpinned page, 1.
    trace = Trace.from_pages([0, 1, 2, 3], steps=[0, 0, 1, 1], fp16_bytes=1)
    pol = make_policy("mru")
    seen = []
    pol.on_evict = lambda page, tier, step: seen.append(int(page)) if tier == 0 else None
    m = _simulate(Engine, cache_setup(trace.pages, 3), pol, trace)
    assert m.misses == 4 and seen == [1]
    assert _simulate(CompiledEngine, cache_setup(trace.pages, 3), make_policy("mru"), trace).to_dict() == m.to_dict()


def test_scores_reverse_lru():
    pol = make_policy("mru")
    trace = Trace.from_pages([0, 1, 2], fp16_bytes=1)
    setup = cache_setup(trace.pages, 3)
    Engine(setup, pol).run(trace)
    assert np.argsort(pol.scores(np.array([0, 1, 2]), 3)).tolist() == [2, 1, 0]
