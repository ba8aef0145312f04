"""The compiled whole-trace path: the reference engine's semantics, in numba, for LRU.

``run_fast`` gives exactly the metrics of :class:`kvgym.sim.engine.Engine` with policy ``lru``
(tier 0 and lower tiers LRU, whether ``lower_policy`` is ``lru`` or ``same``), no prefetcher,
under both cost models; the tests cross-check the two on random traces and configs. It is
the libCacheSim-style fast path next to the step API (the engine), used by
:func:`kvgym.sim.run` whenever a run qualifies.

How LRU is kept exact and fast: each tier holds a binary min-heap of ``(key, ins, page)``
entries with lazy deletion. ``key`` is the LRU policy's value (step of the last access or
insertion into tier 0 / the backing tier), ``ins`` the page's insertion sequence number into
its current tier, so the heap order is the engine's (lowest score, earliest inserted). An entry
is stale when the page has left the tier (its ins changed); stale entries are skipped on pop.
A hit does not touch the heap: keys only grow, so an entry whose stored key is below the page's
current key is re-pushed with the current key when it surfaces (lazy promotion); the surfaced
entry is the true minimum once its key is current. The heap is compacted when full, so memory
stays O(pages). Pinned pages (this step's)
are set aside while a victim is sought and pushed back after. The demotion cascade runs on an
explicit stack so that transfer costs are charged in the engine's order (deeper demotions first).
"""

from __future__ import annotations

import numba
import numpy as np

from kvgym.errors import SimulationError
from kvgym.sim.metrics import Metrics
from kvgym.sim.scenario import Setup
from kvgym.sim.tiers import transfer_alpha_beta

_I64MAX = np.iinfo(np.int64).max


@numba.njit(cache=True, inline="always")
def _push(k1, k2, pp, hsize, t, a, b, p):
    # Heaps of all tiers share flat arrays: tier t owns [t*cap, (t+1)*cap).
    base = t * (k1.shape[0] // hsize.shape[0])
    n = hsize[t]
    hsize[t] = n + 1
    while n > 0:
        par = (n - 1) >> 1
        j = base + par
        if a < k1[j] or (a == k1[j] and b < k2[j]):
            k1[base + n], k2[base + n], pp[base + n] = k1[j], k2[j], pp[j]
            n = par
        else:
            break
    k1[base + n], k2[base + n], pp[base + n] = a, b, p


@numba.njit(cache=True, inline="always")
def _pop(k1, k2, pp, hsize, t):
    base = t * (k1.shape[0] // hsize.shape[0])
    a, b, p = k1[base], k2[base], pp[base]
    n = hsize[t] - 1
    hsize[t] = n
    x1, x2, xp = k1[base + n], k2[base + n], pp[base + n]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        r = c + 1
        if r < n and (k1[base + r] < k1[base + c] or (k1[base + r] == k1[base + c] and k2[base + r] < k2[base + c])):
            c = r
        if k1[base + c] < x1 or (k1[base + c] == x1 and k2[base + c] < x2):
            k1[base + i], k2[base + i], pp[base + i] = k1[base + c], k2[base + c], pp[base + c]
            i = c
        else:
            break
    k1[base + i], k2[base + i], pp[base + i] = x1, x2, xp
    return a, b, p


@numba.njit(cache=True)
def _compact(k1, k2, pp, hsize, t, tier_of, key, ins):
    """Drop stale entries of heap ``t`` and rebuild it."""
    base = t * (k1.shape[0] // hsize.shape[0])
    n = hsize[t]
    m = 0
    for i in range(base, base + n):
        p = pp[i]
        if tier_of[p] == t and ins[p] == k2[i]:
            k1[base + m], k2[base + m], pp[base + m] = k1[i], k2[i], p
            m += 1
    hsize[t] = 0
    for i in range(base, base + m):
        _push(k1, k2, pp, hsize, t, k1[i], k2[i], pp[i])


@numba.njit(cache=True, inline="always")
def _add(t, p, s_key, tier_of, key, ins, ctr, used, peak, size, hk1, hk2, hp, hsize):
    if hsize[t] == hk1.shape[0] // hsize.shape[0]:
        _compact(hk1, hk2, hp, hsize, t, tier_of, key, ins)
    tier_of[p] = t
    ins[p] = ctr[0]
    ctr[0] += 1
    used[t] += size[p]
    peak[t] = max(peak[t], used[t])
    _push(hk1, hk2, hp, hsize, t, key[p], ins[p], p)


@numba.njit(cache=True, inline="always")
def _charge(src, dst, p, kind, serial, alpha, beta, size, decode, acc, free, clock):
    """Charge a transfer; kind 0 demand, 2 demotion. clock = [total, issue, ready]."""
    a = alpha[src, dst]
    b = beta[src, dst]
    if serial:
        acc[0] += (a + size[p] / b) + decode[p]
    else:
        link = max(dst, src)
        ch = 0
        for c in range(1, free.shape[1]):
            if free[link, c] < free[link, ch]:
                ch = c
        start = max(free[link, ch], clock[1])
        fin = start + a + size[p] / b
        free[link, ch] = fin
        if kind == 0 and fin > clock[2]:
            clock[2] = fin


@numba.njit(cache=True)
def _make_room(t0, x0, s, pin_step, sidx, tier_of, key, ins, ctr, used, peak, caps, size, hk1, hk2, hp, hsize,
               evict_step, counters, evictions, dem_bytes, serial, alpha, beta, decode, acc, free, clock,
               stack_t, stack_x, aside):
    nt = caps.shape[0]
    depth = 0
    stack_t[0] = t0
    stack_x[0] = x0
    while depth >= 0:
        t = stack_t[depth]
        x = stack_x[depth]
        if used[t] + size[x] <= caps[t]:
            depth -= 1
            if depth >= 0:  # this frame made room to demote x from tier t-1 into t
                _add(t, x, s, tier_of, key, ins, ctr, used, peak, size, hk1, hk2, hp, hsize)
                _charge(t - 1, t, x, 2, serial, alpha, beta, size, decode, acc, free, clock)
                dem_bytes[t] += size[x]
            continue
        # pop the lowest valid unpinned entry
        n_aside = 0
        v = -1
        while hsize[t] > 0:
            a, b, p = _pop(hk1, hk2, hp, hsize, t)
            if tier_of[p] != t or ins[p] != b:
                continue  # the page left this tier since the entry was pushed
            if key[p] != a:
                # Accessed since: its key only grew. Re-push lazily instead of on every hit.
                _push(hk1, hk2, hp, hsize, t, key[p], b, p)
                continue
            if pin_step[p] == sidx or pin_step[p] == -sidx:
                aside[n_aside] = p
                n_aside += 1
                continue
            v = p
            break
        for i in range(n_aside):
            p = aside[i]
            _push(hk1, hk2, hp, hsize, t, key[p], ins[p], p)
        if v < 0:
            return t  # nothing evictable: caller raises
        tier_of[v] = -1
        used[t] -= size[v]
        evictions[t] += 1
        if t == 0:
            evict_step[v] = s
        if t + 1 < nt:
            depth += 1
            stack_t[depth] = t + 1
            stack_x[depth] = v
    return -1


@numba.njit(cache=True)
def _run(step, page, size, decode, layer, seq, fp16, caps, alpha, beta, hit_base, serial, backing,
         floor_us, attn_bw, tier_of, key, ins, seen, pin_step, layer_mark, seq_mark, evict_step, ctr,
         used, peak, hk1, hk2, hp, hsize, counters, tier_hits, evictions, dem_bytes, link_demand,
         acc, free, clock, sidx0, has_decode, create):
    """Process whole steps. counters = [accesses, hits, misses, full, first, steps, tokens]."""
    n = step.shape[0]
    nt = caps.shape[0]
    stack_t = np.empty(nt + 1, np.int64)
    stack_x = np.empty(nt + 1, np.int64)
    aside = np.empty(size.shape[0] + 1, np.int64)
    sidx = sidx0
    i = 0
    while i < n:
        s = step[i]
        j = i
        while j < n and step[j] == s:
            j += 1
        sidx += 1
        for k in range(i, j):
            pin_step[page[k]] = sidx
        clock[1] = clock[0] if not serial else 0.0  # issue time = step start
        clock[2] = clock[1]
        n_layers = 0
        step_fp16 = 0.0
        dec = 0.0
        counters[5] += 1
        for k in range(i, j):
            p = page[k]
            if pin_step[p] == sidx:
                # First occurrence in this step: count its layer, sequence and bytes once.
                # -sidx still means "pinned" (see _make_room) but marks it counted.
                pin_step[p] = -sidx
                step_fp16 += fp16[p]
                if layer_mark[layer[p]] != sidx:
                    layer_mark[layer[p]] = sidx
                    n_layers += 1
                if seq_mark[seq[p]] != sidx:
                    seq_mark[seq[p]] = sidx
                    counters[6] += 1
            if has_decode:
                dec += decode[p]
            loc = tier_of[p]
            counters[0] += 1
            if loc == 0:
                counters[1] += 1
                tier_hits[0] += 1
                key[p] = s
                if serial:
                    acc[0] += hit_base + decode[p]
            else:
                key[p] = s
                counters[2] += 1
                if loc < 0 and create and not seen[p]:
                    counters[3] += 1
                    counters[4] += 1
                    seen[p] = True
                    bad = _make_room(0, p, s, pin_step, sidx, tier_of, key, ins, ctr, used, peak, caps, size,
                                     hk1, hk2, hp, hsize, evict_step, counters, evictions, dem_bytes, serial, alpha,
                                     beta, decode, acc, free, clock, stack_t, stack_x, aside)
                    if bad >= 0:
                        return k, bad
                    _add(0, p, s, tier_of, key, ins, ctr, used, peak, size, hk1, hk2, hp, hsize)
                    continue
                if loc < 0:
                    counters[3] += 1
                    if not seen[p]:
                        counters[4] += 1
                    bad = _make_room(backing, p, s, pin_step, sidx, tier_of, key, ins, ctr, used, peak, caps, size,
                                     hk1, hk2, hp, hsize, evict_step, counters, evictions, dem_bytes, serial, alpha,
                                     beta, decode, acc, free, clock, stack_t, stack_x, aside)
                    if bad >= 0:
                        return k, bad
                    _add(backing, p, s, tier_of, key, ins, ctr, used, peak, size, hk1, hk2, hp, hsize)
                    src = backing
                else:
                    tier_hits[loc] += 1
                    src = loc
                seen[p] = True
                tier_of[p] = -1
                used[src] -= size[p]
                bad = _make_room(0, p, s, pin_step, sidx, tier_of, key, ins, ctr, used, peak, caps, size,
                                 hk1, hk2, hp, hsize, evict_step, counters, evictions, dem_bytes, serial, alpha,
                                 beta, decode, acc, free, clock, stack_t, stack_x, aside)
                if bad >= 0:
                    return k, bad
                _add(0, p, s, tier_of, key, ins, ctr, used, peak, size, hk1, hk2, hp, hsize)
                _charge(src, 0, p, 0, serial, alpha, beta, size, decode, acc, free, clock)
                link_demand[src] += size[p]
        if not serial:
            comp = n_layers * floor_us
            comp = max(comp, step_fp16 / attn_bw)
            comp += dec
            stall = clock[2] - clock[1]
            acc[1] += stall
            acc[2] += comp
            clock[0] = clock[1] + stall + comp
        i = j
    return -1, -1


@numba.njit(cache=True)
def next_use(page, n_pages):
    """``(next_pos, first_pos)`` of a page-id sequence in one backward pass, O(n).

    ``next_pos[i]``: index of the next access to ``page[i]`` (``n`` if none); ``first_pos[p]``:
    index of ``p``'s first access (``n`` if never)."""
    n = page.shape[0]
    nxt = np.empty(n, np.int64)
    first = np.full(n_pages, n, np.int64)
    for i in range(n - 1, -1, -1):
        p = page[i]
        nxt[i] = first[p]
        first[p] = i
    return nxt, first


def supports(policy, prefetcher, scenario) -> bool:
    """Whether ``run_fast`` reproduces the engine for this combination."""
    name = policy if isinstance(policy, str) else getattr(policy, "name", None)
    no_prefetch = not scenario.prefetch or prefetcher in (None, "none")
    return name == "lru" and no_prefetch and (isinstance(policy, str) or not getattr(policy, "_params", None))


class FastLRU:
    """Stateful compiled LRU simulator; feed it whole steps with :meth:`feed`."""

    def __init__(self, setup: Setup, heap_slack: int = 2):
        n = len(setup.page_bytes)
        t = setup.tiers
        nt = len(t)
        self.setup = setup
        self.size = setup.page_bytes.astype(np.int64)
        self.decode = setup.decode_us.astype(np.float64)
        self.has_decode = bool(self.decode.any())
        self.layer = setup.pages.layer.astype(np.int64)
        self.seq = setup.pages.seq.astype(np.int64)
        self.fp16 = setup.pages.fp16_bytes.astype(np.float64)
        self.caps = np.array([c.capacity_bytes if c.capacity_bytes is not None else _I64MAX for c in t], np.int64)
        self.alpha = np.zeros((nt, nt))
        self.beta = np.ones((nt, nt))
        for a in range(nt):
            for b in range(nt):
                if a != b:
                    self.alpha[a, b], self.beta[a, b] = transfer_alpha_beta(t[a], t[b])
        self.serial = setup.scenario.cost_model == "serial"
        self.hit_base = t[0].read_latency_us
        self.backing = setup.backing
        self.create = setup.scenario.first_touch == "create"
        self.floor_us = setup.compute.layer_floor_us
        self.attn_bw = setup.compute.attention_bytes_per_us
        self.tier_of = np.full(n, -1, np.int8)
        self.key = np.full(n, -1, np.int64)
        self.ins = np.full(n, -1, np.int64)
        self.seen = np.zeros(n, np.bool_)
        self.pin_step = np.zeros(n, np.int64)
        self.layer_mark = np.zeros(int(self.layer.max(initial=0)) + 1, np.int64)
        self.seq_mark = np.zeros(int(self.seq.max(initial=0)) + 1, np.int64)
        self.evict_step = np.full(n, -1, np.int64)
        self.ctr = np.zeros(1, np.int64)
        self.used = np.zeros(nt, np.int64)
        self.peak = np.zeros(nt, np.int64)
        cap = heap_slack * n + 16
        self.hk1 = np.zeros(nt * cap, np.int64)
        self.hk2 = np.zeros(nt * cap, np.int64)
        self.hp = np.zeros(nt * cap, np.int64)
        self.hsize = np.zeros(nt, np.int64)
        self.counters = np.zeros(7, np.int64)
        self.tier_hits = np.zeros(nt, np.int64)
        self.evictions = np.zeros(nt, np.int64)
        self.dem_bytes = np.zeros(nt, np.int64)
        self.link_demand = np.zeros(nt, np.int64)
        self.acc = np.zeros(3)  # serial total | overlap stall, compute
        self.free = np.zeros((nt, max(c.channels for c in t)))
        for i, c in enumerate(t):
            self.free[i, c.channels:] = np.inf
        self.clock = np.zeros(3)  # now, issue, ready
        self.sidx = 0
        self._carry = None

    def feed(self, step: np.ndarray, page: np.ndarray) -> None:
        """Process accesses; a trailing partial step is held back until the next call or :meth:`metrics`."""
        if self._carry is not None:
            step, page = np.concatenate([self._carry[0], step]), np.concatenate([self._carry[1], page])
            self._carry = None
        if len(step) == 0:
            return
        cut = int(np.searchsorted(step, step[-1], side="left"))
        self._carry = (step[cut:], page[cut:])
        self._process(step[:cut], page[:cut])

    def _process(self, step, page) -> None:
        if len(step) == 0:
            return
        step = np.ascontiguousarray(step, np.int64)
        page = np.ascontiguousarray(page, np.int64)
        k, bad = _run(step, page, self.size, self.decode, self.layer, self.seq, self.fp16, self.caps, self.alpha,
                      self.beta, self.hit_base, self.serial, self.backing, self.floor_us, self.attn_bw, self.tier_of,
                      self.key, self.ins, self.seen, self.pin_step, self.layer_mark, self.seq_mark, self.evict_step,
                      self.ctr, self.used, self.peak, self.hk1, self.hk2, self.hp, self.hsize, self.counters,
                      self.tier_hits, self.evictions, self.dem_bytes, self.link_demand, self.acc, self.free,
                      self.clock, self.sidx, self.has_decode, self.create)
        if k >= 0:
            raise SimulationError(f"tier {bad} ({self.setup.tiers[bad].name!r}) cannot make room at step "
                                  f"{int(step[k])}: every resident is pinned by this step")
        self.sidx += int(np.count_nonzero(np.diff(step))) + 1

    def metrics(self) -> Metrics:
        if self._carry is not None:
            self._process(*self._carry)
            self._carry = None
        c = self.counters
        nt = len(self.caps)
        m = Metrics(nt, accesses=int(c[0]), hits=int(c[1]), misses=int(c[2]), full_misses=int(c[3]),
                    first_touch_misses=int(c[4]), steps=int(c[5]), tokens=int(c[6]))
        m.tier_hits = [int(x) for x in self.tier_hits]
        m.evictions = [int(x) for x in self.evictions]
        m.link_bytes_demand = [int(x) for x in self.link_demand]
        m.link_bytes_demotion = [int(x) for x in self.dem_bytes]
        m.peak_bytes = [int(x) for x in self.peak]
        if self.serial:
            m.stall_us = m.total_time_us = float(self.acc[0])
        else:
            m.stall_us, m.compute_us = float(self.acc[1]), float(self.acc[2])
            m.total_time_us = float(self.clock[0])
        return m


def run_fast(setup: Setup, chunks) -> Metrics:
    """Run LRU over ``(step, page, ...)`` chunks; the trace must be valid (see ``validate``)."""
    sim = FastLRU(setup)
    for chunk in chunks:
        sim.feed(chunk[0], chunk[1])
    return sim.metrics()
