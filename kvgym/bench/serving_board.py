"""The serving leaderboard: per serving scenario, every (policy, admission) entry ranked by time to
first token, and the spread between the best and the worst.

Built from the serving records (one per cell = scenario x source x seed) with the decode
leaderboard's machinery (:func:`kvgym.bench.leaderboard.rank`, :mod:`kvgym.bench.stats`) on other
fields:

- **TTFT vs reference**: the geometric mean over the scenario's cells of ``ttft_mean_us(entry) /
  ttft_mean_us(reference)`` on the same cell, with its 95% interval from the seeds; lower is better.
  The reference is the sweep's ``reference`` policy with the ``always`` admission (vLLM's LRU
  by default), or the first entry when it is absent.
- **rank** = 1 + the number of entries that beat it, through chains of wins: A beats B when its mean
  TTFT is lower by a real difference (the paired interval excludes no change and the difference
  exceeds :data:`~kvgym.bench.stats.TIME_TOLERANCE`), or when their TTFTs tie and A computes fewer
  prefill tokens by a real difference (beyond :data:`~kvgym.bench.stats.MISS_TOLERANCE`). ``2=`` is
  a shared rank.
- TTFT mean, p50 and p90 (ms): means over the cells; p90 vs reference: geometric mean of ratios;
  prefill tokens computed vs reference: ratio of totals; prefix hit rate: the share of prompt blocks
  served by a usable cached prefix (GPU, and lower tiers), mean over cells; loaded: GiB over the
  load links, mean over cells.
- **spread**: per scenario, ``worst / best - 1`` of the entries' mean TTFT relative to the reference
  (the geometric means above, so each request source counts equally however long its TTFTs are),
  and the same of their p90 TTFT, naming the best and the worst with their TTFTs in ms (means over
  the cells).
"""

from __future__ import annotations

import html
import math
from pathlib import Path

from kvgym.bench.leaderboard import _fmt as _f
from kvgym.bench.leaderboard import _rank_label, _time, rank
from kvgym.bench.stats import LEVEL, MISS_TOLERANCE, TIME_TOLERANCE, log_ratios
from kvgym.files import write_text

#: What ranks: mean TTFT, ties broken by prefill tokens computed.
FIELDS = ("ttft_mean_us", "prefill_tokens_computed")


def _mean(xs):
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return sum(xs) / len(xs) if xs else None


def _order(records, key):
    return list(dict.fromkeys(r[key] for r in records))


def _ratio(cells: dict, ref: dict, field: str):
    iv = log_ratios(cells, ref, field)
    if iv is None:
        return None, None
    return math.exp(iv.mean), (None if iv.dof == 0 else (math.exp(iv.lo), math.exp(iv.hi)))


def _rate(r: dict, tiers) -> float | None:
    return sum(r["prefix_hits"][t] for t in tiers) / r["prompt_blocks"] if r["prompt_blocks"] else None


def _row(entry: str, cells: dict, ref: dict) -> dict:
    recs = list(cells.values())
    common = [c for c in cells if c in ref]
    pre, pre_ref = (sum(cells[c]["prefill_tokens_computed"] for c in common),
                    sum(ref[c]["prefill_tokens_computed"] for c in common))
    ttft, ttft_ci = _ratio(cells, ref, "ttft_mean_us")
    p50, _ = _ratio(cells, ref, "ttft_p50_us")
    p90, _ = _ratio(cells, ref, "ttft_p90_us")
    first = recs[0]
    return {
        "policy": entry, "kind": "policy", "policy_name": first["policy"], "admission": first["admission"],
        "ttft_vs_ref": ttft, "ttft_ci": ttft_ci, "p50_vs_ref": p50, "p90_vs_ref": p90,
        "ttft_mean_ms": _mean(r["ttft_mean_us"] / 1e3 for r in recs),
        "ttft_p50_ms": _mean(r["ttft_p50_us"] / 1e3 for r in recs),
        "ttft_p90_ms": _mean(r["ttft_p90_us"] / 1e3 for r in recs),
        "prefill_vs_ref": pre / pre_ref if common and pre_ref else None,
        "prefix_hit_rate": _mean(_rate(r, range(len(r["prefix_hits"]))) for r in recs),
        "gpu_hit_rate": _mean(_rate(r, [0]) for r in recs),
        "lower_hit_rate": _mean(_rate(r, range(1, len(r["prefix_hits"]))) for r in recs),
        "loaded_gib": _mean(sum(r["link_bytes_load"]) / 2**30 for r in recs),
        "cells": len(cells),
    }


def spread(rows: list[dict], ratio: str, ms: str) -> dict | None:
    """Best and worst entry by ``ratio`` (a geometric mean of per-cell ratios to the reference, so each
    source counts equally; lower is better), ``worst / best - 1`` of it, and both entries' ``ms``."""
    have = [r for r in rows if r[ratio] is not None]
    if not have:
        return None
    best = min(have, key=lambda r: r[ratio])
    worst = max(have, key=lambda r: r[ratio])
    return {"best": best["policy"], "best_ms": best[ms], "worst": worst["policy"], "worst_ms": worst[ms],
            "spread": worst[ratio] / best[ratio] - 1}


def build(records: list[dict], reference: str = "vllm_lru") -> dict:
    """Per-scenario rankings and spreads from serving records (see the module docstring)."""
    ok = [r for r in records if r.get("status") == "ok"]
    entries = _order(records, "entry")
    out = {"scenarios": [], "reference": reference, "level": LEVEL, "time_tolerance": TIME_TOLERANCE,
           "count_tolerance": MISS_TOLERANCE}
    for s in _order(records, "scenario"):
        mine = [r for r in ok if r["scenario"] == s]
        sources = _order([r for r in records if r["scenario"] == s], "source")
        by_entry: dict[str, dict] = {e: {} for e in entries}
        for r in mine:
            by_entry[r["entry"]][((r["source"],), r["seed"])] = r
        present = [e for e in entries if by_entry[e]]
        ref_name = reference if by_entry.get(reference) else (present[0] if present else reference)
        rows = [_row(e, by_entry[e], by_entry.get(ref_name, {})) for e in present]
        ranked = rank(rows, by_entry, fields=FIELDS, sort_key="ttft_vs_ref") if rows else []
        out["scenarios"].append({
            "scenario": s, "reference": ref_name, "sources": _order(mine, "source"),
            "infeasible": [src for src in sources if not any(r["source"] == src for r in mine)],
            "ranked": ranked, "spread_mean": spread(ranked, "ttft_vs_ref", "ttft_mean_ms"),
            "spread_p90": spread(ranked, "p90_vs_ref", "ttft_p90_ms"),
        })
    return out


# -- text ---------------------------------------------------------------------------------------
def _ttft(r: dict) -> str:
    return _time(r, "ttft_vs_ref", "ttft_ci")


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def explanation(board: dict) -> str:
    return ("Each entry is a policy run in every tier, with the admission policy of write-through stores after '+' "
            "(none: store everything, or no admission in that scenario). TTFT vs ref: geometric mean over the "
            "cells (request source x seed) of the mean time to first token / the reference's on the same cell, "
            f"lower is better, with its {board['level']:.0%} interval from the seeds. Rank = 1 + the number of "
            "entries that beat it, directly or through a chain of wins: a lower mean TTFT by a real difference "
            f"(beyond {board['time_tolerance']:.1%}), or the same TTFT and fewer prefill tokens computed by a real "
            f"difference (beyond {board['count_tolerance']:.1%}); '2=' is a shared rank. TTFT mean/p50/p90: means "
            "over the cells, ms. Prefill vs ref: prompt tokens computed, ratio of totals. Prefix hit rate: share of "
            "prompt blocks served from a cached prefix, GPU / lower tiers. Spread: worst / best - 1 of the entries' "
            "mean (and p90) TTFT relative to the reference (each source counts equally); the ms shown are means "
            "over the cells.")


def _spread_table(board: dict) -> list[str]:
    lines = [("| scenario | best mean TTFT (ms) | worst mean TTFT (ms) | spread | best p90 TTFT (ms) | worst p90 TTFT (ms) "
             "| spread p90 |"), "|---|---|---|---:|---|---|---:|"]
    for sc in board["scenarios"]:
        m, p = sc["spread_mean"], sc["spread_p90"]
        if m is None:
            lines.append(f"| {sc['scenario']} | – | – | – | – | – | – |")
            continue
        lines.append(f"| {sc['scenario']} | {m['best']} {m['best_ms']:,.1f} | {m['worst']} {m['worst_ms']:,.1f} | "
                     f"{_pct(m['spread'])} | {p['best']} {p['best_ms']:,.1f} | {p['worst']} {p['worst_ms']:,.1f} | "
                     f"{_pct(p['spread'])} |")
    return lines


def _scenario_table(sc: dict) -> list[str]:
    ref = sc["reference"]
    lines = [(f"| rank | policy | TTFT vs {ref} [95% CI] | TTFT mean ms | TTFT p50 ms | TTFT p90 ms | p90 vs {ref} | "
             f"prefill vs {ref} | prefix hit rate (GPU / lower) | loaded GiB |"),
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sc["ranked"]:
        lines.append(f"| {_rank_label(r)} | {r['policy']} | {_ttft(r)} | {_f(r['ttft_mean_ms'], ',.1f')} | "
                     f"{_f(r['ttft_p50_ms'], ',.1f')} | {_f(r['ttft_p90_ms'], ',.1f')} | {_f(r['p90_vs_ref'], '.4f')} | "
                     f"{_f(r['prefill_vs_ref'], '.4f')} | {_f(r['prefix_hit_rate'], '.4f')} "
                     f"({_f(r['gpu_hit_rate'], '.4f')} / {_f(r['lower_hit_rate'], '.4f')}) | {_f(r['loaded_gib'], ',.1f')} |")
    return lines


def _describe(name: str) -> str:
    from kvgym.bench.serving_scenarios import describe, serving_scenarios

    s = serving_scenarios().get(name)
    return describe(s) if s is not None else ""


def markdown(board: dict, title: str = "Serving leaderboard") -> str:
    lines = [f"# {title}", "", "Generated by kvgym from this directory's results. " + explanation(board), "",
             "## Spread between the best and the worst entry (time to first token)", ""]
    lines += _spread_table(board)
    for sc in board["scenarios"]:
        desc = _describe(sc["scenario"])
        lines += ["", f"## {sc['scenario']}", "",
                  (f"{desc}. " if desc else "") + f"Request sources: {', '.join(sc['sources']) or 'none'}."
                  + (f" Infeasible (a request does not fit tier 0): {', '.join(sc['infeasible'])}." if sc["infeasible"] else ""),
                  ""]
        lines += _scenario_table(sc)
    return "\n".join(lines) + "\n"


def terminal(board: dict, top: int = 3) -> str:
    lines = ["Serving: spread between the best and the worst entry in time to first token (mean, p90):"]
    for sc in board["scenarios"]:
        m, p = sc["spread_mean"], sc["spread_p90"]
        if m is None:
            lines.append(f"  {sc['scenario']}: no feasible source")
            continue
        best = ", ".join(f"{_rank_label(r)} {r['policy']} {_f(r['ttft_vs_ref'], '.4f')}" for r in sc["ranked"][:top])
        lines.append(f"  {sc['scenario']}: mean {_pct(m['spread'])} ({m['best']} {m['best_ms']:,.0f} ms .. {m['worst']} "
                     f"{m['worst_ms']:,.0f} ms), p90 {_pct(p['spread'])}; top: {best}")
    return "\n".join(lines) + "\n"


def summary(result) -> str:
    """What ``kvgym sweep`` and ``kvgym demo`` print about a serving section
    (a :class:`~kvgym.bench.serving.ServingResult`): the spreads, then the files."""
    return (terminal(result.board) + f"wrote {result.out}/: the serving section ({len(result.cells)} cells, "
            f"{result.ran} run, {result.reused} reused): results.csv, results.parquet, leaderboard.md, plots/")


def write(out: Path, board: dict, title: str = "Serving leaderboard") -> Path:
    return write_text(Path(out) / "leaderboard.md", markdown(board, title))


# -- HTML (the serving section of report.html) ----------------------------------------------------
def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _td(v, fmt: str | None) -> str:
    if v is None:
        return '<td class="num" data-sort="">–</td>'
    return f'<td class="num" data-sort="{float(v)!r}">{_e(format(v, fmt))}</td>'


HTML_COLUMNS = [("TTFT vs ref", "ttft_vs_ref", ".4f"), ("TTFT mean ms", "ttft_mean_ms", ",.1f"),
                ("TTFT p50 ms", "ttft_p50_ms", ",.1f"), ("TTFT p90 ms", "ttft_p90_ms", ",.1f"),
                ("p90 vs ref", "p90_vs_ref", ".4f"), ("prefill vs ref", "prefill_vs_ref", ".4f"),
                ("prefix hit rate", "prefix_hit_rate", ".4f"), ("GPU hit rate", "gpu_hit_rate", ".4f"),
                ("lower-tier hit rate", "lower_hit_rate", ".4f"), ("loaded GiB", "loaded_gib", ",.1f")]


def html_section(out: Path) -> str:
    """The serving part of ``report.html`` from ``out`` (``OUT/serving``): spreads, sortable
    per-scenario tables and the serving plots; ``""`` when there is no serving section."""
    from kvgym.bench.report import _img
    from kvgym.bench.serving import read_records

    if not (Path(out) / "results.parquet").is_file():
        return ""
    import json

    ref = "vllm_lru"
    try:
        ref = json.loads((Path(out).parent / "manifest.json").read_text())["config"]["serving"].get("reference", ref)
    except (OSError, KeyError, ValueError, AttributeError):
        pass
    board = build(read_records(out), ref)
    parts = ["<h2>Serving mode</h2>", f'<p class="note">{_e(explanation(board))}</p>', "<h3>Spread (TTFT)</h3>",
             ("<table><thead><tr><th>scenario</th><th>best mean</th><th>worst mean</th><th>spread</th><th>best p90</th>"
             "<th>worst p90</th><th>spread p90</th></tr></thead><tbody>")]
    for sc in board["scenarios"]:
        m, p = sc["spread_mean"], sc["spread_p90"]
        if m is None:
            continue
        parts.append(f"<tr><td>{_e(sc['scenario'])}</td><td>{_e(m['best'])} {m['best_ms']:,.1f} ms</td>"
                     f"<td>{_e(m['worst'])} {m['worst_ms']:,.1f} ms</td>{_td(m['spread'], '.1%')}"
                     f"<td>{_e(p['best'])} {p['best_ms']:,.1f} ms</td><td>{_e(p['worst'])} {p['worst_ms']:,.1f} ms</td>"
                     f"{_td(p['spread'], '.1%')}</tr>")
    parts.append("</tbody></table>")
    for k, sc in enumerate(board["scenarios"]):
        desc = _describe(sc["scenario"])
        parts.append(f"<h3 id=\"serving-{k}\">{_e(sc['scenario'])} (reference {_e(sc['reference'])})</h3>")
        if desc:
            parts.append(f'<p class="note">{_e(desc)}; sources: {_e(", ".join(sc["sources"]))}</p>')
        head = '<th class="sortable" scope="col">rank</th><th class="sortable" scope="col">policy</th>' + "".join(
            f'<th class="sortable" scope="col">{_e(h)}</th>' for h, _, _ in HTML_COLUMNS)
        body = "".join(f'<tr><td class="num" data-sort="{r["rank"]}">{_e(_rank_label(r))}</td><td>{_e(r["policy"])}</td>'
                       + "".join(_td(r[key], fmt) for _, key, fmt in HTML_COLUMNS) + "</tr>" for r in sc["ranked"])
        parts.append(f'<table id="serving-table-{k}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
    plots = sorted((Path(out) / "plots").glob("*.png")) if (Path(out) / "plots").is_dir() else []
    parts += [_img(p) for p in plots]
    return "\n".join(parts)
