"""Env throughput: decision steps per second of a random valid-action agent, next to CartPole-v1.

Target (issue 5): >= 50,000 decision steps/s in a single ``kvgym/Evict-v0`` env made with
``gym.make`` (the standard wrappers included), for an agent drawing uniformly among the valid
actions of ``obs["action_mask"]`` (``mask.nonzero()[0]``, then a uniform index). Printed next to ``CartPole-v1`` stepped with
``action_space.sample()`` in the same run (machines are noisy: compare the ratio). Each figure
is the best of ``--repeat`` timed blocks of ``--steps`` steps (resets included when episodes end).

The benchmark trace is the project's ``long_tail_mix`` workload scaled up (8,192 pages of
64 KiB, 300,000 accesses, one per step: 70% on 10 hot pages, 30% Zipf over the rest) on the
``h200-measured`` tiers with a modest tier 0: HBM holds 5% of the pages (409), ``overlap``
costs, k = 32 candidates (8 sampled). Also timed: the default ``kvgym/Evict-v0`` configuration
(``topk_drift``, 1,024 pages pinned per step, episodes of ~3,000 decisions, so resets count) and
``kvgym/EvictPrefetch-v0`` on the benchmark trace.

``--candidates`` adds the candidate-coverage report (:func:`kvgym.envs.diagnostics.candidate_report`:
per baseline, how often its own choice fell outside the k shown and how often Belady's victim
was shown) on a test-split ``topk_drift`` trace. Writes ``artifacts/perf/env.json``.

    python benchmarks/bench_env.py [--steps 100000] [--repeat 3] [--candidates]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import kvgym  # noqa: F401  (registers the env ids)
from kvgym.files import write_json
from kvgym.workloads import make_trace

TARGET = 50_000
BENCH_SCENARIO = {"name": "bench-h200-hbm5", "profile": "h200-measured", "capacities": ["5%", None, None, None],
                  "cost_model": "overlap"}
BENCH_WORKLOAD = ("long_tail_mix", {"num_pages": 8192, "length": 300_000, "page_bytes": 65536})


def time_random_valid(env, steps: int, seed: int = 0) -> tuple[float, float]:
    """(wall, CPU) steps/s of a uniformly random valid-action agent (resets included)."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        valid = obs["action_mask"].nonzero()[0]  # the valid slots (np.flatnonzero without its wrappers)
        obs, _, terminated, truncated, _ = env.step(valid[int(rng.random() * len(valid))])
        if terminated or truncated:
            obs, _ = env.reset()
    return steps / (time.perf_counter() - t0), steps / max(time.process_time() - c0, 1e-9)


def time_cartpole(steps: int, seed: int = 0) -> tuple[float, float]:
    env = gym.make("CartPole-v1")
    env.reset(seed=seed)
    env.action_space.seed(seed)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - t0), steps / max(time.process_time() - c0, 1e-9)


def best(fn, repeat: int) -> tuple[float, float, list[int]]:
    """Best wall-clock rate, best CPU-time rate, and every wall-clock run."""
    runs = [fn() for _ in range(repeat)]
    return max(r[0] for r in runs), max(r[1] for r in runs), [round(r[0]) for r in runs]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--candidates", action="store_true", help="also run the candidate-coverage report")
    ap.add_argument("--out", default=str(ROOT / "artifacts" / "perf" / "env.json"))
    args = ap.parse_args(argv)

    name, params = BENCH_WORKLOAD
    trace = make_trace(name, 0, **params)
    env = gym.make("kvgym/Evict-v0", scenario=BENCH_SCENARIO, trace=trace, k=32, sample=8)
    time_random_valid(env, 2_000)  # warm-up: numba kernels load from their cache (or compile)
    # Interleave the two so that load from other processes hits both alike.
    kv_r, cp_r = [], []
    for _ in range(args.repeat):
        kv_r.append(time_random_valid(env, args.steps))
        cp_r.append(time_cartpole(args.steps))
    kv, kv_cpu, kv_runs = best(iter(kv_r).__next__, args.repeat)
    cp, cp_cpu, cp_runs = best(iter(cp_r).__next__, args.repeat)
    penv = gym.make("kvgym/EvictPrefetch-v0", scenario=BENCH_SCENARIO, trace=trace, k=32, sample=8)
    time_random_valid(penv, 2_000)
    pf, _, pf_runs = best(lambda: time_random_valid(penv, args.steps), args.repeat)
    denv = gym.make("kvgym/Evict-v0")
    time_random_valid(denv, 2_000)
    dflt, _, dflt_runs = best(lambda: time_random_valid(denv, args.steps // 2), args.repeat)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    result = {
        "target_steps_per_s": TARGET,
        "random_valid_steps_per_s": round(kv),
        "random_valid_runs": kv_runs,
        "cartpole_random_steps_per_s": round(cp),
        "cartpole_runs": cp_runs,
        "ratio_kvgym_over_cartpole": round(kv / cp, 3),
        "random_valid_steps_per_cpu_s": round(kv_cpu),
        "cartpole_random_steps_per_cpu_s": round(cp_cpu),
        "ratio_kvgym_over_cartpole_cpu": round(kv_cpu / cp_cpu, 3),
        "meets_target": bool(kv >= TARGET),
        "load_average_1min": None if load is None else round(load, 2),
        "evict_prefetch_steps_per_s": round(pf),
        "evict_prefetch_runs": pf_runs,
        "default_env_steps_per_s": round(dflt),
        "default_env_runs": dflt_runs,
        "steps_per_block": args.steps,
        "scenario": BENCH_SCENARIO,
        "workload": {"name": name, "params": params, "seed": 0, "accesses": len(trace), "pages": len(trace.pages)},
        "k": 32, "sample": 8,
        "machine": {"cpu": platform.machine(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "gymnasium": gym.__version__, "numpy": np.__version__},
    }
    print(f"kvgym/Evict-v0 (random valid action): {kv:,.0f} decision steps/s ({kv_cpu:,.0f} per CPU-s)   "
          f"runs {kv_runs}")
    print(f"CartPole-v1 (random action):          {cp:,.0f} steps/s ({cp_cpu:,.0f} per CPU-s)   runs {cp_runs}")
    print(f"ratio kvgym / CartPole: {kv / cp:.2f} wall, {kv_cpu / cp_cpu:.2f} CPU   target >= {TARGET:,} steps/s: "
          f"{'met' if kv >= TARGET else 'NOT met'}   (1-min load average {load})")
    print(f"kvgym/EvictPrefetch-v0: {pf:,.0f} steps/s;  default kvgym/Evict-v0 (topk_drift, resets): {dflt:,.0f} steps/s")

    if args.candidates:
        from kvgym.envs.config import Splits
        from kvgym.envs.diagnostics import candidate_report
        from kvgym.envs.evict import DEFAULT_SCENARIO

        seed = Splits().seeds("test")[0]
        tr = make_trace("topk_drift", seed, decode_steps=32)
        rows = candidate_report(DEFAULT_SCENARIO, tr, k=32, sample=8, seed=0)
        result["candidates"] = {"trace": {"workload": "topk_drift", "seed": seed, "params": {"decode_steps": 32}},
                                "scenario": DEFAULT_SCENARIO.to_dict(), "k": 32, "sample": 8, "rows": rows}
        print(f"\ncandidate coverage, k=32 (24 LRU tail + 8 sampled), topk_drift seed {seed}:")
        print(f"{'policy':<18} {'decisions':>9} {'outside':>8} {'belady shown':>12} {'hit (env)':>9} {'hit (all)':>9}")
        for r in rows:
            print(f"{r['policy']:<18} {r['decisions']:>9} {r['outside_rate']:>8.3f} {r['belady_shown_rate']:>12.3f} "
                  f"{r['hit_rate']:>9.4f} {r['hit_rate_full']:>9.4f}")
    out = Path(args.out)
    write_json(out, result)
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
