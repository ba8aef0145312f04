"""The eight access patterns of kv-hierarchy-lab v0.1, seeded and scalable.

One access per step (step ``t`` = row ``t``), one sequence, a uniform page table of
``num_pages`` pages of ``page_bytes`` fp16 bytes each (page ``i``: layer 0, tokens
``[16 i, 16 i + 16)``). The defaults are the original's sizes (48-128 pages, 240-400
accesses). The original drew its page sizes at random around 4.1-4.7 KB; here every page is
``page_bytes`` (4,096 by default) so sizes never confound a policy comparison.

These generators reproduce each *pattern*, not the original's random stream: the exact original
traces, for cell-by-cell parity, are data in ``kvgym/data/parity/`` (:mod:`kvgym.bench.parity`).
Everything is vectorized numpy, so ``length`` can be millions.
"""

from __future__ import annotations

import math

import numpy as np

from kvgym.traces.format import PageTable, Trace
from kvgym.workloads import register_workload
from kvgym.workloads._common import fail, need_float, need_int, sample_rows

FAMILY = "kv-hierarchy-lab v0.1 pattern"


def _trace(pages: np.ndarray, num_pages: int, page_bytes: int) -> Trace:
    return Trace(step=np.arange(len(pages), dtype=np.int64), page=pages.astype(np.int64),
                 pages=PageTable.uniform(num_pages, page_bytes), meta={"family": FAMILY})


def _base(wl: str, num_pages: int, length: int, page_bytes: int, min_pages: int = 1, why: str = "") -> None:
    need_int(wl, "num_pages", num_pages, min_pages, why=why)
    need_int(wl, "length", length, 1)
    need_int(wl, "page_bytes", page_bytes, 1)


@register_workload("chat_continuation", group="patterns", num_pages=64, length=256, page_bytes=4096, slots=12, recent_slots=8,
                   replace_every=17)
def chat_continuation(rng, *, num_pages, length, page_bytes, slots, recent_slots, replace_every):
    """A small working set that slowly changes; accesses favour its most recent slots.

    The working set is ``slots`` slots holding pages ``0 .. slots-1``. At every step ``t`` with
    ``t % replace_every == 0`` (step 0 included) one uniformly chosen slot gets a uniformly chosen
    page of the whole table. Each access is uniform over the last ``recent_slots`` slots.
    """
    wl = "chat_continuation"
    _base(wl, num_pages, length, page_bytes)
    need_int(wl, "slots", slots, 1, num_pages, "the working set holds distinct initial pages")
    need_int(wl, "recent_slots", recent_slots, 1, slots, "the recent slots are among the slots")
    need_int(wl, "replace_every", replace_every, 1)
    n_ev = (length - 1) // replace_every + 1
    ev_slot = rng.integers(0, slots, n_ev)
    ev_page = rng.integers(0, num_pages, n_ev)
    # Last event that wrote each slot, as of each event (-1: still the initial page).
    writer = np.full((n_ev, slots), -1, np.int64)
    writer[np.arange(n_ev), ev_slot] = np.arange(n_ev)
    writer = np.maximum.accumulate(writer, axis=0)
    ws = np.where(writer >= 0, ev_page[np.maximum(writer, 0)], np.arange(slots))
    t = np.arange(length)
    slot = rng.integers(slots - recent_slots, slots, length)
    return _trace(ws[t // replace_every, slot], num_pages, page_bytes)


@register_workload("rag_burst", group="patterns", num_pages=96, length=320, page_bytes=4096, hot_pages=16, hot_draws=14,
                   cold_draws=6)
def rag_burst(rng, *, num_pages, length, page_bytes, hot_pages, hot_draws, cold_draws):
    """Rounds of decode locality then a retrieval burst.

    Each round: ``hot_draws`` draws with replacement from the hot pages ``0 .. hot_pages-1``, then
    ``cold_draws`` distinct draws from the remaining pages. Rounds repeat until ``length``.
    """
    wl = "rag_burst"
    need_int(wl, "hot_pages", hot_pages, 1)
    need_int(wl, "cold_draws", cold_draws, 0)
    _base(wl, num_pages, length, page_bytes, hot_pages + cold_draws,
          f"hot_pages={hot_pages} plus cold_draws={cold_draws} distinct cold pages")
    need_int(wl, "hot_draws", hot_draws, 0)
    if hot_draws + cold_draws == 0:
        raise fail(wl, "hot_draws + cold_draws must be >= 1 (a round must access something)")
    rounds = -(-length // (hot_draws + cold_draws))
    hot = rng.integers(0, hot_pages, (rounds, hot_draws))
    cold = hot_pages + sample_rows(rng, rounds, num_pages - hot_pages, cold_draws)
    return _trace(np.concatenate([hot, cold], axis=1).ravel()[:length], num_pages, page_bytes)


@register_workload("periodic_reuse", group="patterns", num_pages=80, length=320, page_bytes=4096, period=9, stride=3)
def periodic_reuse(rng, *, num_pages, length, page_bytes, period, stride):
    """A cycle: step ``t`` reads page ``(t % period) * stride % num_pages`` (an exact period)."""
    wl = "periodic_reuse"
    _base(wl, num_pages, length, page_bytes)
    need_int(wl, "stride", stride, 1)
    distinct = num_pages // math.gcd(stride, num_pages)
    need_int(wl, "period", period, 1, distinct,
             f"the cycle needs {period} distinct pages (i*stride) % num_pages, there are {distinct}")
    t = np.arange(length, dtype=np.int64)
    return _trace((t % period) * stride % num_pages, num_pages, page_bytes)


@register_workload("long_tail_mix", group="patterns", num_pages=128, length=400, page_bytes=4096, hot_pages=10, hot_share=0.7,
                   zipf_s=1.0)
def long_tail_mix(rng, *, num_pages, length, page_bytes, hot_pages, hot_share, zipf_s):
    """A hot set plus a Zipf tail.

    With probability ``hot_share`` an access is uniform over pages ``0 .. hot_pages-1``;
    otherwise page ``hot_pages + r`` with ``P(r) ∝ 1 / (r + 1) ** zipf_s`` over the rest.
    """
    wl = "long_tail_mix"
    need_int(wl, "hot_pages", hot_pages, 1)
    _base(wl, num_pages, length, page_bytes, hot_pages + 1, f"hot_pages={hot_pages} plus a tail of at least one")
    need_float(wl, "hot_share", hot_share, 0.0, 1.0)
    need_float(wl, "zipf_s", zipf_s, 0.0)
    w = 1.0 / np.arange(1, num_pages - hot_pages + 1, dtype=np.float64) ** zipf_s
    cdf = np.cumsum(w)
    is_hot = rng.random(length) < hot_share
    hot = rng.integers(0, hot_pages, length)
    tail = hot_pages + np.minimum(np.searchsorted(cdf, rng.random(length) * cdf[-1], side="right"), len(w) - 1)
    return _trace(np.where(is_hot, hot, tail), num_pages, page_bytes)


@register_workload("prefetch_friendly", group="patterns", num_pages=48, length=240, page_bytes=4096)
def prefetch_friendly(rng, *, num_pages, length, page_bytes):
    """Sequential sweeps over all pages: step ``t`` reads page ``t % num_pages``."""
    _base("prefetch_friendly", num_pages, length, page_bytes)
    return _trace(np.arange(length, dtype=np.int64) % num_pages, num_pages, page_bytes)


@register_workload("adversarial_burst", group="patterns", num_pages=96, length=320, page_bytes=4096, burst_size=12)
def adversarial_burst(rng, *, num_pages, length, page_bytes, burst_size):
    """Bursts that come back to pages a recency policy has just evicted.

    Pages are split in thirds: early ``[0, n/3)``, middle ``[n/3, 2n/3)``, late ``[2n/3, n)``.
    Each round: ``b`` distinct anchors from early (``b = min(burst_size, |early|)``), ``burst_size``
    distinct pages from middle, the first ``max(1, min(burst_size // 2, b))`` anchors again, then
    ``burst_size`` distinct pages from late (each capped at its third's size).
    """
    wl = "adversarial_burst"
    _base(wl, num_pages, length, page_bytes, 3, "three non-empty thirds")
    need_int(wl, "burst_size", burst_size, 1)
    a, b = num_pages // 3, 2 * num_pages // 3
    ne, nm, nl = min(burst_size, a), min(burst_size, b - a), min(burst_size, num_pages - b)
    nrep = max(1, min(burst_size // 2, ne))
    rounds = -(-length // (ne + nm + nrep + nl))
    anchors = sample_rows(rng, rounds, a, ne)
    middle = a + sample_rows(rng, rounds, b - a, nm)
    late = b + sample_rows(rng, rounds, num_pages - b, nl)
    rows = np.concatenate([anchors, middle, anchors[:, :nrep], late], axis=1)
    return _trace(rows.ravel()[:length], num_pages, page_bytes)


@register_workload("mixed_locality", group="patterns", num_pages=112, length=360, page_bytes=4096, phase_steps=60, hot_pages=12,
                   warm_pages=20, stride=5)
def mixed_locality(rng, *, num_pages, length, page_bytes, phase_steps, hot_pages, warm_pages, stride):
    """Three phases of ``phase_steps`` steps, repeating: hot set, warm set, stride.

    Phase ``(t // phase_steps) % 3``: 0 = uniform over pages ``0 .. hot_pages-1``; 1 = uniform over
    the next ``warm_pages`` pages; 2 = page ``(t * stride) % num_pages``.
    """
    wl = "mixed_locality"
    need_int(wl, "hot_pages", hot_pages, 1)
    need_int(wl, "warm_pages", warm_pages, 1)
    _base(wl, num_pages, length, page_bytes, hot_pages + warm_pages, f"hot_pages={hot_pages} + warm_pages={warm_pages}")
    need_int(wl, "phase_steps", phase_steps, 1)
    need_int(wl, "stride", stride, 0)
    t = np.arange(length, dtype=np.int64)
    phase = (t // phase_steps) % 3
    hot = rng.integers(0, hot_pages, length)
    warm = hot_pages + rng.integers(0, warm_pages, length)
    pages = np.select([phase == 0, phase == 1], [hot, warm], (t * stride) % num_pages)
    return _trace(pages, num_pages, page_bytes)


@register_workload("adversarial_prefetch", group="patterns", num_pages=64, length=256, page_bytes=4096)
def adversarial_prefetch(rng, *, num_pages, length, page_bytes):
    """Alternating jumps: even steps uniform over the first half of the pages, odd steps over the second."""
    wl = "adversarial_prefetch"
    _base(wl, num_pages, length, page_bytes, 2, "two non-empty halves")
    h = num_pages // 2
    t = np.arange(length, dtype=np.int64)
    lo = np.where(t % 2 == 0, 0, h)
    hi = np.where(t % 2 == 0, h, num_pages)
    return _trace(rng.integers(lo, hi), num_pages, page_bytes)
