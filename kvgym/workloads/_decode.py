"""Machinery shared by the realistic decode workloads.

**Pages.** A page is one (sequence, token block, layer): K and V of ``tokens_per_page`` tokens of
every KV head of that layer (``geometry.page_fp16_bytes`` bytes at fp16). Page ids are a pure
function of the triple, so the page table is built with a few vectorized numpy operations:

    page_id = (seq * max_blocks + block) * layers + layer

(block-major within a sequence, so page ids grow with token position and a heat map of page ids
reads like one of token positions). ``max_blocks`` covers the longest the sequence ever gets.

**Growth.** Decode step ``t`` (from 0) processes the token at position ``prompt_tokens + t``; its
K/V is written before attention, so the context holds ``prompt_tokens + t + 1`` tokens and
``ceil((prompt_tokens + t + 1) / tokens_per_page)`` blocks: a new page appears (per layer) every
``tokens_per_page`` steps. A page exists in the page table from the start; it is first *accessed*
when it appears.

**Access order.** Within a step: layer by layer, within a layer sequence by sequence, within a
(sequence, layer) the selected blocks in ascending order (how a batched decode kernel walks the
KV cache). Every access carries its attention ``weight``; for each (step, sequence, layer) the
weights of the accessed pages sum to 1 (up to float32 rounding).

**Relevance** (``topk_drift``, ``multi_turn``, ``shared_prefix``): each page has a random key in
``key_dim`` dimensions, correlated along the token axis (AR(1) with coefficient ``key_corr``, so
relevant pages come in runs, as passages do); each (sequence, layer) has a unit query that drifts
every step: ``q <- normalize(sqrt(1 - drift^2) q + drift g / sqrt(key_dim))`` with ``g`` standard
normal (``drift = 0``: the same query every step, ``drift = 1``: a fresh query every step). The
relevance of a page is ``key . q``, plus ``sink_bias`` for the sequence's first page (an attention sink)
and ``recent_bias`` for its newest page (local attention); attention weights are a softmax of relevance / ``temperature``
over the selected pages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from kvgym.errors import ConfigError
from kvgym.traces.format import PageTable, Trace
from kvgym.traces.geometry import ModelGeometry, geometry
from kvgym.workloads import report_progress
from kvgym.workloads._common import fail, need_float, need_int

# Parameters every decode workload takes, with their defaults (small: tests and sweeps stay fast).
MODEL_DEFAULTS = {"model": "llama-3.1-8b", "tokens_per_page": 0}
RELEVANCE_DEFAULTS = {"drift": 0.1, "key_dim": 16, "key_corr": 0.5, "temperature": 0.5, "sink_bias": 2.5, "recent_bias": 2.0}


def resolve_geometry(wl: str, model: str, tokens_per_page: int) -> ModelGeometry:
    """The model preset, with ``tokens_per_page`` overridden when > 0 (0 = the preset's)."""
    need_int(wl, "tokens_per_page", tokens_per_page, 0)
    try:
        g = geometry(model)
    except ConfigError as e:
        raise fail(wl, f"parameter 'model': {e}") from None
    return g.with_(tokens_per_page=tokens_per_page) if tokens_per_page else g


def blocks(tokens, tpp: int):
    """Blocks holding ``tokens`` tokens (ceil division; works on arrays)."""
    return -(-np.asarray(tokens) // tpp) if np.ndim(tokens) else -(-int(tokens) // tpp)


@dataclass(frozen=True)
class Layout:
    """Page ids of ``batch`` independent sequences of at most ``max_tokens`` tokens each."""

    geometry: ModelGeometry
    batch: int
    max_tokens: int

    @property
    def layers(self) -> int:
        return self.geometry.layers

    @property
    def tpp(self) -> int:
        return self.geometry.tokens_per_page

    @property
    def max_blocks(self) -> int:
        return blocks(self.max_tokens, self.tpp)

    @property
    def n_pages(self) -> int:
        return self.batch * self.max_blocks * self.layers

    def blocks_at(self, tokens: int) -> int:
        return blocks(tokens, self.tpp)

    def page_ids(self, seq, block, layer):
        return (np.asarray(seq, np.int64) * self.max_blocks + block) * self.layers + layer

    def page_table(self) -> PageTable:
        n, L, mb, tpp = self.n_pages, self.layers, self.max_blocks, self.tpp
        i = np.arange(n, dtype=np.int64)
        sb = i // L
        block = sb % mb
        start = block * tpp
        return PageTable(seq=(sb // mb).astype(np.int32), layer=(i % L).astype(np.int32), token_start=start,
                         token_end=np.minimum(start + tpp, self.max_tokens),
                         fp16_bytes=np.full(n, self.geometry.page_fp16_bytes, np.int64))

    def meta(self, **extra) -> dict:
        return {"family": "decode", "geometry": self.geometry.to_dict(), "batch": self.batch,
                "max_tokens": self.max_tokens, "max_blocks": self.max_blocks, **extra}


class Collector:
    """Accumulates one decode step at a time, then builds the :class:`Trace`."""

    def __init__(self, total_steps: int):
        self.pages: list[np.ndarray] = []
        self.weights: list[np.ndarray] = []
        self.counts: list[int] = []
        self.total = total_steps

    def add(self, pages: np.ndarray, weights: np.ndarray) -> None:
        """One step's accesses, already in access order (flat arrays of equal length)."""
        self.pages.append(np.asarray(pages, np.int64).ravel())
        self.weights.append(np.asarray(weights, np.float32).ravel())
        self.counts.append(self.pages[-1].size)
        report_progress(len(self.counts), self.total)

    def add_grid(self, pages: np.ndarray, weights: np.ndarray) -> None:
        """One step given as ``(batch, layers, m)`` arrays: reordered layer-major, then sequence."""
        self.add(np.ascontiguousarray(pages.transpose(1, 0, 2)), np.ascontiguousarray(weights.transpose(1, 0, 2)))

    def trace(self, table: PageTable, meta: dict) -> Trace:
        counts = np.asarray(self.counts, np.int64)
        step = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
        page = np.concatenate(self.pages) if self.pages else np.zeros(0, np.int64)
        w = np.concatenate(self.weights) if self.weights else np.zeros(0, np.float32)
        self.pages.clear()
        self.weights.clear()
        return Trace(step=step, page=page, pages=table, weight=w, meta=meta)


def check_common(wl: str, *, batch: int, prompt_tokens: int, decode_steps: int) -> None:
    need_int(wl, "batch", batch, 1)
    need_int(wl, "prompt_tokens", prompt_tokens, 1)
    need_int(wl, "decode_steps", decode_steps, 1)


def check_relevance(wl: str, *, drift: float, key_dim: int, key_corr: float, temperature: float,
                    sink_bias: float, recent_bias: float) -> None:
    need_float(wl, "drift", drift, 0.0, 1.0)
    need_int(wl, "key_dim", key_dim, 1)
    need_float(wl, "key_corr", key_corr, 0.0, 0.999)
    need_float(wl, "temperature", temperature, 0.0, lo_open=True)
    need_float(wl, "sink_bias", sink_bias, 0.0)
    need_float(wl, "recent_bias", recent_bias, 0.0)


def add_biases(scores: np.ndarray, sink_bias: float, recent_bias: float) -> np.ndarray:
    """Relevance bonus (in place) of the first page (attention sink) and the newest page (locality)."""
    scores[..., 0] += sink_bias
    scores[..., -1] += recent_bias
    return scores


def need_pages(wl: str, what: str, value: int, present: int, context: str, lo: int = 1) -> None:
    """``value`` pages must fit in the ``present`` pages of the context (the brief's "k larger
    than the pages present" / "window larger than the context")."""
    if value > present or value < lo:
        raise fail(wl, f"{what}={value} is {'larger than the pages present' if value > present else 'too small'} "
                       f"({present} pages at step 0: {context}); valid: {lo} <= {what} <= {present}")


# ---- weights ----------------------------------------------------------------------------

def jitter(rng: np.random.Generator, shape, noise: float) -> np.ndarray:
    """Multiplicative log-normal noise ``exp(noise * N(0, 1))`` (1.0 everywhere when noise = 0)."""
    if noise == 0:
        return np.ones(shape)
    return np.exp(noise * rng.standard_normal(shape))


def normalize(w: np.ndarray, mass: float | np.ndarray = 1.0) -> np.ndarray:
    """Scale the last axis to sum to ``mass``."""
    return w * (np.asarray(mass, np.float64)[..., None] if np.ndim(mass) else mass) / w.sum(axis=-1, keepdims=True)


def recency(m: int, tau: float) -> np.ndarray:
    """Weights of a window of ``m`` pages, oldest first: ``exp(-age / tau)``, age 0 = newest."""
    return np.exp(-np.arange(m - 1, -1, -1, dtype=np.float64) / tau)


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    x = scores.astype(np.float64) / temperature
    x -= x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


# ---- relevance ---------------------------------------------------------------------------

@numba.njit(cache=True)
def _ar1_rows(x, rho):  # pragma: no cover - compiled
    # x: (rows, d, n), AR(1) along the last axis in place, stationary unit variance.
    c = np.float32(np.sqrt(1.0 - rho * rho))
    r = np.float32(rho)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            for b in range(1, x.shape[2]):
                x[i, j, b] = r * x[i, j, b - 1] + c * x[i, j, b]
    return x


def correlated_keys(rng: np.random.Generator, rows: int, n: int, d: int, corr: float) -> np.ndarray:
    """Keys of ``rows`` x ``n`` pages in ``d`` dimensions, stored **transposed** as ``(rows, d, n)``
    float32 (so scoring runs along contiguous memory); N(0, 1) marginals, correlation ``corr``
    between neighbouring pages."""
    x = rng.standard_normal((rows, d, n), dtype=np.float32)
    return _ar1_rows(x, float(corr)) if corr > 0 and n > 1 else x


@numba.njit(cache=True)
def _dot_rows(kt, q, nb, out):  # pragma: no cover - compiled
    # out[r, b] = sum_j kt[r, j, b] * q[r, j] for b < nb, summed in j order. A plain loop, not
    # BLAS: single-threaded (no spinning threads on a shared machine), vectorized over b, and
    # bit-identical on every machine.
    for r in range(kt.shape[0]):
        for b in range(nb):
            out[r, b] = np.float32(0.0)
        for j in range(kt.shape[1]):
            qj = q[r, j]
            for b in range(nb):
                out[r, b] += kt[r, j, b] * qj
    return out


def relevance(keys_t: np.ndarray, q: np.ndarray, nb: int) -> np.ndarray:
    """Scores ``key . q`` of the first ``nb`` pages: ``keys_t`` is ``(..., d, n)`` (see
    :func:`correlated_keys`), ``q`` is ``(..., d)``; returns float32 ``(..., nb)``."""
    lead, (d, n) = keys_t.shape[:-2], keys_t.shape[-2:]
    k2 = np.ascontiguousarray(keys_t).reshape(-1, d, n)
    q2 = np.ascontiguousarray(q, dtype=np.float32).reshape(-1, d)
    return _dot_rows(k2, q2, nb, np.empty((k2.shape[0], nb), np.float32)).reshape(lead + (nb,))


class QueryWalk:
    """Unit queries of shape ``shape + (d,)`` that drift each :meth:`step` (see module docstring)."""

    def __init__(self, rng: np.random.Generator, shape: tuple, d: int, drift: float):
        self.rng, self.shape, self.d, self.drift = rng, tuple(shape), d, drift
        self.q = self._unit(rng.standard_normal(self.shape + (d,)))

    @staticmethod
    def _unit(x: np.ndarray) -> np.ndarray:
        return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)

    def step(self) -> np.ndarray:
        if self.drift > 0:
            g = self.rng.standard_normal(self.shape + (self.d,)) / np.sqrt(self.d)
            self.q = self._unit(np.sqrt(1.0 - self.drift ** 2) * self.q + self.drift * g)
        return self.q

    def reset(self, index) -> None:
        """A fresh random query for ``index`` (e.g. a new user turn)."""
        self.q[index] = self._unit(self.rng.standard_normal(self.q[index].shape))


def topk_select(scores: np.ndarray, k: int, force_last: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Indices (ascending) and scores of the top-``k`` entries along the last axis.

    With ``force_last`` the last entry (the newest page, being written) is always selected and
    the other ``k - 1`` are the highest-scored of the rest. Ties break by the sort's order
    (deterministic).
    """
    n = scores.shape[-1]
    if not 1 <= k <= n:
        raise ValueError(f"k={k} outside [1, {n}]")
    key = -scores
    if force_last:
        key[..., n - 1] = -np.inf
    idx = np.argpartition(key, k - 1, axis=-1)[..., :k] if k < n else np.broadcast_to(np.arange(n), scores.shape).copy()
    idx.sort(axis=-1)
    return idx, np.take_along_axis(scores, idx, axis=-1)
