"""``leaderboard.md``: every policy and agent ranked, per scenario and overall, with ties as ties.

Built from the result records (one per cell = scenario x source x seed). Per scenario:

- **time vs LRU**: the geometric mean over the scenario's cells of ``total_time_us(policy) /
  total_time_us(lru)`` on the same cell, with its 95% interval (:mod:`kvgym.bench.stats`: Student
  t over the cells' log ratios; seeds and sources give the spread). Lower is better. The
  ``serial`` cost model's total time is kv-hierarchy-lab's total latency, the ``overlap``
  model's is decode time = compute + stall. Cells without an LRU row use the fastest ranked
  policy of the cell instead.
- **rank** = 1 + the number of policies that *beat* it, directly or through a chain (A beats B
  and B beats C puts A above C). A beats B when A is faster on their common cells by a real difference (the 95% interval of the paired log time ratio is below 0
  and the mean is beyond :data:`~kvgym.bench.stats.TIME_TOLERANCE`), or when their times tie and
  A's tier-0 hit rate is higher by a real difference (paired, beyond
  :data:`~kvgym.bench.stats.HIT_TOLERANCE`). Policies that beat each other nowhere share a rank:
  ``2=`` marks a shared rank, and the table lists it in order of mean time.
- misses and bytes vs LRU: ratios of the totals over the common cells; tier-0 hit rate and stall
  (ms): means over cells; prefetch usefulness: mean over cells with prefetches.
- **gap closed**, pooled (:func:`kvgym.oracle.gap.pooled_gap_closed`): ``100 * sum(misses_lru -
  misses) / sum(misses_lru - misses_oracle)`` over the cells where LRU misses more than the oracle
  (LRU = 0, the oracle = 100; negative = more misses than LRU). It is marked ``≈`` when the
  policy's misses do not differ from LRU's by a real difference (paired as above): the sign of a
  tie means nothing. A policy ranked above LRU while it really
  misses more (it is faster because it moves fewer bytes or stalls less, e.g. ``predictive`` with
  its own ``markov`` prefetcher) is marked ``†``: time ranks, and the trade is shown, not hidden.

The oracle (a privileged policy that reads the future, ``belady`` by default) is listed beside the
ranking, never in it. Overall: the same over every (scenario, source, seed) cell, and per policy
the scenarios it wins alone and the ones where it shares rank 1.
"""

from __future__ import annotations

import math
from pathlib import Path

from kvgym.bench.stats import (
    LEVEL,
    MISS_TOLERANCE,
    TIME_TOLERANCE,
    log_ratios,
    miss_interval,
    misses_differ,
    time_differs,
    time_interval,
)
from kvgym.files import write_text
from kvgym.oracle.gap import pooled_gap_closed


def _fmt(v, spec=".3f", suffix=""):
    if v is None:
        return "–"
    return f"{v:{spec}}{suffix}"


def _mean(xs):
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return sum(xs) / len(xs) if xs else None


def _ratio(a, b):
    if b == 0:
        return 1.0 if a == 0 else None
    return a / b


def _order(records, key):
    out: list = []
    for r in records:
        if r[key] not in out:
            out.append(r[key])
    return out


#: The fields a ranking compares: the cost ranked (lower is better), then the count that breaks a
#: tie of costs (lower is better). Decode sweeps rank total time, then misses; serving sweeps rank
#: mean time to first token, then prefill tokens computed (:mod:`kvgym.bench.serving_board`).
DECODE_FIELDS = ("total_time_us", "misses")


def beats(a: dict, b: dict, fields: tuple[str, str] = DECODE_FIELDS) -> bool:
    """Policy cells ``a`` beat ``b`` (both: ``(stratum, seed) -> record``) by the module docstring's rule,
    on the cost ``fields[0]`` and the tie-breaking count ``fields[1]``."""
    t = log_ratios(a, b, fields[0])
    if t is None:
        return False
    if time_differs(t):
        return t.mean < 0
    m = log_ratios(a, b, fields[1], plus=1.0)
    return misses_differ(m) and m.mean < 0


def _row(cells: dict, ref: dict, orc: dict, best: dict) -> dict:
    """The figures of one policy over its cells (``ref``/``orc``/``best``: cell -> record)."""
    time = time_interval(cells, {c: ref.get(c) or best[c] for c in cells})
    common = [c for c in cells if c in ref]
    miss, miss_ref = sum(cells[c]["misses"] for c in common), sum(ref[c]["misses"] for c in common)
    byt, byt_ref = sum(cells[c]["bytes_moved"] for c in common), sum(ref[c]["bytes_moved"] for c in common)
    useful = [r["prefetch_usefulness"] for r in cells.values() if r.get("prefetch_issued", 0) > 0]
    return {
        "time_vs_ref": None if time is None else math.exp(time.mean),
        "time_ci": None if time is None or time.dof == 0 else (math.exp(time.lo), math.exp(time.hi)),
        "misses_vs_ref": _ratio(miss, miss_ref) if common else None,
        "bytes_vs_ref": _ratio(byt, byt_ref) if common else None,
        "hit_rate": _mean(r["hit_rate"] for r in cells.values()),
        "misses_differ": misses_differ(miss_interval(cells, ref)),
        "stall_ms": _mean(r["stall_us"] / 1e3 for r in cells.values()),
        "prefetch_usefulness": _mean(useful),
        "gap_closed": pooled_gap_closed((cells[c]["misses"], ref[c]["misses"], orc[c]["misses"])
                                        for c in common if c in orc),
        "cells": len(cells),
    }


def rank(rows: list[dict], cells_of: dict, fields: tuple[str, str] = DECODE_FIELDS,
         sort_key: str = "time_vs_ref") -> list[dict]:
    """Set ``rank`` and ``tied`` on ranked rows and sort them (see the module docstring).

    ``beats`` is not transitive (a tie within the tolerance, then a real difference in misses, can
    close a cycle A > B > C > A), so ranks use its transitive closure: the rank of p is 1 + the
    number of policies that reach p through a chain of real wins without p reaching them back.
    Policies on one cycle reach each other and share a rank: no order among them is real.
    """
    n = len(rows)
    reach = [[i != j and beats(cells_of[rows[i]["policy"]], cells_of[rows[j]["policy"]], fields) for j in range(n)]
             for i in range(n)]
    for k in range(n):  # Floyd-Warshall closure; n is the number of policies (tens)
        for i in range(n):
            if reach[i][k]:
                for j in range(n):
                    reach[i][j] = reach[i][j] or reach[k][j]
    for j, r in enumerate(rows):
        r["rank"] = 1 + sum(reach[i][j] and not reach[j][i] for i in range(n))
    for r in rows:
        r["tied"] = sum(q["rank"] == r["rank"] for q in rows) > 1
    rows.sort(key=lambda r: (r["rank"], r[sort_key] if r[sort_key] is not None else math.inf))
    return rows


def _board_part(ok: list[dict], pol_order: list[str], kind: dict, reference: str, key) -> dict:
    """Rows (ranked and oracle) over the records ``ok``, cells keyed by ``key(record)``."""
    by_pol: dict[str, dict] = {p: {} for p in pol_order}
    for r in ok:
        by_pol[r["policy"]][key(r)] = r
    ref = by_pol.get(reference, {})
    orc_name = next((p for p in pol_order if kind[p] == "oracle" and by_pol[p]), None)
    orc = by_pol[orc_name] if orc_name else {}
    best: dict = {}
    for p in pol_order:
        if kind[p] == "oracle":
            continue
        for c, r in by_pol[p].items():
            if c not in best or r["total_time_us"] < best[c]["total_time_us"]:
                best[c] = r
    rows = [{"policy": p, "kind": kind[p], **_row(by_pol[p], ref, orc, best)} for p in pol_order if by_pol[p]]
    ranked = rank([r for r in rows if r["kind"] != "oracle"], by_pol)
    return {"ranked": ranked, "oracle": [r for r in rows if r["kind"] == "oracle"]}


def build(records: list[dict], reference: str = "lru") -> dict:
    """Per-scenario and overall rankings from a sweep's result records (see the module docstring)."""
    scen_order, pol_order = _order(records, "scenario"), _order(records, "policy")
    kind = {r["policy"]: r["kind"] for r in records}
    ok = [r for r in records if r.get("status") == "ok"]
    out = {"scenarios": [], "overall": None, "reference": reference, "level": LEVEL,
           "time_tolerance": TIME_TOLERANCE, "miss_tolerance": MISS_TOLERANCE}
    wins: dict[str, list[int]] = {}
    for s in scen_order:
        sources = _order([r for r in records if r["scenario"] == s], "source")
        mine = [r for r in ok if r["scenario"] == s]
        feasible = [src for src in sources if any(r["source"] == src for r in mine)]
        part = _board_part(mine, pol_order, kind, reference, lambda r: ((r["source"],), r["seed"]))
        for r in part["ranked"]:
            if r["rank"] == 1:
                wins.setdefault(r["policy"], [0, 0])[1 if r["tied"] else 0] += 1
        out["scenarios"].append({"scenario": s, "sources": feasible,
                                 "infeasible": [src for src in sources if src not in feasible], **part})
    overall = _board_part(ok, pol_order, kind, reference, lambda r: ((r["scenario"], r["source"]), r["seed"]))
    for r in overall["ranked"]:
        r["wins"], r["shared_wins"] = wins.get(r["policy"], [0, 0])
    out["overall"] = overall
    return out


def _rank_label(r: dict) -> str:
    return f"{r['rank']}=" if r["tied"] else str(r["rank"])


def _time(r: dict, key: str = "time_vs_ref", ci: str = "time_ci") -> str:
    """A ratio with its interval, ``0.9876 [0.9801, 0.9950]`` (no interval: the ratio alone)."""
    if r[key] is None:
        return "–"
    if r[ci] is None:
        return f"{r[key]:.4f}"
    lo, hi = r[ci]
    return f"{r[key]:.4f} [{lo:.4f}, {hi:.4f}]"


def _gap(r: dict) -> str:
    g = _fmt(r["gap_closed"], ".1f", "%")
    if r["gap_closed"] is None or r["policy"] == "lru":
        return g
    if not r["misses_differ"]:
        return f"≈ {g}"
    return f"{g} †" if r["gap_closed"] < 0 and (r["time_vs_ref"] or 1.0) < 1.0 else g


def _overall_table(board: dict) -> list[str]:
    ref = board["reference"]
    lines = [(f"| rank | policy | time vs {ref} [95% CI] | misses vs {ref} | bytes vs {ref} | tier-0 hit rate | "
             "gap closed | scenarios won (alone / shared) |"),
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in board["overall"]["ranked"]:
        lines.append(f"| {_rank_label(r)} | {r['policy']} | {_time(r)} | {_fmt(r['misses_vs_ref'])} | "
                     f"{_fmt(r['bytes_vs_ref'])} | {_fmt(r['hit_rate'], '.4f')} | {_gap(r)} | "
                     f"{r['wins']} / {r['shared_wins']} |")
    for r in board["overall"]["oracle"]:
        lines.append(f"| oracle | {r['policy']} (reads the future) | {_time(r)} | {_fmt(r['misses_vs_ref'])} | "
                     f"{_fmt(r['bytes_vs_ref'])} | {_fmt(r['hit_rate'], '.4f')} | {_gap(r)} | – |")
    return lines


def _scenario_table(sc: dict, ref: str) -> list[str]:
    lines = [(f"| rank | policy | time vs {ref} [95% CI] | tier-0 hit rate | misses vs {ref} | bytes vs {ref} | "
             "stall ms | prefetch useful | gap closed |"),
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sc["ranked"] + sc["oracle"]:
        label, name = ("oracle", f"{r['policy']} (reads the future)") if r["kind"] == "oracle" else \
            (_rank_label(r), r["policy"])
        lines.append(f"| {label} | {name} | {_time(r)} | {_fmt(r['hit_rate'], '.4f')} | "
                     f"{_fmt(r['misses_vs_ref'])} | {_fmt(r['bytes_vs_ref'])} | {_fmt(r['stall_ms'], '.3f')} | "
                     f"{_fmt(r['prefetch_usefulness'], '.3f')} | {_gap(r)} |")
    return lines


def explanation(board: dict) -> str:
    """How to read the tables (shared by the Markdown and the HTML report)."""
    ref = board["reference"]
    return (f"Time vs {ref}: geometric mean over the cells (trace source x seed) of total simulated time / {ref}'s "
            f"on the same cell, lower is better, with its {board['level']:.0%} confidence interval from the seeds "
            f"(sources weigh equally). Rank = 1 + the number of policies that beat it, directly or through a chain "
            f"of wins (policies on a cycle of wins share a rank). A beats B when it is faster by a real difference "
            f"(the paired interval excludes no change and the difference exceeds {board['time_tolerance']:.1%}), or "
            f"as fast with fewer misses by a real difference (beyond {board['miss_tolerance']:.1%}). "
            f"'2=' is a shared rank: a tie. Misses and bytes vs {ref}: ratios of totals. Gap closed: "
            f"share of the {ref}-to-oracle miss gap closed ({ref} 0%, oracle 100%); '≈' marks misses that do not "
            f"differ from {ref}'s by a real difference; '†' a policy faster than {ref} although it misses more "
            f"(it moves fewer bytes or stalls less). The oracle reads the future and is shown beside the "
            "ranking, not in it.")


def markdown(board: dict, title: str = "Leaderboard") -> str:
    lines = [f"# {title}", "", "Generated by kvgym from this directory's results. " + explanation(board), "",
             "## Overall", ""]
    lines += _overall_table(board)
    for sc in board["scenarios"]:
        lines += ["", f"## {sc['scenario']}", "",
                  f"Trace sources: {', '.join(sc['sources']) or 'none'}."
                  + (f" Infeasible (trace does not fit the scenario): {', '.join(sc['infeasible'])}." if sc["infeasible"] else ""),
                  ""]
        lines += _scenario_table(sc, board["reference"])
    return "\n".join(lines) + "\n"


def terminal(board: dict, top: int = 3) -> str:
    """The overall table and each scenario's leading policies, for printing."""
    lines = [("Overall, every scenario x source x seed (time: geometric mean of ratios with its 95% CI; misses, "
             "bytes: ratios of totals; '=' marks a tie):")] + _overall_table(board)
    lines += ["", f"Top {top} per scenario (time vs {board['reference']}; '=' marks a tie):"]
    for sc in board["scenarios"]:
        best = ", ".join(f"{_rank_label(r)} {r['policy']} {_fmt(r['time_vs_ref'], '.4f')}" for r in sc["ranked"][:top])
        lines.append(f"  {sc['scenario']}: {best or 'no feasible source'}")
    return "\n".join(lines) + "\n"


def write(out: Path, records: list[dict], title: str = "Leaderboard") -> tuple[dict, str]:
    board = build(records)
    text = markdown(board, title)
    write_text(Path(out) / "leaderboard.md", text)
    return board, text
