"""The default sweep: the README's first command (``kvgym demo``).

Every realistic scenario (H200 measured costs, overlap clock; HBM at 5/10/25% of the KV
footprint; fp16/fp8/int4; prefetch off/on) x the synthetic decode workloads x every registered
baseline policy x two seeds, written to ``runs/demo/`` (untracked; ``make artifacts`` writes the
committed copy in ``artifacts/default_sweep/``).

Workload sizes are chosen so the whole sweep runs in a few minutes on two cores and so that
every cell is feasible: one decode step's pages (all pinned at once) must fit in 5% of the
footprint. That rules out ``multi_turn`` and ``shared_prefix`` here: their prefill steps read
the whole prompt at once (over half of the trace's pages), more than any of these HBM sizes
holds; sweep them with a larger tier 0 (``--set scenarios=...`` with a custom scenario).
Prefetch-on scenarios run every policy with the ``sequential`` prefetcher, except
``predictive``, which brings its own (``markov``).

The serving section (``runs/demo/serving/``, :mod:`kvgym.bench.serving`): three serving scenarios
(HBM 5% over host RAM 25% written through, with the ``always``, ``threshold`` and ``tinylfu``
admission policies; the same tiers written back; HBM 5% alone) x the whole Mooncake synthetic trace
(3,993 requests, real arrivals) and a generated RAG workload x seven serving baselines, on the
compiled serving engine (a tenth of a second per cell).
"""

from __future__ import annotations

DEFAULT_SWEEP = {
    "name": "default_sweep",
    "scenarios": ["realistic"],
    "workloads": [
        "streaming(prompt_tokens=2048,decode_steps=48,window_pages=4)",
        "heavy_hitter(prompt_tokens=2048,decode_steps=48,heavy_pages=2,window_pages=2,drift=0.2)",
        "topk_drift(prompt_tokens=2048,decode_steps=48,k=4,drift=0.5)",
        "retrieval(prompt_tokens=2048,decode_steps=48,window_pages=2,burst_pages=3)",
    ],
    "policies": ["all"],
    "prefetcher": "sequential",
    "seeds": [0, 1],
    "out": "runs/demo",
    "serving": {
        "scenarios": ["gpu5_host25_wt", "gpu5_host25_wb", "gpu5_only"],
        "sources": ["mooncake-synthetic", "rag(requests=100)"],
        "policies": ["vllm_lru", "vllm_arc", "radix_lru", "lmcache_lru", "s3fifo", "hits_per_token",
                     "cost_aware_tiered"],
        "admissions": ["always", "threshold(store_threshold=2)", "tinylfu"],
        "seeds": [0],
    },
}
