"""The sweep's plots (matplotlib, Agg backend), drawn from the result records.

- ``hit_rate.png``: tier-0 hit rate by policy (rows) and scenario (columns), a heat map of the
  mean over trace sources and seeds.
- ``latency_vs_bytes.png``: per (scenario, source), each policy's total time against bytes moved,
  both relative to LRU on the same cell (log axes); big markers = the policy's geometric mean.
- ``tier_hits.png``: where accesses were served: tier 0, each lower tier, or a full miss (a first
  touch, or a page dropped from the last tier) (share of accesses, mean over every cell), per policy.
- ``prefetch.png``: prefetches useful (on time / late) and wasted, per policy, over the cells
  whose scenario has prefetch on (share of prefetches issued).
- ``stall.png``: stall time as a share of total time, by policy and scenario (heat map).

Every file is written atomically. Plots are for reading, not diffing: they are not promised to be
byte-identical across matplotlib versions.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from kvgym.files import atomic_write


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_atomic(fig, path: Path, dpi: int = 110) -> Path:
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight",
                                                   metadata={"Software": None}), "plot")
    finally:
        _plt().close(fig)
    return path


def _order(records, key):
    out = []
    for r in records:
        if r[key] not in out:
            out.append(r[key])
    return out


def _ok(records):
    return [r for r in records if r.get("status") == "ok"]


def _heatmap(records, value, title, cbar, path, fmt="{:.2f}", cmap="viridis"):
    plt = _plt()
    recs = _ok(records)
    pols, scens = _order(recs, "policy"), _order(recs, "scenario")
    grid = np.full((len(pols), len(scens)), np.nan)
    for i, p in enumerate(pols):
        for j, s in enumerate(scens):
            vals = [value(r) for r in recs if r["policy"] == p and r["scenario"] == s]
            vals = [v for v in vals if v is not None and math.isfinite(v)]
            if vals:
                grid[i, j] = float(np.mean(vals))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * len(scens) + 3), max(3.0, 0.32 * len(pols) + 1.5)))
    im = ax.imshow(grid, aspect="auto", cmap=cmap)
    ax.set_xticks(range(len(scens)), scens, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(pols)), pols, fontsize=7)
    if len(pols) * len(scens) <= 600:
        for i in range(len(pols)):
            for j in range(len(scens)):
                if math.isfinite(grid[i, j]):
                    ax.text(j, i, fmt.format(grid[i, j]), ha="center", va="center", fontsize=5.5,
                            color="white" if grid[i, j] < np.nanmean(grid) else "black")
    fig.colorbar(im, ax=ax, label=cbar)
    ax.set_title(title, fontsize=9)
    return save_atomic(fig, path)


def hit_rate(records, path):
    return _heatmap(records, lambda r: r["hit_rate"], "Tier-0 hit rate (mean over sources and seeds)",
                    "tier-0 hit rate", path)


def stall(records, path):
    def share(r):
        t = r.get("total_time_us") or 0.0
        return r["stall_us"] / t if t > 0 else None
    return _heatmap(records, share, "Stall time / total time (mean over sources and seeds)",
                    "stall share", path, cmap="magma_r")


def latency_vs_bytes(records, path, reference="lru"):
    plt = _plt()
    recs = _ok(records)
    ref = {(r["scenario"], r["source"], r["seed"]): r for r in recs if r["policy"] == reference}
    pols = [p for p in _order(recs, "policy") if p != reference]
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    cmap = plt.get_cmap("tab20")
    have = False
    for k, p in enumerate(pols):
        xs, ys = [], []
        for r in recs:
            if r["policy"] != p:
                continue
            b = ref.get((r["scenario"], r["source"], r["seed"]))
            if b is None or not b["bytes_moved"] or not b["total_time_us"] or not r["bytes_moved"] or not r["total_time_us"]:
                continue
            xs.append(r["bytes_moved"] / b["bytes_moved"])
            ys.append(r["total_time_us"] / b["total_time_us"])
        if not xs:
            continue
        have = True
        c = cmap(k % 20)
        ax.scatter(xs, ys, s=8, alpha=0.35, color=c)
        ax.scatter([math.exp(np.mean(np.log(xs)))], [math.exp(np.mean(np.log(ys)))], s=70, color=c,
                   edgecolor="black", label=p, zorder=3)
    if have:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.axvline(1.0, color="grey", lw=0.8)
        ax.legend(fontsize=6, ncol=2, loc="best")
    else:
        ax.text(0.5, 0.5, f"no '{reference}' rows to compare with", ha="center", transform=ax.transAxes)
    ax.set_xlabel(f"bytes moved / {reference} (same scenario, source, seed)")
    ax.set_ylabel(f"total time / {reference}")
    ax.set_title("Latency against bytes moved (each dot a cell; big markers: geometric means)", fontsize=9)
    return save_atomic(fig, path)


def tier_hits(records, path):
    plt = _plt()
    recs = _ok(records)
    pols = _order(recs, "policy")
    nt = max((len(r.get("tier_hits") or []) for r in recs), default=0)
    shares = np.zeros((len(pols), nt + 1))
    for i, p in enumerate(pols):
        rs = [r for r in recs if r["policy"] == p and r["accesses"]]
        if not rs:
            continue
        for r in rs:
            th = list(r["tier_hits"]) + [0] * (nt - len(r["tier_hits"]))
            shares[i, :nt] += np.array(th, float) / r["accesses"]
            shares[i, nt] += r["full_misses"] / r["accesses"]
        shares[i] /= len(rs)
    fig, ax = plt.subplots(figsize=(7.5, max(3.0, 0.3 * len(pols) + 1.5)))
    left = np.zeros(len(pols))
    labels = [f"tier {i}" for i in range(nt)] + ["full miss (first touch, or dropped from the last tier)"]
    colors = plt.get_cmap("viridis")(np.linspace(0.1, 0.9, nt + 1))
    for j in range(nt + 1):
        ax.barh(range(len(pols)), shares[:, j], left=left, color=colors[j], label=labels[j])
        left += shares[:, j]
    ax.set_yticks(range(len(pols)), pols, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("share of accesses served (mean over cells)")
    ax.set_title("Per-tier hit breakdown", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_atomic(fig, path)


def prefetch(records, path):
    plt = _plt()
    recs = [r for r in _ok(records) if r.get("prefetch_issued")]
    pols = _order(recs, "policy")
    fig, ax = plt.subplots(figsize=(7.5, max(3.0, 0.3 * max(len(pols), 1) + 1.5)))
    if not pols:
        ax.text(0.5, 0.5, "no prefetches were issued in this sweep", ha="center", transform=ax.transAxes)
    else:
        parts = np.zeros((len(pols), 3))
        for i, p in enumerate(pols):
            rs = [r for r in recs if r["policy"] == p]
            iss = sum(r["prefetch_issued"] for r in rs)
            late = sum(r["prefetch_late"] for r in rs)
            useful = sum(r["prefetch_useful"] for r in rs)
            parts[i] = [(useful - late) / iss, late / iss, sum(r["prefetch_wasted"] for r in rs) / iss]
        left = np.zeros(len(pols))
        for j, (lab, col) in enumerate(zip(("useful, on time", "useful, late", "wasted"), ("tab:green", "tab:olive", "tab:red"))):
            ax.barh(range(len(pols)), parts[:, j], left=left, color=col, label=lab)
            left += parts[:, j]
        ax.set_yticks(range(len(pols)), pols, fontsize=7)
        ax.invert_yaxis()
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_xlabel("share of prefetches issued (cells with prefetch on)")
    ax.set_title("Prefetch usefulness", fontsize=9)
    return save_atomic(fig, path)


PLOTS = {"hit_rate.png": hit_rate, "latency_vs_bytes.png": latency_vs_bytes, "tier_hits.png": tier_hits,
         "prefetch.png": prefetch, "stall.png": stall}


def write_all(records, out: Path) -> list[Path]:
    out = Path(out) / "plots"
    return [fn(records, out / name) for name, fn in PLOTS.items()]
