"""The compiled engine: the specification's rules (:mod:`kvgym.sim.engine`) in C, for every policy.

:class:`CompiledEngine` runs a trace under a scenario setup with any registered policy and
prefetcher and gives exactly the specification's metrics (integer metrics equal, times equal to the
last bit: the C code repeats every float operation in the specification's order and is built without
FMA contraction; property tests check both). It is the engine behind :func:`kvgym.sim.run`, the
Gymnasium envs and the harness.

**Which path a policy takes.** A policy class that names a compiled implementation in its own class
body (``compiled = "lru"``, with ``compiled_args(setup)`` giving its parameters) decides inside C in
O(1) or O(log n) per decision (amortized where its docstring says so). Any other policy, such as one
written in Python by the "Adding a policy" recipe, runs in the same compiled engine, which calls back
into Python for its hooks (``on_access``, ``on_insert``, ``on_evict``) and, at each eviction, for
``scores`` over the candidates (the unpinned residents in insertion order, as the specification
gives them). Prefetchers likewise. Callbacks cost about a microsecond each, so a Python policy runs
at roughly 10^5 accesses/s: slower than a compiled one, faster than the specification engine.

Decisions can come from outside (``external=True``): the engine then stops whenever tier 0 needs a
victim (and, with ``pf_external``, for prefetch decisions), which is how the envs step. The page
state lives in one structured numpy array (:data:`kvgym.sim.context.PAGE_DTYPE`, whose layout the C
record mirrors; checked at import), so a Python policy's ``ctx`` reads it without copies.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from kvgym.errors import ConfigError, SimulationError
from kvgym.sim import _engine
from kvgym.sim.context import PAGE_DTYPE, Future, SimContext, new_page_state
from kvgym.sim.metrics import Metrics
from kvgym.sim.policy import Policy, Prefetcher
from kvgym.sim.scenario import Setup

_LAYOUT = _engine.layouts()


def _c_dtype(fields, size) -> np.dtype:
    names, formats, offsets = [], [], []
    for name, off, code, n in fields:
        names.append(name)
        formats.append((code, n) if isinstance(n, tuple) else code)
        offsets.append(off)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": size})


def _check_page_layout() -> None:
    c = _c_dtype(_LAYOUT["page"], _LAYOUT["page_size"])
    for name in PAGE_DTYPE.names:
        want, got = PAGE_DTYPE.fields[name], c.fields.get(name)
        if got is None or got[0] != want[0] or got[1] != want[1]:
            raise ImportError(f"kvgym.sim._engine: page record field {name!r} is {got}, the spec's dtype says {want}; "
                              "rebuild the extension (pip install -e .)")
    if c.itemsize != PAGE_DTYPE.itemsize:
        raise ImportError("kvgym.sim._engine: page record size differs from kvgym.sim.context.PAGE_DTYPE")


_check_page_layout()
LINK_DTYPE = _c_dtype(_LAYOUT["link"], _LAYOUT["link_size"])
TIER_DTYPE = _c_dtype(_LAYOUT["tier"], _LAYOUT["tier_size"])
MAX_TIERS = _engine.MAX_TIERS
_I64MAX = np.iinfo(np.int64).max

# Status codes of the C engine.
DONE, EVICT, PREFETCH, ERROR, NEED = 0, 1, 2, -1, 3


def link_table(setup: Setup) -> np.ndarray:
    """The (tiers x tiers) link records of a setup: ``links[src, dst]`` times a copy src -> dst."""
    nt = len(setup.tiers)
    out = np.zeros(nt * nt, LINK_DTYPE)
    for a in range(nt):
        for b in range(nt):
            if a == b:
                continue
            rec = out[a * nt + b]
            link = setup.link(a, b)
            if link.curve is None:
                rec["curve"] = 0
                rec["alpha"], rec["beta"] = link.alpha_us, link.beta
            else:
                c = link.curve
                rec["curve"] = 1
                rec["issue_us"], rec["wire"] = c.issue_us, c.wire_bytes_per_us
                rec["npts"] = len(c.bytes)
                rec["x"][: len(c.bytes)] = c.bytes
                rec["y"][: len(c.us)] = c.us
    return out


def compiled_name(obj) -> str | None:
    """The compiled implementation an object's own class declares (``compiled = "name"``), if any.

    Only the class's own body counts: a subclass that overrides a compiled policy's rules runs
    through the Python callbacks unless it declares a compiled implementation itself.
    """
    return type(obj).__dict__.get("compiled")


class _LiveContext(SimContext):
    """A :class:`SimContext` over the compiled engine's state: ``pos`` and ``step`` read its clock."""

    def __init__(self, setup: Setup, state: np.ndarray, clock: np.ndarray, regret_horizon: int):
        self._clock = clock
        super().__init__(setup, regret_horizon, state=state)

    pos = property(lambda self: int(self._clock[0]), lambda self, v: None)
    step = property(lambda self: int(self._clock[1]), lambda self, v: None)


class _Hooks:
    """The Python hooks of one object, as the engine calls them."""

    def __init__(self, obj):
        noop = _noop
        self._kv_on_access = obj.on_access or noop
        self._kv_on_insert = obj.on_insert or noop
        self._kv_on_evict = obj.on_evict or noop


def _noop(page, tier, step):
    return None


class CompiledEngine:
    """One run (or one episode) on the compiled engine.

    Args:
        setup: ``Scenario.build(pages)``.
        policy: tier-0 eviction policy object, or ``None`` when every tier-0 victim comes from outside.
        prefetcher: used when the scenario has ``prefetch`` on (its ``max_prefetch`` cuts proposals).
        future: privileged next-use view (built by the caller when a privileged object needs it).
        external: tier-0 victims come from outside (:meth:`act`); ``policy`` still receives every
            hook and answers :meth:`policy_choice` (how ``PolicyAgent`` acts).
        pf_external: prefetch decisions come from outside (EvictPrefetch).
        regret_horizon: steps within which a re-reference after a tier-0 eviction is regret.
        trace_page: the whole trace's page column (privileged prefetchers, observations).
        obs: an observation spec (the envs), or ``None``.
    """

    def __init__(self, setup: Setup, policy: Policy | None, prefetcher: Prefetcher | None = None, *,
                 future: Future | None = None, external: bool = False, pf_external: bool = False,
                 regret_horizon: int = 32, trace_page: np.ndarray | None = None,
                 track_order: bool = False):
        scn = setup.scenario
        tiers = setup.tiers
        nt = len(tiers)
        if nt > MAX_TIERS:
            raise ConfigError(f"scenario {scn.name!r}: the compiled engine supports at most {MAX_TIERS} tiers")
        if nt < 2:
            raise ConfigError(f"scenario {scn.name!r}: needs at least 2 tiers (a cache and a backing tier)")
        pages = setup.pages
        n = len(setup.page_bytes)
        if n >= 2**31 - 1:
            raise ConfigError(f"page table has {n} pages; the compiled engine takes fewer than 2**31")
        self.setup = setup
        self.n_tiers = nt
        self.state = new_page_state(n)
        self.clock = np.zeros(4, np.int64)  # pos, step, step begin, step end (for Python objects)
        self.ctx = _LiveContext(setup, self.state, self.clock, regret_horizon)
        self.ctx.future = future
        self.prefetcher = prefetcher if scn.prefetch else None
        pol_name = compiled_name(policy) if policy is not None else "none"
        py_policy = policy is not None and pol_name is None
        pre = self.prefetcher
        pre_name = (compiled_name(pre) if pre is not None else "none") or None
        py_pre = pre is not None and pre_name is None
        objs = [o for o in (policy if py_policy else None, pre if py_pre else None) if o is not None]
        if policy is not None and getattr(policy, "privileged", False) and future is None:
            raise ConfigError(f"{policy.name!r} is an oracle and needs the privileged future view: run it "
                              "through kvgym.sim.run, or pass future=Future(trace.page, len(trace.pages))")
        if pre is not None and getattr(pre, "privileged", False) and (future is None and trace_page is None):
            raise ConfigError(f"prefetcher {pre.name!r} is an oracle and needs the whole trace")
        for o in objs:
            o.bind(self.ctx)
        self.policy = policy
        self._py_policy = policy if py_policy else None
        self._py_pre = pre if py_pre else None
        fpar = np.zeros(8, np.float64)
        ipar = np.zeros(4, np.int64)
        if policy is not None and not py_policy:
            f, i = policy.compiled_args(setup)
            fpar[: len(f)] = f
            ipar[: len(i)] = i
        fipar = np.zeros(4, np.int64)
        succ = None
        if pre is not None and not py_pre:
            fipar_v, succ = pre.compiled_args(setup)
            fipar[: len(fipar_v)] = fipar_v
        track = track_order or py_policy
        self._cands = np.zeros(max(n, 1), np.int64) if py_policy else None
        self._pf_out = np.zeros(max(scn.max_prefetch, 1), np.int64) if py_pre else None
        tier_rec = np.zeros(nt, TIER_DTYPE)
        tier_rec["cap"] = [t.capacity_bytes if t.capacity_bytes is not None else _I64MAX for t in tiers]
        tier_rec["channels"] = [t.channels for t in tiers]
        lp = np.ascontiguousarray
        self._arrays = {
            "size": lp(setup.page_bytes, np.int64), "fp16": lp(pages.fp16_bytes, np.int64), "layer": lp(pages.layer, np.int32),
            "seq": lp(pages.seq, np.int32), "tok_start": lp(pages.token_start, np.int64),
            "tok_end": lp(pages.token_end, np.int64), "decode": lp(setup.decode_us, np.float64)}
        n_layers = int(pages.layer.max()) + 1 if n else 1
        n_seqs = int(pages.seq.max()) + 1 if n else 1
        c = setup.compute
        self.trace_page = None if trace_page is None else lp(trace_page, np.int64)
        nxt = (lp(future.next_pos, np.int64), lp(future.first_pos, np.int64)) if future is not None else (None, None)
        self._engine = _engine.Engine(
            **self._arrays, state=self.state, tiers=tier_rec, links=link_table(setup), n_layers=n_layers,
            n_seqs=n_seqs, backing=setup.backing, serial=int(scn.cost_model == "serial"),
            create=int(scn.first_touch == "create"), prefetch_on=int(scn.prefetch and pre is not None),
            max_prefetch=int(scn.max_prefetch), lower_lru=int(scn.lower_policy == "lru"),
            regret_horizon=int(regret_horizon), floor_us=float(c.layer_floor_us),
            attn_bytes_per_us=float(c.attention_bytes_per_us), hit_base_us=float(tiers[0].read_latency_us),
            track_order=int(track), external=int(external), pf_external=int(pf_external),
            policy=_engine.POLICIES["python" if py_policy else pol_name], pfpar=fpar, pipar=ipar,
            hooks=(_Hooks(policy) if py_policy else None, _Hooks(pre) if py_pre else None),
            chooser=self._choose_py if py_policy else None,
            prefetcher=_engine.PREFETCHERS["python" if py_pre else (pre_name or "none")], fipar=fipar,
            succ=None if succ is None else lp(succ, np.int64),
            trace_page=self.trace_page if self.trace_page is not None else
            (lp(future.page, np.int64) if future is not None else None),
            next_pos=nxt[0], first_pos=nxt[1], ctxbuf=self.clock,
            pf_py=self._pf_out, cands=self._cands, propose=self._propose_py if py_pre else None)
        self._chunk_page = None
        self.status = None
        self.finished = False

    # -- Python callbacks ---------------------------------------------------------------
    def _choose_py(self, tier: int, n: int) -> int:
        cands = self._cands[:n]
        pol = self._py_policy
        scores = np.asarray(pol.scores(cands, int(self.clock[1])))
        return int(cands[int(np.argmin(scores))])

    def _propose_py(self) -> int:
        step, begin, end = int(self.clock[1]), int(self.clock[2]), int(self.clock[3])
        base = self._chunk_base
        pages = self._chunk_page[begin - base:end - base]
        ids = list(self._py_pre.propose(step, pages))[: len(self._pf_out)]
        for i, c in enumerate(ids):
            c = int(c)
            self._pf_out[i] = c if 0 <= c < len(self.state) else -1
        return len(ids)

    # -- running --------------------------------------------------------------------------
    def run_chunks(self, chunks: Iterable) -> Metrics:
        """Run ``(step, page, weight)`` chunks to the end (a step may straddle chunks)."""
        carry = None
        base = 0
        n_pages = len(self.state)
        for step, page, weight in chunks:
            step, page, weight = _arrays(step, page, weight, n_pages)
            if carry is not None:
                step, page = np.concatenate([carry[0], step]), np.concatenate([carry[1], page])
                weight = None if weight is None else np.concatenate([carry[2], weight])
            if len(step) == 0:
                continue
            consumed = self._feed(step, page, weight, base, more=True)
            carry = (step[consumed:], page[consumed:], None if weight is None else weight[consumed:])
            base += consumed
        if carry is None:
            carry = (np.zeros(0, np.int64), np.zeros(0, np.int64), None)
        self._feed(*carry, base, more=False)
        self.finished = True
        return self.metrics()

    def start(self, step, page, weight) -> int:
        """Load a whole episode and run to its first decision (external choosers)."""
        step, page, weight = _arrays(step, page, weight, len(self.state))
        self._feed(step, page, weight, 0, more=False)
        return self.status

    def _feed(self, step, page, weight, base: int, *, more: bool) -> int:
        if base == 0:
            self.ctx.has_weights = weight is not None
        self._chunk_page, self._chunk_base = page, base
        st, consumed = self._engine.feed(step, page, weight, base, more)
        self.status = self._check(st)
        return consumed

    def act(self, page: int) -> int:
        """Answer the pending eviction decision with tier-0 page ``page``; run to the next decision."""
        st, _ = self._engine.act(int(page), False)
        self.status = self._check(st)
        return self.status

    def act_slot(self, a: int) -> int:
        """Answer the pending decision with observation slot ``a`` (observations on)."""
        st, _ = self._engine.act_slot(int(a))
        self.status = self._check(st)
        return self.status

    def act_prefetch(self, page: int) -> int:
        """Answer the pending prefetch decision: prefetch ``page``, or ``-1`` for none."""
        st, _ = self._engine.act(int(page), True)
        self.status = self._check(st)
        return self.status

    def policy_choice(self) -> int:
        """The attached policy's victim for the pending eviction decision."""
        return int(self._engine.choose())

    def enable_obs(self, *args) -> None:
        """Turn observations on (the envs; see :class:`kvgym.envs.episode.Episode`)."""
        self._engine.enable_obs(*args)

    def residents(self, tier: int, out: np.ndarray, unpinned: bool = False) -> int:
        """Write tier ``tier``'s residents in insertion order into ``out``; return how many."""
        return self._engine.residents(tier, out, unpinned)

    def used(self) -> list[int]:
        """Bytes held by each tier now."""
        return self._engine.used()

    def _check(self, st: int) -> int:
        if st != ERROR:
            return st
        code, tier, page, step = self._engine.error()
        tiers = self.setup.tiers
        if code == 1:
            raise SimulationError(f"tier {tier} ({tiers[tier].name!r}) cannot make room for page {page} at step "
                                  f"{step}: every resident is pinned by this step")
        if code == 2:
            raise SimulationError(f"victim {page} is not an unpinned tier-0 resident")
        raise SimulationError(f"internal error in the compiled engine (code {code}, tier {tier}, page {page}, "
                              f"step {step})")

    def metrics(self) -> Metrics:
        return Metrics(self.n_tiers, **self._engine.counters())


def _arrays(step, page, weight, n_pages: int):
    """Contiguous typed arrays; a last guard that no page id can reach outside the page table."""
    step = np.ascontiguousarray(step, np.int64)
    page = np.ascontiguousarray(page, np.int64)
    if len(page) and (int(page.min()) < 0 or int(page.max()) >= n_pages):
        raise SimulationError(f"trace: page ids must be in [0, {n_pages}) (the page table's length); "
                              f"got [{int(page.min())}, {int(page.max())}]")
    if len(step) > 1 and bool((np.diff(step) < 0).any()):
        raise SimulationError("trace: steps must be non-decreasing")
    weight = None if weight is None else np.ascontiguousarray(weight, np.float32)
    return step, page, weight

