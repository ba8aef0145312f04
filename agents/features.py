"""The agents' own observation: per-page history features and a short sequence context.

The env's candidate features (:mod:`kvgym.envs.observation`) are squashed with fixed time
constants (16 steps, 100 µs): on the toy patterns they never vary (``attention``, ``layer``,
``size``, ``refetch_cost`` are constant) and on real traces they sit far outside that range.
The features here are computed in Python (numba) from the episode's accesses **before** the
decision (``tests/test_agents.py`` changes the future and checks they do not move), and are
*scale-free*: every time is a log-ratio to the trace's own reuse time scale.

**Time scale.** ``τ`` = mean of ``log(1 + reuse gap)`` (in decode steps) over the reuses among
the last :data:`WINDOW` accesses. A time ``Δ`` (steps) enters as ``z(Δ) = (log(1 + Δ) - τ) / 4``.

**Per candidate** (:data:`FEATURES`; LRB's and Parrot's per-object history):

====================  ====================================================================
name                  definition
====================  ====================================================================
rec                   z(steps since its last access)
gap_1 .. gap_8        z of its last 8 inter-access gaps, most recent first (0 where missing)
gap_mean, gap_std     mean and std of log(1 + gap) over its last 32 gaps (mean as a z; 0 if none)
gap_n                 number of those gaps / 32
due                   (log(1 + since last) - log(1 + last gap)) / 4, clipped to [-2, 2]: > 0 once
                      its usual gap has elapsed (0 if read once)
freq                  log(1 + accesses) / (1 + log(1 + accesses))
decay_2/16/128        log(1 + c_h) / 4, c_h = Σ 2^(-(now - t_i) / h) over its past accesses t_i
                      (exponentially decayed counters, half-lives h steps)
mass_last, mass_mean  √ of its attention weight at its last access and mean over its accesses (0
                      without weights)
layer                 layer / (layers - 1) (0 with one layer): where in a step it is read
layer_rank            rank of its last access among the shown candidates of its layer (0 oldest,
                      1 newest; 0.5 alone): per-layer recency
newest_dist           log(1 + blocks between it and the newest block of its sequence and layer
                      read so far) / 4: position relative to the newest block
rel_pos               (block + 1) / (newest block + 1)
first_block           1 for the sequence's first block (an attention sink, a shared prefix head)
block_index           log(1 + block index) / 8 (prefix position in a block stream)
regret, evicted       the env's ``regret`` feature, and 1 if it was ever evicted from tier 0
====================  ====================================================================

**Context** (:data:`CONTEXT`, the short sequence context over the last :data:`WINDOW`
accesses): ``τ / (1 + τ)``, first-touch share, share of reuses within one step, share of the
current step already processed, accesses per step ``a / (a + 32)``, whether the trace has
weights, whether it has several layers, and the env's miss rate, pressure and eligible share.

:class:`FeatureTracker` builds the per-episode arrays at the first decision of an episode
(O(n log n)) and answers each decision in O(k log n).
"""

from __future__ import annotations

import numba
import numpy as np

G_RAW, G_SUM, WINDOW = 8, 32, 2048
HALF_LIVES = (2.0, 16.0, 128.0)
FEATURES = ("rec", *(f"gap_{i}" for i in range(1, G_RAW + 1)), "gap_mean", "gap_std", "gap_n", "due", "freq",
            "decay_2", "decay_16", "decay_128", "mass_last", "mass_mean", "layer", "layer_rank", "newest_dist",
            "rel_pos", "first_block", "block_index", "regret", "evicted")
CONTEXT = ("tau", "first_share", "short_reuse", "step_done", "per_step", "has_weight", "layers", "miss_rate",
           "pressure", "eligible")
N_FEATURES, N_CONTEXT = len(FEATURES), len(CONTEXT)
#: The env's features and context entries read here (by name, :mod:`kvgym.envs.observation`).
ENV_FEATURES = ("regret", "evicted_ago")
ENV_CONTEXT = ("miss_rate", "pressure", "eligible")


class EpisodeArrays:
    """Everything :func:`_rows` needs about one episode, computed once (O(n log n))."""

    def __init__(self, step: np.ndarray, page: np.ndarray, weight, pages):
        step = np.ascontiguousarray(step, np.int64)
        page = np.ascontiguousarray(page, np.int64)
        n, n_pages = len(page), len(pages)
        self.n = n
        self.step = step
        order = np.argsort(page, kind="stable").astype(np.int64)
        self.order = order  # accesses sorted by (page, position)
        self.start = np.zeros(n_pages + 1, np.int64)
        np.cumsum(np.bincount(page, minlength=n_pages), out=self.start[1:])
        self.sstep = step[order]
        self.has_weight = weight is not None
        w = np.zeros(n, np.float64) if weight is None else np.asarray(weight, np.float64)
        self.sw = w[order]
        self.decay = _decayed(self.sstep, self.start, np.asarray(HALF_LIVES))
        self.cumw = _segment_cumsum(self.sw, self.start)
        # Groups (sequence, layer) and blocks, for the newest block read so far in each group.
        layer = np.asarray(pages.layer, np.int64)
        self.n_layers = int(layer.max()) + 1 if n_pages else 1
        seq = np.asarray(pages.seq, np.int64)
        span = np.maximum(np.asarray(pages.token_end, np.int64) - np.asarray(pages.token_start, np.int64), 1)
        self.block = np.asarray(pages.token_start, np.int64) // span
        self.layer = layer
        _, group = np.unique(seq * self.n_layers + layer, return_inverse=True)
        self.group = group.astype(np.int64).ravel()
        g_acc = self.group[page]
        order2 = np.lexsort((np.arange(n), g_acc)).astype(np.int64)
        self.gkeys = g_acc[order2] * (n + 1) + order2
        b_acc = self.block[page][order2]
        self.gmax = np.maximum.accumulate(g_acc[order2] * (1 << 40) + b_acc) - g_acc[order2] * (1 << 40)
        # Per-position prefix counts for the context (over accesses before a position).
        prev = np.full(n, -1, np.int64)
        same = np.zeros(n, bool)
        same[1:] = page[order[1:]] == page[order[:-1]]
        prev[order[1:][same[1:]]] = order[:-1][same[1:]]
        gap = np.where(prev >= 0, step - step[np.maximum(prev, 0)], -1)
        self.c_loggap = np.concatenate(([0.0], np.cumsum(np.where(gap >= 0, np.log1p(np.maximum(gap, 0)), 0.0))))
        self.c_reuse = np.concatenate(([0], np.cumsum(gap >= 0)))
        self.c_short = np.concatenate(([0], np.cumsum((gap >= 0) & (gap <= 1))))
        b = np.concatenate(([0], np.flatnonzero(np.diff(step)) + 1, [n])).astype(np.int64)
        self.step_bounds = b

    def rows(self, cands: np.ndarray, pos: int, now: int, tau: float) -> np.ndarray:
        """The history features of pages ``cands`` at position ``pos`` (step ``now``): :data:`FEATURES`
        without the env's last two columns (left 0)."""
        out = np.zeros((len(cands), N_FEATURES), np.float64)
        _rows(np.asarray(cands, np.int64), pos, now, tau, self.order, self.start, self.sstep, self.sw, self.decay,
              self.cumw, np.asarray(HALF_LIVES), self.block, self.layer, self.n_layers, self.group, self.gkeys,
              self.gmax, self.n, out)
        return out

    def context(self, pos: int, env_ctx: np.ndarray) -> tuple[np.ndarray, float]:
        """The context entries of :data:`CONTEXT` at ``pos`` and the time scale τ."""
        lo = max(0, pos - WINDOW)
        m = pos - lo
        reuses = int(self.c_reuse[pos] - self.c_reuse[lo])
        tau = (self.c_loggap[pos] - self.c_loggap[lo]) / reuses if reuses else 0.0
        first = (m - reuses) / m if m else 1.0
        short = (self.c_short[pos] - self.c_short[lo]) / reuses if reuses else 0.0
        b = self.step_bounds
        i = int(np.searchsorted(b, pos, side="right")) - 1
        s0, s1 = int(b[i]), int(b[min(i + 1, len(b) - 1)])
        done = (pos - s0) / max(1, s1 - s0)
        steps_seen = max(1, int(self.step[max(pos - 1, 0)] - self.step[lo]) + 1) if pos else 1
        per_step = m / steps_seen if m else 1.0
        out = np.array([tau / (1.0 + tau), first, short, done, per_step / (per_step + 32.0), float(self.has_weight),
                        float(self.n_layers > 1), *env_ctx], np.float32)
        return out, tau


@numba.njit(cache=True)
def _decayed(sstep, start, half):
    """``d[j, h]``: Σ over the page's accesses up to sorted index ``j`` of ``2^(-(t_j - t_i) / half[h])``."""
    n, H = len(sstep), len(half)
    d = np.zeros((n, H))
    for p in range(len(start) - 1):
        for j in range(start[p], start[p + 1]):
            for h in range(H):
                if j == start[p]:
                    d[j, h] = 1.0
                else:
                    d[j, h] = d[j - 1, h] * 2.0 ** (-(sstep[j] - sstep[j - 1]) / half[h]) + 1.0
    return d


@numba.njit(cache=True)
def _segment_cumsum(x, start):
    out = np.zeros(len(x))
    for p in range(len(start) - 1):
        acc = 0.0
        for j in range(start[p], start[p + 1]):
            acc += x[j]
            out[j] = acc
    return out


@numba.njit(cache=True)
def _first_at_least(a, lo, hi, x):
    """The first index in ``[lo, hi)`` with ``a[i] >= x`` (``a`` ascending there), else ``hi``."""
    while lo < hi:
        mid = (lo + hi) // 2
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True)
def _rows(cands, pos, now, tau, order, start, sstep, sw, decay, cumw, half, block, layer, n_layers, group, gkeys,
          gmax, n, out):
    """Fill ``out[i]`` with the history features (:data:`FEATURES` minus the env's last two) of page
    ``cands[i]`` at episode position ``pos`` (decode step ``now``); only accesses before ``pos``."""
    k = len(cands)
    last = np.full(k, -1, np.int64)
    for i in range(k):
        p = cands[i]
        row = out[i]
        row[:] = 0.0
        a, b = start[p], start[p + 1]
        # Last sorted index of page p with position < pos (positions ascend within a segment).
        j = _first_at_least(order, a, b, pos) - 1
        if j < a:
            row[0] = 2.0  # never read before: as stale as it gets
            continue
        t = sstep[j]
        last[i] = t
        row[0] = (np.log1p(now - t) - tau) / 4.0
        ng = min(j - a, G_SUM)
        s1 = 0.0
        s2 = 0.0
        for g in range(ng):
            lg = np.log1p(sstep[j - g] - sstep[j - g - 1])
            if g < G_RAW:
                row[1 + g] = (lg - tau) / 4.0
            s1 += lg
            s2 += lg * lg
        if ng > 0:
            mu = s1 / ng
            row[1 + G_RAW] = (mu - tau) / 4.0
            row[2 + G_RAW] = np.sqrt(max(s2 / ng - mu * mu, 0.0)) / 4.0
            d = (np.log1p(now - t) - np.log1p(sstep[j] - sstep[j - 1])) / 4.0
            row[4 + G_RAW] = min(2.0, max(-2.0, d))
        row[3 + G_RAW] = ng / G_SUM
        c = j - a + 1
        lc = np.log1p(c)
        row[5 + G_RAW] = lc / (1.0 + lc)
        for h in range(len(half)):
            row[6 + G_RAW + h] = np.log1p(decay[j, h] * 2.0 ** (-(now - t) / half[h])) / 4.0
        q = 6 + G_RAW + len(half)
        row[q] = np.sqrt(max(sw[j], 0.0))
        row[q + 1] = np.sqrt(max(cumw[j] / c, 0.0))
        row[q + 2] = layer[p] / (n_layers - 1) if n_layers > 1 else 0.0
        # newest block of its (sequence, layer) among accesses before pos
        jj = _first_at_least(gkeys, 0, len(gkeys), group[p] * (n + 1) + pos) - 1
        newest = block[p]
        if jj >= 0 and gkeys[jj] // (n + 1) == group[p]:
            newest = max(newest, gmax[jj])
        dist = newest - block[p]
        row[q + 4] = np.log1p(dist) / 4.0
        row[q + 5] = (block[p] + 1.0) / (newest + 1.0)
        row[q + 6] = 1.0 if block[p] == 0 else 0.0
        row[q + 7] = np.log1p(block[p]) / 8.0
    # per-layer recency rank among the shown candidates
    q = 6 + G_RAW + len(half) + 3
    for i in range(k):
        same = 0
        older = 0
        for m in range(k):
            if m != i and layer[cands[m]] == layer[cands[i]]:
                same += 1
                if last[m] < last[i] or (last[m] == last[i] and m < i):
                    older += 1
        out[i, q] = older / same if same > 0 else 0.5


class FeatureTracker:
    """Per-env helper: rebuilds :class:`EpisodeArrays` when a new episode starts, then augments observations."""

    def __init__(self):
        self._sim = None
        self.arrays: EpisodeArrays | None = None
        self._fi = self._ci = None

    def _bind(self, u) -> None:
        step, page = u.episode_accesses()
        weight, pages = u.episode_context()
        self.arrays = EpisodeArrays(step, page, weight, pages)
        names = list(u.feature_names)
        self._fi = [names.index(n) for n in ENV_FEATURES]
        cn = list(u.context_names)
        self._ci = [cn.index(n) for n in ENV_CONTEXT]

    def observe(self, env, obs: dict) -> dict:
        """``{"candidates": [K, N_FEATURES], "context": [N_CONTEXT], "action_mask": [K]}`` for the pending
        decision (zeros for a prefetch or terminal observation)."""
        u = env.unwrapped
        mask = np.asarray(obs["action_mask"])
        k = len(mask)
        cand = np.zeros((k, N_FEATURES), np.float32)
        ctx = np.zeros(N_CONTEXT, np.float32)
        if u.phase != "evict":
            return {"candidates": cand, "context": ctx, "action_mask": mask}
        sim = u._sim
        if sim is not self._sim:
            self._sim = sim
            self._bind(u)
        A = self.arrays
        pages = u.candidate_pages()
        valid = np.flatnonzero(pages >= 0)
        pos = u.position
        env_ctx = np.asarray(obs["context"], np.float32)[self._ci]
        ctx[:], tau = A.context(pos, env_ctx)
        if len(valid):
            rows = A.rows(pages[valid], pos, u.sim_step, tau)
            envf = np.asarray(obs["candidates"], np.float32)[valid]
            rows[:, -2] = envf[:, self._fi[0]]
            rows[:, -1] = (envf[:, self._fi[1]] < 1.0).astype(np.float64)
            cand[valid] = rows
        return {"candidates": cand, "context": ctx, "action_mask": mask}
