"""The serving section's plots (matplotlib, Agg), drawn from the serving leaderboard.

- ``serving_ttft.png``: one panel per serving scenario; per entry (in rank order) its p50, mean and
  p90 time to first token relative to the reference's (geometric means over the cells, so request
  sources of very different TTFTs count equally; 1 = the reference, dashed).
- ``serving_prefill.png``: prompt tokens each entry computes relative to the scenario's reference,
  in percent (entries x scenarios heat map; negative = less prefill than the reference).

Written atomically, like the sweep's other plots (:mod:`kvgym.bench.plots`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from kvgym.bench.plots import _heatmap, _plt, save_atomic

PLOTS = ("serving_ttft.png", "serving_prefill.png")


def ttft(board: dict, path: Path) -> Path:
    plt = _plt()
    scen = [sc for sc in board["scenarios"] if sc["ranked"]]
    n = max(1, len(scen))
    rows = max((len(sc["ranked"]) for sc in scen), default=1)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n + 1.5, 0.3 * rows + 2.0), squeeze=False)
    for ax, sc in zip(axes[0], scen):
        ranked = sc["ranked"]
        y = np.arange(len(ranked))[::-1]
        for key, marker, colour, label in (("p50_vs_ref", "|", "#0072B2", "p50"), ("ttft_vs_ref", "o", "#000000", "mean"),
                                           ("p90_vs_ref", "^", "#D55E00", "p90")):
            xs = [r[key] for r in ranked]
            ax.plot([x for x in xs if x is not None], [yi for yi, x in zip(y, xs) if x is not None], marker,
                    color=colour, ms=7 if marker == "|" else 4.5, ls="none", label=label)
        ax.axvline(1.0, color="grey", ls="--", lw=0.8)
        ax.set_yticks(y, [f"{r['rank']}{'=' if r['tied'] else ''} {r['policy']}" for r in ranked], fontsize=7)
        ax.set_xlabel(f"TTFT / {sc['reference']}'s (geometric mean over sources)", fontsize=8)
        ax.set_title(sc["scenario"], fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    for ax in axes[0][len(scen):]:
        ax.axis("off")
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle("Time to first token per policy relative to the reference: p50, mean, p90 (rank order)", fontsize=10)
    fig.tight_layout()
    return save_atomic(fig, path)


def prefill(board: dict, path: Path) -> Path:
    from matplotlib.colors import TwoSlopeNorm

    scen = [sc for sc in board["scenarios"] if sc["ranked"]]
    names = list(dict.fromkeys(r["policy"] for sc in scen for r in sc["ranked"]))
    grid = np.full((len(names), len(scen)), np.nan)
    labels = [["" for _ in scen] for _ in names]
    for j, sc in enumerate(scen):
        for r in sc["ranked"]:
            v = r["prefill_vs_ref"]
            if v is not None and math.isfinite(v):
                i = names.index(r["policy"])
                grid[i, j] = 100.0 * (v - 1.0)
                labels[i][j] = f"{grid[i, j]:+.1f}"
    lim = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
    cols = [f"{sc['scenario']} (vs {sc['reference']})" for sc in scen]
    return _heatmap(grid, labels, names, [sc["scenario"] for sc in scen],
                    "Prompt tokens computed relative to the reference, % (negative: more prefix reuse)",
                    "prefill computed vs reference (%)", path, "PuOr_r", TwoSlopeNorm(0.0, -lim or -1, lim or 1), cols)


def write_all(board: dict, out: Path) -> list[Path]:
    """Both plots into ``out`` (a ``plots/`` folder); nothing without feasible cells."""
    if not any(sc["ranked"] for sc in board["scenarios"]):
        return []
    out.mkdir(parents=True, exist_ok=True)
    return [ttft(board, out / PLOTS[0]), prefill(board, out / PLOTS[1])]
