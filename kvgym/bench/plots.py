"""The sweep's plots (matplotlib, Agg backend), drawn from the result records.

- ``time_vs_lru.png``: each policy's total time relative to LRU over every cell, with its 95%
  interval from the seeds (:mod:`kvgym.bench.stats`) and the shaded tolerance band inside which a
  difference is never ranked; in the order of the leaderboard's overall ranking.
- ``hit_rate.png``: tier-0 hit rate of each policy (rows) and scenario (columns) *minus LRU's* on
  the same cells, in percentage points with two decimals (policies differ in the rate's third and
  fourth decimals); a value in parentheses is not a real difference (its interval includes 0 or it
  is under the tolerance). LRU's own rate is in the column labels.
- ``latency_vs_bytes.png``: per (scenario, source, seed), each policy's total time against bytes
  moved, both relative to LRU on the same cell (log axes); big markers = the policy's geometric
  mean with its 95% interval on both axes.
- ``tier_hits.png``: where accesses were served: tier 0, each lower tier, or a full miss (a first
  touch, or a page dropped from the last tier) (share of accesses, mean over every cell), per policy.
- ``prefetch.png``: prefetches useful (on time / late) and wasted, per policy, over the cells
  whose scenario has prefetch on (share of prefetches issued).
- ``stall.png``: stall time as a share of total time, by policy and scenario (heat map).

Colours: a colour-blind-safe qualitative palette (Okabe & Ito), each policy one colour *and*
marker pair, so no two policies look alike; heat-map labels are black or white by the luminance
of their cell. Every file is written atomically. Plots are for reading, not diffing: they are not
promised to be byte-identical across matplotlib versions.
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


#: Okabe & Ito's colour-blind-safe qualitative palette (Color Universal Design, 2008).
PALETTE = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
#: Markers combined with the palette: policy i gets colour i % 8 and marker i // 8.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def styles(names) -> dict[str, tuple[str, str]]:
    """A distinct (colour, marker) pair per name, in order."""
    return {n: (PALETTE[i % len(PALETTE)], MARKERS[(i // len(PALETTE)) % len(MARKERS)]) for i, n in enumerate(names)}


def text_colour(rgba) -> str:
    """Black or white, whichever reads better on a cell of colour ``rgba`` (WCAG relative luminance)."""
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3]]
    lum = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    return "black" if lum > 0.179 else "white"  # the luminance where both contrast ratios are equal


def _cells(recs, policy, key) -> dict:
    return {key(r): r for r in recs if r["policy"] == policy}


def _heatmap(grid, labels, rows, cols, title, cbar, path, cmap, norm=None, col_labels=None):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.62 * len(cols) + 3.5), max(3.2, 0.36 * len(rows) + 1.8)))
    im = ax.imshow(grid, aspect="auto", cmap=cmap, norm=norm)
    ax.set_xticks(range(len(cols)), col_labels or cols, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    if len(rows) * len(cols) <= 600:
        for i in range(len(rows)):
            for j in range(len(cols)):
                if labels[i][j]:
                    ax.text(j, i, labels[i][j], ha="center", va="center", fontsize=6.5,
                            color=text_colour(im.cmap(im.norm(grid[i, j]))))
    fig.colorbar(im, ax=ax, label=cbar)
    ax.set_title(title, fontsize=9)
    return save_atomic(fig, path)


def hit_rate_grid(records, reference="lru"):
    """(policies, scenarios, grid of hit rate minus the reference's in pp, cell labels, reference rates)."""
    from kvgym.bench.stats import miss_interval, misses_differ, stratified

    recs = _ok(records)
    pols, scens = _order(recs, "policy"), _order(recs, "scenario")
    key = lambda r: ((r["source"],), r["seed"])
    grid = np.full((len(pols), len(scens)), np.nan)
    labels = [["" for _ in scens] for _ in pols]
    ref_rate = []
    for j, s in enumerate(scens):
        mine = [r for r in recs if r["scenario"] == s]
        ref = _cells(mine, reference, key)
        ref_rate.append(float(np.mean([r["hit_rate"] for r in ref.values()])) if ref else None)
        for i, p in enumerate(pols):
            cells = _cells(mine, p, key)
            by: dict = {}
            for c, r in cells.items():
                if c in ref:
                    by.setdefault(c[0], []).append(100.0 * (r["hit_rate"] - ref[c]["hit_rate"]))
            iv = stratified(by)
            if iv is None:
                continue
            grid[i, j] = iv.mean
            text = f"{iv.mean:+.2f}"
            labels[i][j] = text if misses_differ(miss_interval(cells, ref)) else f"({text})"
    return pols, scens, grid, labels, ref_rate


def hit_rate(records, path, reference="lru"):
    from matplotlib.colors import TwoSlopeNorm

    pols, scens, grid, labels, ref_rate = hit_rate_grid(records, reference)
    lim = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
    cols = [f"{s} ({reference} {h:.4f})" if h is not None else s for s, h in zip(scens, ref_rate)]
    return _heatmap(grid, labels, pols, scens, f"Tier-0 hit rate minus {reference}'s, percentage points "
                    "(mean over sources; seeds paired; in parentheses: not a real difference)",
                    f"hit rate - {reference} (pp)", path, "PuOr", TwoSlopeNorm(0.0, -lim or -1, lim or 1), cols)


def stall(records, path):
    recs = _ok(records)
    pols, scens = _order(recs, "policy"), _order(recs, "scenario")
    grid = np.full((len(pols), len(scens)), np.nan)
    for i, p in enumerate(pols):
        for j, s in enumerate(scens):
            vals = [r["stall_us"] / r["total_time_us"] for r in recs
                    if r["policy"] == p and r["scenario"] == s and r.get("total_time_us")]
            if vals:
                grid[i, j] = float(np.mean(vals))
    labels = [[f"{v:.3f}" if math.isfinite(v) else "" for v in row] for row in grid]
    return _heatmap(grid, labels, pols, scens, "Stall time / total time (mean over sources and seeds)",
                    "stall share", path, "cividis")


def _gmean_ci(ratios_by_stratum) -> tuple[float, float, float] | None:
    from kvgym.bench.stats import stratified

    iv = stratified({k: [math.log(x) for x in v] for k, v in ratios_by_stratum.items()})
    return None if iv is None else (math.exp(iv.mean), math.exp(iv.lo), math.exp(iv.hi))


def latency_vs_bytes(records, path, reference="lru"):
    plt = _plt()
    recs = _ok(records)
    ref = {(r["scenario"], r["source"], r["seed"]): r for r in recs if r["policy"] == reference}
    style = styles(_order(recs, "policy"))
    pols = [p for p in style if p != reference]
    fig, ax = plt.subplots(figsize=(8.5, 6.0))
    have = False
    for p in pols:
        xs, ys, bx, by = [], [], {}, {}
        for r in recs:
            if r["policy"] != p:
                continue
            b = ref.get((r["scenario"], r["source"], r["seed"]))
            if b is None or not b["bytes_moved"] or not b["total_time_us"] or not r["bytes_moved"] or not r["total_time_us"]:
                continue
            xs.append(r["bytes_moved"] / b["bytes_moved"])
            ys.append(r["total_time_us"] / b["total_time_us"])
            bx.setdefault((r["scenario"], r["source"]), []).append(xs[-1])
            by.setdefault((r["scenario"], r["source"]), []).append(ys[-1])
        if not xs:
            continue
        have = True
        colour, marker = style[p]
        ax.scatter(xs, ys, s=8, alpha=0.3, color=colour, marker=marker)
        (mx, xlo, xhi), (my, ylo, yhi) = _gmean_ci(bx), _gmean_ci(by)
        ax.errorbar([mx], [my], xerr=[[mx - xlo], [xhi - mx]], yerr=[[my - ylo], [yhi - my]], fmt=marker,
                    ms=9, color=colour, mec="black", ecolor=colour, capsize=3, label=p, zorder=3)
    if have:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.axvline(1.0, color="grey", lw=0.8)
        ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.text(0.5, 0.5, f"no '{reference}' rows to compare with", ha="center", transform=ax.transAxes)
    ax.set_xlabel(f"bytes moved / {reference} (same scenario, source, seed)")
    ax.set_ylabel(f"total time / {reference}")
    ax.set_title("Latency against bytes moved (dots: cells; big markers: geometric means, 95% intervals)", fontsize=9)
    return save_atomic(fig, path)


def time_vs_lru(records, path, reference="lru"):
    from kvgym.bench import leaderboard
    from kvgym.bench.stats import TIME_TOLERANCE

    plt = _plt()
    board = leaderboard.build(records, reference)
    rows = board["overall"]["ranked"] + board["overall"]["oracle"]
    rows = [r for r in rows if r["time_vs_ref"] is not None]
    style = styles(_order(_ok(records), "policy"))
    fig, ax = plt.subplots(figsize=(7.5, max(3.0, 0.34 * len(rows) + 1.5)))
    ax.axvspan(1 / (1 + TIME_TOLERANCE), 1 + TIME_TOLERANCE, color="#dddddd", label=f"tie band (±{TIME_TOLERANCE:.1%})")
    ax.axvline(1.0, color="grey", lw=0.8)
    for i, r in enumerate(rows):
        colour, marker = style[r["policy"]]
        lo, hi = r["time_ci"] or (r["time_vs_ref"], r["time_vs_ref"])
        ax.errorbar([r["time_vs_ref"]], [i], xerr=[[r["time_vs_ref"] - lo], [hi - r["time_vs_ref"]]], fmt=marker,
                    color=colour, mec="black", capsize=3, ms=7)
    names = [f"{leaderboard._rank_label(r) if r['kind'] != 'oracle' else 'oracle'}  {r['policy']}" for r in rows]
    ax.set_yticks(range(len(rows)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"total time / {reference} (geometric mean over every cell; bars: 95% interval from the seeds)")
    ax.set_title(f"Time relative to {reference}, in leaderboard order ('=' marks a tie)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
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
        for j, (lab, col) in enumerate(zip(("useful, on time", "useful, late", "wasted"), (PALETTE[5], PALETTE[2], PALETTE[6]))):
            ax.barh(range(len(pols)), parts[:, j], left=left, color=col, label=lab)
            left += parts[:, j]
        ax.set_yticks(range(len(pols)), pols, fontsize=7)
        ax.invert_yaxis()
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_xlabel("share of prefetches issued (cells with prefetch on)")
    ax.set_title("Prefetch usefulness", fontsize=9)
    return save_atomic(fig, path)


PLOTS = {"time_vs_lru.png": time_vs_lru, "hit_rate.png": hit_rate, "latency_vs_bytes.png": latency_vs_bytes,
         "tier_hits.png": tier_hits, "prefetch.png": prefetch, "stall.png": stall}


def write_all(records, out: Path) -> list[Path]:
    out = Path(out) / "plots"
    return [fn(records, out / name) for name, fn in PLOTS.items()]
