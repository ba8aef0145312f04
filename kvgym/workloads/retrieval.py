"""``retrieval``: bursts of reads into distant regions of a long document (RAG over a long context)."""

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


@register_workload("retrieval", **MODEL_DEFAULTS, batch=1, prompt_tokens=16384, decode_steps=64, sink_pages=1,
                   window_pages=8, burst_pages=16, burst_steps=4, burst_rate=0.25, burst_mass=0.6, sink_mass=0.2,
                   recency_tau=4.0, noise=0.25)
def retrieval(rng, *, model, tokens_per_page, batch, prompt_tokens, decode_steps, sink_pages, window_pages,
              burst_pages, burst_steps, burst_rate, burst_mass, sink_mass, recency_tau, noise):
    """Bursts of reads into distant regions of a long document (RAG over a long context).

    Every step, each (sequence, layer) reads the first ``sink_pages`` pages and the last
    ``window_pages`` pages. At a step where a sequence has no burst running, a burst starts with
    probability ``burst_rate``: a region of ``burst_pages`` consecutive pages placed uniformly
    between the sinks and the window, read by every layer of that sequence for ``burst_steps``
    consecutive steps (the step it starts included). Weights: during a burst the region holds
    ``burst_mass`` (a bump centred at a random page of the region, times noise); the sinks
    hold ``sink_mass`` of the remainder and the window the rest by recency
    ``exp(-age / recency_tau)``. Requires ``sink_pages + burst_pages + window_pages`` <= the pages
    present at step 0.
    """
    wl = "retrieval"
    g = resolve_geometry(wl, model, tokens_per_page)
    check_common(wl, batch=batch, prompt_tokens=prompt_tokens, decode_steps=decode_steps)
    need_int(wl, "sink_pages", sink_pages, 0)
    need_int(wl, "window_pages", window_pages, 1)
    need_int(wl, "burst_pages", burst_pages, 1)
    need_int(wl, "burst_steps", burst_steps, 1)
    for name, v in (("burst_rate", burst_rate), ("burst_mass", burst_mass), ("sink_mass", sink_mass)):
        need_float(wl, name, v, 0.0, 1.0)
    need_float(wl, "recency_tau", recency_tau, 0.0, lo_open=True)
    need_float(wl, "noise", noise, 0.0)
    lay = Layout(g, batch, prompt_tokens + decode_steps)
    nb0 = lay.blocks_at(prompt_tokens + 1)
    ctx = f"prompt_tokens={prompt_tokens}, tokens_per_page={lay.tpp}"
    need_pages(wl, "window_pages", window_pages, nb0 - sink_pages - 1, ctx + f", minus sink_pages={sink_pages} and one burst page")
    need_pages(wl, "burst_pages", burst_pages, nb0 - sink_pages - window_pages,
               ctx + f", minus sink_pages={sink_pages} and window_pages={window_pages}")
    S, L, K, W, B = batch, lay.layers, sink_pages, window_pages, burst_pages
    sink_share = sink_mass if K else 0.0
    layer = np.arange(L)
    base = recency(W, recency_tau)
    left = np.zeros(S, np.int64)      # steps of the running burst still to go
    region = np.zeros(S, np.int64)    # first page of the running burst
    centre = np.zeros(S, np.float64)  # bump centre, pages from the region start
    out = Collector(decode_steps)
    for t in range(decode_steps):
        nb = lay.blocks_at(prompt_tokens + t + 1)
        start = (left == 0) & (rng.random(S) < burst_rate)
        n_new = int(start.sum())
        if n_new:
            region[start] = K + rng.integers(0, nb - W - B - K + 1, n_new)
            centre[start] = rng.random(n_new) * B
            left[start] = burst_steps
        active = left > 0
        pages, weights = [], []
        for s in range(S):
            a = bool(active[s])
            rest = 1.0 - burst_mass if a else 1.0
            blk = [np.arange(K)] + ([np.arange(region[s], region[s] + B)] if a else []) + [np.arange(nb - W, nb)]
            w = [normalize(jitter(rng, (L, K), noise), rest * sink_share) if K else np.zeros((L, 0))]
            if a:
                bump = np.exp(-0.5 * ((np.arange(B) + 0.5 - centre[s]) / max(B / 4, 0.5)) ** 2)
                w.append(normalize(bump * jitter(rng, (L, B), noise), burst_mass))
            w.append(normalize(base * jitter(rng, (L, W), noise), rest * (1.0 - sink_share)))
            blk = np.concatenate(blk)
            pages.append(lay.page_ids(s, blk[None, :], layer[:, None]))
            weights.append(np.concatenate(w, axis=-1))
        left[active] -= 1
        # Layer-major, then sequence: concatenate along the page axis per layer.
        out.add(np.concatenate(pages, axis=1), np.concatenate(weights, axis=1))
    return out.trace(lay.page_table(), lay.meta(sink_pages=K, window_pages=W, burst_pages=B))
