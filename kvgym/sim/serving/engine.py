"""The serving-mode specification engine: request-level prefix caching across tiers.

Readable and exact; the compiled engine (:mod:`kvgym.sim.serving.compiled`, C in
``kvgym/sim/cengine/serving.c``) reproduces it rule for rule, to the bit
(``tests/test_serving_properties.py``). State is arrays indexed by dense block id and request id;
every tie is broken as stated; every float operation is listed. Sources of each rule are cited in
``docs/serving.md``.

**Inputs.** A :class:`~kvgym.traces.requests.RequestTrace` (``B`` tokens per block), a
:class:`~kvgym.sim.serving.config.ServingConfig` resolved to tiers ``0..T-1`` (tier 0 = the GPU
prefix cache; capacities in blocks, ``None`` unbounded), one eviction policy per tier (each bound
to its own :class:`~kvgym.sim.serving.context.ServingContext`) and one admission policy (gating
stores into tier 1). Every block has ``block_bytes`` bytes (a partial block still fills a slot).

**Blocks of a request r** (prompt ``P`` tokens, output ``O`` tokens, chain ``c[0..n-1]``,
``n = ceil(P / B)``, ``F = P // B`` full blocks). The partial tail ``c[n-1]`` (when ``P % B``) is
*anonymous* (a slot of r's own, never cached or stored) unless ``cache_partial_tail``. Cacheable
blocks: ``c[0..F-1]`` plus the tail if ``cache_partial_tail``. **Usable limits** (a partial
block is never part of a prefix): a tier-0 hit covers at most ``u0 = (P - 1) // B`` blocks (vLLM's
GPU prefix cache caps a hit at ``num_tokens - 1``), a lower tier at most ``F`` blocks (vLLM's
offloading connector may load every full block). The last prompt token is always computed: a
prefix of ``k`` blocks leaves ``P - min(k B, P - 1)`` tokens to prefill (a fully loaded,
block-aligned prompt recomputes its last token, as vLLM sets ``num_computed_tokens = num_tokens
- 1``). Output blocks: with positions ``0..P+O-2`` computed in all, the block at
chain position ``j >= F`` completes when position ``(j + 1) B - 1`` is computed; it gets id
``out[j - F]`` if the trace lists output blocks, else it stays anonymous.

**Event counter.** ``step`` rises by one before every per-block event that calls a per-block
hook: each prompt block reference (tier 0), each completed output block with an id (tier 0),
each block of a store offer (the tier offered to). Hooks get that step; LRU is therefore exact.

**Lookup** (at admission, no side effect: lookups are not accesses, as in vLLM's managers).
For ``j = 0 .. F-1``: ``per_block``: source = the lowest-index tier holding ``c[j]`` (tier 0
only while ``j < u0``); ``gpu_prefix_first``: while ``j < u0`` and ``c[j]`` is in tier 0 the
source is 0, after that only tiers >= 1 count. With ``gpu_prefix_cache=False`` tier 0 is never
a source.
The prefix ends at the first block with no source: length ``k``. Blocks ``c[k..]`` are
**recomputed** even where some tier holds them (prefix semantics).

**Admission of r** (scheduler, below). With ``pin``: r may be admitted only if
``pinned + anon + reserved + mine_unpinned + new + growth <= C0`` where ``pinned`` = tier-0
blocks with a running pin, ``anon`` = anonymous slots in use, ``reserved`` = future growth of
running requests, ``mine_unpinned`` = r's cacheable blocks resident in tier 0 and unpinned,
``new`` = r's cacheable blocks not in tier 0 plus 1 for an anonymous tail, ``growth`` =
``ceil((P + O - 1) / B) - ceil(P / B)`` (decode blocks to come; 0 if ``O = 0``). So no request
is ever preempted. A request that could never fit alone is an error before the run. Then:

1. With ``pin``, every cacheable block of r resident in tier 0 gets a pin (refcount); every
   prefix block whose source is a tier >= 1 is pinned there until it is loaded; ``reserved +=
   growth``.
2. For ``j = 0 .. n-1`` in chain order (an anonymous tail: with ``pin`` only ``make_room(0,
   1)`` and ``anon += 1``, no hook, no step; without, nothing): ``step += 1``; tier 0 ``on_access(b, 0 or -1)`` (the admission policy's
   ``on_reference(b)`` first); then
   - ``j < k``, source 0: a GPU hit (nothing moves);
   - ``j < k``, source ``s >= 1``: tier s ``on_access(b, 0)``; ``write_back`` removes b from
     tier s (``on_evict`` there: the block leaves; no eviction is counted), ``write_through``
     leaves the copy; ``make_room(0, 1)``; add b to tier 0, ``on_insert``; a load of one block
     over link s. If b is already in tier 0 (a copy the lookup may not use: past ``u0``, after
     the GPU prefix under ``gpu_prefix_first``, or held by a running request without a GPU
     prefix cache), the load still happens but lands in that copy: no room is made, nothing is
     added and no new pin is taken (b was pinned in 1; one copy per block id in tier 0);
   - ``j >= k``: if b is in tier 0 it is recomputed in place (touched, nothing moves);
     otherwise ``make_room(0, 1)``, add, ``on_insert``. Copies in lower tiers are untouched.
   Each block added to tier 0 gets r's pin (with ``pin``).
3. Request hooks: for each tier with prefix blocks of r, ``on_request_load(r, blocks)``.
4. Loads: per tier s, r's ``m_s`` loaded blocks form one batch on link s issued at the
   admission time ``t``: ``start = max(t, link_free[s])``, ``end = start + transfer_us(link,
   block_bytes, m_s, busy=link_free[s] > t)`` (:mod:`~kvgym.sim.serving.links`),
   ``link_free[s] = end`` (links in tier order, requests in admission order). ``landed[r]`` =
   the latest ``end`` (``t`` without loads).

**Making room** in tier t for ``m`` blocks: while free slots (``C_t - resident - anon``) < m,
evict the evictable resident with the lowest ``scores`` of tier t's policy, candidates in the
tier's insertion order, ties to the earliest inserted. Evictable: tier 0: no running pin; tier
>= 1: no lookup pin; and not protected by the store batch in progress. **Evicting** v from tier
t: remove it, count an eviction, ``on_evict`` of tier t; if some lower tier holds v: nothing
more (a copy remains: not counted as a drop); else under ``write_back`` with a tier t+1: make
room there (recursively) and demote v into it (``on_insert`` there, a store over link t+1), or
drop it if no room can be made (everything pinned); else drop it (``drops[t]``).

**Write-through stores** (``write_through`` only). At the end of the iteration that completes
r's prefill, r offers to tier 1 its cacheable prompt blocks from position 0 if nothing was
loaded from a lower tier, else from position k (vLLM's offloading connector: chunk-level
offload skips the loaded prefix); each output block with an id is offered when completed
(unless ``store_output_blocks=False``, vLLM's default ``offload_prompt_only``). An
offer ``O`` (chain order) to tier t: the admission policy's ``on_offer(O)`` (tier 1 only);
for each b: ``step += 1``, tier t ``on_access(b, 0 or -1)``; present blocks are reused, the
others are candidates, filtered by ``admit`` (tier 1; ``always`` below), the rest counted as
skipped; ``on_store_miss`` (admitted, first time for r) then ``on_request_offer`` (present or
admitted, first time for r), in chain order. If ``a`` blocks were admitted: the batch is
protected; if free slots + evictable residents < a, nothing is stored (all-or-nothing, vLLM)
and, for tier 1, the whole offer stays **pending**: it is offered again, together with any new
blocks, at the end of every later iteration that runs r (each decode token) and once more when
r finishes (vLLM re-offers from ``next_stored_chunk_idx`` at every step, the finishing one
included); else ``make_room(t, a)`` and each is added (``on_insert``, a store over link t). Blocks stored
into tier t >= 1 are then offered to tier t+1 (admission ``always``). Stores cost bytes, never
time: they use the other copy direction and delay no request.

**Scheduler** (continuous batching, vLLM's order; timing on). ``now = 0``. Each iteration:
arrivals with ``arrival <= now`` join the FIFO waiting queue; the token budget is
``token_budget``; running requests in admission order each take their next chunk (a prefill
takes ``min(remaining prompt, budget)`` tokens, a decode 1 token) while budget remains, skipping
those whose loads have not landed (``async``); then waiting requests in FIFO order are admitted
while budget > 0, fewer than ``max_running`` run and memory allows (the first that cannot be
admitted stops admission: head of line); an admitted request joins the batch the same way.
A decode token at position p with ``p % B == 0`` first takes a new anonymous slot
(``make_room(0, 1)``, ``reserved -= 1``). An empty batch moves ``now`` to the next arrival or
landing. Otherwise the compute time ``C`` (:mod:`~kvgym.sim.serving.compute`, terms summed in
batch order) and the end time:

- ``async``: ``end = now + C``;
- ``sync``: ``end = max(now, e_1, ..) + C``;
- ``layerwise`` (L layers): ``end = max(now + C, max_s(s0_s + (e_s - s0_s) / L + C), max_s(e_s + C / L))``

where, for each link s, ``s0_s`` / ``e_s`` are the earliest start / latest end of the loads of
the requests whose first prefill chunk is in the batch (the pipeline of loading layer l+1
while computing layer l). At ``end``, in batch order: prefill progress; a prefill that
completes gives the first token (``TTFT = end - arrival``; a request with ``O = 0`` finishes
there), offers its prompt blocks; a decode token advances; a completed output block with an
id: ``step += 1``, tier 0 ``on_access``, added to tier 0 in the anonymous slot it filled (or
merged into an existing copy), pinned, offered; the request with all O tokens finishes.
**Finish**: every tier's ``on_request_finished``; unpin; its anonymous slots are freed; with
``gpu_prefix_cache=False`` its released blocks are evicted at once, tail first. ``now = end``.

With ``timing=False`` the clock never moves (arrivals count as 0, every duration is 0),
``max_running = 1`` and the budget is unbounded: each request runs alone, in trace order, to
its end (a stretch of decode tokens without an event is taken in one step, which changes
nothing); every time metric is 0.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from kvgym.errors import ConfigError, SimulationError
from kvgym.sim.metrics import ServingMetrics
from kvgym.sim.policy import Admission, Policy
from kvgym.sim.serving.compute import decode_terms, prefill_terms
from kvgym.sim.serving.config import Resolved, ServingConfig
from kvgym.sim.serving.context import ServingContext
from kvgym.sim.serving.links import transfer_us
from kvgym.sim.serving.prepare import (
    check_fit,
    check_policies,
    prepare,
    serving_policies,
    summarize,
)
from kvgym.traces.requests import RequestTrace, validate_requests

WAITING, PREFILL, DECODE, DONE = 0, 1, 2, 3


class _Req:
    """Per-request bookkeeping of one tier's request hooks (vLLM's ``_RequestCacheAccess``)."""

    __slots__ = ("inserted", "miss_seen", "observed", "reused")

    def __init__(self):
        self.observed: dict[int, int] = {}
        self.inserted: set[int] = set()
        self.reused: set[int] = set()
        self.miss_seen: set[int] = set()


class ServingEngine:
    """Simulate a request trace under a serving config (see the module docstring).

    Args:
        trace: the requests.
        config: the serving config.
        policies: one eviction policy per tier (distinct objects).
        admission: gates stores into tier 1.
    """

    def __init__(self, trace: RequestTrace, config: ServingConfig, policies: list[Policy], admission: Admission):
        validate_requests(trace, "trace")
        self.trace = trace
        self.cfg = config
        # Tiers, capacities (blocks), load links, compute; without timing arrivals are 0, one request
        # runs at a time and the budget is unbounded (kvgym.sim.serving.prepare).
        prep = prepare(trace, config)
        res: Resolved = prep.res
        self.res = res
        self.tiers = res.tiers
        self.n_tiers = T = prep.n_tiers
        check_policies(policies, T)
        self.caps = list(prep.caps)
        self.links = prep.links
        self.block_bytes = res.block_bytes
        self.compute = res.compute
        self.timing = config.timing
        self.arrival = prep.arrival
        self.max_running = prep.max_running
        self.budget = prep.budget
        n = trace.n_blocks
        nr = len(trace)
        self.B = trace.block_tokens
        self.session_key = prep.session_key
        self.resident: list[dict[int, None]] = [{} for _ in range(T)]
        self.in_tier = np.zeros((T, n), bool)
        self.kids = np.zeros((T, n), np.int64)
        self.pin0 = np.zeros(n, np.int64)
        self.lowpin = np.zeros((T, n), bool)
        self.protect: list[set[int]] = [set() for _ in range(T)]
        self.used = [0] * T
        self.anon = 0
        self.n_pinned0 = 0
        self.reserved = 0
        self.step = 0
        self.link_free = [0.0] * T
        self.m = ServingMetrics(T)
        self.peak = [0] * T
        self.policies = policies
        self.admission = admission
        self.parent = trace.block_table.parent
        self.ctx = [ServingContext(prep.setups[t], t, self) for t in range(T)]
        for t, p in enumerate(policies):
            p.bind(self.ctx[t])
        admission.bind(self.ctx[1] if T > 1 else self.ctx[0])
        self.reqs: list[list[_Req | None]] = [[None] * nr for _ in range(T)]
        # Per request.
        self.state = np.full(nr, WAITING, np.int8)
        self.prefix = np.zeros(nr, np.int64)
        self.pos = np.zeros(nr, np.int64)        # next prompt position to compute
        self.gen = np.zeros(nr, np.int64)        # output tokens produced
        self.loaded = np.zeros(nr, np.int64)     # blocks loaded from tiers >= 1
        self.admit_us = np.zeros(nr, np.float64)
        self.first_us = np.zeros(nr, np.float64)
        self.finish_us = np.zeros(nr, np.float64)
        self.landed = np.zeros(nr, np.float64)
        self.load_span: dict[int, list[tuple[int, float, float]]] = {}
        self.held: list[list[int]] = [[] for _ in range(nr)]
        self.anon_of = np.zeros(nr, np.int64)
        self.growth_left = np.zeros(nr, np.int64)
        self.pending: list[list[tuple[int, int]]] = [[] for _ in range(nr)]
        check_fit(trace, config, self.caps[0])

    # -- residency -------------------------------------------------------------------------
    def _add(self, t: int, b: int) -> None:
        self.resident[t][b] = None
        self.in_tier[t, b] = True
        self.used[t] += 1
        p = self.parent[b]
        if p >= 0:
            self.kids[t, p] += 1
        self.ctx[t].tier_of[b] = 0
        self._peak(t)

    def _remove(self, t: int, b: int) -> None:
        del self.resident[t][b]
        self.in_tier[t, b] = False
        self.used[t] -= 1
        p = self.parent[b]
        if p >= 0:
            self.kids[t, p] -= 1
        self.ctx[t].tier_of[b] = -1

    def _peak(self, t: int) -> None:
        held = self.used[t] + (self.anon if t == 0 else 0)
        self.peak[t] = max(self.peak[t], held)

    def _free(self, t: int) -> int:
        return self.caps[t] - self.used[t] - (self.anon if t == 0 else 0)

    def _pin(self, b: int) -> None:
        if self.pin0[b] == 0:
            self.n_pinned0 += 1
        self.pin0[b] += 1

    def _unpin(self, b: int) -> None:
        self.pin0[b] -= 1
        if self.pin0[b] == 0:
            self.n_pinned0 -= 1

    # -- hooks -----------------------------------------------------------------------------
    def _focus(self, r: int, pos: int) -> None:
        for c in self.ctx:
            c.req, c.block_pos, c.step, c.pos = r, pos, self.step, self.step

    def _access(self, t: int, b: int) -> None:
        """A block reference of tier t, before any placement it causes."""
        c = self.ctx[t]
        loc = 0 if self.in_tier[t, b] else -1
        if t == 0 and self.admission.on_reference is not None:
            self.admission.on_reference(b)
        if self.policies[t].on_access is not None:
            self.policies[t].on_access(b, loc, self.step)
        if c.evict_step[b] >= 0 and self.step - c.evict_step[b] <= c.regret_horizon and loc != 0:
            c.regret[b] += 1
        c.last_access[b] = self.step
        c.freq[b] += 1

    def _insert(self, t: int, b: int) -> None:
        self._add(t, b)
        self.ctx[t].insert_step[b] = self.step
        if self.policies[t].on_insert is not None:
            self.policies[t].on_insert(b, 0, self.step)

    def _req(self, t: int, r: int) -> _Req:
        q = self.reqs[t][r]
        if q is None:
            q = self.reqs[t][r] = _Req()
        return q

    def _observe(self, t: int, r: int, blocks: list[int], positions: list[int], hook: str) -> None:
        """Report blocks not yet reported for r in tier t through ``hook`` (chain order)."""
        q = self._req(t, r)
        new = [(b, p) for b, p in zip(blocks, positions) if b not in q.observed]
        for b, p in new:
            q.observed[b] = p
        fn = getattr(self.policies[t], hook)
        if new and fn is not None:
            fn(r, np.array([b for b, _ in new], np.int64), np.array([p for _, p in new], np.int64), self.step)

    # -- eviction ---------------------------------------------------------------------------
    def _candidates(self, t: int) -> np.ndarray:
        """Evictable residents of tier t, in the tier's insertion order."""
        res = np.fromiter(self.resident[t], np.int64, len(self.resident[t]))
        ok = self.pin0[res] == 0 if t == 0 else ~self.lowpin[t, res]
        if self.protect[t]:
            ok &= ~np.isin(res, np.fromiter(self.protect[t], np.int64, len(self.protect[t])))
        return res[ok]

    def _make_room(self, t: int, need: int) -> bool:
        while self._free(t) < need:
            cands = self._candidates(t)
            if len(cands) == 0:
                return False
            self._focus(self.ctx[t].req, self.ctx[t].block_pos)
            v = int(cands[int(np.argmin(self.policies[t].scores(cands, self.step)))])
            self._evict(t, v)
        return True

    def _room0(self) -> None:
        """One free tier-0 slot; the admission rule guarantees it, so failing is a bug."""
        if not self._make_room(0, 1):
            raise SimulationError(f"internal: tier 0 has no evictable block at step {self.step} "
                                  "(the admission reservation should prevent this)")

    def _evict(self, t: int, v: int) -> None:
        self._remove(t, v)
        self.m.evictions[t] += 1
        self.ctx[t].evict_step[v] = self.step
        if self.policies[t].on_evict is not None:
            self.policies[t].on_evict(v, 0, self.step)
        if self.in_tier[t + 1:, v].any():
            return
        if self.cfg.write_policy == "write_back" and t + 1 < self.n_tiers and self._make_room(t + 1, 1):
            req, pos = self.ctx[0].req, self.ctx[0].block_pos
            self._focus(req, -1)  # a demotion has no chain position
            self._insert(t + 1, v)
            self._focus(req, pos)
            self.m.stores[t + 1] += 1
            self.m.link_bytes_store[t + 1] += self.block_bytes
            return
        self.m.drops[t] += 1

    # -- admission ----------------------------------------------------------------------------
    def _cacheable(self, r: int) -> int:
        """Cacheable blocks of r's chain (the tail is anonymous unless cache_partial_tail)."""
        P = int(self.trace.prompt_tokens[r])
        n = int(self.trace.offsets[r + 1] - self.trace.offsets[r])
        return n if (P % self.B == 0 or self.cfg.cache_partial_tail) else n - 1

    def _lookup(self, r: int) -> tuple[int, list[int]]:
        chain = self.trace.chain(r)
        P = int(self.trace.prompt_tokens[r])
        u0 = (P - 1) // self.B if P > 0 else 0
        full = P // self.B
        low = 0 if self.cfg.gpu_prefix_cache else 1
        src: list[int] = []
        j = 0
        if self.cfg.lookup == "gpu_prefix_first" and low == 0:
            while j < u0 and self.in_tier[0, chain[j]]:
                src.append(0)
                j += 1
            low = 1
        while j < full:
            lo = low if j < u0 else max(low, 1)
            held = np.flatnonzero(self.in_tier[lo:, chain[j]])
            if not held.size:
                break
            src.append(int(held[0]) + lo)
            j += 1
        return len(src), src

    def _growth(self, r: int) -> int:
        P, O = int(self.trace.prompt_tokens[r]), int(self.trace.output_tokens[r])
        return (-(-(P + O - 1) // self.B) - (-(-P // self.B))) if O > 0 else 0

    def _fits(self, r: int) -> bool:
        if not self.cfg.pin or self.caps[0] == np.iinfo(np.int64).max:
            return True
        chain = self.trace.chain(r)[: self._cacheable(r)]
        res = self.in_tier[0, chain]
        mine_unpinned = int((res & (self.pin0[chain] == 0)).sum())
        new = int((~res).sum()) + (self._cacheable(r) < len(self.trace.chain(r)))
        need = self.n_pinned0 + self.anon + self.reserved + mine_unpinned + new + self._growth(r)
        return need <= self.caps[0]

    def _admit(self, r: int, now: float) -> None:
        tr, m = self.trace, self.m
        chain = tr.chain(r).tolist()
        n_c = self._cacheable(r)
        k, src = self._lookup(r)
        self.prefix[r] = k
        P = int(tr.prompt_tokens[r])
        self.pos[r] = min(k * self.B, P - 1) if P > 0 else 0  # the last prompt token is always computed
        self.admit_us[r] = now
        pin = self.cfg.pin
        if pin:
            for b in chain[:n_c]:
                if self.in_tier[0, b]:
                    self._pin(b)
            g = self._growth(r)
            self.growth_left[r] = g
            self.reserved += g
        for j in range(k):
            if src[j] > 0:
                self.lowpin[src[j], chain[j]] = True
        batches: dict[int, list[int]] = {}
        for j, b in enumerate(chain):
            if j >= n_c:  # the anonymous tail: a slot of r's own (none without pinning)
                if pin:
                    self._room0()
                    self.anon += 1
                    self.anon_of[r] += 1
                    self._peak(0)
                continue
            self.step += 1
            self._focus(r, j)
            in0 = bool(self.in_tier[0, b])
            m.accesses += 1
            m.hits += in0
            if not (j < k) and self.in_tier[:, b].any():
                m.broken_prefix_blocks += 1
            self._access(0, b)
            if j < k and src[j] > 0:
                s = src[j]
                self._access(s, b)
                self.lowpin[s, b] = False
                if self.cfg.write_policy == "write_back":
                    self._remove(s, b)
                    if self.policies[s].on_evict is not None:
                        self.policies[s].on_evict(b, 0, self.step)
                if not in0:  # else the load lands in the copy tier 0 already holds (and pins)
                    self._room0()
                    self._insert(0, b)
                    if pin:
                        self._pin(b)
                batches.setdefault(s, []).append(b)
                m.loads[s] += 1
                m.link_bytes_load[s] += self.block_bytes
            elif not in0:
                self._room0()
                self._insert(0, b)
                if pin:
                    self._pin(b)
            q = self._req(0, r)
            if in0 and b not in q.inserted:
                q.reused.add(b)
            elif not in0:
                q.inserted.add(b)
            self.held[r].append(b)
        if k:
            for t in range(self.n_tiers):
                idx = [j for j in range(k) if src[j] == t]
                if idx:
                    self._observe(t, r, [chain[j] for j in idx], idx, "on_request_load")
                    if t > 0:
                        q = self._req(t, r)
                        q.reused.update(chain[j] for j in idx if chain[j] not in q.inserted)
        # Tier 0 observes every block r holds (for its on_request_finished).
        q0 = self._req(0, r)
        for j, b in enumerate(chain[:n_c]):
            q0.observed.setdefault(b, j)
        self.loaded[r] = sum(len(v) for v in batches.values())
        landed = now
        spans = []
        for s in sorted(batches):
            busy = self.link_free[s] > now
            start = max(now, self.link_free[s])
            dur = transfer_us(self.links[s], self.block_bytes, len(batches[s]), busy) if self.timing else 0.0
            end = start + dur
            self.link_free[s] = end
            spans.append((s, start, end))
            landed = max(landed, end)
        self.load_span[r] = spans
        self.landed[r] = landed
        # Prefix accounting.
        for j in range(k):
            m.prefix_hits[src[j]] += 1
            m.prefix_hit_tokens[src[j]] += self.B
        m.prompt_blocks += len(chain)
        m.prompt_tokens += P
        m.prefill_tokens_saved += int(self.pos[r])
        m.prefill_tokens_computed += P - int(self.pos[r])
        self.state[r] = PREFILL

    # -- stores ----------------------------------------------------------------------------------
    def _store(self, t: int, r: int, offer: list[int], positions: list[int]) -> bool:
        """Offer ``offer`` to tier t; False when the admitted blocks did not fit (nothing stored)."""
        if t >= self.n_tiers or not offer:
            return True
        m = self.m
        adm = self.admission if t == 1 else None
        if adm is not None and adm.on_offer is not None:
            adm.on_offer(np.array(offer, np.int64))
        for b, p in zip(offer, positions):
            self.step += 1
            self._focus(r, p)
            self._access(t, b)
        present = [bool(self.in_tier[t, b]) for b in offer]
        cand = [b for b, pr in zip(offer, present) if not pr]
        if adm is not None and cand:
            ok = np.asarray(adm.admit(np.array(cand, np.int64)), bool)
        else:
            ok = np.ones(len(cand), bool)
        admitted = {b for b, o in zip(cand, ok) if o}
        m.stores_skipped[t] += len(cand) - len(admitted)
        q = self._req(t, r)
        misses = [(b, p) for b, p in zip(offer, positions) if b in admitted and b not in q.miss_seen]
        q.miss_seen.update(b for b, _ in misses)
        if misses and self.policies[t].on_store_miss is not None:
            self.policies[t].on_store_miss(r, np.array([b for b, _ in misses], np.int64),
                                           np.array([p for _, p in misses], np.int64), self.step)
        rec = [(b, p) for b, p, pr in zip(offer, positions, present) if pr or b in admitted]
        self._observe(t, r, [b for b, _ in rec], [p for _, p in rec], "on_request_offer")
        q.reused.update(b for b, pr in zip(offer, present) if pr and b not in q.inserted)
        stored = [(b, p) for b, p in zip(offer, positions) if b in admitted]
        if not stored:
            return True
        self.protect[t] = set(offer)
        if self._free(t) + len(self._candidates(t)) < len(stored):
            m.stores_failed[t] += 1
            self.protect[t] = set()
            return False
        self._focus(r, -1)
        self._make_room(t, len(stored))
        self.protect[t] = set()
        for b, p in stored:
            self._focus(r, p)
            self._insert(t, b)
            q.inserted.add(b)
            m.stores[t] += 1
            m.link_bytes_store[t] += self.block_bytes
        self._store(t + 1, r, [b for b, _ in stored], [p for _, p in stored])
        return True

    def _offer(self, r: int, new: list[tuple[int, int]]) -> None:
        """Offer to tier 1 what r left pending (a batch that did not fit) plus ``new`` (block,
        position) pairs, as one batch; if it does not fit either, it stays pending (vLLM re-offers
        from ``next_stored_chunk_idx`` at every later step of the request)."""
        if self.cfg.write_policy != "write_through" or self.n_tiers < 2:
            return
        batch = self.pending[r] + new
        if batch:
            ok = self._store(1, r, [b for b, _ in batch], [p for _, p in batch])
            self.pending[r] = [] if ok else batch

    def _prompt_offer(self, r: int) -> list[tuple[int, int]]:
        """The prompt blocks r offers at the end of its prefill (the module docstring's rule)."""
        chain = self.trace.chain(r).tolist()
        start = int(self.prefix[r]) if self.loaded[r] else 0
        return [(chain[j], j) for j in range(start, self._cacheable(r))]

    # -- decode ------------------------------------------------------------------------------------
    def _grow(self, r: int) -> None:
        """Position P + gen - 1 is about to be computed; it may need a new slot."""
        p = int(self.trace.prompt_tokens[r] + self.gen[r] - 1)
        if p % self.B == 0 and self.cfg.pin:
            self._room0()
            self.anon += 1
            self.anon_of[r] += 1
            self.reserved -= 1
            self.growth_left[r] -= 1
            self._peak(0)

    def _complete_block(self, r: int, j: int) -> list[tuple[int, int]]:
        """Block at chain position j of r's sequence just filled up (j >= F); returns what to offer."""
        F = int(self.trace.prompt_tokens[r]) // self.B
        out = self.trace.out_chain(r)
        if not len(out):
            return []
        b = int(out[j - F])
        self.m.output_blocks += 1
        # Its slot was anonymous until now (with pin; without, it held nothing).
        if self.anon_of[r] > 0:
            self.anon -= 1
            self.anon_of[r] -= 1
        self.step += 1
        self._focus(r, j)
        in0 = bool(self.in_tier[0, b])
        self._access(0, b)
        q = self._req(0, r)
        q.observed.setdefault(b, j)
        if not in0:
            self._room0()
            self._insert(0, b)
            q.inserted.add(b)
        elif b not in q.inserted:
            q.reused.add(b)
        if self.cfg.pin:
            self._pin(b)
        self.held[r].append(b)
        return [(b, j)] if self.cfg.store_output_blocks else []

    def _finish(self, r: int, now: float) -> None:
        self._offer(r, [])  # the finishing step retries a pending batch once more
        self.pending[r] = []
        self.state[r] = DONE
        self.finish_us[r] = now
        self.m.requests += 1
        self.m.output_tokens += int(self.trace.output_tokens[r])
        self._focus(r, -1)
        for t in range(self.n_tiers):
            q = self.reqs[t][r]
            if q is None:
                continue
            fn = self.policies[t].on_request_finished
            if fn is not None and q.observed:
                items = sorted(q.observed.items(), key=lambda kv: kv[1])
                fn(r, np.array([b for b, _ in items], np.int64), np.array([p for _, p in items], np.int64),
                   set(q.inserted), set(q.reused), self.step)
            self.reqs[t][r] = None
        held = self.held[r]
        if self.cfg.pin:
            for b in held:
                self._unpin(b)
        self.anon -= int(self.anon_of[r])
        self.anon_of[r] = 0
        self.reserved -= int(self.growth_left[r])
        self.growth_left[r] = 0
        if not self.cfg.gpu_prefix_cache:
            for b in reversed(held):
                if self.in_tier[0, b] and self.pin0[b] == 0:
                    self._evict(0, b)
        self.held[r] = []
        self.load_span.pop(r, None)

    # -- the scheduler -----------------------------------------------------------------------------
    def run(self) -> ServingMetrics:
        tr = self.trace
        nr = len(tr)
        P, O = tr.prompt_tokens, tr.output_tokens
        waiting: deque[int] = deque()
        running: list[int] = []
        nxt = 0
        now = 0.0
        done = 0
        L = self.res.geometry.layers
        overlap = self.cfg.load_overlap
        waits = overlap == "async" and self.timing
        while done < nr:
            while nxt < nr and self.arrival[nxt] <= now:
                waiting.append(nxt)
                nxt += 1
            budget = self.budget
            batch: list[tuple[int, int]] = []  # (request, tokens); decode when state is DECODE
            first_chunk: list[int] = []


            for r in running:
                if budget <= 0:
                    break
                if waits and self.landed[r] > now:
                    continue
                if self.state[r] == PREFILL:
                    take = min(int(P[r]) - int(self.pos[r]), budget)
                else:
                    take = 1
                batch.append((r, take))
                budget -= take
            while waiting and budget > 0 and len(running) < self.max_running:
                r = waiting[0]
                if not self._fits(r):
                    break
                waiting.popleft()
                self._admit(r, now)
                running.append(r)
                if waits and self.landed[r] > now:
                    continue
                take = min(int(P[r]) - int(self.pos[r]), budget)
                batch.append((r, take))
                first_chunk.append(r)
                budget -= take
            if not batch:
                cands = [float(self.arrival[nxt])] if nxt < nr else []
                cands += [float(self.landed[r]) for r in running if self.landed[r] > now]
                if not cands:
                    raise SimulationError(f"internal: no progress possible at {now} us")
                now = min(cands)
                continue
            # Decode slots first, then the iteration's cost.
            n_tok = att = smp = kv = 0
            for r, take in batch:
                if self.state[r] == DECODE:
                    self._grow(r)
                    a, b_, c = decode_terms(int(P[r] + self.gen[r] - 1))
                    smp += 1
                else:
                    s = int(self.pos[r])
                    a, b_, c = prefill_terms(s, s + take)
                    smp += int(s + take == P[r] and O[r] > 0)
                n_tok += a
                att += b_
                kv += c
            C = self.compute.iteration_us(n_tok, att, smp, kv) if self.timing else 0.0
            end = now + C
            if self.timing and overlap != "async":
                spans = [sp for r in first_chunk for sp in self.load_span.get(r, [])]
                if spans:
                    links: dict[int, list[float]] = {}
                    for s, st, en in spans:
                        lo, hi = links.get(s, [st, en])
                        links[s] = [min(lo, st), max(hi, en)]
                    if overlap == "sync":
                        end = max([now] + [hi for _, hi in links.values()]) + C
                    else:
                        end = now + C
                        for lo, hi in links.values():
                            end = max(end, lo + (hi - lo) / L + C, hi + C / L)
            self.m.compute_us += C
            # Collapse a lone decode stretch when time does not run and no store waits to be
            # retried at each iteration (results are identical).
            if not self.timing and len(batch) == 1 and self.state[batch[0][0]] == DECODE \
                    and not self.pending[batch[0][0]]:
                r = batch[0][0]
                p0 = int(P[r] + self.gen[r] - 1)
                stretch = min(int(O[r] - self.gen[r]), self.B - p0 % self.B)
                self.gen[r] += stretch - 1
                self.m.iterations += stretch - 1
            self.m.iterations += 1
            for r, take in batch:
                if self.state[r] == PREFILL:
                    self.pos[r] += take
                    if self.pos[r] == P[r]:
                        self.first_us[r] = end
                        self._offer(r, self._prompt_offer(r))
                        self.gen[r] = 1 if O[r] > 0 else 0
                        if self.gen[r] >= O[r]:
                            self._finish(r, end)
                        else:
                            self.state[r] = DECODE
                else:
                    p = int(P[r] + self.gen[r] - 1)
                    self.gen[r] += 1
                    new = []
                    if (p + 1) % self.B == 0 and p // self.B >= int(P[r]) // self.B:
                        new = self._complete_block(r, p // self.B)
                    self._offer(r, new)
                    if self.gen[r] >= O[r]:
                        self._finish(r, end)
            running = [r for r in running if self.state[r] != DONE]
            done = int((self.state == DONE).sum())
            now = end
        return self._summarize()

    def _summarize(self) -> ServingMetrics:
        summarize(self.m, self.trace, self.arrival, self.admit_us, self.first_us, self.finish_us, self.peak,
                  self.block_bytes)
        self.per_request = {"admit_us": self.admit_us, "first_token_us": self.first_us, "finish_us": self.finish_us,
                            "prefix_blocks": self.prefix, "loaded_blocks": self.loaded}
        return self.m


def simulate_serving(trace: RequestTrace, config: ServingConfig, policy: str | Policy = "lru", *,
                     lower: str | Policy | list = "lru", admission: str | Admission = "always",
                     policy_params: dict | None = None, lower_params: dict | None = None,
                     admission_params: dict | None = None, engine: str = "compiled") -> ServingMetrics:
    """Simulate ``trace`` under ``config`` and return its :class:`ServingMetrics`.

    Args:
        policy: tier 0's eviction policy (a registered name, built with ``policy_params``, or an
            object).
        lower: the policy of every lower tier: a name (a fresh object per tier, with
            ``lower_params``), or a list with one name or object per lower tier.
        admission: gates stores into tier 1 (name with ``admission_params``, or an object).
        engine: ``"compiled"`` (:mod:`kvgym.sim.serving.compiled`, the default: the same metrics to
            the bit; a policy without a compiled implementation is called back in Python) or
            ``"reference"`` (this module's :class:`ServingEngine`, the specification).
    """
    if engine not in ("compiled", "reference"):
        raise ConfigError(f"engine={engine!r}; valid: compiled, reference")
    pols, adm = serving_policies(config, policy, lower, admission, policy_params, lower_params, admission_params)
    if engine == "compiled":
        from kvgym.sim.serving.compiled import CompiledServing

        return CompiledServing(trace, config, pols, adm).run()
    return ServingEngine(trace, config, pols, adm).run()
