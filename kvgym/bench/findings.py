"""The findings report: kv-hierarchy-lab v0.1's four published findings, re-run through kvgym.

Part 1 (parity mode): the exact traces of the original's default sweep
(``kvgym/data/parity/traces/*.json``, read with :func:`kvgym.bench.parity.load_cell`) under the
original scenarios (``serial`` costs, ``seed-toy`` tiers), every figure side by side with the
published one, each finding marked **holds** / **does not hold** with the reason. Each kvgym
record is also compared with ``expected_fixed.json`` (the original with kvgym's fixes F1/F2) and
``original_results.json`` (the original as published), which says whether a figure that differs
from the published one differs because of the fixes.

Part 2: the same four questions on the realistic scenarios (H200 measured costs, the ``overlap``
clock) and the synthetic decode workloads of the default sweep, with what changes and why.

Part 3 (:mod:`kvgym.bench.serving_findings`): serving mode on the Mooncake synthetic trace: the
spread between the best and the worst policy in time to first token, admission, write-back.

The parity data ships with the package (:func:`kvgym.bundled.parity_dir`); another copy can be
passed as ``parity_dir``.
"""

from __future__ import annotations

import json
import statistics as st
from dataclasses import dataclass
from pathlib import Path

from kvgym.bench.cells import load_trace, simulate
from kvgym.bench.scenarios import get_scenario
from kvgym.bench.specs import PAIRED_PREFETCHER, SourceSpec
from kvgym.files import write_text

ORIGINAL_SIX = ("lru", "windowed_recency", "heavy_hitter", "cost_aware", "predictive", "regret_aware")

#: The published figures of kv-hierarchy-lab v0.1 (its README / default sweep).
PUBLISHED = {
    "F1": {"regret_aware_misses": 152, "lru_misses": 212, "bytes_cut": 0.263},
    "F2": {"regret_aware_latency_ms": 3.365, "lru_latency_ms": 3.664, "bytes_cut": 0.095},
    "F3": {"predictive_miss_cut": 0.596, "predictive_latency_over_cost_aware": 0.292},
    "F4": {"fp16_hit_rate": 0.459, "int4_hit_rate": 0.771, "bytes_cut": 0.939},
}


# ---------------------------------------------------------------------------------------------
@dataclass
class ParityRun:
    records: dict  # (scenario, workload, policy) -> kvgym record in the original's format
    fixed: dict    # same keys -> expected_fixed.json metrics
    original: dict  # same keys -> original_results.json metrics
    mismatches: list


def _same(ours: dict, published: dict) -> bool:
    """Equal at the published precision (3 decimals; percentages as fractions to 0.1%)."""
    return all(abs(ours[k] - v) < 0.0005 + 1e-12 for k, v in published.items())


def _close(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= 1e-9 * max(1.0, abs(b))
    return a == b


def run_parity(parity_dir: Path, cells: list[tuple[str, str]]) -> ParityRun:
    from kvgym.bench.parity import load_cell, parity_metrics

    fixed = {(r["scenario"], r["workload"], r["policy"]): r["metrics"]
             for r in json.loads((parity_dir / "expected_fixed.json").read_text())}
    orig = {(r["scenario"], r["workload"], r["policy"]): r["metrics"]
            for r in json.loads((parity_dir / "original_results.json").read_text())}
    recs, bad = {}, []
    for scen, wl in cells:
        cell = load_cell(parity_dir / "traces" / f"{scen}__{wl}.json")
        named = get_scenario(scen)
        if cell.scenario.with_(description="") != named.with_(description=""):
            raise AssertionError(f"scenario {scen!r} differs from the parity cell's")
        names = [t.name for t in named.build(cell.trace.pages).tiers]
        for pol in ORIGINAL_SIX:
            m = simulate(cell.trace, named, pol, PAIRED_PREFETCHER.get(pol))
            rec = parity_metrics(m, len(cell.trace), names)
            recs[(scen, wl, pol)] = rec
            if not _close(rec, fixed[(scen, wl, pol)]):
                bad.append((scen, wl, pol))
    return ParityRun(recs, fixed, orig, bad)


PARITY_CELLS = [("small_fp16_prefetch", "rag_burst"), ("constrained_fp16_prefetch", "adversarial_burst"),
                ("small_fp16_prefetch", "prefetch_friendly"), ("small_fp16_no_prefetch", "rag_burst"),
                ("small_int4_no_prefetch", "rag_burst")]


def _figures(R: dict) -> dict:
    """The four findings' figures from records in the original's format."""
    g = lambda s, w, p, k: R[(s, w, p)][k]
    s, w = "small_fp16_prefetch", "rag_burst"
    f1 = {"regret_aware_misses": g(s, w, "regret_aware", "miss_count"), "lru_misses": g(s, w, "lru", "miss_count"),
          "bytes_cut": 1 - g(s, w, "regret_aware", "bytes_moved") / g(s, w, "lru", "bytes_moved")}
    s, w = "constrained_fp16_prefetch", "adversarial_burst"
    lat = {p: g(s, w, p, "avg_latency_ms") for p in ORIGINAL_SIX}
    f2 = {"regret_aware_latency_ms": lat["regret_aware"], "lru_latency_ms": lat["lru"],
          "bytes_cut": 1 - g(s, w, "regret_aware", "bytes_moved") / g(s, w, "lru", "bytes_moved"),
          "lowest": min(lat, key=lambda p: (lat[p], ORIGINAL_SIX.index(p))), "latencies": lat}
    s, w = "small_fp16_prefetch", "prefetch_friendly"
    f3 = {"predictive_miss_cut": 1 - g(s, w, "predictive", "miss_count") / g(s, w, "lru", "miss_count"),
          "predictive_latency_over_cost_aware": g(s, w, "predictive", "avg_latency_ms") / g(s, w, "cost_aware", "avg_latency_ms") - 1,
          "predictive_misses": g(s, w, "predictive", "miss_count"), "lru_misses": g(s, w, "lru", "miss_count"),
          "predictive_prefetch_bytes": g(s, w, "predictive", "prefetch_bytes_moved"),
          "predictive_usefulness": g(s, w, "predictive", "prefetch_usefulness")}
    a, b = "small_fp16_no_prefetch", "small_int4_no_prefetch"
    f4 = {"fp16_hit_rate": st.mean(g(a, "rag_burst", p, "overall_hit_rate") for p in ORIGINAL_SIX),
          "int4_hit_rate": st.mean(g(b, "rag_burst", p, "overall_hit_rate") for p in ORIGINAL_SIX),
          "bytes_cut": 1 - st.mean(g(b, "rag_burst", p, "bytes_moved") for p in ORIGINAL_SIX)
          / st.mean(g(a, "rag_burst", p, "bytes_moved") for p in ORIGINAL_SIX)}
    return {"F1": f1, "F2": f2, "F3": f3, "F4": f4}


def _changed(run: ParityRun, keys) -> str:
    """Which metrics the fixes change (original vs expected_fixed) in the given records."""
    parts = []
    for key in keys:
        o, f = run.original[key], run.fixed[key]
        diff = [m for m in o if m != "peak_footprint_bytes" and not _close(o[m], f[m])]
        if diff:
            parts.append(f"{key[2]}: {', '.join(diff)}")
    return "; ".join(parts) if parts else "no metric besides peak footprints"


def _fix_note(run: ParityRun, keys, same: bool) -> str:
    if same:
        return "kvgym's figures equal the published ones at the published precision."
    return ("kvgym's figure differs from the published one only through kvgym's two fixes: the original engine with "
            "F1 and F2 applied (`expected_fixed.json`) gives exactly kvgym's records, and the fixes change, in "
            f"this cell, {_changed(run, keys)}.")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def parity_section(run: ParityRun, tier0_pages: dict) -> tuple[list[str], dict]:
    k = _figures(run.records)
    o = _figures(run.original)
    fx = _figures(run.fixed)
    P = PUBLISHED
    verdicts = {}
    lines = ["## Part 1: the published findings, re-run in parity mode", "",
             ("Inputs: the original's exact default-sweep traces (`kvgym/data/parity/traces/`), the original scenarios "
             "(`seed-toy` tiers, `serial` costs, fixed decode penalty), the original six policies with their "
             "original parameters (`predictive` with its `markov` prefetcher). *Published* = kv-hierarchy-lab v0.1's "
             "figure; *original rerun* = `original_results.json` (the original's committed results); *kvgym* = this "
             "run, which has kvgym's two fixes (F1: a promoted page leaves its source tier before room is made; F2: "
             "the demanded page is pinned against its own prefetches)."), ""]
    n = len(run.records)
    if run.mismatches:
        lines.append(f"**Parity check: {n - len(run.mismatches)}/{n} kvgym records equal `expected_fixed.json`**; "
                     f"different: {', '.join('/'.join(x) for x in run.mismatches)}.")
    else:
        lines.append(f"Parity check: all {n} kvgym records used here equal `expected_fixed.json` (the original "
                     "engine with fixes F1 and F2) exactly.")
    lines.append("")

    def row(label, pub, orig, ours, fmt):
        return f"| {label} | {fmt(pub)} | {fmt(orig)} | {fmt(ours)} |"

    hdr = ["| figure | published | original rerun | kvgym (parity) |", "|---|---:|---:|---:|"]
    # F1
    holds = k["F1"]["regret_aware_misses"] < k["F1"]["lru_misses"] and k["F1"]["bytes_cut"] > 0
    verdicts["F1"] = holds
    lines += ["### Finding 1: on small_fp16_prefetch + rag_burst, regret_aware misses less than LRU and moves fewer bytes", ""]
    lines += hdr + [row("regret_aware misses", P["F1"]["regret_aware_misses"], o["F1"]["regret_aware_misses"], k["F1"]["regret_aware_misses"], str),
                    row("lru misses", P["F1"]["lru_misses"], o["F1"]["lru_misses"], k["F1"]["lru_misses"], str),
                    row("bytes moved, regret_aware vs lru", P["F1"]["bytes_cut"], o["F1"]["bytes_cut"], k["F1"]["bytes_cut"], lambda x: "−" + _pct(x))]
    lines += ["", f"**{'Holds' if holds else 'Does not hold'}.** " + (
        _fix_note(run, [("small_fp16_prefetch", "rag_burst", p) for p in ("lru", "regret_aware")],
                  _same(k["F1"], P["F1"])) + " Why it holds: rag_burst draws 14 accesses from a hot set of 16 pages, then 6 distinct cold pages; "
        f"tier 0 holds only about {tier0_pages['small_fp16_prefetch']} pages, so LRU lets the cold draws push hot pages "
        "out and pays to bring them back. regret_aware adds a bonus to pages re-accessed soon after their eviction "
        "(within 24 steps), which is exactly the hot set, so the once-touched cold pages become the victims."
        if holds else "regret_aware no longer beats LRU here."), ""]
    # F2
    lowest = k["F2"]["lowest"]
    holds = lowest == "regret_aware" and k["F2"]["bytes_cut"] > 0
    verdicts["F2"] = holds
    lines += ["### Finding 2: on constrained_fp16_prefetch + adversarial_burst, regret_aware has the lowest latency", ""]
    lines += hdr + [row("regret_aware avg latency (ms)", P["F2"]["regret_aware_latency_ms"], o["F2"]["regret_aware_latency_ms"], k["F2"]["regret_aware_latency_ms"], lambda x: f"{x:.3f}"),
                    row("lru avg latency (ms)", P["F2"]["lru_latency_ms"], o["F2"]["lru_latency_ms"], k["F2"]["lru_latency_ms"], lambda x: f"{x:.3f}"),
                    row("bytes moved, regret_aware vs lru", P["F2"]["bytes_cut"], o["F2"]["bytes_cut"], k["F2"]["bytes_cut"], lambda x: "−" + _pct(x)),
                    row("lowest-latency policy", "regret_aware", o["F2"]["lowest"], lowest, str)]
    order = sorted(k["F2"]["latencies"].items(), key=lambda kv: kv[1])
    lines += ["", f"**{'Holds' if holds else 'Does not hold'}.** kvgym's latencies (ms): "
              + ", ".join(f"{p} {v:.3f}" for p, v in order) + ". "
              + (_fix_note(run, [("constrained_fp16_prefetch", "adversarial_burst", p) for p in ("lru", "regret_aware")],
                           _same(k["F2"], P["F2"])) + " The ranking is the published one. Why it holds: "
                 "adversarial_burst revisits 6 of 12 early anchors after a middle burst; with about "
                 f"{tier0_pages['constrained_fp16_prefetch']} pages in tier 0, recency alone evicts the anchors just "
                 "before they return, while regret_aware's re-reference bonus keeps them."
                 if holds else f"The lowest-latency policy is {lowest}."), ""]
    # F3
    f3 = k["F3"]
    holds = f3["predictive_miss_cut"] > 0 and f3["predictive_latency_over_cost_aware"] > 0
    verdicts["F3"] = holds
    lines += ["### Finding 3: on small_fp16_prefetch + prefetch_friendly, predictive cuts misses but is slower than cost_aware", ""]
    lines += hdr + [row("predictive misses vs lru", P["F3"]["predictive_miss_cut"], o["F3"]["predictive_miss_cut"], f3["predictive_miss_cut"], lambda x: "−" + _pct(x)),
                    row("predictive latency vs cost_aware", P["F3"]["predictive_latency_over_cost_aware"], o["F3"]["predictive_latency_over_cost_aware"], f3["predictive_latency_over_cost_aware"], lambda x: "+" + _pct(x))]
    lines += ["", f"**{'Holds' if holds else 'Does not hold'}.** " + (
        f"Misses {f3['predictive_misses']} vs {f3['lru_misses']}. "
        + _fix_note(run, [("small_fp16_prefetch", "prefetch_friendly", p) for p in ("lru", "predictive", "cost_aware")],
                    _same(f3, P["F3"])) + " Why it holds: prefetch_friendly sweeps the pages in "
        "order, so the markov prefetcher's transition counts predict the next page after one sweep and most demand "
        f"misses become tier-0 hits (prefetch usefulness {f3['predictive_usefulness']:.2f}). But the `serial` cost model "
        "adds every prefetch transfer to the access latency in full (nothing overlaps), and the prefetched pages' "
        f"transfers ({f3['predictive_prefetch_bytes']:,} bytes) plus the demotions they trigger cost more than the "
        "misses they save, so cost_aware, which never prefetches, stays faster."
        if holds else "The trade-off no longer appears."), ""]
    # F4
    f4 = k["F4"]
    holds = f4["int4_hit_rate"] > f4["fp16_hit_rate"] and f4["bytes_cut"] > 0
    verdicts["F4"] = holds
    lines += ["### Finding 4: small tiers, no prefetch, rag_burst: int4 instead of fp16 raises the hit rate and cuts bytes", ""]
    lines += hdr + [row("mean tier-0 hit rate, fp16 (6 policies)", P["F4"]["fp16_hit_rate"], o["F4"]["fp16_hit_rate"], f4["fp16_hit_rate"], lambda x: f"{x:.3f}"),
                    row("mean tier-0 hit rate, int4", P["F4"]["int4_hit_rate"], o["F4"]["int4_hit_rate"], f4["int4_hit_rate"], lambda x: f"{x:.3f}"),
                    row("mean bytes moved, int4 vs fp16", P["F4"]["bytes_cut"], o["F4"]["bytes_cut"], f4["bytes_cut"], lambda x: "−" + _pct(x))]
    lines += ["", f"**{'Holds' if holds else 'Does not hold'}.** " + (
        _fix_note(run, [(sc, "rag_burst", p) for sc in ("small_fp16_no_prefetch", "small_int4_no_prefetch")
                        for p in ORIGINAL_SIX], _same(f4, P["F4"])) + " Why it holds: the capacities are fixed in bytes, and an int4 page is about a quarter "
        f"of an fp16 page, so tier 0 holds about {tier0_pages['small_int4_no_prefetch']} int4 pages instead of "
        f"{tier0_pages['small_fp16_no_prefetch']} fp16 ones: rag_burst's 16-page hot set now fits, misses collapse, "
        "and each remaining transfer is 4x smaller. The price is the fixed decode penalty (0.03 ms per int4 page "
        "use), which kv-hierarchy-lab charges on every hit; there is no accuracy model."
        if holds else "int4 no longer helps here."), ""]
    lines.append("Published figures match the original rerun to the published precision: "
                 + ("yes" if all(abs(o[f][x] - P[f][x]) < 0.001 + 1e-9 for f in P for x in P[f]) else "no") + ".")
    return lines, {"kvgym": k, "original": o, "expected_fixed": fx, "verdicts": verdicts}


# ---------------------------------------------------------------------------------------------
def realistic_sources() -> list[SourceSpec]:
    from kvgym.bench.demo import DEFAULT_SWEEP
    return [SourceSpec.workload(w) for w in DEFAULT_SWEEP["workloads"]]


def _run(scen, src, seed, pol):
    trace = load_trace(src, seed)
    pf = PAIRED_PREFETCHER.get(pol, "sequential" if scen.prefetch else None)
    return simulate(trace, scen, pol, pf)


def realistic_section(seeds=(0, 1), log=None) -> tuple[list[str], dict]:
    from kvgym.sim.policy import policy_names

    sources = realistic_sources()
    pols = [p for p in ORIGINAL_SIX if p in policy_names()]
    data: dict = {}

    def mean_over_seeds(scen, src, pol):
        ms = [_run(scen, src, s, pol) for s in seeds]
        return {"misses": st.mean(m.misses for m in ms), "hit_rate": st.mean(m.hit_rate for m in ms),
                "bytes": st.mean(m.bytes_moved for m in ms), "time_ms": st.mean(m.total_time_us for m in ms) / 1e3,
                "stall_ms": st.mean(m.stall_us for m in ms) / 1e3,
                "prefetch_bytes": st.mean(sum(m.link_bytes_prefetch) for m in ms),
                "usefulness": st.mean(m.prefetch_usefulness for m in ms)}

    lines = ["## Part 2: the same questions on realistic scenarios", "",
             "Scenarios: `h200-measured` tiers (HBM, HBM pool, host RAM, disk; costs measured on one H200), the "
             "`overlap` clock (decode compute per step, FIFO links, prefetches overlap compute, demand misses stall "
             "the step), new KV created in HBM. Workloads: the default sweep's synthetic decode traces "
             "(Llama-3.1-8B geometry, 16-token pages of 64 KiB in fp16, 2,048-token prompts, 48 decode steps): "
             + ", ".join(f"`{s.label}`" for s in sources) + f". Means over seeds {', '.join(map(str, seeds))}. "
             "Time = total simulated decode time (compute + stall). In prefetch-on scenarios the policies other than "
             "`predictive` (which brings `markov`) run with the `sequential` prefetcher.", ""]
    # Q1 and Q3 share a scenario.
    s10 = get_scenario("h200_10pct_fp16_prefetch")
    s5 = get_scenario("h200_5pct_fp16_prefetch")
    for src in sources:
        for pol in pols:
            data[("q13", src.label, pol)] = mean_over_seeds(s10, src, pol)
            data[("q2", src.label, pol)] = mean_over_seeds(s5, src, pol)
        if log:
            log(f"findings: {src.label} done (Q1-Q3)")
    # Q1
    lines += ["### Q1 (finding 1): does regret_aware miss less than LRU and move fewer bytes? (h200_10pct_fp16_prefetch)", "",
              "| workload | lru misses | regret_aware misses | bytes, regret_aware vs lru | time, regret_aware vs lru |",
              "|---|---:|---:|---:|---:|"]
    q1 = []
    for src in sources:
        a, b = data[("q13", src.label, "lru")], data[("q13", src.label, "regret_aware")]
        q1.append(b["misses"] < a["misses"] and b["bytes"] < a["bytes"])
        lines.append(f"| {src.name} | {a['misses']:.1f} | {b['misses']:.1f} | {_rel(b['bytes'], a['bytes'])} | "
                     f"{_rel(b['time_ms'], a['time_ms'])} |")
    rel = [data[("q13", src.label, "regret_aware")]["misses"] / max(1e-9, data[("q13", src.label, "lru")]["misses"]) - 1
           for src in sources]
    lines += ["", (f"**{'Holds' if all(q1) else 'Does not hold' if not any(q1) else 'Holds partly'}** (on {sum(q1)} of "
              f"{len(q1)} workloads; regret_aware's misses vs LRU range from {_signed(min(rel))} to {_signed(max(rel))}). "
              "What changes: decode traces have no rag_burst-style scan of once-used pages that pushes a re-used hot "
              "set out. Every step reads the newest pages of each layer plus a slowly drifting set, so recency is "
              "the best cheap predictor; regret_aware's score is led by lifetime frequency (1.5 × accesses) plus its "
              "re-reference bonus, which keeps old, often-read pages and evicts young pages the next steps still "
              "read. The frequency-led policies (lfu, heavy_hitter, cost_aware) lose to LRU in the default sweep "
              "for the same reason. First touches are new KV written into HBM and cost every policy the same."), ""]
    # Q2
    lines += ["### Q2 (finding 2): is regret_aware the lowest-latency policy under the tightest HBM? (h200_5pct_fp16_prefetch)", "",
              "| workload | lowest time (of the original six) | regret_aware rank | regret_aware vs lru time | bytes, regret_aware vs lru |",
              "|---|---|---:|---:|---:|"]
    q2 = []
    for src in sources:
        t = {p: data[("q2", src.label, p)]["time_ms"] for p in pols}
        order = sorted(pols, key=lambda p: (t[p], pols.index(p)))
        rank = order.index("regret_aware") + 1
        q2.append(rank == 1)
        a, b = data[("q2", src.label, "lru")], data[("q2", src.label, "regret_aware")]
        lines.append(f"| {src.name} | {order[0]} ({t[order[0]]:.2f} ms) | {rank} | {_rel(b['time_ms'], a['time_ms'])} | "
                     f"{_rel(b['bytes'], a['bytes'])} |")
    lines += ["", (f"**{'Holds' if all(q2) else 'Does not hold' if not any(q2) else 'Holds partly'}** (regret_aware "
              f"is the fastest of the six on {sum(q2)} of {len(q2)} workloads). What changes: under `overlap` time is "
              "decode compute (about 20 µs per layer per step on the H200) plus the stall of the demand fetches; a "
              "refetch from the HBM pool costs about 13 µs on its own link, and prefetches overlap compute. So the "
              "serial model's large latency gaps shrink to a few percent of decode time, and a policy that misses a "
              "little more can still tie or win when its misses fall on steps whose compute hides them."), ""]
    # Q3
    lines += ["### Q3 (finding 3): does predictive's prefetching cut misses, and does it cost latency against cost_aware? (h200_10pct_fp16_prefetch)", "",
              "| workload | predictive misses vs lru | predictive time vs cost_aware | predictive prefetch usefulness | prefetch bytes |",
              "|---|---:|---:|---:|---:|"]
    q3 = []
    for src in sources:
        a, p, c = (data[("q13", src.label, x)] for x in ("lru", "predictive", "cost_aware"))
        q3.append((p["misses"] < a["misses"], p["time_ms"] > c["time_ms"]))
        lines.append(f"| {src.name} | {_rel(p['misses'], a['misses'])} | {_rel(p['time_ms'], c['time_ms'])} | "
                     f"{p['usefulness']:.2f} | {p['prefetch_bytes']:,.0f} |")
    use = [data[("q13", src.label, "predictive")]["usefulness"] for src in sources]
    lines += ["", (f"**{'Holds' if all(x and y for x, y in q3) else 'Does not hold' if not any(x and y for x, y in q3) else 'Holds partly'}**: "
              f"predictive cuts misses against LRU (with the `sequential` prefetcher) on {sum(x for x, _ in q3)} of "
              f"{len(q3)} workloads and is slower than cost_aware on {sum(y for _, y in q3)} of {len(q3)}. What "
              "changes: both halves flip. The markov prefetcher learns which page follows which in the access "
              "stream; a decode step reads 32 layers × k pages in one fixed order, so its transitions describe the "
              "order inside a step, not the pages the next step will miss, and its prefetches are almost never used "
              f"(usefulness at most {max(use):.2f}); meanwhile its frequency-led eviction score keeps stale pages, so "
              "it misses more than LRU. But under `overlap` a prefetch overlaps compute instead of being added to the "
              "latency, so the serial model's prefetch penalty disappears and predictive ends within a few percent "
              "of cost_aware's time."), ""]
    # Q4
    lines += ["### Q4 (finding 4): with the same HBM bytes and no prefetch, does int4 beat fp16?", "",
              ("Tier 0 gets the same byte budget for every format: 10% of the trace's **fp16** footprint (so int4 "
              "fits about 3.8x the pages fp16 does: group-64 scales cost 1/16 extra); the named `h200_*` scenarios "
              "instead size tier 0 as a share of each format's own footprint, which keeps the page count equal. "
              "Means over the original six policies."), "",
              "| workload | hit rate fp16 | fp8 | int4 | bytes, int4 vs fp16 | time, int4 vs fp16 | time, fp8 vs fp16 |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    base = get_scenario("h200_10pct_fp16_no_prefetch")
    q4 = []
    for src in sources:
        res = {}
        for q in ("fp16", "fp8", "int4"):
            vals = []
            for seed in seeds:
                trace = load_trace(src, seed)
                cap = max(1, int(int(trace.pages.fp16_bytes.sum()) * 0.10))
                scen = base.with_(name=f"h200_fp16budget10_{q}", quantization=q, capacities=(cap, None, None, None))
                for pol in pols:
                    m = simulate(trace, scen, pol, None)
                    vals.append((m.hit_rate, m.bytes_moved, m.total_time_us))
            res[q] = tuple(st.mean(v[i] for v in vals) for i in range(3))
        q4.append(res["int4"][0] >= res["fp16"][0] and res["int4"][1] < res["fp16"][1])
        lines.append(f"| {src.name} | {res['fp16'][0]:.3f} | {res['fp8'][0]:.3f} | {res['int4'][0]:.3f} | "
                     f"{_rel(res['int4'][1], res['fp16'][1])} | {_rel(res['int4'][2], res['fp16'][2])} | "
                     f"{_rel(res['fp8'][2], res['fp16'][2])} |")
        data[("q4", src.label)] = res
        if log:
            log(f"findings: {src.label} done (Q4)")
    t4 = [data[("q4", src.label)]["int4"][2] / data[("q4", src.label)]["fp16"][2] - 1 for src in sources]
    lines += ["", (f"**{'Holds' if all(q4) else 'Does not hold' if not any(q4) else 'Holds partly'}** for hit rate and "
              f"bytes (int4 keeps or raises the hit rate and cuts bytes on {sum(q4)} of {len(q4)} workloads), but not "
              f"for time: int4 changes decode time by {_signed(min(t4))} to {_signed(max(t4))}. What changes: with the "
              "same bytes, tier 0 holds about 3.8x as many int4 pages, enough here for nearly every page the trace "
              "re-reads, so transfers all but vanish; the hit rate cannot pass the share of first touches (new KV), "
              "which no capacity avoids. The serial model's fixed 0.03 ms penalty is replaced by calibrated "
              "dequantization (int4 ~168 GB/s, fp8 ~665 GB/s, eager) charged on every page a step reads, on top of "
              "compute that dominates the step; where the saved refetches were few or hidden, int4 is slower "
              "overall. kvgym has no accuracy model, so the quality cost of int4 is not in these numbers."), ""]
    spread = max(max(data[(q, src.label, p)]["time_ms"] for p in pols) / min(data[(q, src.label, p)]["time_ms"] for p in pols)
                 - 1 for q in ("q13", "q2") for src in sources)
    return lines, {"q1": q1, "q2": q2, "q3": q3, "q4": q4, "time_spread": spread}


def _rel(a: float, b: float) -> str:
    """``a`` relative to ``b`` as a signed percentage ('±0.0%' when both are 0, '–' when only b is)."""
    if b == 0:
        return "±0.0%" if a == 0 else "–"
    return _signed(a / b - 1)


def _signed(x: float) -> str:
    return f"{'+' if x >= 0 else '−'}{abs(100 * x):.1f}%"


# ---------------------------------------------------------------------------------------------
def tier0_pages(parity_dir: Path) -> dict:
    """About how many pages tier 0 holds in each parity scenario (capacity / mean page size)."""
    from kvgym.bench.parity import load_cell

    out = {}
    for scen in ("small_fp16_prefetch", "constrained_fp16_prefetch", "small_fp16_no_prefetch", "small_int4_no_prefetch"):
        cell = load_cell(parity_dir / "traces" / f"{scen}__rag_burst.json")
        setup = get_scenario(scen).build(cell.trace.pages)
        out[scen] = int(setup.tiers[0].capacity_bytes // float(setup.page_bytes.mean()))
    return out


def write_report(out: Path, parity_dir: Path | None = None, seeds=(0, 1), realistic: bool = True,
                 log=None, serving: bool | None = None) -> tuple[Path, dict]:
    """Write ``out/README.md``; ``parity_dir`` defaults to the shipped copy (:func:`kvgym.bundled.parity_dir`).
    ``serving`` (default: as ``realistic``): add part 3, serving mode (:mod:`kvgym.bench.serving_findings`)."""
    from kvgym.bundled import parity_dir as shipped
    from kvgym.errors import ConfigError

    parity_dir = Path(parity_dir) if parity_dir is not None else shipped()
    if not (parity_dir / "traces").is_dir():
        raise ConfigError(f"{parity_dir}: no parity data here (expected traces/, expected_fixed.json, "
                          "original_results.json)")
    lines = ["# Findings: kv-hierarchy-lab v0.1's published results, re-run through kvgym", "",
             ("Generated by `kvgym findings` (do not edit by hand). Part 1 replays the four published findings on the "
             "original's exact traces in kvgym's parity mode; part 2 asks the same four questions on realistic "
             "scenarios; part 3 asks whether the policy matters in serving mode (request-level prefix caching)."), ""]
    result: dict = {}
    run = run_parity(parity_dir, PARITY_CELLS)
    plines, result["parity"] = parity_section(run, tier0_pages(parity_dir))
    v = result["parity"]["verdicts"]
    lines += ["| finding | verdict |", "|---|---|"]
    titles = {"F1": "regret_aware beats LRU on rag_burst (misses, bytes)",
              "F2": "regret_aware lowest latency on constrained adversarial_burst",
              "F3": "predictive cuts misses but is slower than cost_aware",
              "F4": "int4 instead of fp16 raises hit rate, cuts bytes"}
    lines += [f"| {f}: {titles[f]} | {'holds' if v[f] else 'does not hold'} |" for f in ("F1", "F2", "F3", "F4")]
    lines += [""] + plines + [""]
    if realistic:
        rlines, result["realistic"] = realistic_section(seeds, log)
        lines += rlines
    if realistic if serving is None else serving:
        from kvgym.bench.serving_findings import serving_section

        slines, result["serving"] = serving_section(result.get("realistic", {}).get("time_spread"), log)
        lines += slines
    lines += [("Reproduce: `kvgym findings` (all three parts take a few seconds on two cores, on the compiled "
              "engines).")]
    path = write_text(Path(out) / "README.md", "\n".join(lines) + "\n")
    return path, result
