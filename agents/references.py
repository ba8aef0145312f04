"""Generator-aware references: policies that know a synthetic generator's law, not its draws.

A reference evicts the candidate with the **largest expected next-use time** given the
generator's rule and parameters and the accesses seen so far (never the future): what an online
policy could at best do if it had learned the generator exactly. It shows how much of the
LRU-to-Belady gap is reachable at all (Belady also knows the random draws), and the benchmark
reports each agent's share of it (``pooled`` gap closed with the reference in place of Belady).

Expected next use, in steps, from per-step access probabilities ``q(p, τ)`` over the next ``H``
steps: ``E = Σ_τ Π_{s<τ} (1 - q(p, s))`` (plus the tail beyond ``H`` at the last cycle's mean
rate); one-access-per-step patterns only. Defined for:

- the toy patterns (family ``e``): ``periodic_reuse``, ``prefetch_friendly`` (deterministic
  cycles: the reference is Belady), ``long_tail_mix`` (independent draws: ``1 / p``),
  ``rag_burst``, ``adversarial_burst`` (rounds of uniform draws, distinct within a round; the
  repeated anchors are known once seen), ``mixed_locality`` (the phase schedule),
  ``adversarial_prefetch`` (alternating halves), ``chat_continuation`` (the posterior that a page
  is still in the working set's recent slots, from the replacement events since it was last
  seen and the steps it went unread);
- ``streaming`` (family ``d``): sinks and a sliding window are deterministic (next use exact).

Not defined (``None``), and why: ``heavy_hitter`` and ``retrieval``: every candidate is a page
outside the current step's heavy set, window, sinks and burst (those are pinned), and the law
draws the next heavy page or burst region uniformly among exactly such pages, so all candidates
have the same expected next use and the reference is only its tie-break; ``topk_drift``: the
next use depends on the drawn page keys (relevance), which is the draw itself.
"""

from __future__ import annotations

import json

import numpy as np

from kvgym.sim.policy import Policy

HORIZON = 512
FAR = 1e9


def _params(name: str, params: dict) -> dict:
    from kvgym.workloads import workloads

    return {**workloads()[name].defaults, **params}


class _Law(Policy):
    """Scores = minus the expected next-use time (steps) of each candidate; subclasses give ``q``."""

    name = "reference"

    def __init__(self, p: dict, n_pages: int):
        self.p = p
        self.n_pages = n_pages

    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.last = np.full(ctx.n_pages, -1, np.int64)
        self.hist: list[int] = []  # page of each step so far (one access per step)

    def on_access(self, page: int, tier: int, step: int) -> None:
        self.last[page] = step
        self.hist.append(int(page))

    def q(self, cands: np.ndarray, t: int, taus: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def expected(self, cands: np.ndarray, t: int) -> np.ndarray:
        taus = np.arange(t + 1, t + 1 + HORIZON)
        q = np.clip(self.q(cands, t, taus), 0.0, 1.0)
        surv = np.cumprod(1.0 - q, axis=1)
        e = 1.0 + surv[:, :-1].sum(axis=1)
        rate = q[:, -min(HORIZON, 64):].mean(axis=1)
        tail = np.where(rate > 0, 1.0 / np.maximum(rate, 1e-12), FAR)
        return e + surv[:, -1] * tail

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        return -self.expected(np.asarray(cands, np.int64), int(step))


class PeriodicReuse(_Law):
    def q(self, cands, t, taus):
        n, period, stride = self.p["num_pages"], self.p["period"], self.p["stride"]
        pages = (taus % period) * stride % n
        return (pages[None, :] == cands[:, None]).astype(float)


class PrefetchFriendly(_Law):
    def q(self, cands, t, taus):
        return ((taus % self.p["num_pages"])[None, :] == cands[:, None]).astype(float)


class LongTailMix(_Law):
    def q(self, cands, t, taus):
        hot, n, share, s = self.p["hot_pages"], self.p["num_pages"], self.p["hot_share"], self.p["zipf_s"]
        w = 1.0 / np.arange(1, n - hot + 1, dtype=np.float64) ** s
        prob = np.concatenate([np.full(hot, share / hot), (1 - share) * w / w.sum()])
        return np.repeat(prob[cands][:, None], len(taus), axis=1)


def _distinct_slot_prob(cands, t, taus, in_pool, slot_index, pool_size, round_len, round_start_of, hist):
    """Per-slot probability for draws that are distinct within a round: at the ``m``-th draw of the
    round's segment (``slot_index(τ) = m``, ``-1`` outside it), a page of the pool not drawn yet in
    that round is drawn with probability ``1 / (pool_size - m)``; a page already drawn in the
    current round (seen at or before ``t``) is not drawn again in it."""
    q = np.zeros((len(cands), len(taus)))
    m = slot_index(taus)
    seg = m >= 0
    base = np.where(seg, 1.0 / np.maximum(pool_size - m, 1), 0.0)
    q[:] = base[None, :] * in_pool[:, None]
    r0 = round_start_of(t)
    seen = set(hist[r0:t + 1])
    drawn = np.array([int(c) in seen for c in cands])
    same_round = (taus - r0) < round_len
    q[np.ix_(drawn, same_round)] = 0.0
    return q


class RagBurst(_Law):
    def q(self, cands, t, taus):
        hot, hd, cd, n = self.p["hot_pages"], self.p["hot_draws"], self.p["cold_draws"], self.p["num_pages"]
        R = hd + cd
        j = taus % R
        is_hot = cands < hot
        q = np.where(is_hot[:, None] & (j < hd)[None, :], 1.0 / hot, 0.0)
        cold = _distinct_slot_prob(cands, t, taus, (~is_hot).astype(float), lambda x: np.where(x % R >= hd, x % R - hd, -1),
                                   n - hot, R, lambda x: x - x % R, self.hist)
        return q + cold


class AdversarialBurst(_Law):
    def q(self, cands, t, taus):
        n, bs = self.p["num_pages"], self.p["burst_size"]
        a, b = n // 3, 2 * n // 3
        ne, nm, nl = min(bs, a), min(bs, b - a), min(bs, n - b)
        nrep = max(1, min(bs // 2, ne))
        R = ne + nm + nrep + nl

        def start(x):
            return x - x % R

        q = np.zeros((len(cands), len(taus)))
        for lo, hi, off, cnt in ((0, a, 0, ne), (a, b, ne, nm), (b, n, ne + nm + nrep, nl)):
            pool = ((cands >= lo) & (cands < hi)).astype(float)
            q += _distinct_slot_prob(cands, t, taus, pool,
                                     lambda x, off=off, cnt=cnt: np.where((x % R >= off) & (x % R < off + cnt), x % R - off, -1),
                                     hi - lo, R, start, self.hist)
        # Repeats: the first nrep anchors of the round come back in order, once seen.
        r0 = start(t)
        for i in range(nrep):
            at = r0 + i
            rep = r0 + ne + nm + i
            if at <= t < rep and at < len(self.hist):
                hit = cands == self.hist[at]
                q[np.ix_(hit, taus == rep)] = 1.0
        return q


class MixedLocality(_Law):
    def q(self, cands, t, taus):
        P, hot, warm, stride, n = (self.p[k] for k in ("phase_steps", "hot_pages", "warm_pages", "stride", "num_pages"))
        phase = (taus // P) % 3
        is_hot = (cands < hot)[:, None]
        is_warm = ((cands >= hot) & (cands < hot + warm))[:, None]
        q = np.where(is_hot & (phase == 0)[None, :], 1.0 / hot, 0.0)
        q += np.where(is_warm & (phase == 1)[None, :], 1.0 / warm, 0.0)
        q += ((phase == 2)[None, :] & (((taus * stride) % n)[None, :] == cands[:, None])).astype(float)
        return q


class AdversarialPrefetch(_Law):
    def q(self, cands, t, taus):
        h = self.p["num_pages"] // 2
        n = self.p["num_pages"]
        first = (cands < h)[:, None]
        even = (taus % 2 == 0)[None, :]
        return np.where(first & even, 1.0 / h, 0.0) + np.where(~first & ~even, 1.0 / (n - h), 0.0)


class ChatContinuation(_Law):
    def q(self, cands, t, taus):
        slots, recent, every = self.p["slots"], self.p["recent_slots"], self.p["replace_every"]
        p_stay, p_miss = 1.0 - 1.0 / slots, 1.0 - 1.0 / recent
        pin = np.zeros(len(cands))
        for i, c in enumerate(cands):
            tp = int(self.last[c])
            if tp < 0:
                if not (slots - recent <= c < slots):
                    continue  # never seen and not initially in a recent slot
                tp = -1
            events = [e for e in range(((tp // every) + 1) * every, t + 1, every) if e > tp] if tp >= 0 else \
                list(range(0, t + 1, every))
            like_in = p_stay ** len(events) * p_miss ** (t - tp)
            like_out = sum(p_stay ** k * (1.0 / slots) * p_miss ** max(0, e - tp - 1) for k, e in enumerate(events))
            pin[i] = like_in / (like_in + like_out) if like_in + like_out > 0 else 0.0
        decay = p_stay ** (taus // every - t // every)  # replacement events in (t, τ]
        return pin[:, None] * decay[None, :] / recent


class Streaming(_Law):
    """Sinks and the last ``window_pages`` blocks of each (sequence, layer), every step: exact."""

    def on_access(self, page: int, tier: int, step: int) -> None:
        self.last[page] = step

    def expected(self, cands, t):
        from kvgym.traces.geometry import geometry

        pt = self.table
        geo = geometry(self.p["model"])
        tpp = self.p["tokens_per_page"] or geo.tokens_per_page
        W, S = self.p["window_pages"], self.p["sink_pages"]
        n_next = -(-(self.p["prompt_tokens"] + (t + 1) + 1) // tpp)  # blocks present at step t + 1
        block = pt.token_start[cands] // tpp
        layer = pt.layer[cands].astype(float)
        L = float(pt.layer.max() + 1)
        read = (block < S) | ((block >= n_next - W) & (block < n_next))
        return np.where(read, 1.0 + layer / (L + 1), FAR)


_LAWS = {"periodic_reuse": PeriodicReuse, "prefetch_friendly": PrefetchFriendly, "long_tail_mix": LongTailMix,
         "rag_burst": RagBurst, "adversarial_burst": AdversarialBurst, "mixed_locality": MixedLocality,
         "adversarial_prefetch": AdversarialPrefetch, "chat_continuation": ChatContinuation, "streaming": Streaming}


def has_reference(case) -> bool:
    return case.key[0] == "workload" and case.key[1] in _LAWS


def reference_policy(case):
    """A fresh reference policy for ``case``, or ``None`` where the benchmark defines none."""
    if not has_reference(case):
        return None
    _, name, params, _seed = case.key
    pol = _LAWS[name](_params(name, json.loads(params)), len(case.trace.pages))
    pol.table = case.trace.pages
    return pol
