"""The compiled env backend: the reference engine's semantics in numba, paused at decisions.

:class:`CompiledSim` runs one episode (a trace or a window of one) under a scenario setup,
exactly as :class:`kvgym.sim.engine.Engine` would with an external tier-0 victim chooser
(lower tiers LRU, both cost models, backing tier, pinning, regret counters), but fast-forwards
through everything between decisions in compiled code. It stops when

- tier 0 needs a victim (an *eviction decision*, for a demand fetch or a prefetch), or
- with ``prefetch_decisions``, after the accesses of a decode step that had at least one demand
  fetch, for up to ``scenario.max_prefetch`` *prefetch decisions* (slot 0 = no prefetch, which
  ends the step's prefetch phase).

At each stop it selects the candidates and writes the observation (see
:mod:`kvgym.envs.kernels`). It has no Python hooks, so policies that need ``on_access`` run on
the reference backend (:mod:`kvgym.envs.reference`); the tests check that both backends give
identical observations, rewards and metrics for the same actions, and that prefetch choices
replayed through the reference engine give identical metrics.

Prefetch candidates (at most ``k - 1``): the next token block (same sequence and layer) of each
page of the step, then the most recent tier-0 victims, then blocks further ahead of the step's
pages; pages already in tier 0 and pages that could not fit beside the step's pinned pages are
skipped.

State lives in a few packed numpy arrays (row constants below) so that one call has few
arguments: numba's dispatch costs about 0.1 µs per argument.
"""

from __future__ import annotations

import numba
import numpy as np

from kvgym.errors import SimulationError
from kvgym.sim.metrics import Metrics
from kvgym.sim.scenario import Setup
from kvgym.sim.tiers import transfer_alpha_beta

# ===========================================================================================
# Shared kernels (also called by the reference backend). They live in this file, with every
# constant they bake in, because numba's on-disk cache only notices changes to a function's own
# source file: a kernel imported from another file could go stale inside cached callers.
# Their definitions are documented in kvgym.envs.kernels (the observation spec).
# ===========================================================================================
# Feature normalisation scales (see kvgym.envs.kernels).
TAU_STEPS = 16.0
TAU_FREQ = 4.0
TAU_WEIGHT = 1.0
TAU_US = 100.0
TAU_REGRET = 1.0


# -- hashing ------------------------------------------------------------------------------
@numba.njit(cache=True, error_model="numpy")
def splitmix64(x):
    """SplitMix64 finaliser of a uint64 (wrapping arithmetic)."""
    z = np.uint64(x) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, error_model="numpy")
def decision_seed(episode_seed, decision):
    return splitmix64(np.uint64(episode_seed) ^ splitmix64(np.uint64(decision)))


# -- numpy-compatible summation ---------------------------------------------------------
@numba.njit(cache=True, error_model="numpy")
def _leaf(a, lo, n):
    # numpy's pairwise_sum for n <= 128: 8 running sums, combined as a tree, then the tail.
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    while i < n - (n % 8):
        j = lo + i
        r0 += a[j]
        r1 += a[j + 1]
        r2 += a[j + 2]
        r3 += a[j + 3]
        r4 += a[j + 4]
        r5 += a[j + 5]
        r6 += a[j + 6]
        r7 += a[j + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@numba.njit(cache=True, error_model="numpy")
def _pairwise(a, lo0, n0):
    """numpy's recursive halving (blocks > 128 split at a multiple of 8), run on explicit stacks
    (numba's on-disk cache does not resolve recursive functions called from other modules)."""
    if n0 <= 128:
        return _leaf(a, lo0, n0)
    los = np.empty(64, np.int64)
    ns = np.empty(64, np.int64)
    state = np.empty(64, np.int64)
    vals = np.empty(64, np.float64)
    sp = 0
    vp = 0
    los[0], ns[0], state[0] = lo0, n0, 0
    sp = 1
    while sp > 0:
        lo, n = los[sp - 1], ns[sp - 1]
        if n <= 128:
            vals[vp] = _leaf(a, lo, n)
            vp += 1
            sp -= 1
            continue
        n2 = n // 2
        n2 -= n2 % 8
        if state[sp - 1] == 0:
            state[sp - 1] = 1
            los[sp], ns[sp], state[sp] = lo, n2, 0
            sp += 1
        elif state[sp - 1] == 1:
            state[sp - 1] = 2
            los[sp], ns[sp], state[sp] = lo + n2, n - n2, 0
            sp += 1
        else:
            vals[vp - 2] = vals[vp - 2] + vals[vp - 1]
            vp -= 1
            sp -= 1
    return vals[0]


@numba.njit(cache=True, error_model="numpy")
def np_sum(a, n):
    """``a[:n].sum()`` with numpy's pairwise summation, so compiled sums match numpy bit for bit."""
    if n == 0:
        return 0.0
    return _pairwise(a, 0, n)


# -- selection --------------------------------------------------------------------------
@numba.njit(cache=True, error_model="numpy")
def sample_slots(slots, cnt, s, dseed, pin, pin_stamp, mark, mstamp, out, start):
    """Up to ``s`` pages of ``slots[:cnt]`` that are unpinned and not marked ``mstamp``, drawn by
    rejection (see the module docstring); marks them, writes them to ``out[start:]``, returns how many."""
    got = 0
    if s == 0 or cnt == 0:
        return 0
    tries = 64 * s
    i = 0
    while got < s and i < tries:
        # The SplitMix64 sequence seeded by dseed (state += γ), so nearby seeds give unrelated draws.
        z = splitmix64(dseed + np.uint64(i) * np.uint64(0x9E3779B97F4A7C15))
        i += 1
        q = slots[np.int64(((z >> np.uint64(32)) * np.uint64(cnt)) >> np.uint64(32))]
        if pin[q] != pin_stamp and mark[q] != mstamp:
            mark[q] = mstamp
            out[start + got] = q
            got += 1
    return got


@numba.njit(cache=True, error_model="numpy")
def sort_pages(pages, n, last_access, insert_step, tb, ka, kb):
    """Sort ``pages[:n]`` in place by ``(max(last_access, insert_step), tb)`` (``tb`` per page).

    Keys are read once into the scratch ``ka``/``kb`` (length >= n); the sort is an insertion sort
    for small ``n`` (the usual input is an already sorted LRU tail followed by a few sampled pages,
    so it runs in near-linear time), a stable two-pass argsort otherwise.
    """
    for i in range(n):
        p = pages[i]
        la = last_access[p]
        ins = insert_step[p]
        ka[i] = max(ins, la)
        kb[i] = tb[p]
    if n <= 64:
        for i in range(1, n):
            x, a, b = pages[i], ka[i], kb[i]
            j = i - 1
            while j >= 0 and (ka[j] > a or (ka[j] == a and kb[j] > b)):
                pages[j + 1], ka[j + 1], kb[j + 1] = pages[j], ka[j], kb[j]
                j -= 1
            pages[j + 1], ka[j + 1], kb[j + 1] = x, a, b
        return
    order = np.argsort(kb[:n], kind="mergesort")
    order = order[np.argsort(ka[:n][order], kind="mergesort")]
    tmp = pages[:n].copy()
    for i in range(n):
        pages[i] = tmp[order[i]]


# -- diagnostics: Belady's victim -------------------------------------------------------
@numba.njit(cache=True, error_model="numpy")
def next_use(p, pos, occ, occ_start, n):
    """Index of page ``p``'s first access after ``pos`` (``n`` if none); ``occ`` holds each page's
    access indices sorted, ``occ[occ_start[p]:occ_start[p+1]]``."""
    lo = occ_start[p]
    hi = occ_start[p + 1]
    while lo < hi:
        mid = (lo + hi) >> 1
        if occ[mid] <= pos:
            lo = mid + 1
        else:
            hi = mid
    return occ[lo] if lo < occ_start[p + 1] else n


@numba.njit(cache=True, error_model="numpy")
def belady_covered(elig, n_elig, sel, n_sel, pos, occ, occ_start, n):
    """1 if a page with the farthest next use among ``elig`` is among ``sel`` (Belady's choice is shown)."""
    best = -1
    for i in range(n_elig):
        u = next_use(elig[i], pos, occ, occ_start, n)
        best = max(best, u)
    for i in range(n_sel):
        if next_use(sel[i], pos, occ, occ_start, n) == best:
            return 1
    return 0


# -- features and context ---------------------------------------------------------------
@numba.njit(cache=True, error_model="numpy")
def _sq(x, tau):
    return x / (x + tau)


@numba.njit(cache=True, error_model="numpy")
def fill_features(out, cands, n, offset, phase, s, last_access, insert_step, freq, weight_sum, evict_step, regret,
                  tier_of, pending, size, layer, decode, alpha, beta, max_size, max_layer, backing):
    """Write rows ``offset .. offset+n`` of ``out`` (others zero) for pages ``cands[:n]``."""
    out[:, :] = 0.0
    nt = alpha.shape[0]
    for i in range(n):
        p = cands[i]
        r = i + offset
        la = last_access[p]
        ins = insert_step[p]
        if phase == 0:
            t = 1 if nt > 1 else 0
            last = max(ins, la)
        else:
            t = tier_of[p]
            if t < 0:
                t = backing
            last = la
        out[r, 0] = 1.0 if last < 0 else _sq(float(s - last), TAU_STEPS)
        out[r, 1] = _sq(float(freq[p]), TAU_FREQ)
        out[r, 2] = _sq(float(weight_sum[p]), TAU_WEIGHT)
        out[r, 3] = size[p] / max_size
        out[r, 4] = t / (nt - 1) if nt > 1 else 0.0
        out[r, 5] = _sq(alpha[t] + size[p] / beta[t] + decode[p], TAU_US)
        out[r, 6] = layer[p] / max_layer
        out[r, 7] = 1.0 if ins < 0 else _sq(float(s - ins), TAU_STEPS)
        out[r, 8] = _sq(float(regret[p]), TAU_REGRET)
        ev = evict_step[p]
        out[r, 9] = 1.0 if ev < 0 else _sq(float(s - ev), TAU_STEPS)
        out[r, 10] = 1.0 if pending[p] else 0.0


@numba.njit(cache=True, error_model="numpy")
def fill_context(out, used, caps, free, now, serial, pos, n_acc, step_bytes, misses, accesses, n_elig, k, phase,
                 kind):
    """Write the context vector (see module docstring); ``caps[t] < 0`` marks an unbounded tier."""
    nt = used.shape[0]
    for t in range(nt):
        out[t] = used[t] / caps[t] if caps[t] > 0 else 0.0
    for t in range(1, nt):
        b = 0.0
        if not serial:
            f = free[t, 0]
            for c in range(1, free.shape[1]):
                f = min(f, free[t, c])
            if f > now:
                b = _sq(f - now, TAU_US)
        out[nt + t - 1] = b
    j = 2 * nt - 1
    out[j] = (pos + 1) / n_acc if n_acc > 0 else 0.0
    out[j + 1] = min(1.0, step_bytes / caps[0]) if caps[0] > 0 else 0.0
    out[j + 2] = misses / accesses if accesses > 0 else 0.0
    out[j + 3] = n_elig / (n_elig + k)
    out[j + 4] = float(phase)
    out[j + 5] = float(kind)


# ===========================================================================================
# The state machine.
# ===========================================================================================
# Per-page int64 rows of ``pd`` (D_PREV/D_NEXT: tier 0's LRU-ordered list, see ``_observe``).
D_LAST, D_FREQ, D_INSS, D_EVS, D_REG, D_LRU, D_INSC, D_POSR, D_PIN, D_PEND, D_SEEN, D_MARK, D_PREV, D_NEXT = range(14)
N_D = 14
# Per-page static int64 rows of ``pg``.
G_SIZE, G_FP16, G_LAYER, G_SEQ, G_NEXT = range(5)
# Per-page float64 rows of ``pf`` (row F_SCR: scratch for a step's decode costs).
F_DEC, F_W, F_READY, F_SCR = range(4)
# Per-tier int64 rows of ``ti``.
T_CNT, T_USED, T_CAP, T_HITS, T_EVICT, T_LDEM, T_LPF, T_LDMT, T_PEAK = range(9)
N_T = 9
# Scalars (int64) in ``st``.
(S_POS, S_PHASE, S_SIDX, S_S, S_END, S_BEGIN, S_IN, S_SRC, S_KIND, S_NPF, S_MISS, S_INSC, S_DEC, S_STEPB, S_NSEL,
 S_NELIG, S_ERR, S_ERRP, S_RING, S_CUR, S_BEL, S_MARKC,
 S_ACC, S_HITS, S_MISSES, S_FULL, S_FIRST, S_STEPS, S_TOKENS, S_PFI, S_PFU, S_PFL, S_PFW,
 S_K, S_SAMPLE, S_SERIAL, S_BACKING, S_PFMODE, S_MAXPF, S_HORIZON, S_NACC, S_SEED, S_DIAG, S_RINGN, S_SEQOFF,
 S_HEAD, S_TAIL, S_PIN0, S_BYTES, S_CREATE) = range(50)
N_S = 52
# Float64 scalars in ``ck``.
(C_NOW, C_T0, C_ISSUE, C_READY, C_COMP, C_TOTAL, C_STALL, C_COMPUTE, C_TTOTAL,
 C_FLOOR, C_ATTN, C_HITBASE, C_MAXSIZE, C_MAXLAYER, C_TOT) = range(15)
N_C = 18  # C_TOT .. C_TOT + 2: stall µs, misses, bytes moved after the last call (for rewards)
# Phases of the resumable state machine.
PH_STEP, PH_ACCESS, PH_ROOM, PH_PFBEGIN, PH_PF, PH_DONE = range(6)
# Status codes returned by ``_advance`` / ``_act``.
DONE, EVICT, PREFETCH = 0, 1, 2
ERR_PINNED = -1


@numba.njit(cache=True, error_model="numpy")
def _add(p, t, pd, tier_of, res, ti, st, size):
    c = ti[T_CNT, t]
    res[t, c] = p
    pd[D_POSR, p] = c
    ti[T_CNT, t] = c + 1
    tier_of[p] = t
    pd[D_INSC, p] = st[S_INSC]
    st[S_INSC] += 1
    if t == 0:
        _append(p, pd, st)
    ti[T_USED, t] += size[p]
    ti[T_PEAK, t] = max(ti[T_PEAK, t], ti[T_USED, t])


@numba.njit(cache=True, error_model="numpy")
def _append(p, pd, st):
    # Tier 0 as a doubly linked list: a page moves to the tail whenever its recency key becomes
    # the current step (an access or an entry into tier 0), so the list is sorted by key.
    t = st[S_TAIL]
    pd[D_PREV, p] = t
    pd[D_NEXT, p] = -1
    if t >= 0:
        pd[D_NEXT, t] = p
    else:
        st[S_HEAD] = p
    st[S_TAIL] = p


@numba.njit(cache=True, error_model="numpy")
def _unlink(p, pd, st):
    a = pd[D_PREV, p]
    b = pd[D_NEXT, p]
    if a >= 0:
        pd[D_NEXT, a] = b
    else:
        st[S_HEAD] = b
    if b >= 0:
        pd[D_PREV, b] = a
    else:
        st[S_TAIL] = a


@numba.njit(cache=True, error_model="numpy")
def _remove(p, t, pd, tier_of, res, ti, st, size):
    if t == 0:
        _unlink(p, pd, st)
    i = pd[D_POSR, p]
    c = ti[T_CNT, t] - 1
    q = res[t, c]
    res[t, i] = q
    pd[D_POSR, q] = i
    ti[T_CNT, t] = c
    tier_of[p] = -1
    ti[T_USED, t] -= size[p]


@numba.njit(cache=True, error_model="numpy")
def _charge(src, dst, p, kind, ab, free, ck, st, size, pf):
    """A transfer; kind 0 demand, 1 prefetch, 2 demotion (see kvgym.sim.costs)."""
    a = ab[0, src, dst]
    b = ab[1, src, dst]
    if st[S_SERIAL]:
        ck[C_TOTAL] += (a + size[p] / b) + pf[F_DEC, p]
        return
    link = max(dst, src)
    ch = 0
    for c in range(1, free.shape[1]):
        if free[link, c] < free[link, ch]:
            ch = c
    start = max(ck[C_ISSUE], free[link, ch])
    fin = start + a + size[p] / b
    free[link, ch] = fin
    if kind == 0:
        ck[C_READY] = max(ck[C_READY], fin)
    elif kind == 1:
        pf[F_READY, p] = fin


@numba.njit(cache=True, error_model="numpy")
def _make_room_lower(t0, x0, pd, tier_of, res, ti, st, size, ab, free, ck, pf, stack):
    """Make room in tier ``t0 >= 1`` for page ``x0`` (LRU victims, cascading down). -1, or the tier that failed."""
    nt = ti.shape[1]
    depth = 0
    stack[0, 0] = t0
    stack[1, 0] = x0
    sidx = st[S_SIDX]
    while depth >= 0:
        t = stack[0, depth]
        x = stack[1, depth]
        if ti[T_USED, t] + size[x] <= ti[T_CAP, t]:
            depth -= 1
            if depth >= 0:  # x (evicted from t - 1) now fits in t: the engine's demotion
                _add(x, t, pd, tier_of, res, ti, st, size)
                _charge(t - 1, t, x, 2, ab, free, ck, st, size, pf)
                ti[T_LDMT, t] += size[x]
                st[S_BYTES] += size[x]
            continue
        v = -1
        for i in range(ti[T_CNT, t]):
            p = res[t, i]
            if pd[D_PIN, p] == sidx:
                continue
            if v < 0 or pd[D_LRU, p] < pd[D_LRU, v] or (pd[D_LRU, p] == pd[D_LRU, v] and pd[D_INSC, p] < pd[D_INSC, v]):
                v = p
        if v < 0:
            st[S_ERR] = t
            st[S_ERRP] = x
            return t
        _remove(v, t, pd, tier_of, res, ti, st, size)
        ti[T_EVICT, t] += 1
        if t + 1 < nt:
            depth += 1
            stack[0, depth] = t + 1
            stack[1, depth] = v
    return -1


@numba.njit(cache=True, error_model="numpy")
def _end_step(st, ck):
    if st[S_SERIAL]:
        ck[C_STALL] = ck[C_TOTAL]
        ck[C_TTOTAL] = ck[C_TOTAL]
    else:
        stall = ck[C_READY] - ck[C_T0]
        ck[C_STALL] += stall
        ck[C_COMPUTE] += ck[C_COMP]
        ck[C_NOW] = ck[C_T0] + stall + ck[C_COMP]
        ck[C_TTOTAL] = ck[C_NOW]


@numba.njit(cache=True, error_model="numpy")
def _walk(m, pd, st, out, buf, ka, kb, mstamp):
    """The ``m`` smallest ``(key, insertion)`` unpinned tier-0 pages not marked ``mstamp``, sorted, into
    ``out``; returns how many (< m only if fewer exist).

    The list is sorted by key, so walking from its head visits keys in order; pages sharing the
    m-th key are all collected into ``buf`` (their list order is access order, not insertion
    order) and the tie is settled by sorting. Costs O(m + pages skipped + that tie group).
    """
    sidx = st[S_SIDX]
    p = st[S_HEAD]
    n = 0
    km = -1
    while p >= 0:
        la = pd[D_LAST, p]
        ins = pd[D_INSS, p]
        key = max(ins, la)
        if n >= m and key > km:
            break
        if pd[D_PIN, p] != sidx and pd[D_MARK, p] != mstamp:
            buf[n] = p
            n += 1
            if n == m:
                km = key
        p = pd[D_NEXT, p]
    sort_pages(buf, n, pd[D_LAST], pd[D_INSS], pd[D_INSC], ka, kb)
    n = min(n, m)
    for i in range(n):
        out[i] = buf[i]
    return n


@numba.njit(cache=True, error_model="numpy")
def _observe(status, tr, pg, pf, pd, tier_of, res, ti, ab, free, ck, st, sc, occ, obs_c, obs_g, mask, sel):
    """Select candidates and write the observation for the pending decision."""
    k = st[S_K]
    s = st[S_S]
    size = pg[G_SIZE]
    mask[:] = 0
    if status == EVICT:
        n = ti[T_CNT, 0] - st[S_PIN0]  # eligible: unpinned tier-0 residents
        sample = st[S_SAMPLE]
        st[S_MARKC] += 1
        mstamp = st[S_MARKC]
        if n <= k:
            m = _walk(n, pd, st, sel, sc[1], sc[2], sc[3], mstamp)
        else:
            m = _walk(k - sample, pd, st, sel, sc[1], sc[2], sc[3], mstamp)
            for i in range(m):
                pd[D_MARK, sel[i]] = mstamp
            dseed = decision_seed(st[S_SEED], st[S_DEC])
            got = sample_slots(res[0], ti[T_CNT, 0], sample, dseed, pd[D_PIN], st[S_SIDX], pd[D_MARK], mstamp, sel, m)
            m += got
            if got < sample:  # too few eligible among the residents: extend the LRU tail
                m += _walk(sample - got, pd, st, sel[m:], sc[1], sc[2], sc[3], mstamp)
            sort_pages(sel, m, pd[D_LAST], pd[D_INSS], pd[D_INSC], sc[2], sc[3])
        st[S_NELIG] = n
        st[S_NSEL] = m
        if st[S_DIAG]:
            elig = sc[0]
            sidx = st[S_SIDX]
            ne = 0
            for i in range(ti[T_CNT, 0]):
                p = res[0, i]
                if pd[D_PIN, p] != sidx:
                    elig[ne] = p
                    ne += 1
            st[S_BEL] = belady_covered(elig, ne, sel, m, st[S_CUR], occ[0], occ[1], st[S_NACC])
        for i in range(m):
            mask[i] = 1
        offset = 0
        phase = 0
    else:
        m = st[S_NSEL]
        n = st[S_NELIG]
        mask[0] = 1
        for i in range(m):
            mask[i + 1] = 1
        offset = 1
        phase = 1
    fill_features(obs_c, sel, m, offset, phase, s, pd[D_LAST], pd[D_INSS], pd[D_FREQ], pf[F_W], pd[D_EVS],
                  pd[D_REG], tier_of, pd[D_PEND], size, pg[G_LAYER], pf[F_DEC], ab[2, 0], ab[3, 0],
                  ck[C_MAXSIZE], ck[C_MAXLAYER], st[S_BACKING])
    caps = ab[4, 0]
    fill_context(obs_g, ti[T_USED], caps, free, ck[C_NOW], st[S_SERIAL], st[S_CUR], st[S_NACC], st[S_STEPB],
                 st[S_MISSES], st[S_ACC], n, k, phase, 1 if (phase == 0 and st[S_KIND] == 1) else 0)


@numba.njit(cache=True, error_model="numpy")
def _pool_add(q, n, pd, tier_of, size, room, mk, sel):
    if q >= 0 and tier_of[q] != 0 and pd[D_MARK, q] != mk and size[q] <= room:
        pd[D_MARK, q] = mk
        sel[n] = q
        return n + 1
    return n


@numba.njit(cache=True, error_model="numpy")
def _prefetch_pool(tr, pg, pd, tier_of, ti, st, sel, ring, frontier):
    """Prefetch candidates into ``sel``; returns how many (at most k - 1).

    In order: the next token block of each page of the step; the most recent tier-0 victims;
    then blocks further ahead (2, 3, ... blocks after the step's pages).
    """
    k = st[S_K]
    size = pg[G_SIZE]
    nxt = pg[G_NEXT]
    room = ti[T_CAP, 0] - st[S_STEPB]
    st[S_MARKC] += 1
    mk = st[S_MARKC]
    n = 0
    page = tr[1]
    b0 = st[S_BEGIN]
    nb = st[S_END] - b0
    for j in range(nb):
        q = nxt[page[b0 + j]]
        frontier[j] = q
        if n < k - 1:
            n = _pool_add(q, n, pd, tier_of, size, room, mk, sel)
    rn = st[S_RINGN]
    r = st[S_RING] - 1
    stop = st[S_RING] - rn
    while r >= 0 and r >= stop and n < k - 1:
        n = _pool_add(ring[r % rn], n, pd, tier_of, size, room, mk, sel)
        r -= 1
    depth = 1
    while n < k - 1 and depth < k:
        depth += 1
        alive = False
        for j in range(nb):
            q = frontier[j]
            if q >= 0:
                q = nxt[q]
                frontier[j] = q
                if q >= 0:
                    alive = True
                    if n < k - 1:
                        n = _pool_add(q, n, pd, tier_of, size, room, mk, sel)
        if not alive:
            break
    return n


@numba.njit(cache=True, error_model="numpy")
def _advance(tr, w, pg, pf, pd, tier_of, res, ti, ab, free, ck, st, sc, occ, ring, obs_c, obs_g, mask, sel):
    """Run until the next decision; returns EVICT, PREFETCH, DONE or an error code (< 0)."""
    step = tr[0]
    page = tr[1]
    size = pg[G_SIZE]
    stack = sc[4:6]
    n_acc = st[S_NACC]
    backing = st[S_BACKING]
    while True:
        ph = st[S_PHASE]
        if ph == PH_STEP:
            pos = st[S_POS]
            if pos >= n_acc:
                # Engine.finish: prefetches still pending are wasted.
                for i in range(ti[T_CNT, 0]):
                    p = res[0, i]
                    if pd[D_PEND, p]:
                        pd[D_PEND, p] = 0
                        st[S_PFW] += 1
                st[S_PHASE] = PH_DONE
                return DONE
            s = step[pos]
            end = pos
            while end < n_acc and step[end] == s:
                end += 1
            st[S_SIDX] += 1
            sidx = st[S_SIDX]
            st[S_S] = s
            st[S_BEGIN] = pos
            st[S_END] = end
            st[S_STEPS] += 1
            st[S_MISS] = 0
            st[S_NPF] = 0
            seqoff = st[S_SEQOFF]
            n_layers = 0
            fp16sum = 0
            stepb = 0
            pin0 = 0
            dec = pf[F_SCR]
            for j in range(pos, end):
                p = page[j]
                dec[j - pos] = pf[F_DEC, p]
                q = pg[G_SEQ, p] + seqoff
                if sc[6, q] != sidx:
                    sc[6, q] = sidx
                    st[S_TOKENS] += 1
                if pd[D_PIN, p] != sidx:
                    pd[D_PIN, p] = sidx
                    fp16sum += pg[G_FP16, p]
                    stepb += size[p]
                    if tier_of[p] == 0:
                        pin0 += 1
                    lay = pg[G_LAYER, p]
                    if sc[6, lay] != sidx:
                        sc[6, lay] = sidx
                        n_layers += 1
            st[S_STEPB] = stepb
            st[S_PIN0] = pin0
            if not st[S_SERIAL]:
                ck[C_T0] = ck[C_NOW]
                ck[C_ISSUE] = ck[C_NOW]
                ck[C_READY] = ck[C_NOW]
                a = n_layers * ck[C_FLOOR]
                b = float(fp16sum) / ck[C_ATTN]
                ck[C_COMP] = (max(a, b)) + np_sum(dec, end - pos)
            st[S_PHASE] = PH_ACCESS
        elif ph == PH_ACCESS:
            pos = st[S_POS]
            if pos >= st[S_END]:
                if st[S_PFMODE]:
                    if not st[S_SERIAL]:
                        ck[C_ISSUE] = ck[C_READY]
                    st[S_PHASE] = PH_PF
                else:
                    _end_step(st, ck)
                    st[S_PHASE] = PH_STEP
                continue
            s = st[S_S]
            p = page[pos]
            st[S_CUR] = pos
            loc = tier_of[p]
            pd[D_LRU, p] = s  # the lower tiers' LRU on_access hook
            evs = pd[D_EVS, p]
            if evs >= 0 and s - evs <= st[S_HORIZON] and loc != 0:
                pd[D_REG, p] += 1
            pd[D_LAST, p] = s
            pd[D_FREQ, p] += 1
            pf[F_W, p] += w[pos]
            st[S_ACC] += 1
            if loc == 0:
                st[S_HITS] += 1
                ti[T_HITS, 0] += 1
                if st[S_TAIL] != p:
                    _unlink(p, pd, st)
                    _append(p, pd, st)
                if st[S_SERIAL]:
                    ck[C_TOTAL] += ck[C_HITBASE] + pf[F_DEC, p]
                else:
                    r = pf[F_READY, p]
                    if not np.isnan(r):
                        pf[F_READY, p] = np.nan
                        ck[C_READY] = max(ck[C_READY], r)
                        if r > ck[C_T0]:
                            st[S_PFL] += 1
                pd[D_SEEN, p] = 1
                if pd[D_PEND, p]:
                    pd[D_PEND, p] = 0
                    st[S_PFU] += 1
                st[S_POS] = pos + 1
                continue
            st[S_MISSES] += 1
            st[S_MISS] += 1
            if loc < 0:
                st[S_FULL] += 1
                first = not pd[D_SEEN, p]
                if first:
                    st[S_FIRST] += 1
                if first and st[S_CREATE]:
                    # first_touch="create": new KV is written straight into tier 0 (no source, no transfer).
                    st[S_IN] = p
                    st[S_SRC] = -1
                    st[S_KIND] = 0
                    st[S_PHASE] = PH_ROOM
                    continue
                bad = _make_room_lower(backing, p, pd, tier_of, res, ti, st, size, ab, free, ck, pf, stack)
                if bad >= 0:
                    return ERR_PINNED
                _add(p, backing, pd, tier_of, res, ti, st, size)
                pd[D_LRU, p] = s
                src = backing
            else:
                ti[T_HITS, loc] += 1
                src = loc
            _remove(p, src, pd, tier_of, res, ti, st, size)
            st[S_IN] = p
            st[S_SRC] = src
            st[S_KIND] = 0
            st[S_PHASE] = PH_ROOM
        elif ph == PH_ROOM:
            p = st[S_IN]
            if ti[T_USED, 0] + size[p] > ti[T_CAP, 0]:
                any_unpinned = False
                sidx = st[S_SIDX]
                for i in range(ti[T_CNT, 0]):
                    if pd[D_PIN, res[0, i]] != sidx:
                        any_unpinned = True
                        break
                if not any_unpinned:
                    st[S_ERR] = 0
                    st[S_ERRP] = p
                    return ERR_PINNED
                _observe(EVICT, tr, pg, pf, pd, tier_of, res, ti, ab, free, ck, st, sc, occ, obs_c, obs_g, mask, sel)
                return EVICT
            s = st[S_S]
            src = st[S_SRC]
            _add(p, 0, pd, tier_of, res, ti, st, size)
            pd[D_INSS, p] = s
            kind = st[S_KIND]
            if src >= 0:  # src -1: a created first touch moves nothing
                _charge(src, 0, p, kind, ab, free, ck, st, size, pf)
                if kind == 0:
                    ti[T_LDEM, src] += size[p]
                else:
                    ti[T_LPF, src] += size[p]
                st[S_BYTES] += size[p]
            if kind == 0:
                st[S_PIN0] += 1  # a demanded page stays pinned in tier 0 for the rest of the step
            pd[D_LRU, p] = s  # on_insert
            if kind == 0:
                pd[D_SEEN, p] = 1
                if pd[D_PEND, p]:
                    pd[D_PEND, p] = 0
                    st[S_PFU] += 1
                st[S_POS] += 1
                st[S_PHASE] = PH_ACCESS
            else:
                st[S_PHASE] = PH_PF
        elif ph == PH_PF:
            if st[S_MISS] > 0 and st[S_NPF] < st[S_MAXPF]:
                n = _prefetch_pool(tr, pg, pd, tier_of, ti, st, sel, ring, sc[0])
                if n > 0:
                    st[S_NSEL] = n
                    st[S_NELIG] = n
                    _observe(PREFETCH, tr, pg, pf, pd, tier_of, res, ti, ab, free, ck, st, sc, occ, obs_c, obs_g,
                             mask, sel)
                    return PREFETCH
            _end_step(st, ck)
            st[S_PHASE] = PH_STEP
        else:
            return DONE


@numba.njit(cache=True, error_model="numpy")
def _act(a, tr, w, pg, pf, pd, tier_of, res, ti, ab, free, ck, st, sc, occ, ring, obs_c, obs_g, mask, sel):
    """Apply action ``a`` to the pending decision (already validated), then advance."""
    nt = ti.shape[1]
    size = pg[G_SIZE]
    st[S_DEC] += 1
    if st[S_PHASE] == PH_ROOM:
        v = sel[a]
        _remove(v, 0, pd, tier_of, res, ti, st, size)
        ti[T_EVICT, 0] += 1
        pd[D_EVS, v] = st[S_S]
        pf[F_READY, v] = np.nan
        if pd[D_PEND, v]:
            pd[D_PEND, v] = 0
            st[S_PFW] += 1
        ring[st[S_RING] % st[S_RINGN]] = v
        st[S_RING] += 1
        if nt > 1:
            bad = _make_room_lower(1, v, pd, tier_of, res, ti, st, size, ab, free, ck, pf, sc[4:6])
            if bad >= 0:
                return ERR_PINNED
            _add(v, 1, pd, tier_of, res, ti, st, size)
            _charge(0, 1, v, 2, ab, free, ck, st, size, pf)
            ti[T_LDMT, 1] += size[v]
            st[S_BYTES] += size[v]
    else:  # prefetch phase: slot 0 ends it, slot i >= 1 prefetches sel[i - 1]
        if a == 0:
            _end_step(st, ck)
            st[S_PHASE] = PH_STEP
        else:
            c = sel[a - 1]
            st[S_NPF] += 1
            if tier_of[c] < 0:
                bad = _make_room_lower(st[S_BACKING], c, pd, tier_of, res, ti, st, size, ab, free, ck, pf, sc[4:6])
                if bad >= 0:
                    return ERR_PINNED
                _add(c, st[S_BACKING], pd, tier_of, res, ti, st, size)
                pd[D_LRU, c] = st[S_S]
            pd[D_PEND, c] = 1
            st[S_PFI] += 1
            src = tier_of[c]
            _remove(c, src, pd, tier_of, res, ti, st, size)
            st[S_IN] = c
            st[S_SRC] = src
            st[S_KIND] = 1
            st[S_PHASE] = PH_ROOM
    return _advance(tr, w, pg, pf, pd, tier_of, res, ti, ab, free, ck, st, sc, occ, ring, obs_c, obs_g, mask, sel)



# Layout header at the start of the int64 buffer: sizes, then the offsets of every part.
(H_NA, H_N, H_NT, H_NRES, H_W, H_WOCC, H_K, H_NPF, H_CH, H_KK, H_F, H_G,
 H_TR, H_PG, H_PD, H_RES, H_TI, H_ST, H_SC, H_OCC, H_RING, H_SEL,
 H_FW, H_FPF, H_FAB, H_FFREE, H_FCK) = range(27)
N_H = 32


@numba.njit(cache=True, error_model="numpy")
def _views(ib, fb, bb, ob):
    """Unpack the four flat buffers into the kernels' arrays (views, no copies)."""
    na, n, nt, nres, w, wocc = ib[H_NA], ib[H_N], ib[H_NT], ib[H_NRES], ib[H_W], ib[H_WOCC]
    k, npf, ch, kk, f, g = ib[H_K], ib[H_NPF], ib[H_CH], ib[H_KK], ib[H_F], ib[H_G]
    o = ib[H_TR]
    tr = ib[o:o + 2 * na].reshape((2, na))
    o = ib[H_PG]
    pg = ib[o:o + 5 * n].reshape((5, n))
    o = ib[H_PD]
    pd = ib[o:o + N_D * n].reshape((N_D, n))
    o = ib[H_RES]
    res = ib[o:o + nt * nres].reshape((nt, nres))
    o = ib[H_TI]
    ti = ib[o:o + N_T * nt].reshape((N_T, nt))
    o = ib[H_ST]
    st = ib[o:o + N_S]
    o = ib[H_SC]
    sc = ib[o:o + 7 * w].reshape((7, w))
    o = ib[H_OCC]
    occ = ib[o:o + 2 * wocc].reshape((2, wocc))
    o = ib[H_RING]
    ring = ib[o:o + 4 * k]
    o = ib[H_SEL]
    sel = ib[o:o + k]
    o = ib[H_FW]
    wt = fb[o:o + na]
    o = ib[H_FPF]
    pf = fb[o:o + 4 * npf].reshape((4, npf))
    o = ib[H_FAB]
    ab = fb[o:o + 5 * nt * nt].reshape((5, nt, nt))
    o = ib[H_FFREE]
    free = fb[o:o + nt * ch].reshape((nt, ch))
    o = ib[H_FCK]
    ck = fb[o:o + N_C]
    tier_of = bb[:n]
    mask = bb[n:n + kk]
    obs_c = ob[:kk * f].reshape((kk, f))
    obs_g = ob[kk * f:kk * f + g]
    return tr, wt, pg, pf, pd, tier_of, res, ti, ab, free, ck, st, sc, occ, ring, obs_c, obs_g, mask, sel


@numba.njit(cache=True, error_model="numpy")
def _totals(ck, st):
    ck[C_TOT] = ck[C_STALL]
    ck[C_TOT + 1] = st[S_MISSES]
    ck[C_TOT + 2] = st[S_BYTES]


@numba.njit(cache=True, error_model="numpy")
def _start_packed(ib, fb, bb, ob):
    tr, wt, pg, pf, pd, tier_of, res, ti, ab, free, ck, st, sc, occ, ring, obs_c, obs_g, mask, sel = _views(ib, fb, bb, ob)
    status = _advance(tr, wt, pg, pf, pd, tier_of, res, ti, ab, free, ck, st, sc, occ, ring, obs_c, obs_g, mask, sel)
    _totals(ck, st)
    return status


@numba.njit(cache=True, error_model="numpy")
def _act_packed(a, ib, fb, bb, ob):
    tr, wt, pg, pf, pd, tier_of, res, ti, ab, free, ck, st, sc, occ, ring, obs_c, obs_g, mask, sel = _views(ib, fb, bb, ob)
    status = _act(a, tr, wt, pg, pf, pd, tier_of, res, ti, ab, free, ck, st, sc, occ, ring, obs_c, obs_g, mask, sel)
    _totals(ck, st)
    return status


class _Buffers:
    """Allocates named parts inside one flat array per dtype; ``view(name)`` is a numpy view."""

    def __init__(self):
        self.parts: dict[str, tuple[str, int, tuple]] = {}
        self.size = {"i": N_H, "f": 0, "b": 0, "o": 0}

    def add(self, kind: str, name: str, shape: tuple) -> int:
        off = self.size[kind]
        self.parts[name] = (kind, off, shape)
        self.size[kind] = off + int(np.prod(shape))
        return off

    def build(self):
        dt = {"i": np.int64, "f": np.float64, "b": np.int8, "o": np.float32}
        self.buf = {k: np.zeros(max(1, v), dt[k]) for k, v in self.size.items()}
        return self.buf

    def view(self, name: str) -> np.ndarray:
        kind, off, shape = self.parts[name]
        return self.buf[kind][off:off + int(np.prod(shape))].reshape(shape)


def next_blocks(pages) -> np.ndarray:
    """``next[p]``: the page holding the token block right after ``p`` (same sequence and layer), or -1."""
    n = len(pages)
    nxt = np.full(n, -1, np.int64)
    if n == 0:
        return nxt
    order = np.lexsort((pages.token_start, pages.layer, pages.seq))
    a, b = order[:-1], order[1:]
    same = (pages.seq[a] == pages.seq[b]) & (pages.layer[a] == pages.layer[b]) & (pages.token_end[a] == pages.token_start[b])
    nxt[a[same]] = b[same]
    return nxt


def occurrences(page: np.ndarray, n_pages: int) -> np.ndarray:
    """``[occ, starts]`` packed: each page's access indices, sorted (for next-use look-ups)."""
    order = np.argsort(page, kind="stable").astype(np.int64)
    starts = np.zeros(n_pages + 1, np.int64)
    np.cumsum(np.bincount(page, minlength=n_pages), out=starts[1:])
    return order, starts


class CompiledSim:
    """One episode on the compiled core. ``start()`` then ``act(a)`` until ``DONE``.

    ``obs_c``, ``obs_g`` and ``mask`` hold the pending decision's observation; ``sel[:n_sel]`` the
    presented pages (prefetch phase: slot i >= 1 is ``sel[i - 1]``).
    """

    def __init__(self, setup: Setup, step: np.ndarray, page: np.ndarray, weight, *, k: int, sample: int,
                 prefetch_decisions: bool, seed: int, regret_horizon: int, diagnostics: bool,
                 obs_shapes: tuple[tuple[int, int], int]):
        tiers = setup.tiers
        nt = len(tiers)
        n = len(setup.page_bytes)
        na = len(page)
        self.setup = setup
        pages = setup.pages
        (kk, f), g = obs_shapes
        n_layers = int(pages.layer.max()) + 1 if n else 1
        n_seq = int(pages.seq.max()) + 1 if n else 1
        # Longest decode step (accesses): bounds the per-step scratch, so memory stays O(pages + accesses).
        cuts = np.flatnonzero(np.diff(np.asarray(step))) + 1 if na else np.zeros(0, np.int64)
        max_step = int(np.diff(np.r_[0, cuts, na]).max()) if na else 1
        npf = max(n, max_step, 1)
        nres = max(n, 1)
        width = max(n, max_step, n_layers + n_seq, k, nt + 1, 1)
        wocc = max(na, n + 1) if diagnostics else 1
        ch = max(t.channels for t in tiers)
        B = _Buffers()
        for name, shape in (("tr", (2, na)), ("pg", (5, n)), ("pd", (N_D, n)), ("res", (nt, nres)),
                            ("ti", (N_T, nt)), ("st", (N_S,)), ("sc", (7, width)), ("occ", (2, wocc)),
                            ("ring", (4 * k,)), ("sel", (k,))):
            B.add("i", name, shape)
        for name, shape in (("w", (na,)), ("pf", (4, npf)), ("ab", (5, nt, nt)), ("free", (nt, ch)), ("ck", (N_C,))):
            B.add("f", name, shape)
        B.add("b", "tier_of", (n,))
        B.add("b", "mask", (kk,))
        B.add("o", "obs_c", (kk, f))
        B.add("o", "obs_g", (g,))
        buf = B.build()
        self.ib, self.fb, self.bb, self.ob = buf["i"], buf["f"], buf["b"], buf["o"]
        hdr = self.ib
        hdr[[H_NA, H_N, H_NT, H_NRES, H_W, H_WOCC, H_K, H_NPF, H_CH, H_KK, H_F, H_G]] = \
            [na, n, nt, nres, width, wocc, k, npf, ch, kk, f, g]
        for h, name in ((H_TR, "tr"), (H_PG, "pg"), (H_PD, "pd"), (H_RES, "res"), (H_TI, "ti"), (H_ST, "st"),
                        (H_SC, "sc"), (H_OCC, "occ"), (H_RING, "ring"), (H_SEL, "sel"), (H_FW, "w"),
                        (H_FPF, "pf"), (H_FAB, "ab"), (H_FFREE, "free"), (H_FCK, "ck")):
            hdr[h] = B.parts[name][1]
        v = B.view
        self.tr, self.w, self.pg, self.pf, self.pd = v("tr"), v("w"), v("pg"), v("pf"), v("pd")
        self.res, self.ti, self.st, self.sc, self.occ = v("res"), v("ti"), v("st"), v("sc"), v("occ")
        self.ring, self.sel, self.ab, self.free, self.ck = v("ring"), v("sel"), v("ab"), v("free"), v("ck")
        self.tier_of, self.mask, self.obs_c, self.obs_g = v("tier_of"), v("mask"), v("obs_c"), v("obs_g")
        self._tot = self.ck[C_TOT:C_TOT + 3]
        self._bufs = (self.ib, self.fb, self.bb, self.ob)
        self.tr[0] = step
        self.tr[1] = page
        if weight is not None:
            self.w[:] = weight
        pg = self.pg
        pg[G_SIZE] = setup.page_bytes
        pg[G_FP16] = pages.fp16_bytes
        pg[G_LAYER] = pages.layer
        pg[G_SEQ] = pages.seq
        pg[G_NEXT] = next_blocks(pages) if prefetch_decisions else -1
        pf = self.pf
        pf[F_DEC, :n] = setup.decode_us
        pf[F_READY] = np.nan
        self.pd[[D_LAST, D_INSS, D_EVS, D_LRU, D_INSC, D_PREV, D_NEXT]] = -1
        self.tier_of[:] = -1
        ti = self.ti
        imax = np.iinfo(np.int64).max
        ti[T_CAP] = [t.capacity_bytes if t.capacity_bytes is not None else imax for t in tiers]
        # ab[0|1, src, dst]: α µs, β bytes/µs of a transfer; ab[2|3, 0, t]: α, β of a promotion from t
        # (the features' refetch cost; tier 0 itself: 0 and inf); ab[4, 0, t]: capacity (< 0 unbounded).
        ab = self.ab
        ab[1] = 1.0
        for a in range(nt):
            for b in range(nt):
                if a != b:
                    ab[0, a, b], ab[1, a, b] = transfer_alpha_beta(tiers[a], tiers[b])
        ab[2, 0] = [0.0] + [transfer_alpha_beta(t, tiers[0])[0] for t in tiers[1:]]
        ab[3, 0] = [np.inf] + [transfer_alpha_beta(t, tiers[0])[1] for t in tiers[1:]]
        ab[4, 0, :] = [t.capacity_bytes if t.capacity_bytes is not None else -1 for t in tiers]
        for i, t in enumerate(tiers):
            self.free[i, t.channels:] = np.inf
        ck = self.ck
        ck[C_FLOOR] = setup.compute.layer_floor_us
        ck[C_ATTN] = setup.compute.attention_bytes_per_us
        ck[C_HITBASE] = tiers[0].read_latency_us
        ck[C_MAXSIZE] = float(setup.page_bytes.max()) if n else 1.0
        ck[C_MAXLAYER] = float(max(1, n_layers - 1))
        st = self.st
        st[S_K] = k
        st[S_SAMPLE] = sample
        st[S_SERIAL] = setup.scenario.cost_model == "serial"
        st[S_BACKING] = setup.backing
        st[S_PFMODE] = 1 if prefetch_decisions else 0
        st[S_MAXPF] = setup.scenario.max_prefetch
        st[S_HORIZON] = regret_horizon
        st[S_NACC] = na
        st[S_SEED] = seed
        st[S_DIAG] = 1 if diagnostics else 0
        st[S_RINGN] = 4 * k
        st[S_BEL] = -1
        st[S_SEQOFF] = n_layers
        st[S_CREATE] = 1 if getattr(setup.scenario, "first_touch", "backing") == "create" else 0
        st[S_HEAD] = st[S_TAIL] = -1
        # sc rows: 0 eligible pages / prefetch frontier, 1 walk buffer, 2-3 sort keys, 4-5 demotion
        # stack, 6 layer and sequence marks (stamped with the step counter).
        self.sc[6] = -1
        if diagnostics:
            o, s0 = occurrences(self.tr[1], n)
            self.occ[0, :na] = o
            self.occ[1, :n + 1] = s0
        self.status = None

    def start(self) -> int:
        self.status = self._check(_start_packed(self.ib, self.fb, self.bb, self.ob))
        return self.status

    def act(self, a: int) -> int:
        self.status = status = _act_packed(a, *self._bufs)
        if status < 0:
            self._check(status)
        return status

    def _check(self, status: int) -> int:
        if status < 0:
            t = int(self.st[S_ERR])
            raise SimulationError(
                f"tier {t} ({self.setup.tiers[t].name!r}) cannot make room for page {int(self.st[S_ERRP])} at step "
                f"{int(self.st[S_S])}: every resident is pinned by this step")
        return status

    # -- reads for the env ----------------------------------------------------------------
    @property
    def n_sel(self) -> int:
        return int(self.st[S_NSEL])

    @property
    def n_eligible(self) -> int:
        return int(self.st[S_NELIG])

    @property
    def step(self) -> int:
        return int(self.st[S_S])

    @property
    def pos(self) -> int:
        return int(self.st[S_CUR])

    def eligible(self) -> np.ndarray:
        """Every eligible victim of the pending eviction decision, in tier-0 insertion order."""
        r = self.res[0, : self.ti[T_CNT, 0]]
        r = r[self.pd[D_PIN, r] != self.st[S_SIDX]]
        return r[np.argsort(self.pd[D_INSC, r], kind="stable")].copy()

    def belady_covered(self) -> int:
        return int(self.st[S_BEL])

    def totals(self) -> list[float]:
        """[stall µs, misses, bytes moved] so far, for rewards (written by the kernel after each call)."""
        return self._tot.tolist()

    @property
    def accesses(self) -> int:
        return int(self.st[S_ACC])

    def metrics(self) -> Metrics:
        st, ti, ck = self.st, self.ti, self.ck
        m = Metrics(ti.shape[1], accesses=int(st[S_ACC]), hits=int(st[S_HITS]), misses=int(st[S_MISSES]),
                    full_misses=int(st[S_FULL]), first_touch_misses=int(st[S_FIRST]), steps=int(st[S_STEPS]),
                    tokens=int(st[S_TOKENS]), prefetch_issued=int(st[S_PFI]), prefetch_useful=int(st[S_PFU]),
                    prefetch_late=int(st[S_PFL]), prefetch_wasted=int(st[S_PFW]))
        m.tier_hits = [int(x) for x in ti[T_HITS]]
        m.evictions = [int(x) for x in ti[T_EVICT]]
        m.link_bytes_demand = [int(x) for x in ti[T_LDEM]]
        m.link_bytes_prefetch = [int(x) for x in ti[T_LPF]]
        m.link_bytes_demotion = [int(x) for x in ti[T_LDMT]]
        m.peak_bytes = [int(x) for x in ti[T_PEAK]]
        m.stall_us = float(ck[C_STALL])
        m.compute_us = float(ck[C_COMPUTE])
        m.total_time_us = float(ck[C_TTOTAL])
        return m

    def used(self) -> np.ndarray:
        return self.ti[T_USED].copy()

    def residents(self, t: int) -> np.ndarray:
        return self.res[t, : self.ti[T_CNT, t]].copy()

