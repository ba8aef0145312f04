"""The realistic decode workloads: page layout, growth, weights, and each one's defining property."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from test_workloads import DECODE, SMALL

from kvgym.traces.geometry import geometry
from kvgym.workloads import access_seq, make_trace
from kvgym.workloads._decode import Layout, topk_select

TPP = 16


def groups(trace, seq=None):
    """Dict (step, seq, layer) -> (blocks array in access order, weights)."""
    L = trace.pages.layer[trace.page]
    S = trace.pages.seq[trace.page] if seq is None else seq
    blk = trace.pages.token_start[trace.page] // TPP
    key = (trace.step * 10_000 + S) * 1000 + L
    order = np.argsort(key, kind="stable")
    ks = key[order]
    cut = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1], True])
    out = {}
    for a, b in itertools.pairwise(cut):
        k = int(ks[a])
        out[(k // 10_000_000, (k // 1000) % 10_000, k % 1000)] = (blk[order[a:b]], trace.weight[order[a:b]])
    return out


def nb_at(prompt, t):
    return -(-(prompt + t + 1) // TPP)


# ---- common to every decode workload --------------------------------------------------------

def test_layout_page_ids_and_table():
    lay = Layout(geometry("stories260k"), batch=2, max_tokens=40)  # 5 layers, 3 blocks (16, 16, 8 tokens)
    assert (lay.layers, lay.max_blocks, lay.n_pages) == (5, 3, 30)
    pt = lay.page_table()
    pid = lay.page_ids(1, 2, 4)
    assert pid == (1 * 3 + 2) * 5 + 4 == 29
    assert (pt.seq[pid], pt.layer[pid], pt.token_start[pid], pt.token_end[pid]) == (1, 4, 32, 40)
    assert pt.fp16_bytes[0] == 16 * 4 * 8 * 2 * 2 == 2048
    assert np.array_equal(pt.seq, np.repeat([0, 1], 15)) and np.array_equal(pt.layer, np.tile(np.arange(5), 6))


@pytest.mark.parametrize("name", DECODE)
def test_weights_sum_to_one_per_step_sequence_layer(name):
    t = make_trace(name, **SMALL[name])
    assert t.weight is not None and t.weight.dtype == np.float32
    g = groups(t, access_seq(t))
    sums = np.array([w.sum(dtype=np.float64) for _, w in g.values()])
    assert np.allclose(sums, 1.0, atol=2e-6), (sums.min(), sums.max())
    # One access per page per group, and every layer of every active sequence has a group each step.
    assert all(len(set(b.tolist())) == len(b) for b, _ in g.values())
    n_layers = geometry("stories260k").layers
    per_step = {}
    for (s, q, l) in g:
        per_step.setdefault((s, q), set()).add(l)
    assert all(v == set(range(n_layers)) for v in per_step.values())


@pytest.mark.parametrize("name", ["streaming", "heavy_hitter", "topk_drift", "retrieval"])
def test_cache_grows_new_page_every_tokens_per_page_steps(name):
    p = SMALL[name]
    t = make_trace(name, **p)
    blk = t.pages.token_start[t.page] // TPP
    newest = np.maximum.reduceat(blk, t.step_bounds()[:-1])
    steps = np.arange(p["decode_steps"])
    # The newest page read at step t is the block holding token prompt + t, and nothing newer.
    assert np.array_equal(newest, nb_at(p["prompt_tokens"], steps) - 1)
    assert newest[-1] > newest[0]


def test_access_order_is_layer_then_sequence_then_block():
    t = make_trace("topk_drift", model="stories260k", prompt_tokens=256, decode_steps=2, k=3, batch=2)
    s0 = t.page[t.step == 0]
    lay, seq = t.pages.layer[s0], t.pages.seq[s0]
    assert np.array_equal(lay, np.repeat(np.arange(5), 6)) and np.array_equal(seq, np.tile(np.repeat([0, 1], 3), 5))
    blk = (t.pages.token_start[s0] // TPP).reshape(10, 3)
    assert (np.diff(blk, axis=1) > 0).all()


# ---- defining properties ----------------------------------------------------------------------

def test_streaming_touches_only_sink_and_window_pages():
    p = {"model": "stories260k", "prompt_tokens": 512, "decode_steps": 40, "sink_pages": 2, "window_pages": 5, "batch": 2}
    t = make_trace("streaming", **p)
    for (step, _, _), (b, w) in groups(t).items():
        nb = nb_at(512, step)
        assert np.array_equal(b, np.r_[0, 1, np.arange(nb - 5, nb)])
        assert abs(w[:2].sum() - 0.3) < 1e-6  # sink_mass
        assert (np.diff(w[2:]) > -1).all()


def test_heavy_hitter_heavy_pages_hold_the_configured_mass():
    p = {"model": "stories260k", "prompt_tokens": 1024, "decode_steps": 60, "heavy_pages": 6, "window_pages": 4, "heavy_mass": 0.65,
             "drift": 0.05}
    t = make_trace("heavy_hitter", **p)
    g = groups(t)
    changed, slots = 0, 0
    for (step, s, l), (b, w) in g.items():
        nb = nb_at(1024, step)
        heavy = b < nb - 4
        assert heavy.sum() == 6 and np.array_equal(b[~heavy], np.arange(nb - 4, nb))
        assert abs(w[heavy].sum() - 0.65) < 1e-6
        if step:
            prev = g[(step - 1, s, l)][0]
            changed += len(set(b[heavy].tolist()) - set(prev[prev < nb_at(1024, step - 1) - 4].tolist()))
            slots += 6
    # Each heavy page is replaced with probability drift per step: 59 steps x 5 layers x 6 slots.
    assert abs(changed / slots - 0.05) < 0.02
    # drift = 0: the heavy set never changes.
    t0 = make_trace("heavy_hitter", **{**p, "drift": 0.0})
    sets = {}
    for (step, s, l), (b, _) in groups(t0).items():
        sets.setdefault(l, set()).add(tuple(b[b < nb_at(1024, step) - 4]))
    assert all(len(v) == 1 for v in sets.values())


def test_topk_select_is_the_exact_top_k_with_the_newest_forced():
    rng = np.random.default_rng(0)
    s = rng.standard_normal((3, 4, 50)).astype(np.float32)
    idx, sel = topk_select(s, 7)
    for i in range(3):
        for j in range(4):
            want = np.sort(np.r_[49, np.argsort(-s[i, j, :49])[:6]])
            assert np.array_equal(idx[i, j], want)
            assert np.array_equal(sel[i, j], s[i, j, want])
    idx, _ = topk_select(s, 7, force_last=False)
    assert np.array_equal(idx[0, 0], np.sort(np.argsort(-s[0, 0])[:7]))


def test_topk_drift_selects_k_pages_and_drifts_with_the_query():
    base = {"model": "stories260k", "prompt_tokens": 2048, "decode_steps": 48, "k": 12}

    def churn(drift):
        g = groups(make_trace("topk_drift", **base, drift=drift))
        out = []
        for (step, s, l), (b, _) in g.items():
            assert len(b) == 12 and b[-1] == nb_at(2048, step) - 1  # k pages, the newest included
            if step:
                out.append(len(set(b.tolist()) - set(g[(step - 1, s, l)][0].tolist())))
        return np.array(out)

    c0 = churn(0.0)
    # A fixed query: the selection only changes when a new page appears (it enters; at most one
    # other leaves), i.e. once every 16 steps.
    assert c0.max() <= 1 and c0.sum() <= 5 * 3
    means = [churn(d).mean() for d in (0.0, 0.1, 0.5, 1.0)]
    assert means == sorted(means) and means[-1] > 5 * means[1] > 0


def test_retrieval_bursts_read_one_distant_contiguous_region_for_burst_steps():
    p = {"model": "stories260k", "prompt_tokens": 2048, "decode_steps": 120, "sink_pages": 1, "window_pages": 3, "burst_pages": 5,
             "burst_steps": 4, "burst_rate": 0.3, "burst_mass": 0.6}
    t = make_trace("retrieval", **p)
    region = {}
    for (step, s, l), (b, w) in groups(t).items():
        nb = nb_at(2048, step)
        win = b >= nb - 3
        assert b[0] == 0 and np.array_equal(b[win], np.arange(nb - 3, nb))
        mid = b[1:][~win[1:]]
        if len(mid):
            assert len(mid) == 5 and np.array_equal(mid, np.arange(mid[0], mid[0] + 5)) and mid[-1] < nb - 3
            assert abs(w[1:][~win[1:]].sum() - 0.6) < 1e-6
        r = int(mid[0]) if len(mid) else -1
        assert region.setdefault(step, r) == r  # every layer reads the same region
    runs, cur, n = [], None, 0
    for step in range(120):
        if region[step] == cur:
            n += 1
        else:
            if cur not in (None, -1):
                runs.append(n)
            cur, n = region[step], 1
    assert len(runs) >= 5 and set(runs) == {4}  # complete bursts last exactly burst_steps


def test_multi_turn_reuses_every_earlier_turns_pages():
    p = SMALL["multi_turn"]  # prompt 256, 3 turns, user message 64, reply 8, k 4
    t = make_trace("multi_turn", **p)
    per_turn = 1 + 8
    turn = t.step // per_turn
    prefill = t.step % per_turn == 0
    ends = [256, 256 + 8 + 64, 256 + 2 * (8 + 64)]  # context after each turn's prefill
    assert t.meta["turn_start_tokens"] == ends and t.meta["prefill_steps"] == [0, 9, 18]
    created = set()
    for j in range(3):
        read = set(t.page[turn == j].tolist())
        assert created <= read  # every page of the earlier turns is read again in turn j
        pre = t.page[(turn == j) & prefill]
        assert len(pre) == 5 * nb_at(ends[j] - 1, 0) and set(pre.tolist()) >= created
        created |= read
        dec = (turn == j) & ~prefill
        assert dec.sum() == 8 * 5 * 4  # reply_tokens x layers x k
    assert len(created) == 5 * nb_at(256 + 3 * 8 + 2 * 64 - 1, 0)


def test_shared_prefix_requests_share_system_and_document_pages():
    p = dict(SMALL["shared_prefix"], requests=6, documents=2, arrival_every=2.0)
    t = make_trace("shared_prefix", **p)
    seq = access_seq(t)
    arrival, docs = np.array(t.meta["arrival_steps"]), np.array(t.meta["documents_read"])
    L = 5
    n_sys, n_doc = 64 // 16, 128 // 16
    n_priv = -(-(64 + 128 + 16 + 6) // 16) - n_sys - n_doc
    assert len(t.pages) == L * (n_sys + len(set(docs.tolist())) * n_doc + 6 * n_priv)
    readers = {}
    for pg, r in zip(t.page.tolist(), seq.tolist()):
        readers.setdefault(pg, set()).add(r)
    sys_pages = range(n_sys * L)
    assert all(readers[pg] == set(range(6)) for pg in sys_pages)  # every request reads the system prompt
    for r in range(6):
        mine = t.page[seq == r]
        assert t.step[seq == r].min() == arrival[r]  # it starts at its arrival, with its prefill
        first = t.page[(seq == r) & (t.step == arrival[r])]
        assert len(first) == L * -(-(64 + 128 + 16) // 16)
        for r2 in range(6):
            shared = set(mine.tolist()) & set(t.page[seq == r2].tolist())
            if r2 != r:
                # Requests reading the same document share its pages; others share only the system prompt.
                doc_shared = {pg for pg in shared if pg >= n_sys * L}
                assert bool(doc_shared) == (docs[r] == docs[r2])
                assert all(t.pages.token_end[pg] <= 64 + 128 for pg in shared)
    priv = [pg for pg, rs in readers.items() if t.pages.token_end[pg] > 64 + 128]
    assert priv and all(len(readers[pg]) == 1 for pg in priv)
