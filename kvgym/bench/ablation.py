"""Ablation of one policy's parameters: a grid of values x scenarios x workloads x seeds.

``kvgym ablate regret_aware --grid regret_weight=1,6,12 regret_horizon=8,24,64 --seeds 7,42,91``
runs every combination of the grid as its own policy variant (plus a reference policy, ``lru``
by default) through the sweep runner (so it is resumable and parallel), then writes, beside the
sweep's own artifacts:

- ``ablation.json`` / ``ablation.md``: per variant, the mean and sample std (ddof 1) **across
  seeds** of the per-seed average over every (scenario, workload) cell of: average access latency
  (ms; kv-hierarchy-lab's ``avg_latency_ms`` under ``serial`` costs), tier-0 hit rate, misses and
  bytes moved; the same per scenario.
- plots of the original study: ``latency_vs_<param>.png`` and ``hit_rate_vs_<param>.png`` for
  every grid parameter (one line per combination of the other parameters, error bars = std
  across seeds), and ``latency_vs_bytes.png`` (one point per variant).

Defaults follow kv-hierarchy-lab's setting: its five scenarios (group ``parity``) and its
workload patterns (group ``patterns``), regenerated per seed.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from kvgym.bench.config import SweepConfig
from kvgym.bench.specs import PolicySpec
from kvgym.callspec import fmt_call, fmt_value, parse_value, split_top
from kvgym.errors import ConfigError
from kvgym.files import write_json, write_text

METRICS = {"latency_ms": "average access latency (ms)", "hit_rate": "tier-0 hit rate", "misses": "misses",
           "bytes_moved": "bytes moved"}


@dataclass(frozen=True)
class AblateConfig:
    """An ablation. ``grid``: ``{param: [values]}`` of the policy's constructor parameters."""

    policy: str = "regret_aware"
    grid: dict = field(default_factory=dict)
    scenarios: tuple = ("parity",)
    workloads: tuple = ("patterns",)
    workload_params: dict = field(default_factory=dict)
    seeds: tuple = (7, 42, 91)
    reference: str = "lru"
    prefetcher: str = "none"
    backend: str = "process"
    workers: int = 0
    out: str = "artifacts/ablation"
    plots: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        for f in ("scenarios", "workloads", "seeds"):
            v = getattr(self, f)
            object.__setattr__(self, f, tuple(v) if isinstance(v, (list, tuple)) else (v,))
        if not isinstance(self.grid, dict) or not self.grid:
            raise ConfigError("ablate: give a grid, e.g. --grid regret_weight=1,6,12 regret_horizon=8,24,64")
        grid = {}
        for k, vals in self.grid.items():
            vals = list(vals) if isinstance(vals, (list, tuple)) else [vals]
            if not vals:
                raise ConfigError(f"ablate: grid parameter {k!r} has no values")
            grid[k] = vals
        object.__setattr__(self, "grid", grid)

    def variants(self) -> list[dict]:
        keys = list(self.grid)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(self.grid[k] for k in keys))]

    def sweep_config(self) -> SweepConfig:
        pols = [{"name": self.policy, "params": v} for v in self.variants()]
        if self.reference:
            pols.append(self.reference)
        return SweepConfig(name=f"ablate_{self.policy}", scenarios=self.scenarios, workloads=self.workloads,
                           workload_params=self.workload_params, policies=tuple(pols), prefetcher=self.prefetcher,
                           oracle="", seeds=self.seeds, backend=self.backend, workers=self.workers,
                           out=str(Path(self.out) / self.policy), plots=self.plots, progress=self.progress)


def parse_grid(items) -> dict:
    """``["regret_weight=1,6,12", "regret_horizon=8,24,64"]`` -> ``{name: [values]}``."""
    grid = {}
    for item in items or ():
        if "=" not in item:
            raise ConfigError(f"--grid {item!r}: expected param=v1,v2,...")
        k, vals = item.split("=", 1)
        grid[k.strip()] = [parse_value(v) for v in split_top(vals)]
    return grid


def _latency_ms(r: dict) -> float:
    return r["avg_access_latency_us"] / 1e3


def _value(r: dict, metric: str) -> float:
    return _latency_ms(r) if metric == "latency_ms" else float(r[metric])


def aggregate(cfg: AblateConfig, records: list[dict]) -> dict:
    """Mean and std across seeds of per-seed averages, per variant (overall and per scenario)."""
    labels = {fmt_call(cfg.policy, dict(sorted(v.items()))): v for v in cfg.variants()}
    if cfg.reference:
        labels[PolicySpec.parse(cfg.reference).label] = None
    ok = [r for r in records if r.get("status") == "ok"]
    scen = []
    for r in ok:
        if r["scenario"] not in scen:
            scen.append(r["scenario"])

    def stats(rs):
        out = {}
        for m in METRICS:
            per_seed = []
            for s in cfg.seeds:
                vals = [_value(r, m) for r in rs if r["seed"] == s]
                if vals:
                    per_seed.append(float(np.mean(vals)))
            if per_seed:
                a = np.array(per_seed)
                out[m] = {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
                          "seeds": len(a)}
        return out

    rows = []
    for label, params in labels.items():
        rs = [r for r in ok if r["policy"] == label]
        rows.append({"policy": label, "params": params, "reference": params is None, "cells": len(rs),
                     "overall": stats(rs), "by_scenario": {s: stats([r for r in rs if r["scenario"] == s]) for s in scen}})
    return {"format": "kvgym-ablation/1", "policy": cfg.policy, "grid": cfg.grid, "seeds": list(cfg.seeds),
            "scenarios": scen, "aggregate": "per seed: mean over (scenario, workload) cells; then mean and sample "
                                            "std (ddof=1) across seeds", "variants": rows}


def _pm(s: dict | None, fmt: str) -> str:
    if not s:
        return "–"
    return f"{s['mean']:{fmt}} ± {s['std']:{fmt}}"


def markdown(agg: dict, command: str) -> str:
    keys = list(agg["grid"])
    head = "| " + " | ".join(keys) + " | latency ms | tier-0 hit rate | misses | bytes moved |"
    sep = "|" + "---:|" * (len(keys) + 4)
    lines = [f"# Ablation: {agg['policy']}", "", f"Command: `{command}`", "",
             (f"Seeds {', '.join(map(str, agg['seeds']))}; scenarios {', '.join(agg['scenarios'])}. Each value is the mean ± "
             "sample std across seeds of the per-seed average over every (scenario, workload) cell."), "",
             "## Overall", "", head, sep]

    def row(v, st):
        cells = [fmt_value(v["params"][k]) if v["params"] else ("reference " + v["policy"] if i == 0 else "")
                 for i, k in enumerate(keys)]
        return ("| " + " | ".join(cells) + f" | {_pm(st.get('latency_ms'), '.4f')} | {_pm(st.get('hit_rate'), '.4f')} | "
                f"{_pm(st.get('misses'), '.1f')} | {_pm(st.get('bytes_moved'), '.0f')} |")

    for v in agg["variants"]:
        lines.append(row(v, v["overall"]))
    for s in agg["scenarios"]:
        lines += ["", f"## {s}", "", head, sep]
        for v in agg["variants"]:
            lines.append(row(v, v["by_scenario"].get(s, {})))
    lines += ["", "Plots: " + ", ".join(f"[{p}](plots/{p})" for p in plot_names(agg)), ""]
    return "\n".join(lines)


def plot_names(agg: dict) -> list[str]:
    names = []
    for k in agg["grid"]:
        names += [f"latency_vs_{k}.png", f"hit_rate_vs_{k}.png"]
    return names + ["latency_vs_bytes.png"]


def plots(agg: dict, out: Path) -> list[Path]:
    from kvgym.bench.plots import _plt, save_atomic

    plt = _plt()
    out = Path(out) / "plots"
    paths = []
    variants = [v for v in agg["variants"] if v["params"]]
    ref = next((v for v in agg["variants"] if v["reference"]), None)
    keys = list(agg["grid"])
    for k in keys:
        others = [o for o in keys if o != k]
        for metric, fname in (("latency_ms", f"latency_vs_{k}.png"), ("hit_rate", f"hit_rate_vs_{k}.png")):
            fig, ax = plt.subplots(figsize=(6, 4))
            lines: dict[tuple, list] = {}
            for v in variants:
                lines.setdefault(tuple(v["params"][o] for o in others), []).append(v)
            for key, vs in lines.items():
                xs = [v["params"][k] for v in vs]
                st = [v["overall"].get(metric) for v in vs]
                ys = [s["mean"] if s else math.nan for s in st]
                es = [s["std"] if s else 0.0 for s in st]
                label = ", ".join(f"{o}={fmt_value(x)}" for o, x in zip(others, key)) or agg["policy"]
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=label)
            if ref and ref["overall"].get(metric):
                ax.axhline(ref["overall"][metric]["mean"], color="grey", ls="--", lw=1, label=ref["policy"])
            ax.set_xlabel(k)
            ax.set_ylabel(METRICS[metric])
            ax.set_title(f"{agg['policy']}: {METRICS[metric]} against {k} (mean ± std across seeds)", fontsize=8)
            ax.legend(fontsize=7)
            paths.append(save_atomic(fig, out / fname))
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for v in agg["variants"]:
        b, lat = v["overall"].get("bytes_moved"), v["overall"].get("latency_ms")
        if not b or not lat:
            continue
        lab = v["policy"] if v["reference"] else ",".join(f"{fmt_value(v['params'][k])}" for k in keys)
        ax.errorbar([b["mean"]], [lat["mean"]], xerr=[b["std"]], yerr=[lat["std"]], marker="s" if v["reference"] else "o",
                    capsize=2, color="grey" if v["reference"] else None)
        ax.annotate(lab, (b["mean"], lat["mean"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("bytes moved (mean per cell)")
    ax.set_ylabel(METRICS["latency_ms"])
    ax.set_title(f"{agg['policy']}: latency against bytes moved (labels: {', '.join(keys)})", fontsize=8)
    paths.append(save_atomic(fig, out / "latency_vs_bytes.png"))
    return paths


def run_ablation(cfg: AblateConfig, command: str, log=None):
    from kvgym.bench.sweep import run_sweep

    scfg = cfg.sweep_config()
    res = run_sweep(scfg, log=log, title=f"Ablation of {cfg.policy}: leaderboard", command=command)
    agg = aggregate(cfg, res.records)
    agg["config"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}
    out = Path(scfg.out)
    write_json(out / "ablation.json", agg)
    write_text(out / "ablation.md", markdown(agg, command))
    if cfg.plots:
        plots(agg, out)
    return res, agg
