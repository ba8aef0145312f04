"""``leaderboard.md``: every policy and agent ranked, per scenario and overall.

Ranking, per scenario: by **time vs LRU**, the geometric mean over the scenario's trace sources
of ``total_time_us(policy) / total_time_us(lru)`` (means over seeds; lower is better; the
``serial`` cost model's total time is kv-hierarchy-lab's total latency, the ``overlap`` model's
is decode time = compute + stall). Without an ``lru`` row the reference is the best policy of
each source. Ties keep the config's policy order.

Other columns: tier-0 hit rate (mean over sources), misses vs LRU and bytes moved vs LRU (ratios
of the totals over the sources), stall (mean ms per source), prefetch usefulness (mean over
sources with prefetches), and **gap closed**, ``100 * sum(misses_lru - misses) /
sum(misses_lru - misses_oracle)`` over the sources where LRU misses more than the oracle (LRU = 0,
the oracle = 100; negative = worse than LRU). The oracle (a privileged policy that reads the future, ``belady`` by
default) is listed beside the ranking, never in it.

Overall: the same figures over every (scenario, source) pair, and the number of scenarios each
policy wins.
"""

from __future__ import annotations

import math
from pathlib import Path

from kvgym.files import write_text


def _gmean(xs):
    xs = [x for x in xs if x is not None and x >= 0 and math.isfinite(x)]
    if any(x == 0 for x in xs):
        return 0.0
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def _mean(xs):
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return sum(xs) / len(xs) if xs else None


def _ratio(a, b):
    if a is None or b is None:
        return None
    if b == 0:
        return 1.0 if a == 0 else None
    return a / b


def _fmt(v, spec=".3f", suffix=""):
    if v is None:
        return "–"
    return f"{v:{spec}}{suffix}"


class _Acc:
    """Per-policy accumulator over (scenario, source) pairs: time ratios (geometric mean), and
    sums of misses and bytes beside the reference's and the oracle's (ratios of totals, so one
    source with a near-zero gap or zero bytes cannot swamp the rest)."""

    def __init__(self):
        self.time, self.hit, self.stall, self.useful = [], [], [], []
        self.miss = self.miss_ref = self.bytes = self.bytes_ref = 0.0
        self.has_ref = False
        self.gap_num = self.gap_den = 0.0

    def add(self, m: dict, ref: dict | None, ref_time, orc: dict | None) -> None:
        self.time.append(_ratio(m["total_time_us"], ref_time))
        self.hit.append(m["hit_rate"])
        self.stall.append(m["stall_us"] / 1e3)
        if m.get("prefetch_issued", 0) > 0:
            self.useful.append(m["prefetch_usefulness"])
        if ref is not None:
            self.has_ref = True
            self.miss += m["misses"]
            self.miss_ref += ref["misses"]
            self.bytes += m["bytes_moved"]
            self.bytes_ref += ref["bytes_moved"]
            if orc is not None and ref["misses"] > orc["misses"]:
                self.gap_num += ref["misses"] - m["misses"]
                self.gap_den += ref["misses"] - orc["misses"]

    def result(self) -> dict:
        return {"time_vs_ref": _gmean(self.time),
                "misses_vs_ref": _ratio(self.miss, self.miss_ref) if self.has_ref else None,
                "bytes_vs_ref": _ratio(self.bytes, self.bytes_ref) if self.has_ref else None,
                "hit_rate": _mean(self.hit), "stall_ms": _mean(self.stall),
                "prefetch_usefulness": _mean(self.useful),
                "gap_closed": 100.0 * self.gap_num / self.gap_den if self.gap_den > 0 else None,
                "sources": len(self.time)}


def build(summary: dict, reference: str = "lru") -> dict:
    """Per-scenario and overall rankings from a ``summary.json`` dict (means over seeds)."""
    groups = [g for g in summary["groups"]]
    scen_order, pol_order = [], []
    for g in groups:
        if g["scenario"] not in scen_order:
            scen_order.append(g["scenario"])
        if g["policy"] not in pol_order:
            pol_order.append(g["policy"])
    kind = {g["policy"]: g["kind"] for g in groups}
    by = {(g["scenario"], g["source"], g["policy"]): g for g in groups if g["status"] == "ok" and g["n"]}
    out = {"scenarios": [], "overall": None, "reference": reference}
    overall: dict[str, _Acc] = {}
    wins: dict[str, int] = {}
    for s in scen_order:
        sources = []
        for g in groups:
            if g["scenario"] == s and g["source"] not in sources:
                sources.append(g["source"])
        feasible = [src for src in sources if any((s, src, p) in by for p in pol_order)]
        infeasible = [src for src in sources if src not in feasible]
        rows = []
        for p in pol_order:
            acc = _Acc()
            for src in feasible:
                g = by.get((s, src, p))
                if g is None:
                    continue
                ref = by.get((s, src, reference))
                orc = next((by[(s, src, q)] for q in pol_order if kind[q] == "oracle" and (s, src, q) in by), None)
                if ref is None:  # no reference row: compare time with the best ranked policy of the source
                    best = min((by[(s, src, q)]["mean"]["total_time_us"] for q in pol_order
                                if (s, src, q) in by and kind[q] != "oracle"), default=None)
                    ref_time = best
                else:
                    ref_time = ref["mean"]["total_time_us"]
                acc.add(g["mean"], None if ref is None else ref["mean"], ref_time, None if orc is None else orc["mean"])
                overall.setdefault(p, _Acc()).add(g["mean"], None if ref is None else ref["mean"], ref_time,
                                                  None if orc is None else orc["mean"])
            if not acc.time:
                continue
            rows.append({"policy": p, "kind": kind[p], **acc.result()})
        ranked = [r for r in rows if r["kind"] != "oracle"]
        ranked.sort(key=lambda r: (r["time_vs_ref"] if r["time_vs_ref"] is not None else math.inf))
        for i, r in enumerate(ranked):
            r["rank"] = i + 1
        if ranked:
            wins[ranked[0]["policy"]] = wins.get(ranked[0]["policy"], 0) + 1
        out["scenarios"].append({"scenario": s, "sources": feasible, "infeasible": infeasible, "ranked": ranked,
                                 "oracle": [r for r in rows if r["kind"] == "oracle"]})
    rows = []
    for p in pol_order:
        if p not in overall or not overall[p].time:
            continue
        res = overall[p].result()
        rows.append({"policy": p, "kind": kind[p], **res, "wins": wins.get(p, 0), "cells": res["sources"]})
    ranked = sorted([r for r in rows if r["kind"] != "oracle"],
                    key=lambda r: r["time_vs_ref"] if r["time_vs_ref"] is not None else math.inf)
    for i, r in enumerate(ranked):
        r["rank"] = i + 1
    out["overall"] = {"ranked": ranked, "oracle": [r for r in rows if r["kind"] == "oracle"]}
    return out


def _overall_table(board: dict) -> list[str]:
    ref = board["reference"]
    lines = [f"| rank | policy | time vs {ref} | misses vs {ref} | bytes vs {ref} | tier-0 hit rate | gap closed | scenarios won |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in board["overall"]["ranked"]:
        lines.append(f"| {r['rank']} | {r['policy']} | {_fmt(r['time_vs_ref'])} | {_fmt(r['misses_vs_ref'])} | "
                     f"{_fmt(r['bytes_vs_ref'])} | {_fmt(r['hit_rate'], '.4f')} | {_fmt(r['gap_closed'], '.1f', '%')} | {r['wins']} |")
    for r in board["overall"]["oracle"]:
        lines.append(f"| oracle | {r['policy']} (reads the future) | {_fmt(r['time_vs_ref'])} | {_fmt(r['misses_vs_ref'])} | "
                     f"{_fmt(r['bytes_vs_ref'])} | {_fmt(r['hit_rate'], '.4f')} | {_fmt(r['gap_closed'], '.1f', '%')} | – |")
    return lines


def _scenario_table(sc: dict, ref: str) -> list[str]:
    lines = [f"| rank | policy | time vs {ref} | tier-0 hit rate | misses vs {ref} | bytes vs {ref} | stall ms | prefetch useful | gap closed |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sc["ranked"]:
        lines.append(f"| {r['rank']} | {r['policy']} | {_fmt(r['time_vs_ref'])} | {_fmt(r['hit_rate'], '.4f')} | "
                     f"{_fmt(r['misses_vs_ref'])} | {_fmt(r['bytes_vs_ref'])} | {_fmt(r['stall_ms'], '.3f')} | "
                     f"{_fmt(r['prefetch_usefulness'], '.3f')} | {_fmt(r['gap_closed'], '.1f', '%')} |")
    for r in sc["oracle"]:
        lines.append(f"| oracle | {r['policy']} (reads the future) | {_fmt(r['time_vs_ref'])} | {_fmt(r['hit_rate'], '.4f')} | "
                     f"{_fmt(r['misses_vs_ref'])} | {_fmt(r['bytes_vs_ref'])} | {_fmt(r['stall_ms'], '.3f')} | "
                     f"{_fmt(r['prefetch_usefulness'], '.3f')} | {_fmt(r['gap_closed'], '.1f', '%')} |")
    return lines


def markdown(board: dict, title: str = "Leaderboard") -> str:
    ref = board["reference"]
    lines = [f"# {title}", "",
             (f"Generated by kvgym from this directory's `summary.json` (means over seeds). Ranked by time vs "
             f"{ref}: the geometric mean over trace sources of total simulated time / {ref}'s (lower is better). "
             "Misses and bytes vs lru: ratios of totals over the sources. Gap closed: share of the LRU-to-oracle miss gap closed, over the sources where LRU misses more than the oracle (LRU 0%, oracle 100%). The oracle reads "
             "the future and is shown beside the ranking, not in it."), "",
             "## Overall", ""]
    lines += _overall_table(board)
    for sc in board["scenarios"]:
        lines += ["", f"## {sc['scenario']}", "",
                  f"Trace sources: {', '.join(sc['sources']) or 'none'}."
                  + (f" Infeasible (trace does not fit the scenario): {', '.join(sc['infeasible'])}." if sc["infeasible"] else ""),
                  ""]
        lines += _scenario_table(sc, ref)
    return "\n".join(lines) + "\n"


def terminal(board: dict, top: int = 3) -> str:
    """The overall table and each scenario's top policies, for printing."""
    lines = ["Overall, every scenario x source (time: geometric mean of ratios; misses, bytes: ratios of totals):"] + _overall_table(board)
    lines += ["", f"Top {top} per scenario (time vs {board['reference']}):"]
    for sc in board["scenarios"]:
        best = ", ".join(f"{r['policy']} {_fmt(r['time_vs_ref'])}" for r in sc["ranked"][:top])
        lines.append(f"  {sc['scenario']}: {best or 'no feasible source'}")
    return "\n".join(lines) + "\n"


def write(out: Path, summary: dict, title: str = "Leaderboard") -> tuple[dict, str]:
    board = build(summary)
    text = markdown(board, title)
    write_text(Path(out) / "leaderboard.md", text)
    return board, text
