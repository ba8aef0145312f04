"""``multi_turn``: a chat whose context grows turn by turn, every earlier turn's pages reused."""

from __future__ import annotations

import numpy as np

from kvgym.workloads import register_workload
from kvgym.workloads._common import need_int
from kvgym.workloads._decode import (
    MODEL_DEFAULTS,
    RELEVANCE_DEFAULTS,
    Collector,
    Layout,
    QueryWalk,
    add_biases,
    check_relevance,
    correlated_keys,
    need_pages,
    relevance,
    resolve_geometry,
    softmax,
    topk_select,
)


def turn_starts(prompt_tokens: int, turns: int, turn_tokens: int, reply_tokens: int) -> np.ndarray:
    """Context length (tokens) right after each turn's prefill: the prompt, then + reply + message per turn."""
    return prompt_tokens + np.arange(turns, dtype=np.int64) * (reply_tokens + turn_tokens)


@register_workload("multi_turn", **MODEL_DEFAULTS, batch=1, prompt_tokens=1024, turns=4, turn_tokens=256,
                   reply_tokens=32, k=16, **RELEVANCE_DEFAULTS)
def multi_turn(rng, *, model, tokens_per_page, batch, prompt_tokens, turns, turn_tokens, reply_tokens, k, drift,
               key_dim, key_corr, temperature, sink_bias, recent_bias):
    """A chat whose context grows turn by turn, with every earlier turn reused.

    ``batch`` independent conversations in lockstep. Turn 0 starts from ``prompt_tokens``; each
    later turn appends a user message of ``turn_tokens`` tokens. Every turn is one **prefill step**
    that reads every page of the conversation so far (earlier turns reused from the KV cache,
    the new message's pages written; uniform weights), then ``reply_tokens`` **decode steps**
    that each read, per layer, the newest page and the ``k - 1`` most relevant others (as in
    ``topk_drift``; the query is redrawn at each turn and drifts within it). A turn is
    ``1 + reply_tokens`` steps; the context ends at
    ``prompt_tokens + turns * reply_tokens + (turns - 1) * turn_tokens`` tokens.
    Requires ``k`` <= the pages present at the first decode step.
    """
    wl = "multi_turn"
    g = resolve_geometry(wl, model, tokens_per_page)
    need_int(wl, "batch", batch, 1)
    need_int(wl, "prompt_tokens", prompt_tokens, 1)
    need_int(wl, "turns", turns, 1)
    need_int(wl, "turn_tokens", turn_tokens, 1)
    need_int(wl, "reply_tokens", reply_tokens, 1)
    check_relevance(wl, drift=drift, key_dim=key_dim, key_corr=key_corr, temperature=temperature,
                    sink_bias=sink_bias, recent_bias=recent_bias)
    starts = turn_starts(prompt_tokens, turns, turn_tokens, reply_tokens)
    lay = Layout(g, batch, int(starts[-1]) + reply_tokens)
    need_pages(wl, "k", k, lay.blocks_at(prompt_tokens + 1), f"prompt_tokens={prompt_tokens}, tokens_per_page={lay.tpp}")
    S, L, MB = batch, lay.layers, lay.max_blocks
    keys = correlated_keys(rng, S * L, MB, key_dim, key_corr).reshape(S, L, key_dim, MB)
    walk = QueryWalk(rng, (S, L), key_dim, drift)
    seq = np.arange(S)[:, None, None]
    layer = np.arange(L)[None, :, None]
    out = Collector(turns * (1 + reply_tokens))
    for j in range(turns):
        ctx = int(starts[j])
        nb = lay.blocks_at(ctx)
        out.add_grid(lay.page_ids(seq, np.broadcast_to(np.arange(nb), (S, L, nb)), layer), np.full((S, L, nb), 1.0 / nb))
        if j:
            walk.reset(slice(None))
        for i in range(reply_tokens):
            nb = lay.blocks_at(ctx + i + 1)
            q = walk.q if i == 0 else walk.step()
            scores = add_biases(relevance(keys, q, nb), sink_bias, recent_bias)
            blk, sel = topk_select(scores, k)
            out.add_grid(lay.page_ids(seq, blk, layer), softmax(sel, temperature))
    prefill_steps = (np.arange(turns) * (1 + reply_tokens)).tolist()
    return out.trace(lay.page_table(), lay.meta(k=k, turn_start_tokens=starts.tolist(), prefill_steps=prefill_steps))
