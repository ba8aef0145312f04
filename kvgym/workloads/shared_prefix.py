"""``shared_prefix``: concurrent requests sharing a system prompt and documents, arriving over time."""

from __future__ import annotations

import numpy as np

from kvgym.traces.format import PageTable, Trace
from kvgym.workloads import register_access_seq, register_workload
from kvgym.workloads._common import need_float, need_int
from kvgym.workloads._decode import (
    MODEL_DEFAULTS,
    RELEVANCE_DEFAULTS,
    Collector,
    QueryWalk,
    add_biases,
    blocks,
    check_relevance,
    correlated_keys,
    need_pages,
    relevance,
    resolve_geometry,
    softmax,
    topk_select,
)


@register_workload("shared_prefix", **MODEL_DEFAULTS, requests=8, arrival_every=4.0, system_tokens=512,
                   documents=4, doc_tokens=1024, doc_zipf=1.0, question_tokens=64, decode_steps=16, k=16,
                   **RELEVANCE_DEFAULTS)
def shared_prefix(rng, *, model, tokens_per_page, requests, arrival_every, system_tokens, documents, doc_tokens,
                  doc_zipf, question_tokens, decode_steps, k, drift, key_dim, key_corr, temperature, sink_bias, recent_bias):
    """Concurrent requests sharing a system prompt and documents, arriving over time.

    Request ``r``'s prompt is the system prompt (``system_tokens``), one of ``documents``
    documents (``doc_tokens`` each, document ``d`` chosen with ``P(d) ∝ 1 / (d + 1) ** doc_zipf``)
    and its own question (``question_tokens``). Request 0 arrives at step 0; gaps between
    arrivals are geometric with mean ``arrival_every`` steps (0 = all at once). A request's
    blocks that lie wholly in the system prompt are one set of pages shared by every request;
    those ending inside system prompt + document ``d`` are shared by the requests reading ``d``
    (a prefix cache); the rest (question, generated tokens) are private. At its arrival step a
    request **prefills**: it reads every page of its prompt (uniform weights); then it decodes
    ``decode_steps`` tokens, one per step, reading per layer the newest page and the ``k - 1``
    most relevant others of its context (as in ``topk_drift``). Requests run concurrently.
    Page-table ``seq`` of a shared page is the first request that reads it.
    Requires ``k`` <= the pages of a prompt.
    """
    wl = "shared_prefix"
    g = resolve_geometry(wl, model, tokens_per_page)
    need_int(wl, "requests", requests, 1)
    need_float(wl, "arrival_every", arrival_every, 0.0)
    need_int(wl, "system_tokens", system_tokens, 0)
    need_int(wl, "documents", documents, 1)
    need_int(wl, "doc_tokens", doc_tokens, 0)
    need_float(wl, "doc_zipf", doc_zipf, 0.0)
    need_int(wl, "question_tokens", question_tokens, 1)
    need_int(wl, "decode_steps", decode_steps, 1)
    check_relevance(wl, drift=drift, key_dim=key_dim, key_corr=key_corr, temperature=temperature,
                    sink_bias=sink_bias, recent_bias=recent_bias)
    L, tpp = g.layers, g.tokens_per_page
    prompt = system_tokens + doc_tokens + question_tokens
    total = prompt + decode_steps
    nb_prompt = blocks(prompt, tpp)
    need_pages(wl, "k", k, nb_prompt, f"system_tokens + doc_tokens + question_tokens = {prompt}, tokens_per_page={tpp}")

    R = requests
    gaps = rng.geometric(1.0 / (arrival_every + 1.0), R - 1) - 1 if R > 1 else np.zeros(0, np.int64)
    arrival = np.concatenate([[0], np.cumsum(gaps)]).astype(np.int64)
    pd = 1.0 / np.arange(1, documents + 1, dtype=np.float64) ** doc_zipf
    doc = rng.choice(documents, size=R, p=pd / pd.sum())

    # Block segments: system blocks, then one segment per document in order of first use, then each
    # request's private blocks. ``seg_*`` are per block (not per page); page = block_id * L + layer.
    n_sys = system_tokens // tpp
    n_doc = (system_tokens + doc_tokens) // tpp - n_sys
    n_priv = blocks(total, tpp) - n_sys - n_doc
    docs_used, first_user = np.unique(doc, return_index=True)
    order = np.argsort(first_user, kind="stable")
    docs_used, first_user = docs_used[order], first_user[order]
    doc_seg = {int(d): i for i, d in enumerate(docs_used)}
    n_blocks = n_sys + len(docs_used) * n_doc + R * n_priv
    blk_seq = np.concatenate([np.zeros(n_sys, np.int64), np.repeat(first_user, n_doc), np.repeat(np.arange(R), n_priv)])
    blk_pos = np.concatenate([np.arange(n_sys), np.tile(np.arange(n_sys, n_sys + n_doc), len(docs_used)),
                              np.tile(np.arange(n_sys + n_doc, n_sys + n_doc + n_priv), R)]).astype(np.int64)
    # Block ids a request reads, in token order.
    priv0 = n_sys + len(docs_used) * n_doc
    req_blocks = np.stack([np.concatenate([np.arange(n_sys), n_sys + doc_seg[int(doc[r])] * n_doc + np.arange(n_doc),
                                           priv0 + r * n_priv + np.arange(n_priv)]) for r in range(R)])
    i = np.arange(n_blocks * L, dtype=np.int64)
    start = blk_pos[i // L] * tpp
    table = PageTable(seq=blk_seq[i // L].astype(np.int32), layer=(i % L).astype(np.int32), token_start=start,
                      token_end=np.minimum(start + tpp, total),
                      fp16_bytes=np.full(len(i), g.page_fp16_bytes, np.int64))

    keys = correlated_keys(rng, 1, n_blocks * L, key_dim, key_corr)[0]  # (key_dim, page id)
    walk = QueryWalk(rng, (R, L), key_dim, drift)
    layer = np.arange(L)
    n_steps = int(arrival.max()) + 1 + decode_steps
    out = Collector(n_steps)
    for t in range(n_steps):
        q_all = walk.q if t == 0 else walk.step()  # every request's query drifts once per step
        per_req = []
        for r in np.flatnonzero((arrival <= t) & (t <= arrival + decode_steps)):
            i_dec = t - arrival[r]  # 0: prefill step; i >= 1: decode step i - 1
            if i_dec == 0:
                nb = nb_prompt
                ids = req_blocks[r, :nb][None, :] * L + layer[:, None]
                per_req.append((ids, np.full(ids.shape, 1.0 / nb)))
                continue
            nb = blocks(prompt + i_dec, tpp)
            ids = req_blocks[r, :nb][None, :] * L + layer[:, None]  # (L, nb)
            scores = add_biases(relevance(keys[:, ids].transpose(1, 0, 2), q_all[r], nb), sink_bias, recent_bias)
            sel_i, sel = topk_select(scores, k)
            per_req.append((np.take_along_axis(ids, sel_i, axis=1), softmax(sel, temperature)))
        if per_req:  # layer-major, then request
            out.add(np.concatenate([p for p, _ in per_req], axis=1), np.concatenate([w for _, w in per_req], axis=1))
        else:
            out.add(np.zeros(0, np.int64), np.zeros(0, np.float32))
    meta = {"family": "decode", "geometry": g.to_dict(), "arrival_steps": arrival.tolist(), "documents_read": doc.tolist(),
            "prompt_pages": nb_prompt, "shared_blocks": {"system": n_sys, "per_document": n_doc},
            "private_blocks_per_request": n_priv}
    return out.trace(table, meta)


@register_access_seq("shared_prefix")
def access_requests(trace: Trace) -> np.ndarray:
    """The request of every access (shared pages serve several requests, so the page table's
    ``seq`` cannot say), rebuilt from the trace's metadata and the generator's access order:
    per step, layer by layer, the active requests in id order, ``prompt_pages`` accesses for a
    request's prefill step and ``k`` for a decode step."""
    m = trace.meta
    arrival = np.asarray(m["arrival_steps"], np.int64)
    n_dec, k, L = int(m["params"]["decode_steps"]), int(m["params"]["k"]), int(m["geometry"]["layers"])
    out = []
    for t in range(int(arrival.max()) + 1 + n_dec):
        act = np.flatnonzero((arrival <= t) & (t <= arrival + n_dec))
        counts = np.where(arrival[act] == t, int(m["prompt_pages"]), k)
        out.append(np.tile(np.repeat(act, counts), L))
    seq = np.concatenate(out) if out else np.zeros(0, np.int64)
    if len(seq) != len(trace):
        raise ValueError(f"shared_prefix metadata describes {len(seq)} accesses, the trace has {len(trace)}")
    return seq
