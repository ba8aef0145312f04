"""The regret report: Markdown, JSON and plots for a set of :class:`~kvgym.oracle.regret.RegretResult`.

``write_report(results, out_dir, command=...)`` writes, atomically:

- ``report.md``: the command, the scenario, a summary table (misses, gap closed, good-decision
  ratio, times), the plots, and per (trace, policy) the top evictions by cost and the
  attribution summaries by layer, age and tier;
- ``regret.json``: the summary rows, windows and attribution summaries (machine-readable);
- ``regret_over_time.png``, ``gap_closed.png``, ``attribution_layer.png``, ``attribution_age.png``.

Same inputs give byte-identical files (no dates, no absolute paths).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from kvgym.files import write_text
from kvgym.oracle.plots import plot_attribution, plot_gap_closed, plot_regret_over_time
from kvgym.oracle.regret import RegretResult, summarize


def _fmt(v, nd: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):  # NaN: pandas turned a None into it
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _table(df: pd.DataFrame, cols: list[str] | None = None, floats: int = 1) -> str:
    if df is None or len(df) == 0:
        return "_none_\n"
    cols = cols or list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df[cols].iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if isinstance(v, float):
                cells.append(f"{v:.{floats}f}")
            elif isinstance(v, (bool,)) or type(v).__name__ == "bool_":
                cells.append("yes" if v else "no")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _scenario_md(results: list[RegretResult]) -> str:
    seen, out = set(), []
    for r in results:
        s = r.scenario
        if s.name in seen:
            continue
        seen.add(s.name)
        caps = "/".join("profile" if c is None else str(c) for c in s.capacities) or "profile"
        out.append(f"- **{s.name}**: profile `{s.profile}`, capacities {caps}, `{s.cost_model}` costs, "
                   f"{s.quantization}, prefetch {'on' if s.prefetch else 'off'}, lower tiers `{s.lower_policy}`, "
                   f"first touch `{getattr(s, 'first_touch', 'backing')}`. {s.description}")
    return "\n".join(out) + "\n"


def render(results: list[RegretResult], command: str, plots: dict[str, str]) -> str:
    """The Markdown text of the report (plots referenced by relative file name)."""
    intro = ("How far each policy is from the offline oracle on tier-0 misses, and which of its evictions cost "
             "the most. Definitions: `docs/oracle.md` (gap closed: LRU = 0, oracle = 100; good decision: the "
             "victim's next use is no sooner than Belady's victim among the same candidates; attribution: the miss "
             "and nominal refetch time each evicted page cost when it came back).")
    md = ["# Regret report", "", intro, "",
          "Made with:", "", "```", command, "```", "", "## Scenario", "", _scenario_md(results), "## Summary", ""]
    rows = pd.DataFrame([r.summary() for r in results])
    cols = ["trace", "policy", "accesses", "misses", "misses_lru", "misses_oracle", "oracle", "gap_closed",
            "decisions", "good_ratio", "hit_rate", "stall_ms", "total_ms", "attributed_cost_ms"]
    rows = rows[cols].copy()
    rows["gap_closed"] = [_fmt(v, 1) for v in rows["gap_closed"]]
    rows["good_ratio"] = [_fmt(v, 4) for v in rows["good_ratio"]]
    rows["hit_rate"] = [_fmt(float(v), 4) for v in rows["hit_rate"]]
    md += [_table(rows, floats=3), ""]
    md += ["## Plots", ""]
    for title, name in plots.items():
        md += [f"### {title}", "", f"![{title}]({name})", ""]
    md += ["## Attribution", ""]
    for r in results:
        n_miss = int(r.evictions["miss"].sum()) if len(r.evictions) else 0
        cost_ms = float(r.evictions["cost_us"].sum()) / 1e3 if len(r.evictions) else 0.0
        line = (f"{len(r.evictions)} tier-0 evictions; {n_miss} came back by a miss, costing {cost_ms:.3f} ms "
                f"(nominal refetch time). Regret windows of {r.window_steps} steps.")
        md += [f"### {r.label} on {r.trace_label}", "", line, ""]
        top = r.top_evictions()
        if len(top):
            t = top.copy()
            t["gap_steps"] = t["return_step"] - t["evict_step"]
            cols = ["page", "seq", "layer", "token_start", "evict_step", "age_steps", "return_step", "gap_steps",
                    "return_tier", "cost_us"] + (["good"] if "good" in t else [])
            md += [f"Top {len(t)} evictions by cost:", "", _table(t, cols, floats=2), ""]
        for by, name in (("layer", "layer"), ("age_bucket", "age at eviction (steps since it entered tier 0)"),
                         ("return_tier", "tier it came back from")):
            md += [f"By {name}:", "", _table(summarize(r.evictions, by), floats=2), ""]
    return "\n".join(md).rstrip() + "\n"


def write_report(results: list[RegretResult], out_dir: str | Path, *, command: str) -> dict[str, Path]:
    """Write the report files into ``out_dir``; returns name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "regret_over_time.png": plot_regret_over_time(results, out / "regret_over_time.png"),
        "gap_closed.png": plot_gap_closed(results, out / "gap_closed.png"),
        "attribution_layer.png": plot_attribution(results, "layer", out / "attribution_layer.png", xlabel="layer"),
        "attribution_age.png": plot_attribution(results, "age_bucket", out / "attribution_age.png",
                                                xlabel="age at eviction, steps since it entered tier 0"),
    }
    plots = {"Regret over time": "regret_over_time.png", "Gap closed by workload": "gap_closed.png",
             "Attribution by layer": "attribution_layer.png", "Attribution by age": "attribution_age.png"}
    files["report.md"] = write_text(out / "report.md", render(results, command, plots))
    doc = {"format": "kvgym-regret/1", "command": command,
           "results": [{**r.summary(), "window_steps": r.window_steps,
                        "windows": r.windows.to_dict(orient="list"),
                        "by_layer": summarize(r.evictions, "layer").to_dict(orient="records"),
                        "by_age": summarize(r.evictions, "age_bucket").to_dict(orient="records"),
                        "by_tier": summarize(r.evictions, "return_tier").to_dict(orient="records"),
                        "top": r.top_evictions().to_dict(orient="records")} for r in results]}
    files["regret.json"] = write_text(out / "regret.json", json.dumps(_jsonable(doc), indent=1, sort_keys=True) + "\n")
    return files


def _jsonable(x):
    import numpy as np

    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return round(float(x), 6)
    if isinstance(x, np.bool_):
        return bool(x)
    return x
