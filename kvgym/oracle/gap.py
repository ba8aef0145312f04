"""The fraction of the LRU-to-oracle miss gap a policy closes: one definition, two aggregates.

Per trace (Parrot's normalised hit rate), on tier-0 misses::

    gap_closed = 100 * (misses_lru - misses) / (misses_lru - misses_oracle)

LRU scores 0, the oracle 100; below 0 is worse than LRU; above 100 is possible when the
"oracle" is not optimal (``belady_size`` with variable page sizes, or a prefetcher helping).

**The one edge rule.** A trace on which LRU does not miss more than the oracle
(``misses_lru <= misses_oracle``) has *no gap*: its gap closed is ``None``, and it is left out
of both aggregates (callers list such traces instead of averaging them).

**Aggregates over traces**, each ``None`` when no trace has a gap:

- :func:`mean_gap_closed`: the mean over traces with a gap of their own gap closed (every trace
  weighs the same; a trace with a small gap moves it as much as one with a large gap);
- :func:`pooled_gap_closed`: ``100 * sum(misses_lru - misses) / sum(misses_lru - misses_oracle)``
  over the traces with a gap (every miss weighs the same: the share of all the misses LRU
  loses to the oracle that the policy wins back).
"""

from __future__ import annotations

from collections.abc import Iterable


def has_gap(misses_lru: float, misses_oracle: float) -> bool:
    """Whether LRU misses more than the oracle (the trace has a gap to close)."""
    return misses_lru > misses_oracle


def gap_closed(misses: float, misses_lru: float, misses_oracle: float) -> float | None:
    """``100 * (lru - misses) / (lru - oracle)``; ``None`` when the trace has no gap (see the edge rule)."""
    if not has_gap(misses_lru, misses_oracle):
        return None
    return 100.0 * (misses_lru - misses) / (misses_lru - misses_oracle)


def _gapped(rows: Iterable) -> list[tuple[float, float, float]]:
    out = []
    for r in rows:
        m, lru, orc = (float(x) for x in r)
        if has_gap(lru, orc):
            out.append((m, lru, orc))
    return out


def mean_gap_closed(rows: Iterable) -> float | None:
    """Mean over the traces with a gap of each trace's gap closed; ``rows``: ``(misses, misses_lru,
    misses_oracle)`` per trace."""
    g = _gapped(rows)
    if not g:
        return None
    return sum(gap_closed(*r) for r in g) / len(g)


def pooled_gap_closed(rows: Iterable) -> float | None:
    """``100 * sum(lru - misses) / sum(lru - oracle)`` over the traces with a gap; ``rows`` as in
    :func:`mean_gap_closed`."""
    g = _gapped(rows)
    if not g:
        return None
    return 100.0 * sum(lru - m for m, lru, _ in g) / sum(lru - orc for _, lru, orc in g)
