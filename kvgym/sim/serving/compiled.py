"""The compiled serving engine: the specification's rules (:mod:`kvgym.sim.serving.engine`) in C.

:class:`CompiledServing` runs a request trace under a serving config with any policy and admission
policy and gives exactly the specification's :class:`~kvgym.sim.metrics.ServingMetrics` and
per-request times (integers equal, times equal to the last bit: the C code,
``kvgym/sim/cengine/serving.c``, repeats every rule in the specification's order and every float
operation in its association, built without FMA contraction). It is the engine behind
:func:`~kvgym.sim.serving.simulate_serving` (``engine="compiled"``, the default).

**Which path a policy takes.** Each tier's policy runs in that tier's *view*: a one-tier engine in
which the tier is tier 0 and sizes are blocks. A policy with a compiled implementation runs there
in C: a decode policy that names one in its own class body (``compiled = "lru"``, parameters from
``compiled_args``; the same C code as the decode engine's, :mod:`kvgym.sim.compiled`), or a
serving-only policy that is exactly its registered class (``vllm_lru``, ``vllm_arc``,
``radix_lru``, ``lmcache_lru``, ``hits_per_token``, ``session_aware``; their rules are in
``kvgym/sim/cengine/policy_serving.c``). Any other policy (a subclass, a user's class, an agent's
``scores``) runs in the same compiled engine through Python callbacks: its hooks, its request hooks
and, at each eviction, ``scores`` over the tier's candidates in insertion order, with a live
:class:`~kvgym.sim.serving.context.ServingContext` (``req``, ``block_pos``, ``step`` and the
per-block arrays read the C state). Admission policies likewise (``always``, ``threshold``,
``tinylfu`` and ``presence_lfu`` in C when they are exactly their classes and unused).

What stays in Python, computed once with the specification's own functions: link times
(:func:`~kvgym.sim.serving.links.transfer_us`, tabulated per batch size and busy flag), the
roofline (:meth:`~kvgym.sim.serving.compute.BatchCompute.iteration_us`, called back once per
iteration with the iteration's integer terms), a block's recompute time for
``cost_aware_tiered`` (:func:`~kvgym.sim.serving.context.recompute_us`) and the summary of the
per-request times (:func:`~kvgym.sim.serving.prepare.summarize`).
"""

from __future__ import annotations

import numpy as np

from kvgym.errors import KvgymError, SimulationError
from kvgym.sim import _engine
from kvgym.sim.compiled import compiled_name
from kvgym.sim.context import new_page_state
from kvgym.sim.metrics import ServingMetrics
from kvgym.sim.policy import Admission, Policy, policy_class
from kvgym.sim.serving.config import ServingConfig
from kvgym.sim.serving.context import ServingContext, recompute_us
from kvgym.sim.serving.links import transfer_us
from kvgym.sim.serving.prepare import check_fit, check_policies, prepare, summarize
from kvgym.traces.requests import RequestTrace, validate_requests

_OVERLAP = {"async": 0, "layerwise": 1, "sync": 2}
_ADM = _engine.SERVING_ADMISSIONS


def compiled_policy(obj: Policy) -> str | None:
    """The name of ``obj``'s compiled implementation in a serving tier, or ``None`` (callbacks)."""
    name = compiled_name(obj)
    if name is None:
        reg = getattr(type(obj), "name", None)
        try:
            cls = policy_class(reg) if isinstance(reg, str) else None
        except KvgymError:
            cls = None
        name = reg if cls is type(obj) and cls.serving_only else None
    return name if name in _engine.SERVING_POLICIES and name != "none" else None


class _LiveContext(ServingContext):
    """A :class:`ServingContext` whose ``req``, ``block_pos`` and ``step`` read the C engine's."""

    def __init__(self, setup, tier: int, engine, state: np.ndarray, focus: np.ndarray):
        self._focus = focus
        super().__init__(setup, tier, engine, state)

    req = property(lambda self: int(self._focus[0]), lambda self, v: None)
    block_pos = property(lambda self: int(self._focus[1]), lambda self, v: None)
    step = property(lambda self: int(self._focus[2]), lambda self, v: None)
    pos = step


class CompiledServing:
    """One run of a request trace on the compiled engine (arguments as :class:`ServingEngine`'s).

    After :meth:`run`, ``admit_us``, ``first_us``, ``finish_us``, ``prefix`` and ``loaded`` hold the
    per-request results, as on the specification engine.
    """

    def __init__(self, trace: RequestTrace, config: ServingConfig, policies: list[Policy], admission: Admission):
        validate_requests(trace, "trace")
        prep = prepare(trace, config)
        T = prep.n_tiers
        check_policies(policies, T)
        check_fit(trace, config, prep.caps[0])
        res = prep.res
        n, nr = trace.n_blocks, len(trace)
        self.trace, self.prep = trace, prep
        # What a ServingContext reads from its engine (live: the C engine writes these arrays).
        self.n_tiers = T
        self.links = prep.links
        self.block_bytes = res.block_bytes
        self.compute = res.compute
        self.session_key = prep.session_key
        self.in_tier = np.zeros((T, n), bool)
        self.kids = np.zeros((T, n), np.int64)
        self.focus = np.array([-1, -1, 0], np.int64)  # request, chain position, step
        states = []
        for _ in range(T):
            st = new_page_state(n)
            st["pin"] = 0  # 1: not a candidate (the C engine's flag)
            states.append(st)
        self.ctx = [_LiveContext(prep.setups[t], t, self, states[t], self.focus) for t in range(T)]
        seqlen = np.diff(trace.offsets) + np.diff(trace.out_offsets)
        maxseq = max(int(seqlen.max()) if nr else 1, 1)
        self._cands = np.zeros(max(n, 1), np.int64)
        self._arr_b = np.zeros(maxseq, np.int64)
        self._arr_p = np.zeros(maxseq, np.int64)
        self._arr_f = np.zeros(maxseq, np.uint8)
        self._adm_ok = np.zeros(maxseq, np.uint8)
        self.admit_us = np.zeros(nr, np.float64)
        self.first_us = np.zeros(nr, np.float64)
        self.finish_us = np.zeros(nr, np.float64)
        self.prefix = np.zeros(nr, np.int64)
        self.loaded = np.zeros(nr, np.int64)
        pol = tuple(self._policy(t, p) for t, p in enumerate(policies))
        adm = self._admission(admission, self.ctx[1] if T > 1 else self.ctx[0])
        bt = trace.block_table
        pages = prep.pages
        n_seqs = int(pages.seq.max()) + 1 if n else 1
        # Session keys as dense ids: a request's session, or a block's first request (session_aware).
        keys = np.unique(np.concatenate([prep.session_key, np.arange(n_seqs, dtype=np.int64)]))
        uses_gdsf = any(p[0] == _engine.SERVING_POLICIES["cost_aware_tiered"] for p in pol)
        c = lambda a, dt=np.int64: np.ascontiguousarray(a, dt)
        self._engine = _engine.Serving(
            arrival=c(prep.arrival, np.float64), prompt=c(trace.prompt_tokens), output=c(trace.output_tokens),
            offsets=c(trace.offsets), blocks=c(trace.blocks), out_offsets=c(trace.out_offsets),
            out_blocks=c(trace.out_blocks), parent=c(bt.parent), block_tokens=trace.block_tokens,
            caps=c(prep.caps), write_back=int(config.write_policy == "write_back"),
            gpu_first=int(config.lookup == "gpu_prefix_first"), overlap=_OVERLAP[config.load_overlap],
            timing=int(config.timing), pin=int(config.pin), gpc=int(config.gpu_prefix_cache),
            cpt=int(config.cache_partial_tail), sob=int(config.store_output_blocks),
            max_running=prep.max_running, budget=prep.budget, layers=res.geometry.layers,
            block_bytes=res.block_bytes, regret_horizon=self.ctx[0].regret_horizon, links=self._link_table(),
            M=self._max_batch(), compute=res.compute.iteration_us, states=tuple(states),
            in_tier=self.in_tier.view(np.uint8).reshape(-1), kids=self.kids.reshape(-1), focus=self.focus,
            fp16=c(pages.fp16_bytes), tok_start=c(pages.token_start), tok_end=c(pages.token_end),
            seq=c(pages.seq, np.int32), n_seqs=n_seqs, policies=pol,
            sess_of_req=c(np.searchsorted(keys, prep.session_key)),
            sess_of_seq=c(np.searchsorted(keys, np.arange(n_seqs))), n_sess=len(keys),
            recompute=self._recompute() if uses_gdsf else None,
            load1=c([transfer_us(prep.links[s], res.block_bytes, 1) if s else 0.0 for s in range(T)], np.float64),
            admission=adm, cands=self._cands, arr_b=self._arr_b, arr_p=self._arr_p, arr_f=self._arr_f,
            adm_ok=self._adm_ok, admit_us=self.admit_us, first_us=self.first_us, finish_us=self.finish_us,
            prefix=self.prefix, loaded=self.loaded)

    # -- tables computed once by the specification's functions --------------------------------
    def _max_batch(self) -> int:
        """The most blocks one request can load over one link: its full prompt blocks."""
        tr = self.trace
        return int((tr.prompt_tokens // tr.block_tokens).max()) if len(tr) else 0

    def _link_table(self) -> np.ndarray:
        """``[(s * 2 + busy) * (M + 1) + m]``: µs of ``m`` blocks loaded back to back over link s."""
        T, M, bb = self.n_tiers, self._max_batch(), self.block_bytes
        tab = np.zeros((T, 2, M + 1), np.float64)
        for s, link in self.links.items():
            for busy in (0, 1):
                tab[s, busy] = [transfer_us(link, bb, m, bool(busy)) for m in range(M + 1)]
        return tab.reshape(-1)

    def _recompute(self) -> np.ndarray:
        """Per block: the iteration that recomputes it alone (one call per distinct position, size)."""
        bt, B = self.trace.block_table, self.trace.block_tokens
        pairs, inv = np.unique(np.stack([bt.position, bt.tokens], 1), axis=0, return_inverse=True)
        us = np.array([recompute_us(self.compute, B, int(p), int(k)) for p, k in pairs], np.float64)
        return np.ascontiguousarray(us[inv.reshape(-1)] if len(pairs) else np.zeros(0), np.float64)

    # -- policies ----------------------------------------------------------------------------
    def _policy(self, t: int, p: Policy) -> tuple:
        floats, ints = np.zeros(8, np.float64), np.zeros(4, np.int64)
        name = compiled_policy(p)
        if name is not None:
            f, i = p.compiled_args(self.prep.setups[t])
            floats[: len(f)], ints[: len(i)] = f, i
            return _engine.SERVING_POLICIES[name], floats, ints, None
        p.bind(self.ctx[t])
        return _engine.SERVING_POLICIES["none"], floats, ints, self._hooks(p)

    def _hooks(self, p: Policy) -> tuple:
        """The C engine's callbacks into a Python policy (argument arrays in shared buffers)."""
        cands, ab, ap, af, focus = self._cands, self._arr_b, self._arr_p, self._arr_f, self.focus

        def choose(n: int) -> int:
            c = cands[:n].copy()
            return int(c[int(np.argmin(p.scores(c, int(focus[2]))))])

        def request(fn):
            return None if fn is None else (lambda r, n, step: fn(r, ab[:n].copy(), ap[:n].copy(), step))

        fin = p.on_request_finished

        def finished(r: int, n: int, step: int) -> None:
            blocks, flags = ab[:n].tolist(), af[:n].tolist()
            fin(r, ab[:n].copy(), ap[:n].copy(), {b for b, f in zip(blocks, flags) if f & _engine.RQ_INSERTED},
                {b for b, f in zip(blocks, flags) if f & _engine.RQ_REUSED}, step)

        return (p.on_access, p.on_insert, p.on_evict, choose, request(p.on_request_load),
                request(p.on_request_offer), request(p.on_store_miss), None if fin is None else finished)

    def _admission(self, adm: Admission, ctx: ServingContext) -> tuple:
        adm.bind(ctx)
        # Only a class that names its compiled form in its own body runs in C (a subclass may
        # change any hook), and only while compiled_args says its state allows it.
        name = type(adm).__dict__.get("compiled")
        args = adm.compiled_args() if name is not None else None
        if args is not None:
            return (_ADM[name], *args, None)
        ab, ok = self._arr_b, self._adm_ok

        def admit(n: int) -> None:
            ok[:n] = np.asarray(adm.admit(ab[:n].copy()), bool)

        on_offer = None if adm.on_offer is None else (lambda n: adm.on_offer(ab[:n].copy()))
        return _ADM["python"], 0, 0, 0, 0, 0, (adm.on_reference, on_offer, admit)

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> ServingMetrics:
        out = self._engine.run()
        if isinstance(out, str):
            raise SimulationError(out)
        peak = out.pop("peak_blocks")
        m = ServingMetrics(self.n_tiers, **out)
        summarize(m, self.trace, self.prep.arrival, self.admit_us, self.first_us, self.finish_us, peak,
                  self.block_bytes)
        self.per_request = {"admit_us": self.admit_us, "first_token_us": self.first_us, "finish_us": self.finish_us,
                            "prefix_blocks": self.prefix, "loaded_blocks": self.loaded}
        return m
