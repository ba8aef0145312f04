"""The compiled engine equals the specification engine on random configurations.

Each configuration draws a page table (uniform or mixed sizes, several sequences and layers, token
spans for the sequence-aware policies and prefetchers), a trace (uniform or Zipf reuse, one or more
accesses per step, with or without attention weights) and a scenario (profile, capacities near the
pressure point, cost model, quantization, lower-tier policy, first touch, backing tier, prefetch).
Policies and prefetchers are cycled so that every pair appears; some configurations run a policy
and a prefetcher written in Python (no compiled implementation: the compiled engine calls back).

The rule (documented in :mod:`kvgym.sim.compiled`): integer metrics are equal, and so are times,
to the last bit: both engines perform the same float operations in the same order. Errors (a step
whose pinned pages do not fit) are the same error. The specification engine also checks its
invariants after every step: single residency, used bytes within capacity and equal to the sum of
the residents' sizes, pending prefetches resident in tier 0.

The default suite runs 400 configurations; the slow set runs 2,400.
"""

from __future__ import annotations

import numpy as np
import pytest

import kvgym.baselines.arc as arc_mod
import kvgym.baselines.markov as markov_mod
import kvgym.baselines.regret_aware as regret_mod
from kvgym.errors import KvgymError
from kvgym.sim import run
from kvgym.sim.engine import Engine
from kvgym.sim.policy import make_policy, make_prefetcher, policy_names, prefetcher_names
from kvgym.sim.scenario import Scenario
from kvgym.traces.format import PageTable, Trace

POLICIES = policy_names()
PREFETCHERS = [None] + prefetcher_names()
PROFILES = {"seed-toy": 4, "h200-measured": 4, "h100-datasheet": 3}


class PyARC(arc_mod.ARC):
    """ARC with no compiled implementation: runs through the Python callbacks."""


class PyRegret(regret_mod.RegretAware):
    pass


class PyMarkov(markov_mod.Markov):
    pass


def random_case(seed: int):
    rng = np.random.default_rng(seed)
    n_pages = int(rng.integers(2, 48))
    sizes = np.full(n_pages, int(rng.integers(64, 1024))) if rng.random() < 0.5 else rng.integers(64, 1024, n_pages)
    blk = rng.integers(0, 12, n_pages)
    tps = int(rng.choice([1, 16]))
    pt = PageTable(seq=rng.integers(0, int(rng.integers(1, 4)), n_pages).astype(np.int32),
                   layer=rng.integers(0, int(rng.integers(1, 4)), n_pages).astype(np.int32),
                   token_start=blk * tps, token_end=(blk + 1) * tps, fp16_bytes=np.asarray(sizes, np.int64))
    n = int(rng.integers(1, 240))
    page = rng.integers(0, n_pages, n) if rng.random() < 0.5 else np.minimum(rng.zipf(1.4, n) - 1, n_pages - 1)
    per = int(rng.integers(1, 5))
    step = np.sort(rng.integers(0, max(1, n // per), n)) if rng.random() < 0.5 else np.arange(n) // per
    weight = rng.random(n).astype(np.float32) if rng.random() < 0.5 else None
    trace = Trace(step.astype(np.int64), page.astype(np.int64), pt, weight=weight)
    prof = str(rng.choice(list(PROFILES)))
    nt = PROFILES[prof]
    quant = str(rng.choice(["fp16", "fp8", "int4", "int2"]))
    # Tier 0 near the pressure point: between the largest step's pinned bytes (or page) and three times that.
    stored = Scenario(quantization=quant).build(pt).page_bytes
    need = max(max(int(stored[np.unique(page[step == s])].sum()) for s in np.unique(step)), int(stored.max()))
    # (One in ten just below it: the step-fit error, which both engines must report alike.)
    cap0 = need - 1 if rng.random() < 0.1 else int(need * rng.uniform(1.0, 3.0))
    lower = tuple(int(rng.integers(2 * int(stored.max()), 8 * int(stored.max()) + 2)) for _ in range(nt - 2))
    last = None if rng.random() < 0.5 else int(rng.integers(int(stored.sum()), 4 * int(stored.sum()) + 2))
    scen = Scenario(profile=prof, capacities=(cap0, *lower, last),
                    cost_model=str(rng.choice(["serial", "overlap"])), quantization=quant,
                    decode=str(rng.choice(["calibrated", "parity"])), lower_policy=str(rng.choice(["lru", "same"])),
                    first_touch=str(rng.choice(["backing", "create"])), prefetch=bool(rng.random() < 0.6),
                    max_prefetch=int(rng.integers(0, 4)), backing_tier=int(rng.integers(1, nt)) if rng.random() < 0.3 else -1)
    return trace, scen


def pick(i: int):
    """Policy and prefetcher of configuration i: every pair appears within len(POLICIES) * 5 configurations."""
    pol = POLICIES[i % len(POLICIES)]
    pre = PREFETCHERS[(i // len(POLICIES)) % len(PREFETCHERS)]
    if i % 23 == 7:  # Python-only implementations: the compiled engine calls back into them
        return (PyARC() if i % 2 else PyRegret()), PyMarkov()
    return pol, pre


def outcome(trace, scen, pol, pre, engine):
    pol = make_policy(pol) if isinstance(pol, str) else type(pol)()
    pre = make_prefetcher(pre) if isinstance(pre, str) else (type(pre)() if pre is not None else None)
    try:
        return run(trace, scen, pol, pre, engine=engine).to_dict()
    except KvgymError as e:
        return f"{type(e).__name__}: {e}"


def check_invariants(trace, scen, pol, pre) -> None:
    """Run the specification engine step by step, checking its invariants after every step."""
    from kvgym.sim.context import Future

    try:
        setup = scen.build(trace.pages)
    except KvgymError:
        return
    pol = make_policy(pol) if isinstance(pol, str) else type(pol)()
    pre = make_prefetcher(pre) if isinstance(pre, str) else (type(pre)() if pre is not None else None)
    fut = Future(trace.page, len(trace.pages)) if pol.privileged or getattr(pre, "privileged", False) else None
    eng = Engine(setup, pol, pre, future=fut)
    orig = eng._step

    def step_and_check(*a):
        yield from orig(*a)
        eng.check_invariants()

    eng._step = step_and_check
    try:
        eng.run_chunks([(trace.step, trace.page, trace.weight)])
    except KvgymError:
        return
    m = eng.m
    assert m.hits + m.misses == m.accesses == len(trace)
    assert m.hits + sum(m.tier_hits[1:]) + m.full_misses == m.accesses
    assert m.prefetch_issued == m.prefetch_useful + m.prefetch_wasted
    assert m.total_time_us >= m.stall_us >= 0 and m.total_time_us >= m.compute_us


def check(seeds) -> None:
    errors = evictions = 0
    for i in seeds:
        trace, scen = random_case(i)
        pol, pre = pick(i)
        ref = outcome(trace, scen, pol, pre, "reference")
        got = outcome(trace, scen, pol, pre, "compiled")
        if got != ref:
            diff = {k: (ref[k], got[k]) for k in ref if ref[k] != got[k]} if isinstance(ref, dict) and isinstance(got, dict) \
                else (ref, got)
            pytest.fail(f"configuration {i} ({pol}, {pre}, {scen}): {diff}")
        errors += isinstance(ref, str)
        evictions += isinstance(ref, dict) and sum(ref["evictions"]) > 0
        if i % 5 == 0:
            check_invariants(trace, scen, pol, pre)
    # The draws exercise the interesting regime: about half the runs or more evict, few are infeasible.
    assert evictions >= 0.4 * len(seeds) and errors < 0.3 * len(seeds)


@pytest.mark.parametrize("block", range(8))
def test_compiled_equals_specification(block):
    check(range(block * 50, (block + 1) * 50))


@pytest.mark.slow
@pytest.mark.parametrize("block", range(8, 48))
def test_compiled_equals_specification_full(block):
    check(range(block * 50, (block + 1) * 50))
