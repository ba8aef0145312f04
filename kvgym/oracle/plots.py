"""Plots of the oracle and regret analyses (matplotlib, Agg backend), written atomically.

PNG files carry no software version or date, so the same data gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kvgym.files import atomic_write


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str | Path) -> Path:
    """Save ``fig`` to ``path`` atomically (temp file, then rename) and close it."""
    path = Path(path)
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=110,
                                                   metadata={"Software": None}), "plot")
    finally:
        _plt().close(fig)
    return path


def plot_mrc(curves, path, *, title: str, marks: dict[str, int] | None = None) -> Path:
    """OPT and LRU miss ratio against cache size (pages and share of the pages touched)."""
    plt = _plt()
    c = curves.capacities()
    n = max(curves.accesses, 1)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    x = 100.0 * c / max(curves.distinct, 1)
    ax.plot(x, curves.lru_misses(c) / n, label="LRU", color="tab:blue")
    ax.plot(x, curves.opt_misses(c) / n, label="OPT (Belady MIN)", color="tab:green")
    ax.axhline(curves.cold / n, color="grey", lw=0.8, ls=":", label="first touches")
    for name, k in (marks or {}).items():
        if k is not None and 0 < k <= curves.distinct:
            ax.axvline(100.0 * k / max(curves.distinct, 1), color="tab:red", lw=0.8, ls="--")
            ax.text(100.0 * k / max(curves.distinct, 1), 0.98, f" {name}", transform=ax.get_xaxis_transform(),
                    va="top", fontsize=8, color="tab:red")
    ax.set_xlabel(f"cache size, % of the {curves.distinct} pages touched (flat sequence)")
    ax.set_ylabel("miss ratio")
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save(fig, path)


def plot_regret_over_time(results, path) -> Path:
    """Cumulative misses above the oracle against step, one line per (trace, policy), LRU dashed."""
    plt = _plt()
    traces = list(dict.fromkeys(r.trace_label for r in results))
    fig, axes = plt.subplots(len(traces), 1, figsize=(7.5, 2.6 * len(traces)), squeeze=False)
    for ax, tl in zip(axes[:, 0], traces):
        rs = [r for r in results if r.trace_label == tl]
        w = rs[0].windows
        if len(w):
            ax.plot(w["start_step"], w["cumulative_lru_regret"], color="grey", ls="--", label="lru (reference)")
        for r in rs:
            if r.label == "lru" or not len(r.windows):
                continue
            ax.plot(r.windows["start_step"], r.windows["cumulative_regret"], label=r.label)
        ax.set_title(f"{tl}: cumulative tier-0 misses above the oracle ({rs[0].oracle_kind})", fontsize=9)
        ax.set_xlabel("decode step")
        ax.set_ylabel("misses - oracle")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def plot_gap_closed(results, path) -> Path:
    """Gap closed (LRU = 0, oracle = 100) per trace, one bar per policy."""
    plt = _plt()
    traces = list(dict.fromkeys(r.trace_label for r in results))
    labels = list(dict.fromkeys(r.label for r in results))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(traces) + 2), 3.8))
    width = 0.8 / max(len(labels), 1)
    for k, lab in enumerate(labels):
        vals = []
        for tl in traces:
            r = next((r for r in results if r.trace_label == tl and r.label == lab), None)
            g = None if r is None else r.gap_closed
            vals.append(np.nan if g is None else g)
        xs = np.arange(len(traces)) + (k - (len(labels) - 1) / 2) * width
        ax.bar(xs, vals, width, label=lab)
    ax.axhline(0, color="black", lw=0.8)
    ax.axhline(100, color="tab:green", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(traces)))
    ax.set_xticklabels(traces, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("gap closed, % (LRU 0, oracle 100)")
    ax.set_title("fraction of the LRU-to-oracle gap closed (no bar: LRU is optimal there)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return save(fig, path)


def plot_attribution(results, by: str, path, *, xlabel: str) -> Path:
    """Cost (µs) of the misses caused by tier-0 evictions, grouped by ``by``; one panel per trace."""
    from kvgym.oracle.regret import summarize

    plt = _plt()
    traces = list(dict.fromkeys(r.trace_label for r in results))
    fig, axes = plt.subplots(len(traces), 1, figsize=(7.5, 2.6 * len(traces)), squeeze=False)
    for ax, tl in zip(axes[:, 0], traces):
        rs = [r for r in results if r.trace_label == tl]
        groups = []
        tables = {}
        for r in rs:
            t = summarize(r.evictions, by)
            tables[r.label] = t
            groups += [g for g in t[by].tolist() if g not in groups]
        if by == "age_bucket":
            groups.sort(key=lambda g: int(str(g).split("-")[0]))
        else:
            groups.sort()
        width = 0.8 / max(len(rs), 1)
        for k, r in enumerate(rs):
            t = tables[r.label].set_index(by) if len(tables[r.label]) else None
            vals = [float(t.loc[g, "cost_us"]) / 1e3 if t is not None and g in t.index else 0.0 for g in groups]
            xs = np.arange(len(groups)) + (k - (len(rs) - 1) / 2) * width
            ax.bar(xs, vals, width, label=r.label)
        if not any(float(r.evictions["cost_us"].sum()) > 0 for r in rs if len(r.evictions)):
            ax.set_ylim(0, 1)
            ax.text(0.5, 0.5, "no tier-0 eviction came back", transform=ax.transAxes, ha="center", va="center")
        ax.set_xticks(np.arange(len(groups)))
        ax.set_xticklabels([str(g) for g in groups], fontsize=7, rotation=45 if len(groups) > 12 else 0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("refetch cost, ms")
        ax.set_title(f"{tl}: cost of tier-0 evictions that came back", fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return save(fig, path)
