"""Invariants over random configurations (issue 16, "Must show"): every registered policy and
prefetcher, every profile and valid backing tier, both cost models, every quantization, both
first-touch rules, both lower-tier policies, prefetch on and off, capacities of every form.

Through :func:`kvgym.sim.run` (the entry point users call):

- hits + misses = accesses;
- bytes = transfers x page bytes (uniform page size per trace): demand bytes are one page per
  miss that moved data (a miss minus the pages created in tier 0 under ``first_touch="create"``),
  prefetch bytes one page per issued prefetch, demotion bytes one page per eviction from any tier
  but the last (which drops);
- no tier ever held more than its capacity (``peak_bytes``);
- total time >= compute time.

Through :class:`kvgym.sim.engine.Engine`, stepped one decode step at a time: after every step
:meth:`~kvgym.sim.engine.Engine.check_invariants` (a page resident in at most one tier, used
bytes = the residents' bytes <= capacity, in-flight prefetches resident in tier 0).

A few hundred configurations in the default run; ``-m slow`` runs 2,500.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from kvgym.errors import SimulationError
from kvgym.sim import run
from kvgym.sim.engine import Engine
from kvgym.sim.policy import make_policy, make_prefetcher, policy_names, prefetcher_names
from kvgym.sim.scenario import COST_MODELS, FIRST_TOUCH, LOWER_POLICIES, Scenario
from kvgym.sim.tiers import profile, profiles
from kvgym.traces.format import PageTable, Trace

QUANT = ("fp16", "fp8", "int4", "int2")


def random_case(seed: int):
    """One random (trace, scenario, policy, prefetcher); deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    n_pages = int(rng.integers(2, 40))
    steps = int(rng.integers(1, 40))
    per_step = rng.integers(1, min(n_pages, 6) + 1, steps)
    hot = rng.integers(0, n_pages, size=max(1, n_pages // 4))
    page, step = [], []
    for s, k in enumerate(per_step):
        pool = hot if rng.random() < 0.4 else np.arange(n_pages)
        page += list(rng.choice(pool, int(k)))  # repeats within a step allowed
        step += [s] * int(k)
    fp16 = int(rng.choice([128, 4096, 65536, 12288]))
    pages = PageTable.uniform(n_pages, fp16, layers=int(rng.integers(1, 4)))
    weight = rng.random(len(page)).astype(np.float32) if rng.random() < 0.7 else None
    trace = Trace.from_pages(np.array(page), pages, steps=np.array(step), weight=weight)
    prof = str(rng.choice(sorted(profiles())))
    n = len(profile(prof).tiers)
    largest_step = int(max(len({page[i] for i in np.flatnonzero(np.array(step) == s)}) for s in range(steps)))
    tier0 = rng.choice(["auto", "pages", "share"])
    if tier0 == "auto":
        cap0 = f"auto:{rng.random():.3f}"
    elif tier0 == "pages":
        cap0 = f"{int(rng.integers(largest_step, largest_step + 8))} pages"
    else:
        cap0 = f"{rng.uniform(100 * largest_step / n_pages, 100):.2f}%" if largest_step < n_pages else "100%"
    caps = [cap0] + [None if rng.random() < 0.4 else f"{int(rng.integers(1, 12))} pages" for _ in range(n - 1)]
    if profile(prof).tiers[-1].capacity_bytes is not None or rng.random() < 0.5:
        caps[-1] = None  # the last tier keeps the profile's (the backing store may be bounded)
    backing = [b for b in range(-(n - 1), n) if b % n != 0]
    scen = Scenario(name=f"case{seed}", profile=prof, capacities=tuple(caps),
                    cost_model=str(rng.choice(COST_MODELS)), quantization=str(rng.choice(QUANT)),
                    prefetch=bool(rng.random() < 0.5), max_prefetch=int(rng.integers(0, 4)),
                    backing_tier=int(rng.choice(backing)), lower_policy=str(rng.choice(LOWER_POLICIES)),
                    first_touch=str(rng.choice(FIRST_TOUCH)))
    pol = str(rng.choice(policy_names()))
    pre = None if rng.random() < 0.3 else str(rng.choice(prefetcher_names()))
    return trace, scen, pol, pre


def check_case(seed: int) -> str:
    trace, scen, pol, pre = random_case(seed)
    try:
        setup = scen.build(trace.pages, [(trace.step, trace.page)])
        setup.check_steps(trace.step, trace.page)
        m = run(trace, scen, pol, pre)
    except SimulationError:
        return "infeasible"  # e.g. a prefetch finding every tier-0 resident pinned: refused, not wrong
    P = int(setup.page_bytes[0])
    assert (setup.page_bytes == P).all()
    where = f"seed {seed}: {scen} {pol}+{pre}"
    assert m.hits + m.misses == m.accesses == len(trace), where
    created = m.first_touch_misses if scen.first_touch == "create" else 0
    assert sum(m.link_bytes_demand) == (m.misses - created) * P, where
    assert sum(m.link_bytes_prefetch) == m.prefetch_issued * P, where
    assert sum(m.link_bytes_demotion) == sum(m.evictions[:-1]) * P, where
    for t, peak in zip(setup.tiers, m.peak_bytes):
        assert t.capacity_bytes is None or peak <= t.capacity_bytes, where
    assert m.total_time_us >= m.compute_us * (1 - 1e-12), where

    # Residency, step by step, in the reference engine.
    policy = make_policy(pol)
    prefetcher = make_prefetcher(pre) if pre else None
    future = None
    if policy.privileged or getattr(prefetcher, "privileged", False):
        from kvgym.sim.context import Future

        future = Future(trace.page, len(trace.pages))
    eng = Engine(setup, policy, prefetcher, future=future)
    bounds = trace.step_bounds()

    def steps():
        for a, b in itertools.pairwise(bounds):
            eng.check_invariants()
            w = None if trace.weight is None else trace.weight[a:b]
            yield trace.step[a:b], trace.page[a:b], w

    ref = eng.run_chunks(steps())
    eng.check_invariants()
    assert (ref.hits, ref.misses, ref.evictions) == (m.hits, m.misses, m.evictions), where
    return "ok"


def _campaign(seeds) -> dict:
    out = {"ok": 0, "infeasible": 0}
    for s in seeds:
        out[check_case(s)] += 1
    assert out["ok"] >= 0.8 * len(seeds), out  # the generator makes mostly feasible cases
    return out


def test_invariants_on_random_configurations():
    print(f"\ninvariants, 300 configurations: {_campaign(range(300))}")


@pytest.mark.slow
def test_invariants_on_many_random_configurations():
    print(f"\ninvariants, 2500 configurations: {_campaign(range(300, 2800))}")


def test_the_generator_covers_every_option():
    seen = {k: set() for k in ("policy", "prefetcher", "profile", "backing", "cost", "quant", "touch", "lower")}
    for s in range(300):
        _, scen, pol, pre = random_case(s)
        for k, v in (("policy", pol), ("prefetcher", pre), ("profile", scen.profile), ("cost", scen.cost_model),
                     ("quant", scen.quantization), ("touch", scen.first_touch), ("lower", scen.lower_policy),
                     ("backing", (scen.profile, scen.backing_tier))):
            seen[k].add(v)
    assert seen["policy"] == set(policy_names()) and seen["prefetcher"] == {None, *prefetcher_names()}
    assert seen["profile"] == set(profiles()) and seen["cost"] == set(COST_MODELS) and seen["quant"] == set(QUANT)
    assert seen["touch"] == set(FIRST_TOUCH) and seen["lower"] == set(LOWER_POLICIES)
    want = {(p, b) for p in profiles() for n in [len(profile(p).tiers)] for b in range(-(n - 1), n) if b % n}
    assert seen["backing"] == want
