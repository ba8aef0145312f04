"""The compiled serving engine equals the specification engine on random configurations.

Each configuration draws a small request trace (a seeded ``make_requests`` workload with small
blocks, or a hand-made edge trace: no output, block-aligned prompts, prompts shorter than a block,
sessions whose later turns re-send earlier output blocks), a serving config (profile, one to three
tiers with capacities around the pressure point, write policy, lookup, load overlap, timing,
pinning, GPU prefix cache, partial tails, output-block stores, batching limits, quantization) and
one policy per tier and an admission policy. Policies and admissions are cycled so that every
serving policy appears in every tier position and beside every admission; some configurations use
Python subclasses (no compiled implementation: the compiled engine calls back into them).

The rule (:mod:`kvgym.sim.serving.compiled`): every field of :class:`ServingMetrics` is equal,
times to the last bit, and so are the per-request arrays; an error is the same error.

The default suite runs 320 configurations; the slow set 2,000.
"""

from __future__ import annotations

import numpy as np
import pytest

import kvgym.baselines.admission as admission_mod
import kvgym.baselines.arc as arc_mod
import kvgym.baselines.vllm_lru as vllm_lru_mod
from kvgym.errors import KvgymError
from kvgym.sim.policy import (
    Policy,
    admission_names,
    make_admission,
    make_policy,
    serving_policy_names,
)
from kvgym.sim.serving import ServingConfig, ServingEngine
from kvgym.sim.serving.compiled import CompiledServing, compiled_policy
from kvgym.sim.tiers import profile
from kvgym.traces.requests import RequestTrace
from kvgym.workloads.serving import make_requests

POLICIES = serving_policy_names()
ADMISSIONS = admission_names()
PER_REQUEST = ("admit_us", "first_us", "finish_us", "prefix", "loaded")


class PyARC(arc_mod.ARC):
    """ARC with no compiled implementation: runs through the Python callbacks."""


class PyVllmLRU(vllm_lru_mod.VllmLRU):
    """vllm_lru through the callbacks (request hooks in Python)."""


class PyThreshold(admission_mod.StoreThreshold):
    """A Python admission policy (callbacks)."""


def dense(chains, outs=None):
    """Renumber block ids densely in order of first appearance (chains, then each one's outputs)."""
    ids: dict[int, int] = {}
    outs = outs if outs is not None else [[] for _ in chains]
    for c, o in zip(chains, outs):
        for b in list(c) + list(o):
            ids.setdefault(b, len(ids))
    return [[ids[b] for b in c] for c in chains], [[ids[b] for b in o] for o in outs]


def edge_trace(rng, B: int) -> RequestTrace:
    """Hand-made shapes: O = 0, P a multiple of B, P < B, and sessions re-sending output blocks."""
    kind = int(rng.integers(0, 4))
    n_req = int(rng.integers(2, 9))
    if kind == 3:  # two sessions of turns: each turn re-sends the previous prompt and its output
        chains, outs, P, O, sess = [], [], [], [], []
        nxt = 0
        conv = {0: [], 1: []}
        toks = {0: 0, 1: 0}
        for i in range(n_req):
            s = i % 2
            add = int(rng.integers(1, 3 * B))
            p = toks[s] + add
            full = p // B
            chain = conv[s][:full] if len(conv[s]) >= full else conv[s] + list(range(nxt, nxt + full - len(conv[s])))
            nxt = max(nxt, max(chain, default=-1) + 1)
            if p % B:
                chain = chain + [nxt]
                nxt += 1
            o = int(rng.integers(0, 2 * B))
            n_out = max(0, (p + o - 1) // B - full) if o > 0 else 0
            out = list(range(nxt, nxt + n_out))
            nxt += n_out
            chains.append(chain)
            outs.append(out)
            P.append(p)
            O.append(o)
            sess.append(s)
            conv[s] = chain[:full] + out
            toks[s] = (full + n_out) * B
        arr = np.cumsum(rng.exponential(2e4, n_req))
        chains, outs = dense(chains, outs)
        return RequestTrace.from_chains(arr, P, O, chains, session=sess, out_chains=outs, block_tokens=B)
    shared = list(range(4))
    chains, P, O = [], [], []
    nxt = 4
    for _ in range(n_req):
        if kind == 0:    # no output
            p, o = int(rng.integers(1, 5 * B)), 0
        elif kind == 1:  # block-aligned prompts
            p, o = B * int(rng.integers(1, 6)), int(rng.integers(0, 3 * B))
        else:            # shorter than a block
            p, o = int(rng.integers(1, B)), int(rng.integers(0, 2 * B))
        n = -(-p // B)
        k = min(int(rng.integers(0, 5)), p // B)
        chain = shared[:k] + list(range(nxt, nxt + n - k))
        nxt += n - k
        chains.append(chain)
        P.append(p)
        O.append(o)
    arr = np.sort(rng.uniform(0, 1e5, n_req)) if rng.random() < 0.7 else np.zeros(n_req)
    return RequestTrace.from_chains(arr, P, O, dense(chains)[0], block_tokens=B)


def random_trace(rng) -> RequestTrace:
    B = int(rng.choice([16, 32, 64]))
    if rng.random() < 0.3:
        return edge_trace(rng, B)
    name = str(rng.choice(["chat", "agent", "system_prompt", "rag"]))
    seed = int(rng.integers(0, 1 << 20))
    small = {
        "chat": {"sessions": int(rng.integers(2, 6)), "turns_min": 1, "turns_max": 4, "system_tokens": 3 * B,
                     "first_min": B // 2, "first_max": 3 * B, "user_min": 1, "user_max": 2 * B, "output_min": 1, "output_max": 2 * B,
                     "rate_per_s": 50.0, "gap_s_mean": 0.05},
        "agent": {"sessions": int(rng.integers(2, 5)), "turns_min": 2, "turns_max": 5, "system_tokens": 2 * B,
                      "first_min": 1, "first_max": 2 * B, "user_min": 1, "user_max": B, "output_min": 1, "output_max": B,
                      "rate_per_s": 50.0, "gap_s_mean": 0.02},
        "system_prompt": {"requests": int(rng.integers(4, 30)), "prompts": 3, "system_tokens": 3 * B, "user_min": 1,
                              "user_max": 2 * B, "output_min": 1, "output_max": 2 * B, "rate_per_s": 200.0},
        "rag": {"requests": int(rng.integers(4, 30)), "docs": 12, "doc_tokens": B, "docs_per_request": 3,
                    "system_tokens": B, "question_min": 1, "question_max": B, "output_min": 1, "output_max": 2 * B,
                    "rate_per_s": 200.0},
    }[name]
    return make_requests(name, seed=seed, block_tokens=B, **small)


def peak_need(trace: RequestTrace) -> int:
    B = trace.block_tokens
    P, O = trace.prompt_tokens, trace.output_tokens
    return int(np.where(O > 0, -(-(P + O - 1) // B), -(-P // B)).max())


def random_config(rng, trace: RequestTrace) -> ServingConfig:
    prof = str(rng.choice(["h200-measured", "h100-datasheet", "seed-toy"]))
    names = [t.name for t in profile(prof).tiers]
    T = int(rng.integers(1, 4))
    below = sorted(rng.choice(np.arange(1, len(names)), T - 1, replace=False).tolist())
    tiers = [names[0]] + [names[j] for j in below]
    pin = bool(rng.random() < 0.7)
    need = peak_need(trace)
    n = trace.n_blocks
    # tier 0 around the pressure point: at least one request's whole sequence (with pinning)
    lo = need if pin else 1
    cap0 = None if rng.random() < 0.08 else int(rng.integers(lo, max(lo + 1, int(lo * 2.5) + 2)))
    if pin and rng.random() < 0.04:
        cap0 = max(1, need - 1)  # the "never fits" error, which both engines must report alike
    lower = [None if rng.random() < 0.2 else int(rng.integers(1, max(2, n // 2 + 2))) for _ in range(T - 1)]
    return ServingConfig(
        profile=prof, tiers=tuple(tiers), capacities=(cap0, *lower),
        geometry=str(rng.choice(["llama-3.1-8b", "llama-3.1-70b", "qwen2.5-7b"])),
        quantization=str(rng.choice(["fp16", "fp8", "int4"])), timing=bool(rng.random() < 0.75),
        max_running=int(rng.choice([1, 2, 4, 64])), token_budget=int(rng.choice([8, 64, 512, 8192])),
        write_policy=str(rng.choice(["write_through", "write_back"])),
        lookup=str(rng.choice(["per_block", "gpu_prefix_first"])),
        load_overlap=str(rng.choice(["async", "layerwise", "sync"])), pin=pin,
        gpu_prefix_cache=bool(rng.random() < 0.8), cache_partial_tail=bool(not pin and rng.random() < 0.5),
        store_output_blocks=bool(rng.random() < 0.7))


ADM_PARAMS = {"threshold": lambda rng: {"store_threshold": int(rng.integers(1, 4)),
                                        "max_tracker_size": int(rng.choice([2, 5, 64000]))},
              "tinylfu": lambda rng: {"min_count": int(rng.integers(0, 3)), "capacity": int(rng.choice([0, 3, 40]))},
              "presence_lfu": lambda rng: {"min_lfu_count": int(rng.integers(0, 3)), "capacity": int(rng.choice([0, 8]))}}


def pick(i: int, rng, T: int):
    """Policies (one per tier) and admission of configuration i: each policy appears in tier 0 and
    in the lower tiers, beside every admission, within len(POLICIES) * len(ADMISSIONS) configs."""
    pols = [POLICIES[(i + 7 * t) % len(POLICIES)] for t in range(T)]
    adm = ADMISSIONS[(i // len(POLICIES)) % len(ADMISSIONS)]
    params = ADM_PARAMS.get(adm, lambda rng: {})(rng)
    if i % 17 == 5:  # Python implementations: the compiled engine calls back into them
        pols[i % T] = (PyARC, PyVllmLRU)[i % 2]
        adm, params = PyThreshold, {"store_threshold": 2, "max_tracker_size": 4}
    return pols, adm, params


def build(pols, adm, params):
    objs = [p() if isinstance(p, type) else make_policy(p) for p in pols]
    a = adm(**params) if isinstance(adm, type) else make_admission(adm, **params)
    return objs, a


def check_invariants(eng: ServingEngine) -> None:
    """After a run of the specification engine: every pin, anonymous slot and reservation was
    released, and each tier's counts agree with its residents."""
    assert eng.pin0.sum() == 0 and eng.n_pinned0 == 0 and eng.anon == 0 and eng.reserved == 0
    for t in range(eng.n_tiers):
        res = np.fromiter(eng.resident[t], np.int64)
        assert eng.used[t] == len(res) == int(eng.in_tier[t].sum()) <= eng.caps[t]
        assert eng.peak[t] <= eng.caps[t]
        par = eng.parent[res]
        assert np.array_equal(eng.kids[t], np.bincount(par[par >= 0], minlength=eng.trace.n_blocks))


def outcome(cls, trace, cfg, pols, adm, params):
    objs, a = build(pols, adm, params)
    try:
        eng = cls(trace, cfg, objs, a)
        m = eng.run()
    except KvgymError as e:
        return f"{type(e).__name__}: {e}"
    if cls is ServingEngine:
        check_invariants(eng)
    per = {k: getattr(eng, k).tobytes() for k in PER_REQUEST}
    return m.to_dict(), per


def check(seeds) -> None:
    ran = evicted = python = 0
    for i in seeds:
        rng = np.random.default_rng(1000 + i)
        trace = random_trace(rng)
        cfg = random_config(rng, trace)
        pols, adm, params = pick(i, rng, len(cfg.tiers))
        ref = outcome(ServingEngine, trace, cfg, pols, adm, params)
        got = outcome(CompiledServing, trace, cfg, pols, adm, params)
        if got != ref:
            if isinstance(ref, tuple) and isinstance(got, tuple):
                diff = {k: (ref[0][k], got[0][k]) for k in ref[0] if ref[0][k] != got[0][k]}
                diff.update({k: "differs" for k in PER_REQUEST if ref[1][k] != got[1][k]})
            else:
                diff = (ref if isinstance(ref, str) else "ok", got if isinstance(got, str) else "ok")
            pytest.fail(f"configuration {i} ({pols}, {adm} {params}, {cfg.to_dict()}): {diff}")
        if isinstance(ref, tuple):
            ran += 1
            evicted += sum(ref[0]["evictions"]) > 0
        python += any(compiled_policy(make_policy(p)) is None for p in pols if isinstance(p, str)) or \
            any(isinstance(p, type) for p in pols)
    # The draws exercise the interesting regime: most runs finish and evict.
    assert ran > 0.8 * len(seeds) and evicted > 0.5 * ran


@pytest.mark.parametrize("block", range(8))
def test_compiled_equals_specification(block):
    check(range(block * 40, (block + 1) * 40))


@pytest.mark.slow
@pytest.mark.parametrize("block", range(8, 50))
def test_compiled_equals_specification_full(block):
    check(range(block * 40, (block + 1) * 40))


def test_every_serving_policy_and_admission_is_compiled():
    # The benchmark's speed and this file's coverage of the C code rest on it: a registered policy
    # that silently fell back to the Python callbacks would still give equal results.
    assert [n for n in POLICIES if compiled_policy(make_policy(n)) is None] == []
    assert compiled_policy(PyARC()) is None and compiled_policy(PyVllmLRU()) is None


class Recorder(Policy):
    """A policy written in Python (no compiled implementation), which reads everything a serving
    context offers and logs every hook call with what the context said at that moment."""

    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.bonus = np.zeros(ctx.n_pages, np.int64)
        self.log: list[tuple] = []

    def _note(self, *what) -> None:
        c = self.ctx
        self.log.append((*what, c.req, c.block_pos, c.step))

    def on_access(self, page, tier, step):
        self._note("access", page, tier, step, int(self.ctx.tier_of[page]), int(self.ctx.freq[page]))

    def on_insert(self, page, tier, step):
        self._note("insert", page, tier, step, int(self.ctx.insert_step[page]))

    def on_evict(self, page, tier, step):
        self._note("evict", page, tier, step, int(self.ctx.evict_step[page]), int(self.ctx.regret[page]))

    def _request(self, kind):
        def hook(req, blocks, positions, step):
            self.bonus[blocks] += 1
            self._note(kind, req, blocks.tolist(), positions.tolist(), step)
        return hook

    def __init__(self):
        self.log = []
        self.on_request_load = self._request("load")
        self.on_request_offer = self._request("offer")
        self.on_store_miss = self._request("miss")

    def on_request_finished(self, req, blocks, positions, inserted, reused, step):
        self._note("finished", req, blocks.tolist(), positions.tolist(), sorted(inserted), sorted(reused), step)

    def scores(self, cands, step):
        c = self.ctx
        self._note("scores", cands.tolist(), step, int(c.session_of_request[max(c.req, 0)]))
        # recency, leaves first, request hooks' bonus, and the refetch cost (a float)
        return (c.last_access[cands] + 1000.0 * (c.kids[cands] > 0) - 3.0 * self.bonus[cands]
                + 1e-3 * c.refetch_us(cands))


class RecordingAdmission(admission_mod.StoreThreshold):
    """vLLM's threshold in Python, logging what it sees."""

    def __init__(self, **params):
        super().__init__(**params)
        self.log: list[tuple] = []

    def on_reference(self, block) -> None:
        self.log.append(("ref", block))

    def on_offer(self, blocks) -> None:
        self.log.append(("offer", blocks.tolist()))
        super().on_offer(blocks)

    def admit(self, blocks):
        ok = super().admit(blocks)
        self.log.append(("admit", blocks.tolist(), ok.tolist()))
        return ok


@pytest.mark.parametrize("seed", range(12))
def test_python_policy_and_admission_run_alike_on_both_engines(seed):
    """The callback path: a user's Policy subclass in every tier and a Python admission get the same
    calls, with the same arguments and the same context, and give the same metrics."""
    rng = np.random.default_rng(50_000 + seed)
    policy = ("write_through", "write_back")[seed % 2]
    want = {"access", "insert", "evict", "scores", "load", "finished"} | ({"offer", "miss"} if seed % 2 == 0 else set())
    for _ in range(200):  # the first drawn configuration that makes every hook fire (deterministic)
        trace = random_trace(rng)
        cfg = random_config(rng, trace).with_(write_policy=policy)
        if len(cfg.tiers) < 2:
            continue
        runs = []
        for cls in (ServingEngine, CompiledServing):
            pols = [Recorder() for _ in cfg.tiers]
            adm = RecordingAdmission(store_threshold=2, max_tracker_size=6)
            try:
                eng = cls(trace, cfg, pols, adm)
                m = eng.run().to_dict()
            except KvgymError as e:
                m = str(e)
            runs.append((m, [p.log for p in pols], adm.log,
                         [getattr(eng, k).tobytes() for k in PER_REQUEST] if isinstance(m, dict) else None))
        assert runs[0][0] == runs[1][0]
        if want <= {call[0] for log in runs[0][1] for call in log}:
            break
    else:
        pytest.fail(f"no configuration drawn for seed {seed} fires every hook {sorted(want)}")
    for t, (a, b) in enumerate(zip(runs[0][1], runs[1][1])):
        first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        assert a == b, f"tier {t}: the calls differ from call {first} on"
    assert runs[0][2] == runs[1][2] and runs[0][3] == runs[1][3]
