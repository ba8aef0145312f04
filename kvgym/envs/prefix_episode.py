"""One ``kvgym/PrefixCache-v0`` episode: the serving engine in a worker thread, stopped at each decision.

The env drives :func:`kvgym.sim.serving.simulate_serving` through nothing but its public call and
the policy protocol (:mod:`kvgym.sim.policy`), so it runs on whichever serving engine that call
uses. Every tier gets a :class:`TierView` as its policy and stores into tier 1 go through an
:class:`AdmissionView`:

- a view forwards every hook to the tier's *inner* policy (the configured baseline, or the policy
  a ``PolicyAgent`` attached; none for a tier the agent decides without one), and keeps the
  per-block state the observation reads (its own event clock, as ``lru`` counts: +1 at every
  access and insertion of the tier);
- when the engine asks a decided tier's view for ``scores`` (it needs a victim), or the admission
  view for ``admit`` with admission decisions on, the view writes the decision's observation and
  blocks until the env thread hands it an action through a queue; it then answers the engine so
  that the agent's choice is the one taken (score 0 for the chosen candidate, 1 for the others:
  the engine evicts the lowest score; an admit array with the agent's store / skip per block).

The two threads strictly alternate (one always waits on a queue), so an episode is as
deterministic as the engine; the candidate sample is drawn from the episode's seeded generator.
:meth:`PrefixEpisode.close` stops a run mid-way: the waiting view raises :class:`Abort` (a
``BaseException``, which no policy code catches) out of the engine, and the thread is joined.

**Prefill accounting** (the dense rewards of :mod:`kvgym.envs.prefix`). Hooks tell the
episode two things: a request's prefix blocks (``on_request_load`` in every tier: the blocks each
tier served, so their sum is the request's usable prefix ``k``), and the start of a request's
admission (its first tier-0 block reference). Requests are admitted one after another in trace
order (the scheduler's FIFO), so when request r's admission starts, every request before it has
been admitted, and its ``k`` is final. Its prefill is ``P - min(k B, P - 1)`` tokens (the engine's
rule: the last prompt token is always computed; none for an empty prompt) and ``prefill_us`` =
the time of an iteration that computes just those tokens
(:meth:`~kvgym.sim.serving.compute.BatchCompute.iteration_us` of
:func:`~kvgym.sim.serving.compute.prefill_terms`, nothing sampled: the same expression
:meth:`~kvgym.sim.serving.context.ServingContext.refetch_us` uses for one block).
"""

from __future__ import annotations

import queue
import threading

import numpy as np

from kvgym.envs.observation import TAU_FREQ
from kvgym.errors import KvgymError
from kvgym.sim.policy import Admission, Policy
from kvgym.sim.serving.compute import prefill_terms

#: Observation features per candidate row (definitions in :mod:`kvgym.envs.prefix`).
FEATURES = ("recency", "frequency", "references", "position", "tokens", "children", "copy_below", "refetch_cost",
            "age", "evicted_ago")
N_FEATURES = len(FEATURES)
TAU_POSITION = 16.0     # chain positions
TAU_REFETCH_US = 10_000.0  # µs: a 64 MiB block loads over PCIe in ~1-2 ms; recomputing it takes ~10 ms
TAU_BATCH = 8.0         # blocks left in a store offer

EVICT, ADMIT, DONE = "evict", "admit", "done"


def context_names(n_tiers: int) -> tuple[str, ...]:
    return tuple(f"occupancy_{t}" for t in range(n_tiers)) + ("kind", "tier", "progress", "evictable", "valid",
                                                              "batch_left")


def n_context(n_tiers: int) -> int:
    return n_tiers + 6


def squash(x, tau: float):
    x = np.asarray(x, np.float64)
    return x / (x + tau)


class Abort(BaseException):
    """Raised inside the engine's thread to end an episode early (never caught by policy code)."""


_ABORT = object()


class TierView(Policy):
    """Tier ``tier``'s policy as the engine sees it (see the module docstring)."""

    name = "env-view"

    def __init__(self, episode: PrefixEpisode, tier: int, inner: Policy | None, decided: bool):
        self.ep = episode
        self.tier = tier
        self.inner = inner
        self.decided = decided

    def bind(self, ctx) -> None:
        super().bind(ctx)
        n = ctx.n_pages
        self.clock = 0
        self.last = np.full(n, -1, np.int64)
        self.freq = np.zeros(n, np.int64)
        self.ins = np.full(n, -1, np.int64)
        self.out = np.full(n, -1, np.int64)
        self.resident = np.zeros(n, bool)
        self.n_resident = 0
        cap = ctx.tiers[0].capacity_bytes  # a serving view counts in blocks
        self.cap = int(cap) if cap is not None else None
        self.tau = float(self.cap if self.cap is not None else max(1, n))
        inner = self.inner
        if inner is not None:
            inner.bind(ctx)
        # The inner policy's hooks, looked up once it is bound (a policy may set them in bind).
        self._fwd = {h: getattr(inner, h, None) if inner is not None else None
                     for h in ("on_access", "on_insert", "on_evict", "on_request_load", "on_request_offer",
                               "on_store_miss", "on_request_finished")}

    # -- hooks: track, tell the episode, forward --------------------------------------------
    def on_access(self, page: int, tier: int, step: int) -> None:
        self.clock += 1
        self.last[page] = self.clock
        self.freq[page] += 1
        if self.tier == 0:
            self.ep.referenced(int(self.ctx.req))
        if (f := self._fwd["on_access"]) is not None:
            f(page, tier, step)

    def on_insert(self, page: int, tier: int, step: int) -> None:
        self.clock += 1
        self.last[page] = self.ins[page] = self.clock
        self.resident[page] = True
        self.n_resident += 1
        if (f := self._fwd["on_insert"]) is not None:
            f(page, tier, step)

    def on_evict(self, page: int, tier: int, step: int) -> None:
        self.out[page] = self.clock
        self.resident[page] = False
        self.n_resident -= 1
        if (f := self._fwd["on_evict"]) is not None:
            f(page, tier, step)

    def on_request_load(self, req, blocks, positions, step) -> None:
        self.ep.loaded(int(req), len(blocks))
        if (f := self._fwd["on_request_load"]) is not None:
            f(req, blocks, positions, step)

    def on_request_offer(self, req, blocks, positions, step) -> None:
        if (f := self._fwd["on_request_offer"]) is not None:
            f(req, blocks, positions, step)

    def on_store_miss(self, req, blocks, positions, step) -> None:
        if (f := self._fwd["on_store_miss"]) is not None:
            f(req, blocks, positions, step)

    def on_request_finished(self, req, blocks, positions, inserted, reused, step) -> None:
        if (f := self._fwd["on_request_finished"]) is not None:
            f(req, blocks, positions, inserted, reused, step)

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        if not self.decided:
            return self.inner.scores(cands, step)
        return self.ep.evict_decision(self, np.asarray(cands, np.int64), step)


class AdmissionView(Admission):
    """Admission into tier 1 as the engine sees it: the configured admission policy's state is kept
    (every hook forwarded); with admission decisions on, the agent answers block by block."""

    name = "env-admission"

    def __init__(self, episode: PrefixEpisode, inner: Admission, decided: bool):
        self.ep = episode
        self.inner = inner
        self.decided = decided

    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.inner.bind(ctx)

    def on_reference(self, block: int) -> None:
        if self.inner.on_reference is not None:
            self.inner.on_reference(block)

    def on_offer(self, blocks: np.ndarray) -> None:
        if self.inner.on_offer is not None:
            self.inner.on_offer(blocks)

    def admit(self, blocks: np.ndarray) -> np.ndarray:
        if not self.decided:
            return self.inner.admit(blocks)
        return self.ep.admit_decisions(np.asarray(blocks, np.int64))


class PrefixEpisode:
    """An episode's engine thread and the observation of its pending decision.

    After :meth:`start` / :meth:`act`, ``status`` is ``evict``, ``admit`` or ``done``; while a
    decision is pending, ``obs_c`` / ``obs_g`` / ``mask`` hold its observation, ``shown`` the block
    behind each eviction slot, and ``tier`` the tier it is about.

    Args:
        trace, serving: the requests and the :class:`~kvgym.sim.serving.config.ServingConfig`.
        inner: per tier, the policy whose hooks the view forwards (``None``: none).
        admission: the admission policy of tier 1.
        evict_tiers, admit: the decisions the agent takes.
        victims: ``leaves`` or ``any`` (:class:`~kvgym.envs.prefix_config.PrefixEnvConfig`).
        k, sample: candidate slots; how many of them are drawn at random when more are valid.
        rng: the generator of the candidate sample.
    """

    def __init__(self, trace, serving, *, inner: list, admission: Admission, evict_tiers, admit: bool,
                 victims: str, k: int, sample: int, rng: np.random.Generator):
        self.trace = trace
        self.serving = serving
        self.T = len(serving.tiers)
        self.views = [TierView(self, t, inner[t], t in evict_tiers) for t in range(self.T)]
        self.adm = AdmissionView(self, admission, admit)
        self.victims = victims
        self.k, self.sample = k, sample
        self.rng = rng
        self.compute = serving.resolve(trace.n_blocks, trace.block_tokens).compute
        bt = trace.block_table
        self.position, self.tokens, self.B = bt.position, bt.tokens, trace.block_tokens
        self.n_req = len(trace)
        self.prefix = np.zeros(self.n_req, np.int64)
        self.begun = 0      # requests whose admission has started (all before the last have ended)
        self.booked = 0     # requests whose prefill has been handed to the env
        self.status = "idle"
        self.metrics = None
        self.tier = -1
        self.obs_c = np.zeros((k, N_FEATURES), np.float32)
        self.obs_g = np.zeros(n_context(self.T), np.float32)
        self.mask = np.zeros(k, np.int8)
        self.shown = np.zeros(0, np.int64)
        self._to_env: queue.SimpleQueue = queue.SimpleQueue()
        self._to_engine: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._choice = None

    # -- the env's side --------------------------------------------------------------------------
    def start(self) -> str:
        """Run the engine until its first decision (or its end)."""
        self._thread = threading.Thread(target=self._work, name="kvgym-prefix-episode", daemon=True)
        self._thread.start()
        return self._wait()

    def act(self, action: int) -> str:
        """Answer the pending decision with slot ``action`` (already checked against the mask)."""
        self._to_engine.put(int(action))
        return self._wait()

    def close(self) -> None:
        """Stop the engine thread (mid-run: it unwinds with :class:`Abort`) and join it."""
        t = self._thread
        if t is None:
            return
        if t.is_alive() and self.status in (EVICT, ADMIT):
            self._to_engine.put(_ABORT)
            self._to_env.get()
        t.join()
        self._thread = None
        if self.status != DONE:
            self.status = "closed"

    def _wait(self) -> str:
        msg, val = self._to_env.get()
        if msg == "decide":
            return self.status
        self._thread.join()
        self._thread = None
        if msg == "done":
            self.status = DONE
            self.metrics = val
            return DONE
        self.status = "failed"
        raise val

    def _work(self) -> None:
        from kvgym.sim.serving import simulate_serving

        try:
            m = simulate_serving(self.trace, self.serving, self.views[0], lower=self.views[1:], admission=self.adm)
        except Abort:
            self._to_env.put(("aborted", None))
        except BaseException as e:  # noqa: BLE001  (handed to the env's thread, which raises it)
            self._to_env.put(("error", e))
        else:
            self._to_env.put(("done", m))

    def _ask(self) -> int:
        self._choice = None
        self._to_env.put(("decide", None))
        a = self._to_engine.get()
        if a is _ABORT:
            raise Abort
        return a

    # -- accounting (called from hooks) -----------------------------------------------------------
    def referenced(self, req: int) -> None:
        if req >= self.begun:
            self.begun = req + 1

    def loaded(self, req: int, n: int) -> None:
        self.prefix[req] += n

    def take_prefill(self) -> tuple[int, int, float]:
        """``(requests, tokens, µs)`` of the prefills not yet handed out whose admission has ended."""
        upto = self.n_req if self.status == DONE else max(self.booked, self.begun - 1)
        tokens, us = 0, 0.0
        for r in range(self.booked, upto):
            n, t = self.prefill(r)
            tokens += n
            us += t
        n_req = upto - self.booked
        self.booked = upto
        return n_req, tokens, us

    def prefill(self, r: int) -> tuple[int, float]:
        """Tokens request r prefilled and the µs of an iteration computing just them."""
        P = int(self.trace.prompt_tokens[r])
        if P == 0:
            return 0, 0.0
        n = P - min(int(self.prefix[r]) * self.B, P - 1)
        a, att, kv = prefill_terms(P - n, P)
        return n, self.compute.iteration_us(a, att, 0, kv)

    # -- decisions (called in the engine's thread) --------------------------------------------------
    def evict_decision(self, view: TierView, cands: np.ndarray, step: int) -> np.ndarray:
        valid = np.arange(len(cands))
        if self.victims == "leaves":
            leaf = np.flatnonzero(view.ctx.kids[cands] == 0)
            if len(leaf):
                valid = leaf
        # Least recently used first (ties: the tier's insertion order, the order of ``cands``).
        order = valid[np.argsort(view.last[cands[valid]], kind="stable")]
        k, s = self.k, self.sample
        if len(order) > k:
            rest = order[k - s:]
            picked = np.sort(self.rng.choice(len(rest), size=s, replace=False)) if s else np.zeros(0, np.int64)
            order = np.concatenate([order[:k - s], rest[picked]])
        self.status, self.tier = EVICT, view.tier
        self._cands, self._valid, self._step, self._view = cands, valid, step, view
        self.shown = cands[order]
        n = len(order)
        self.obs_c[:] = 0.0
        self.obs_c[:n] = self._features(view, self.shown)
        self.mask[:] = 0
        self.mask[:n] = 1
        self._context(view, EVICT, len(cands), len(valid), 0)
        a = self._ask()
        out = np.ones(len(cands), np.float64)
        out[order[a]] = 0.0
        return out

    def admit_decisions(self, blocks: np.ndarray) -> np.ndarray:
        view = self.views[1]
        out = np.zeros(len(blocks), bool)
        self._batch, self._base = blocks, None
        for i, b in enumerate(blocks.tolist()):
            self.status, self.tier, self._i = ADMIT, 1, i
            self.shown = np.array([b], np.int64)
            self.obs_c[:] = 0.0
            self.obs_c[0] = self._features(view, self.shown)[0]
            self.mask[:] = 0
            self.mask[:2] = 1
            self._context(view, ADMIT, 0, 2, len(blocks) - i)
            out[i] = self._ask() == 0
        return out

    def policy_choice(self):
        """The inner policy's answer to the pending decision: a victim's block id (eviction: the
        lowest of its scores over *all* candidates, among the valid ones, ties to the earliest
        inserted; asked once per decision) or True / False (admission: store / skip)."""
        if self._choice is None:
            if self.status == EVICT:
                inner = self._view.inner
                if inner is None:
                    raise KvgymError("policy_choice: no policy attached to this tier")
                s = np.asarray(inner.scores(self._cands, self._step))[self._valid]
                self._choice = int(self._cands[self._valid[int(np.argmin(s))]])
            elif self.status == ADMIT:
                if self._base is None:
                    self._base = np.asarray(self.adm.inner.admit(self._batch), bool)
                self._choice = bool(self._base[self._i])
            else:
                raise KvgymError("policy_choice: no pending decision")
        return self._choice

    # -- observation ------------------------------------------------------------------------------------
    def _features(self, view: TierView, blocks: np.ndarray) -> np.ndarray:
        clk, tau = view.clock, view.tau
        never = lambda a, v: np.where(a < 0, 1.0, v)
        below = np.zeros(len(blocks), bool)
        for u in range(view.tier + 1, self.T):
            below |= self.views[u].resident[blocks]
        f = np.empty((len(blocks), N_FEATURES), np.float64)
        f[:, 0] = never(view.last[blocks], squash(clk - view.last[blocks], tau))
        f[:, 1] = squash(view.freq[blocks], TAU_FREQ)
        f[:, 2] = squash(self.views[0].freq[blocks], TAU_FREQ)
        f[:, 3] = squash(self.position[blocks], TAU_POSITION)
        f[:, 4] = self.tokens[blocks] / self.B
        f[:, 5] = squash(view.ctx.kids[blocks], 1.0)
        f[:, 6] = below
        f[:, 7] = squash(view.ctx.refetch_us(blocks), TAU_REFETCH_US)
        f[:, 8] = never(view.ins[blocks], squash(clk - view.ins[blocks], tau))
        f[:, 9] = never(view.out[blocks], squash(clk - view.out[blocks], tau))
        return f.astype(np.float32)

    def _context(self, view: TierView, kind: str, n_cands: int, n_valid: int, left: int) -> None:
        g = self.obs_g
        for u, v in enumerate(self.views):
            g[u] = v.n_resident / v.cap if v.cap else 0.0
        T = self.T
        g[T] = 0.0 if kind == EVICT else 1.0
        g[T + 1] = view.tier / (T - 1) if T > 1 else 0.0
        g[T + 2] = self.begun / self.n_req if self.n_req else 0.0
        g[T + 3] = n_cands / view.n_resident if kind == EVICT and view.n_resident else 0.0
        g[T + 4] = n_valid / (n_valid + self.k)
        g[T + 5] = squash(left, TAU_BATCH) if kind == ADMIT else 0.0
