"""``topk_drift``: each step reads the top-k pages by a relevance that drifts with the query (Quest)."""

from __future__ import annotations

import numpy as np

from kvgym.workloads import register_workload
from kvgym.workloads._decode import (
    MODEL_DEFAULTS,
    RELEVANCE_DEFAULTS,
    Collector,
    Layout,
    QueryWalk,
    add_biases,
    check_common,
    check_relevance,
    correlated_keys,
    need_pages,
    relevance,
    resolve_geometry,
    softmax,
    topk_select,
)


@register_workload("topk_drift", **MODEL_DEFAULTS, batch=1, prompt_tokens=4096, decode_steps=64, k=32,
                   **RELEVANCE_DEFAULTS)
def topk_drift(rng, *, model, tokens_per_page, batch, prompt_tokens, decode_steps, k, drift, key_dim, key_corr,
               temperature, sink_bias, recent_bias):
    """Top-k pages by a relevance score that drifts with the query (Quest).

    Each step, every (sequence, layer) reads ``k`` pages: the newest page (being written) and
    the ``k - 1`` other pages present with the highest relevance ``key . q`` (keys and the
    drifting query as in the relevance model of ``docs/workloads.md``: ``drift`` 0 keeps the
    query fixed, 1 draws a fresh one each step). Weights: softmax of relevance / ``temperature``
    over the ``k`` pages. Requires ``k`` <= the pages present at step 0.
    """
    wl = "topk_drift"
    g = resolve_geometry(wl, model, tokens_per_page)
    check_common(wl, batch=batch, prompt_tokens=prompt_tokens, decode_steps=decode_steps)
    check_relevance(wl, drift=drift, key_dim=key_dim, key_corr=key_corr, temperature=temperature,
                    sink_bias=sink_bias, recent_bias=recent_bias)
    lay = Layout(g, batch, prompt_tokens + decode_steps)
    nb0 = lay.blocks_at(prompt_tokens + 1)
    need_pages(wl, "k", k, nb0, f"prompt_tokens={prompt_tokens}, tokens_per_page={lay.tpp}")
    S, L, MB = batch, lay.layers, lay.max_blocks
    keys = correlated_keys(rng, S * L, MB, key_dim, key_corr).reshape(S, L, key_dim, MB)
    walk = QueryWalk(rng, (S, L), key_dim, drift)
    seq = np.arange(S)[:, None, None]
    layer = np.arange(L)[None, :, None]
    out = Collector(decode_steps)
    for t in range(decode_steps):
        nb = lay.blocks_at(prompt_tokens + t + 1)
        q = walk.q if t == 0 else walk.step()
        scores = add_biases(relevance(keys, q, nb), sink_bias, recent_bias)  # (S, L, nb)
        blk, sel = topk_select(scores, k)
        del scores
        out.add_grid(lay.page_ids(seq, blk, layer), softmax(sel, temperature))
    del keys
    return out.trace(lay.page_table(), lay.meta(k=k))
