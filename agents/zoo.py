"""The model zoo's report: trained agents among the baselines and the oracle, per held-out trace.

Reads every agent folder under the zoo (``agent.json``, ``metrics.json``, ``heldout.json``, as
``kvgym train`` writes them), groups folders that differ only by their ``-s<seed>`` suffix
(training seeds of one recipe), scores every baseline and Belady on the same held-out traces, and
writes ``leaderboard.md`` (for people) and ``leaderboard.json`` (the numbers).

Per trace, an agent's entry is the mean ± std over its training seeds of the gap closed
(``100 * (LRU - misses) / (LRU - Belady)``); its average is the mean over traces of that trace
mean, with ± the std over seeds of each seed's own average. A trace where LRU already equals
Belady has no gap: it is listed, not averaged. "Beats every baseline" on a trace means its seed
mean is strictly above the best baseline's gap there.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from kvgym.errors import ConfigError


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None


def collect(zoo) -> list[dict]:
    """Every agent folder under ``zoo`` with a held-out result, sorted by name."""
    zoo = Path(zoo)
    if not zoo.is_dir():
        raise ConfigError(f"zoo {str(zoo)!r}: no such folder (train agents first: kvgym train zoo)")
    out = []
    for d in sorted(p for p in zoo.iterdir() if p.is_dir()):
        if not (d / "agent.json").is_file():
            continue
        if not (d / "heldout.json").is_file():
            raise ConfigError(f"{d}: no heldout.json (run 'kvgym train' without --no-test)")
        out.append({"name": d.name, "group": re.sub(r"-s\d+$", "", d.name), "manifest": _read(d / "agent.json"),
                    "metrics": _read(d / "metrics.json"), "heldout": _read(d / "heldout.json"),
                    "config": _read(d / "config.json")})
    if not out:
        raise ConfigError(f"zoo {str(zoo)!r}: no agent folders (each needs agent.json and heldout.json)")
    tasks = {json.dumps(a["heldout"]["task"], sort_keys=True) for a in out}
    if len(tasks) > 1:
        raise ConfigError(f"zoo {str(zoo)!r}: agents were evaluated on different tasks; one report per task")
    return out


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def _std(xs):
    xs = [x for x in xs if x is not None]
    return float(np.std(xs)) if len(xs) > 1 else 0.0 if xs else None


def build(zoo) -> dict:
    """The report's numbers (what ``leaderboard.json`` holds)."""
    from kvgym.agents.evaluation import baselines_heldout
    from kvgym.agents.task import TaskArgs, trace_digest

    agents = collect(zoo)
    task = TaskArgs(**agents[0]["heldout"]["task"])
    rows0 = agents[0]["heldout"]["traces"]
    traces = [r["trace"] for r in rows0]
    info = {r["trace"]: {"workload": r["workload"], "unseen_workload": r["unseen_workload"], "lru": r["lru"],
                         "belady": r["belady"], "has_gap": r["gap_closed"] is not None or r["lru"] > r["belady"]}
            for r in rows0}
    for a in agents:
        if [r["trace"] for r in a["heldout"]["traces"]] != traces:
            raise ConfigError(f"{a['name']}: its held-out traces differ from {agents[0]['name']}'s")
    # A workload that ignores its seed gives its test "seed" the very trace it trained on: say so.
    train_digests = {trace_digest(lt.trace) for lt in task.traces("train")}
    for lt in task.traces("test"):
        if lt.label in info:
            info[lt.label]["same_as_training"] = trace_digest(lt.trace) in train_digests
    base = baselines_heldout(task)
    gapped = [t for t in traces if info[t]["has_gap"]]
    policies = {}
    for name, rows in base.items():
        g = {r["trace"]: r["gap_closed"] for r in rows}
        policies[name] = {"kind": "oracle" if name == "belady" else "baseline", "per_trace": {
            t: {"mean": g[t], "std": 0.0, "misses": next(r["misses"] for r in rows if r["trace"] == t)} for t in traces},
            "mean": _mean(g[t] for t in gapped), "std": 0.0, "seeds": None}
    groups: dict[str, list[dict]] = {}
    for a in agents:
        groups.setdefault(a["group"], []).append(a)
    for gname, members in groups.items():
        per = {}
        for t in traces:
            vals = [next(r for r in m["heldout"]["traces"] if r["trace"] == t) for m in members]
            per[t] = {"mean": _mean(v["gap_closed"] for v in vals), "std": _std(v["gap_closed"] for v in vals),
                      "misses": _mean(v["misses"] for v in vals),
                      "good_decision_ratio": _mean(v.get("good_decision_ratio") for v in vals)}
        seed_avgs = [_mean(next(r for r in m["heldout"]["traces"] if r["trace"] == t)["gap_closed"] for t in gapped)
                     for m in members]
        policies[gname] = {
            "kind": "learned", "algo": members[0]["metrics"]["algo"], "per_trace": per,
            "mean": _mean(per[t]["mean"] for t in gapped), "std": _std(seed_avgs),
            "seeds": [m["metrics"]["seed"] for m in members], "seed_means": seed_avgs,
            "train_time_s": [m["metrics"]["train_time_s"] for m in members],
            "validation_gap_closed": [m["metrics"]["validation_gap_closed"] for m in members],
            "folders": [m["name"] for m in members]}
    baselines = [n for n, p in policies.items() if p["kind"] == "baseline"]
    best_base = {}
    for t in gapped:
        vals = [(policies[b]["per_trace"][t]["mean"], b) for b in baselines]
        best_base[t] = max(vals)
    for n, p in policies.items():
        if p["kind"] == "oracle":
            continue
        wins = [t for t in gapped if p["per_trace"][t]["mean"] is not None and (
            p["per_trace"][t]["mean"] > max(v for v, b in [(policies[b]["per_trace"][t]["mean"], b)
                                                          for b in baselines if b != n]))]
        p["beats_every_baseline"] = wins
    return {"task": task.task_dict(), "traces": traces, "trace_info": info, "gapped_traces": gapped,
            "best_baseline": {t: {"policy": b, "gap_closed": v} for t, (v, b) in best_base.items()},
            "policies": policies}


def _f(x, fmt=".1f"):
    return "–" if x is None else format(x, fmt)


def _pm(mean, std):
    if mean is None:
        return "–"
    return f"{mean:.1f}" if not std else f"{mean:.1f} ± {std:.1f}"


def render(rep: dict) -> str:
    """``leaderboard.md`` from :func:`build`'s numbers."""
    task, pol, traces, info = rep["task"], rep["policies"], rep["traces"], rep["trace_info"]
    gapped = rep["gapped_traces"]
    learned = [n for n, p in pol.items() if p["kind"] == "learned"]
    ranked = sorted(pol, key=lambda n: -1e18 if pol[n]["mean"] is None else -pol[n]["mean"])
    trained = ", ".join(f"`{w}`" for w in task["train_workloads"])
    unseen = ", ".join(f"`{w}`" for w in task["holdout_workloads"])
    intro = ("Produced by `kvgym train zoo` (training, then `kvgym train report`); numbers in `leaderboard.json`. "
             "Metric: **fraction of the LRU-to-Belady tier-0 miss gap closed** on each held-out trace, "
             "`100 * (misses_LRU - misses) / (misses_LRU - misses_Belady)`: LRU = 0, Belady's MIN = 100, "
             "below 0 = worse than LRU. Learned agents: mean ± std over their training seeds.")
    about = (f"Task: scenario `{task['scenario']}`; trained on {trained} ({task['train_seeds']} train seeds each, "
             f"validated on {task['validation_seeds']} validation seeds each); held out: {task['test_seeds']} test "
             f"seeds of every training workload plus the never-seen workloads {unseen}; env `kvgym/Evict-v0`, "
             f"k = {task['k']}, sample = {task['sample']}. Identical traces (workloads that ignore the seed) "
             "appear once.")
    summary = (f"Average over the {len(gapped)} held-out traces with a gap. *Wins*: traces where it closes more "
               "of the gap than every (other) baseline.")
    L = ["# Learned eviction agents: held-out leaderboard", "", intro, "", about, "", "## Summary", "", summary, "",
         "| rank | policy | kind | gap closed (avg) | wins | train time (s) |", "|---|---|---|---|---|---|"]
    for i, n in enumerate(ranked, 1):
        p = pol[n]
        wins = "–" if p["kind"] == "oracle" else f"{len(p['beats_every_baseline'])}/{len(gapped)}"
        tt = ", ".join(f"{x:.0f}" for x in p["train_time_s"]) if p["kind"] == "learned" else ""
        name = f"**{n}**" if p["kind"] == "learned" else n
        L.append(f"| {i} | {name} | {p['kind']} | {_pm(p['mean'], p['std'])} | {wins} | {tt} |")
    per_trace = ("Misses of LRU and Belady, the best baseline on that trace, and each learned agent (gap closed; "
                 "good decisions: the share of its evictions whose victim has the farthest next use among the "
                 "candidates, the good-decision ratio of `kvgym.oracle.regret`).")
    L += ["", "## Per held-out trace", "", per_trace, ""]
    head = "| trace | held out as | LRU misses | Belady misses | best baseline |" + "".join(
        f" {n} | {n} good decisions |" for n in learned)
    L += [head, "|" + "---|" * (5 + 2 * len(learned))]
    for t in traces:
        ti = info[t]
        bb = rep["best_baseline"].get(t)
        held = ("unseen workload" if ti["unseen_workload"] else
                "= a training trace" if ti.get("same_as_training") else "test seed")
        cells = [t, held, str(ti["lru"]), str(ti["belady"]),
                 f"{bb['policy']} {_f(bb['gap_closed'])}" if bb else "no gap"]
        for n in learned:
            pt = pol[n]["per_trace"][t]
            mark = " ✓" if t in pol[n]["beats_every_baseline"] else ""
            cells += [_pm(pt["mean"], pt["std"]) + mark, _f(pt.get("good_decision_ratio"), ".2f")]
        L.append("| " + " | ".join(cells) + " |")
    legend = ("✓ = beats every baseline on that trace. *= a training trace*: the workload ignores its seed, so "
              "its test trace is the one it was trained on.")
    L += ["", legend, "", "## Every policy by workload", "",
          "Mean gap closed over each workload's held-out traces (columns), in rank order.", ""]
    wls = list(dict.fromkeys(info[t]["workload"] for t in gapped))
    L += ["| policy | " + " | ".join(f"{w}{' *' if any(info[t]['unseen_workload'] for t in gapped if info[t]['workload'] == w) else ''}"
                                      for w in wls) + " | avg |", "|---|" + "---|" * (len(wls) + 1)]
    for n in ranked:
        p = pol[n]
        cells = [_f(_mean(p["per_trace"][t]["mean"] for t in gapped if info[t]["workload"] == w)) for w in wls]
        L.append(f"| {n} | " + " | ".join(cells) + f" | {_f(p['mean'])} |")
    L += ["", "\\* never seen in training.", "", "## Every policy on every held-out trace", "",
          "Gap closed (%); learned agents: mean over training seeds.", ""]
    L += ["| trace | " + " | ".join(ranked) + " |", "|---|" + "---|" * len(ranked)]
    for t in traces:
        L.append(f"| {t} | " + " | ".join(_f(pol[n]["per_trace"][t]["mean"]) for n in ranked) + " |")
    L.append("")
    nogap = [t for t in traces if t not in gapped]
    if nogap:
        L += [f"Traces without a gap (LRU already optimal), not averaged: {', '.join(nogap)}.", ""]
    L += ["## Learned agents", ""]
    for n in learned:
        p = pol[n]
        L.append(f"- **{n}** ({p['algo']}): folders {', '.join(f'`{f}`' for f in p['folders'])}; seeds "
                 f"{p['seeds']}; per-seed held-out averages {', '.join(_f(x) for x in p['seed_means'])}; "
                 f"validation gap closed {', '.join(_f(x) for x in p['validation_gap_closed'])}; training time "
                 f"{', '.join(f'{x:.0f} s' for x in p['train_time_s'])}.")
    L.append("")
    return "\n".join(L)


def write_report(zoo, out=None) -> tuple[Path, Path]:
    """Write ``leaderboard.md`` (``out`` or ``ZOO/leaderboard.md``) and ``leaderboard.json`` beside it."""
    from kvgym.files import write_json, write_text

    rep = build(zoo)
    md = Path(out) if out else Path(zoo) / "leaderboard.md"
    write_text(md, render(rep))
    js = write_json(md.with_suffix(".json"), rep)
    return md, js
