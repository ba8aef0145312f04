"""``streaming``: attention sinks plus a sliding window (the StreamingLLM pattern)."""

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


@register_workload("streaming", **MODEL_DEFAULTS, batch=1, prompt_tokens=4096, decode_steps=64, sink_pages=1,
                   window_pages=16, sink_mass=0.3, recency_tau=4.0, noise=0.25)
def streaming(rng, *, model, tokens_per_page, batch, prompt_tokens, decode_steps, sink_pages, window_pages,
              sink_mass, recency_tau, noise):
    """Attention sinks plus a sliding window (StreamingLLM).

    Each step, every (sequence, layer) reads the first ``sink_pages`` pages (the attention sinks)
    and the last ``window_pages`` pages of its context (the newest one included), nothing else.
    Weights: the sinks share ``sink_mass`` (all of it goes to the window when ``sink_pages = 0``);
    the window shares the rest by recency, ``exp(-age / recency_tau)``; both are multiplied by
    log-normal noise of scale ``noise`` per access, then renormalised within their group.
    Requires ``sink_pages + window_pages`` <= the pages present at step 0.
    """
    wl = "streaming"
    g = resolve_geometry(wl, model, tokens_per_page)
    check_common(wl, batch=batch, prompt_tokens=prompt_tokens, decode_steps=decode_steps)
    need_int(wl, "sink_pages", sink_pages, 0)
    need_float(wl, "sink_mass", sink_mass, 0.0, 1.0)
    need_float(wl, "recency_tau", recency_tau, 0.0, lo_open=True)
    need_float(wl, "noise", noise, 0.0)
    lay = Layout(g, batch, prompt_tokens + decode_steps)
    nb0 = lay.blocks_at(prompt_tokens + 1)
    ctx = f"prompt_tokens={prompt_tokens}, tokens_per_page={lay.tpp}"
    need_pages(wl, "window_pages", window_pages, nb0 - sink_pages, ctx + f", minus sink_pages={sink_pages}")
    S, L, W, K = batch, lay.layers, window_pages, sink_pages
    sink_share = sink_mass if K else 0.0
    seq = np.arange(S)[:, None, None]
    layer = np.arange(L)[None, :, None]
    base = recency(W, recency_tau)
    out = Collector(decode_steps)
    for t in range(decode_steps):
        nb = lay.blocks_at(prompt_tokens + t + 1)
        blk = np.concatenate([np.arange(K), np.arange(nb - W, nb)])
        pages = lay.page_ids(seq, blk[None, None, :], layer)
        w_sink = normalize(jitter(rng, (S, L, K), noise), sink_share) if K else np.zeros((S, L, 0))
        w_win = normalize(base * jitter(rng, (S, L, W), noise), 1.0 - sink_share)
        out.add_grid(pages, np.concatenate([w_sink, w_win], axis=-1))
    return out.trace(lay.page_table(), lay.meta(sink_pages=K, window_pages=W))
