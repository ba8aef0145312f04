"""Trace statistics: size, footprint by quantization, reuse distances, attention concentration.

All functions take a :class:`~kvgym.traces.format.Trace` and return plain JSON-serialisable
dicts (ints, floats, lists, string keys), so ``kvgym trace stats --json`` can save them and other
tools (e.g. the real-model capture) can compare traces.

- :func:`reuse_distances`: for each access, the number of **distinct other pages** accessed
  since the previous access of the same page (0 = immediate re-access; -1 = first touch). Exact,
  O(n log n): a Fenwick tree over access positions marks each page's latest access (numba).
- :func:`trace_stats`: accesses, steps, distinct pages, footprint of the distinct pages under
  fp16/fp8/int4/int2 (:mod:`kvgym.traces.quant`), the feasible tier-0 range (from the largest
  step's distinct pages, ``tier0_min_bytes``, to the footprint; ``auto:0`` .. ``auto:1``), the
  page table's total bytes (the base of ``N%`` capacities), reuse-distance quantiles.
- :func:`attention_stats`: for traces with weights. A *group* is one (step, sequence, layer):
  the accesses of one sequence's attention in one layer at one decode step. Per group: the share
  of its mass on its most recent page (largest ``token_end``), on the first page
  (``token_start == 0``), and the share covered by its top-k weights; each averaged over groups
  (every group counts once), overall and by layer.
- :func:`plot_stats`: reuse-distance histogram plus a page-access heat map over time (PNG).
"""

from __future__ import annotations

from pathlib import Path

import numba
import numpy as np

from kvgym.files import atomic_write
from kvgym.sim.scenario import step_need
from kvgym.traces.format import Trace
from kvgym.traces.quant import SCHEMES

QUANTILES = (0.5, 0.9, 0.99)
DEFAULT_TOPK = (1, 4, 16, 64)
DEFAULT_REUSE_LIMIT = 5_000_000


@numba.njit(cache=True)
def _reuse_kernel(page, n_pages):  # pragma: no cover - compiled
    n = page.shape[0]
    last = np.full(n_pages, -1, np.int64)
    tree = np.zeros(n + 1, np.int32)  # Fenwick tree over positions 1..n; 1 = latest access of its page
    out = np.empty(n, np.int64)
    for i in range(n):
        p = page[i]
        j = last[p]
        if j < 0:
            out[i] = -1
        else:
            s = 0
            k = i  # marks at positions 0..i-1
            while k > 0:
                s += tree[k]
                k -= k & -k
            k = j + 1  # minus marks at positions 0..j
            while k > 0:
                s -= tree[k]
                k -= k & -k
            out[i] = s
            k = j + 1  # page p's latest access moves from j to i
            while k <= n:
                tree[k] -= 1
                k += k & -k
        k = i + 1
        while k <= n:
            tree[k] += 1
            k += k & -k
        last[p] = i
    return out


def reuse_distances(page: np.ndarray, n_pages: int | None = None) -> np.ndarray:
    """Reuse distance of every access (int64; -1 for a first touch). See the module docstring."""
    page = np.ascontiguousarray(page, dtype=np.int64)
    if page.size == 0:
        return np.zeros(0, np.int64)
    n_pages = int(page.max()) + 1 if n_pages is None else int(n_pages)
    return _reuse_kernel(page, n_pages)


def reuse_summary(dist: np.ndarray) -> dict:
    """Quantiles (nearest-rank, ``method="inverted_cdf"``) of the finite reuse distances."""
    finite = dist[dist >= 0]
    out = {"accesses": int(dist.size), "first_touches": int(dist.size - finite.size), "reuses": int(finite.size)}
    if finite.size:
        qs = np.quantile(finite, QUANTILES, method="inverted_cdf")
        out.update({f"p{round(q * 100):d}": int(v) for q, v in zip(QUANTILES, qs)})
        out.update(mean=float(finite.mean()), max=int(finite.max()))
    return out


def trace_stats(trace: Trace, *, reuse_limit: int = DEFAULT_REUSE_LIMIT) -> dict:
    """Size, footprint by quantization and reuse-distance quantiles of ``trace``.

    Reuse distances are computed on the first ``reuse_limit`` accesses only (0 = all).
    """
    n = len(trace)
    pages = trace.pages
    distinct = np.unique(trace.page) if n else np.zeros(0, np.int64)
    fp16 = pages.fp16_bytes[distinct]
    steps = int(trace.step[-1] - trace.step[0] + 1) if n else 0
    out = {
        "accesses": n,
        "steps": steps,
        "distinct_steps": int(len(trace.step_bounds()) - 1) if n else 0,
        "accesses_per_step": (n / steps) if steps else 0.0,
        "pages_in_table": len(pages),
        "distinct_pages": int(distinct.size),
        "sequences": int(np.unique(pages.seq[distinct]).size),
        "layers": int(np.unique(pages.layer[distinct]).size),
        "has_weights": trace.weight is not None,
        "footprint_bytes": {name: int(np.sum(q.footprint(fp16))) for name, q in SCHEMES.items()},
    }
    sizes = {name: np.asarray(q.footprint(pages.fp16_bytes), np.int64) for name, q in SCHEMES.items()}
    if pages.bytes is not None:
        out["footprint_bytes"]["stored"] = int(pages.bytes[distinct].sum())
        sizes["stored"] = pages.bytes.astype(np.int64)
    # The feasible tier-0 range (kvgym.sim.scenario.tier0_range): its top is footprint_bytes.
    out["tier0_min_bytes"] = {name: int(step_need(trace.step, trace.page, size)[1].max(initial=0))
                              for name, size in sizes.items()}
    out["table_bytes"] = {name: int(size.sum()) for name, size in sizes.items()}
    lim = n if reuse_limit <= 0 else min(n, reuse_limit)
    out["reuse_distance"] = reuse_summary(reuse_distances(trace.page[:lim], len(pages)))
    return out


def attention_stats(trace: Trace, *, ks=DEFAULT_TOPK, seq: np.ndarray | None = None) -> dict | None:
    """Attention concentration per (step, sequence, layer) group; ``None`` if the trace has no weights.

    ``seq`` (one request id per access) overrides the page table's ``seq``, for traces where one
    page serves several requests (shared prefixes); by default an access belongs to its page's
    sequence. Groups with zero total weight are skipped.
    """
    if trace.weight is None:
        return None
    ks = sorted({int(k) for k in ks})
    if any(k < 1 for k in ks):
        raise ValueError(f"top-k sizes must be >= 1, got {ks}")
    pages = trace.pages
    page = trace.page
    w = trace.weight.astype(np.float64)
    layer = pages.layer[page].astype(np.int64)
    sq = (pages.seq[page] if seq is None else np.asarray(seq)).astype(np.int64)
    n_layer = int(layer.max()) + 1 if len(layer) else 1
    n_seq = int(sq.max()) + 1 if len(sq) else 1
    gkey = (trace.step.astype(np.int64) * n_seq + sq) * n_layer + layer
    order = np.lexsort((-w, gkey))  # by group, heaviest first within a group
    gk, ws = gkey[order], w[order]
    if len(gk) == 0:
        return {"groups": 0}
    starts = np.flatnonzero(np.r_[True, gk[1:] != gk[:-1]])
    sizes = np.diff(np.r_[starts, len(gk)])
    total = np.add.reduceat(ws, starts)
    ok = total > 0
    cs = np.concatenate([[0.0], np.cumsum(ws)])
    cover = np.stack([(cs[starts + np.minimum(k, sizes)] - cs[starts]) / np.where(ok, total, 1.0) for k in ks], axis=1)
    tend = pages.token_end[page][order]
    tstart = pages.token_start[page][order]
    newest = np.maximum.reduceat(tend, starts)
    gid = np.repeat(np.arange(len(starts)), sizes)
    recent = np.bincount(gid, weights=np.where(tend == newest[gid], ws, 0.0), minlength=len(starts)) / np.where(ok, total, 1.0)
    first = np.bincount(gid, weights=np.where(tstart == 0, ws, 0.0), minlength=len(starts)) / np.where(ok, total, 1.0)
    glayer = (gk[starts] % n_layer)[ok]
    cover, recent, first = cover[ok], recent[ok], first[ok]

    def by_layer(x):
        cnt = np.bincount(glayer, minlength=n_layer)
        if x.ndim == 1:
            s = np.bincount(glayer, weights=x, minlength=n_layer)
            return {str(l): float(s[l] / cnt[l]) for l in np.flatnonzero(cnt)}
        return {str(l): [float(v) for v in x[glayer == l].mean(axis=0)] for l in np.flatnonzero(cnt)}

    return {
        "groups": int(ok.sum()),
        "mean_pages_per_group": float(sizes[ok].mean()) if ok.any() else 0.0,
        "mean_group_mass": float(total[ok].mean()) if ok.any() else 0.0,
        "recent_page_share": float(recent.mean()) if ok.any() else 0.0,
        "first_page_share": float(first.mean()) if ok.any() else 0.0,
        "recent_page_share_by_layer": by_layer(recent),
        "first_page_share_by_layer": by_layer(first),
        "topk_coverage": {"k": ks, "mean": [float(v) for v in cover.mean(axis=0)] if ok.any() else [],
                          "by_layer": by_layer(cover)},
    }


# ---- plot ---------------------------------------------------------------------------------

def heat_layer_default(trace: Trace) -> int | None:
    """Layer shown by default in the heat map: 0 when the page table has several layers (their
    page ids interleave, so one layer shows the pattern), else ``None`` (all pages)."""
    layers = trace.pages.layer
    return 0 if len(layers) and layers.max() > layers.min() else None


def plot_stats(trace: Trace, out: str | Path, *, title: str | None = None, dist: np.ndarray | None = None,
               layer: int | None = None, bins: int = 256) -> Path:
    """Write a PNG: reuse-distance histogram (log bins) and page-access heat map over time.

    ``dist``: precomputed reuse distances (default: computed on the whole trace). Heat map:
    x = step, y = page id; with ``layer`` set, only that layer's accesses, y = the page's rank
    among that layer's page ids (for decode workloads: sequence, then token block). At most
    ``bins`` x ``bins`` cells; colour = log(1 + accesses in the cell). Written atomically; the
    file is identical for identical inputs.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    if dist is None:
        dist = reuse_distances(trace.page, len(trace.pages))
    finite = dist[dist >= 0]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1, 1.5]})
    if finite.size:
        edges = np.unique(np.r_[0, np.logspace(0, np.log10(max(finite.max(), 1) + 1), 40)].astype(np.int64))
        edges = np.r_[edges, edges[-1] + 1]
        ax0.hist(finite, bins=edges, color="#3b6ea5")
        ax0.set_xscale("symlog", linthresh=1)
        ax0.set_yscale("log")
    ax0.set_xlabel("reuse distance (distinct pages between reuses)")
    ax0.set_ylabel("accesses")
    ax0.set_title(f"reuse distance ({dist.size - finite.size} first touches)", fontsize=10)
    step, y = trace.step, trace.page
    n_y = max(len(trace.pages), 1)
    if layer is not None:
        ids = np.flatnonzero(trace.pages.layer == layer)
        keep = trace.pages.layer[trace.page] == layer
        step, y = step[keep], np.searchsorted(ids, trace.page[keep])
        n_y = max(len(ids), 1)
    if len(trace):
        s0, s1 = int(trace.step[0]), int(trace.step[-1]) + 1
        xb = np.linspace(s0, s1, min(bins, s1 - s0) + 1)
        yb = np.linspace(0, n_y, min(bins, n_y) + 1)
        h, _, _ = np.histogram2d(step, y, bins=[xb, yb])
        ax1.imshow(np.log1p(h.T), origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                   extent=[s0, s1, 0, n_y])
    ax1.set_xlabel("step")
    ax1.set_ylabel("page id" if layer is None else f"page of layer {layer} (sequence, block)")
    ax1.set_title("page accesses over time (log scale)" + ("" if layer is None else f", layer {layer}"), fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    try:
        # No timestamp or version in the PNG, so identical inputs give identical bytes.
        atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=90, format="png", metadata={"Software": None}), "plot")
    finally:
        plt.close(fig)
    return out
