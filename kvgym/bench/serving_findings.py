"""Part 3 of the findings report: does the policy matter in serving mode?

kv-hierarchy-lab's findings, and part 2's decode scenarios, compare policies on decode traces, where
the policy moves total time by a few percent at most. Serving mode (:mod:`kvgym.sim.serving`) asks
the question the issue behind it raised: when a block's loss means recomputing a long prompt, how
far apart are the policies in time to first token? On the whole Mooncake synthetic trace
(:data:`SOURCE`, 3,993 requests, real arrivals), under the serving scenarios ``gpu5_host25_wt`` (with the
``always``, ``threshold`` and ``tinylfu`` admission policies) and ``gpu5_host25_wb``, with the
serving baselines of :data:`POLICIES` in every tier, this part reports the spread between the best
and the worst policy (mean and p90 TTFT), what admission and write-back change, and how much prefix
reuse is left to win: the unlimited-cache bound (:func:`kvgym.oracle.prefix.compulsory`). The cells
are the serving harness's (:mod:`kvgym.bench.serving`), run in this process.
"""

from __future__ import annotations

from kvgym.bench.serving import ServingSweepConfig, expand_serving
from kvgym.bench.serving_board import build

#: The whole Mooncake synthetic trace (the compiled engine replays it in a tenth of a second).
SOURCE = "mooncake-synthetic"
POLICIES = ("vllm_lru", "vllm_arc", "radix_lru", "s3fifo", "cost_aware_tiered")
ADMISSIONS = ("always", "threshold(store_threshold=2)", "tinylfu")
SCENARIOS = ("gpu5_host25_wt", "gpu5_host25_wb")


def _pct(x: float) -> str:
    return f"{'+' if x >= 0 else '−'}{abs(100 * x):.1f}%"


def serving_section(decode_spread: float | None = None, log=None) -> tuple[list[str], dict]:
    """The report's lines and the figures behind them. ``decode_spread``: the largest spread of total
    time between the original six policies on part 2's decode workloads (``None``: part 2 not run)."""
    from kvgym.oracle.prefix import compulsory
    from kvgym.workloads.request_sources import request_trace

    cfg = ServingSweepConfig(scenarios=SCENARIOS, sources=(SOURCE,), policies=POLICIES, admissions=ADMISSIONS)
    records = [c.run_safe() for c in expand_serving(cfg)]
    if log:
        log(f"findings: serving done ({len(records)} cells)")
    board = build(records, "vllm_lru")
    by = {(r["scenario"], r["entry"]): r for r in records if r["status"] == "ok"}
    trace = request_trace(SOURCE)
    bound = compulsory(trace)
    wt, wb = (next(sc for sc in board["scenarios"] if sc["scenario"] == s) for s in SCENARIOS)
    lines = ["## Part 3: does the policy matter in serving mode?", "",
             (f"Serving mode (request-level prefix caching, `docs/serving.md`): the {len(trace):,} requests of the "
              f"Mooncake synthetic trace ({trace.n_blocks:,} distinct 512-token blocks of "
              "64 MiB for Llama-3.1-8B, arrivals as recorded), one H200 (continuous batching), HBM holding 5% of the "
              "blocks over host RAM holding 25%, a block found in no tier recomputed. Each policy runs in both tiers; "
              f"policies: {', '.join(f'`{p}`' for p in POLICIES)}. Time to first token (TTFT) includes queueing: the "
              "trace's arrival rate exceeds what one H200 prefills for this model, so requests queue and every "
              "prompt token recomputed delays the requests behind it."), "",
             "| scenario | best mean TTFT | worst mean TTFT | spread (mean) | spread (p90) |", "|---|---|---|---:|---:|"]
    result: dict = {}
    for sc in (wt, wb):
        m, p = sc["spread_mean"], sc["spread_p90"]
        lines.append(f"| {sc['scenario']} | {m['best']} ({m['best_ms'] / 1e3:,.2f} s) | {m['worst']} "
                     f"({m['worst_ms'] / 1e3:,.2f} s) | {_pct(m['spread'])} | {_pct(p['spread'])} |")  # ms -> s
        result[sc["scenario"]] = {"spread_mean": m["spread"], "spread_p90": p["spread"], "best": m["best"],
                                  "worst": m["worst"]}
    eviction = max(result[s]["spread_mean"] for s in SCENARIOS)
    compare = ("" if decode_spread is None else
               f" Part 2's decode workloads put at most {_pct(decode_spread)} between the original six policies' "
               "total times.")
    lines += ["", (f"**The policy moves mean TTFT by up to {_pct(eviction)}** here (best against worst, admission "
                   f"included).{compare} The differences come from prefix reuse: a policy that keeps the blocks the "
                   "next requests share saves their prefill, and under load the saved compute shortens every queue "
                   "behind it."), ""]
    # Admission: threshold and tinylfu against storing everything, per policy.
    lines += [("| policy | TTFT, threshold(2) vs always | TTFT, tinylfu vs always | host-tier prefix hits, always / "
              "threshold / tinylfu |"), "|---|---:|---:|---|"]
    adm = {}
    for pol in POLICIES:
        a = by.get(("gpu5_host25_wt", pol))
        t = by.get(("gpu5_host25_wt", f"{pol}+threshold(store_threshold=2)"))
        f = by.get(("gpu5_host25_wt", f"{pol}+tinylfu"))
        if not (a and t and f):
            continue
        adm[pol] = (t["ttft_mean_us"] / a["ttft_mean_us"] - 1, f["ttft_mean_us"] / a["ttft_mean_us"] - 1)
        lines.append(f"| {pol} | {_pct(adm[pol][0])} | {_pct(adm[pol][1])} | {a['prefix_hits'][1]:,} / "
                     f"{t['prefix_hits'][1]:,} / {f['prefix_hits'][1]:,} |")
    helps = [p for p, (t, f) in adm.items() if min(t, f) < 0]
    result["admission"] = adm
    if not helps:
        verdict = (f"**Selective write-through helps none of the {len(adm)} policies** on this trace: storing only "
                   "blocks offered twice (vLLM's `store_threshold`) or referenced twice in HBM (Dynamo's TinyLFU) "
                   "keeps one-off prompts out of host RAM, but it also refuses the first copy of every block whose "
                   "reuse is its second request, which that request then recomputes (fewer host-tier hits above).")
    else:
        verdict = (f"**Selective write-through helps {len(helps)} of {len(adm)} policies** on this trace "
                   f"({', '.join(helps)}): keeping one-off prompts out of host RAM leaves room for blocks that are "
                   "reused, which outweighs refusing the first copy of blocks whose reuse is their second request.")
    lines += ["", verdict, ""]
    best = {sc["scenario"]: min(sc["ranked"], key=lambda r: r["ttft_vs_ref"]) for sc in (wt, wb)}
    ref_wt, ref_wb = by[("gpu5_host25_wt", "vllm_lru")], by[("gpu5_host25_wb", "vllm_lru")]
    diff = ref_wb["ttft_mean_us"] / ref_wt["ttft_mean_us"] - 1
    hits_wt, hits_wb = sum(ref_wt["prefix_hits"]), sum(ref_wb["prefix_hits"])
    if abs(diff) < 1e-3:
        why = (f"the two rules keep the same reused blocks here ({hits_wb:,} prefix hits either way): the blocks this "
               "trace reuses are still in HBM, or already in host RAM, when they are needed")
    elif diff < 0:
        why = (f"an exclusive host tier holds other blocks than HBM, so the two tiers hold more distinct blocks "
               f"({hits_wb:,} prefix hits against {hits_wt:,})")
    else:
        why = (f"write-through puts a block in host RAM when it is computed, so it is there when HBM evicts it even if "
               f"the host tier would have evicted it under write-back ({hits_wt:,} prefix hits against {hits_wb:,})")
    lines += [(f"**Write-back against write-through** (the same tiers, `vllm_lru`, admission `always`): mean TTFT "
               f"{_pct(diff)} ({ref_wb['ttft_mean_us'] / 1e6:,.2f} s against {ref_wt['ttft_mean_us'] / 1e6:,.2f} s): "
               f"{why}. The best entries: `{best['gpu5_host25_wb']['policy']}` with write-back, "
               f"`{best['gpu5_host25_wt']['policy']}` with write-through."), ""]
    hits = max(sum(r["prefix_hits"]) for r in by.values())
    result.update(write_back_vs_through=diff, compulsory_hits=bound.prefix_hits, best_hits=hits)
    lines += [(f"**Headroom.** An unlimited cache would serve {bound.prefix_hits:,} of the trace's "
               f"{bound.prompt_blocks:,} prompt blocks from cached prefixes (`kvgym.oracle.prefix.compulsory`, "
               f"{bound.tokens_saved / (bound.tokens_saved + bound.tokens_computed):.0%} of the prompt tokens); the "
               f"best run here serves {hits:,}, in HBM and host RAM that hold 30% of the trace's blocks."), ""]
    return lines, result
