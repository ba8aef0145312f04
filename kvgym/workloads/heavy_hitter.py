"""``heavy_hitter``: persistent, slowly drifting heavy pages plus a recent window (the H2O pattern)."""

from __future__ import annotations

import numpy as np

from kvgym.workloads import register_workload
from kvgym.workloads._common import need_float, need_int
from kvgym.workloads._decode import (
    MODEL_DEFAULTS,
    Collector,
    Layout,
    check_common,
    jitter,
    need_pages,
    normalize,
    recency,
    resolve_geometry,
)


@register_workload("heavy_hitter", **MODEL_DEFAULTS, batch=1, prompt_tokens=4096, decode_steps=64, heavy_pages=16,
                   window_pages=16, heavy_mass=0.7, drift=0.02, recency_tau=4.0, noise=0.25)
def heavy_hitter(rng, *, model, tokens_per_page, batch, prompt_tokens, decode_steps, heavy_pages, window_pages,
                 heavy_mass, drift, recency_tau, noise):
    """A persistent, slowly drifting set of heavy pages plus a recent window (H2O).

    Each (sequence, layer) keeps ``heavy_pages`` distinct heavy pages, initially drawn uniformly
    from the pages older than its window at step 0, each with a persistent importance
    (log-normal, scale 1). Every step after the first, each heavy page is replaced with
    probability ``drift`` by a uniformly drawn page older than the current window and not already
    heavy (it gets a fresh importance). Each step reads the heavy pages and the last
    ``window_pages`` pages. Weights: the heavy pages hold exactly ``heavy_mass`` in proportion to
    importance times log-normal noise (scale ``noise``); the window holds the rest by recency,
    ``exp(-age / recency_tau)`` times noise. Requires ``heavy_pages + window_pages`` <= the pages
    present at step 0.
    """
    wl = "heavy_hitter"
    g = resolve_geometry(wl, model, tokens_per_page)
    check_common(wl, batch=batch, prompt_tokens=prompt_tokens, decode_steps=decode_steps)
    need_int(wl, "heavy_pages", heavy_pages, 1)
    need_float(wl, "heavy_mass", heavy_mass, 0.0, 1.0)
    need_float(wl, "drift", drift, 0.0, 1.0)
    need_float(wl, "recency_tau", recency_tau, 0.0, lo_open=True)
    need_float(wl, "noise", noise, 0.0)
    lay = Layout(g, batch, prompt_tokens + decode_steps)
    nb0 = lay.blocks_at(prompt_tokens + 1)
    ctx = f"prompt_tokens={prompt_tokens}, tokens_per_page={lay.tpp}"
    need_pages(wl, "window_pages", window_pages, nb0 - 1, ctx + ", minus one heavy page")
    need_pages(wl, "heavy_pages", heavy_pages, nb0 - window_pages, ctx + f", minus window_pages={window_pages}")
    S, L, H, W = batch, lay.layers, heavy_pages, window_pages
    old0 = nb0 - W
    # Initial heavy sets: H distinct blocks of [0, old0) per (seq, layer).
    heavy = np.argpartition(rng.random((S, L, old0)), H - 1, axis=-1)[..., :H].astype(np.int64) if H < old0 else \
        np.broadcast_to(np.arange(old0), (S, L, old0)).copy()
    imp = np.exp(rng.standard_normal((S, L, H)))
    seq = np.arange(S)[:, None, None]
    layer = np.arange(L)[None, :, None]
    base = recency(W, recency_tau)
    out = Collector(decode_steps)
    for t in range(decode_steps):
        nb = lay.blocks_at(prompt_tokens + t + 1)
        if t and drift > 0:
            for s, l, h in zip(*np.nonzero(rng.random((S, L, H)) < drift)):
                pool = nb - W
                if pool <= H:
                    continue  # every old page is already heavy
                while True:  # rejection: a page not already heavy for this (seq, layer)
                    c = int(rng.integers(0, pool))
                    if not (heavy[s, l] == c).any():
                        break
                heavy[s, l, h] = c
                imp[s, l, h] = np.exp(rng.standard_normal())
        order = np.argsort(heavy, axis=-1)
        hb = np.take_along_axis(heavy, order, axis=-1)
        w_heavy = normalize(np.take_along_axis(imp, order, axis=-1) * jitter(rng, (S, L, H), noise), heavy_mass)
        w_win = normalize(base * jitter(rng, (S, L, W), noise), 1.0 - heavy_mass)
        blk = np.concatenate([hb, np.broadcast_to(np.arange(nb - W, nb), (S, L, W))], axis=-1)
        out.add_grid(lay.page_ids(seq, blk, layer), np.concatenate([w_heavy, w_win], axis=-1))
    return out.trace(lay.page_table(), lay.meta(heavy_pages=H, window_pages=W))
