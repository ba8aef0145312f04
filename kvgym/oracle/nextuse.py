"""Next-use and previous-use arrays of a trace, in O(n) (one compiled pass each way).

Positions are access indices (rows of the trace, 0-based). For access ``i`` of page ``p``:

- ``next_pos[i]``: index of the next access of ``p`` (``n`` if none);
- ``prev_pos[i]``: index of the previous access of ``p`` (``-1`` if none);
- ``first_pos[p]``: index of ``p``'s first access (``n`` if never accessed).

:func:`future` builds a :class:`kvgym.sim.context.Future` (the engine's privileged view);
the next-use kernel is shared with it (``kvgym.sim.context.next_use``).
"""

from __future__ import annotations

import numba
import numpy as np

from kvgym.sim.context import Future
from kvgym.sim.context import next_use as _next_use


@numba.njit(cache=True)
def _prev_use(page, n_pages):
    n = page.shape[0]
    prev = np.empty(n, np.int64)
    last = np.full(n_pages, -1, np.int64)
    for i in range(n):
        p = page[i]
        prev[i] = last[p]
        last[p] = i
    return prev


def _as_pages(page, n_pages: int | None) -> tuple[np.ndarray, int]:
    page = np.ascontiguousarray(page, dtype=np.int64)
    if n_pages is None:
        n_pages = int(page.max()) + 1 if len(page) else 0
    return page, int(n_pages)


def next_use(page, n_pages: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(next_pos, first_pos)`` of a page-id sequence (see the module docstring)."""
    page, n_pages = _as_pages(page, n_pages)
    return _next_use(page, n_pages)


def prev_use(page, n_pages: int | None = None) -> np.ndarray:
    """``prev_pos`` of a page-id sequence: previous access index of the same page, -1 if none."""
    page, n_pages = _as_pages(page, n_pages)
    return _prev_use(page, n_pages)


def future(page, n_pages: int) -> Future:
    """The engine's privileged view, :class:`~kvgym.sim.context.Future` (itself O(n))."""
    page, n_pages = _as_pages(page, n_pages)
    return Future(page, n_pages)
