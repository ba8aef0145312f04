"""A linear-programming lower bound on the misses (or bytes fetched) of one cache with variable page sizes.

The exact offline problem with variable sizes is NP-hard; its fractional relaxation is a valid
lower bound and, on uniform sizes, exact. Formulation (the interval / min-cost-flow one):

- Steps are compressed to ``0 .. T-1``; ``D_t`` is the set of distinct pages of step ``t``. The
  engine pins ``D_t`` in the cache for the whole step, so the cache holds ``D_t`` plus the pages
  it keeps across the step: ``R_t = C - bytes(D_t)`` is what is left for them.
- A page accessed at steps ``a < b`` with no access in between has a *reuse interval*; if
  ``b = a + 1`` the page is pinned at both ends and kept for free (a hit). Otherwise a variable
  ``x`` in ``[0, 1]`` says which fraction of the page stays cached over the steps ``a+1 .. b-1``.
  Capacity: at every step ``t``, ``sum(size * x over intervals spanning t) <= R_t``.
- Cost: each page's first access is a miss (compulsory); an interval pays ``(1 - x) * w`` with
  ``w = 1`` (misses) or ``w = size`` (bytes fetched).

Any engine run gives a feasible 0/1 point (``x = 1`` iff the page stayed in the cache over the
interval, which is exactly when its access at ``b`` hits; with a prefetcher, iff it was not
fetched again), so the LP optimum is a lower bound on misses without prefetch and on fetches
with it. The constraint matrix is written as a network flow (a chain of arcs carries the free
capacity ``y_t``; each interval is an arc that bypasses the steps it spans), so it has
O(steps + intervals) non-zeros, and it is totally unimodular: with uniform sizes (the capacity
then counted in whole pages, ``floor(C / size)``) the LP optimum is integral and equals
Belady's MIN under pinned steps (tested). Solved with HiGHS (``scipy.optimize.linprog``);
traces up to ~100k accesses take seconds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from kvgym.errors import ConfigError, SimulationError

COSTS = ("misses", "bytes")
MAX_ACCESSES = 100_000


@dataclass(frozen=True)
class LPBound:
    """Result of :func:`lp_bound`.

    ``value``: the LP optimum, a lower bound on misses (or bytes fetched), first touches
    included; ``bound``: the best integer-valid bound (``ceil(value)`` for misses, up to solver
    tolerance); ``compulsory``: the first-touch part; ``uniform``: sizes were uniform (then the
    bound is exact: Belady's MIN); ``intervals``: LP variables; ``steps``: distinct steps.
    """

    value: float
    bound: float
    compulsory: float
    cost: str
    uniform: bool
    intervals: int
    steps: int
    capacity_bytes: int

    def to_dict(self) -> dict:
        return asdict(self)


def _pairs(page: np.ndarray, step: np.ndarray):
    """Distinct (step index, page) pairs sorted by page then step; step indices compressed."""
    _, sidx = np.unique(step, return_inverse=True)
    sidx = sidx.astype(np.int64)
    order = np.lexsort((sidx, page))
    p, s = page[order], sidx[order]
    keep = np.ones(len(p), bool)
    keep[1:] = (p[1:] != p[:-1]) | (s[1:] != s[:-1])
    return p[keep], s[keep], int(sidx.max()) + 1 if len(sidx) else 0


def lp_bound(page, step, page_bytes, capacity_bytes: int, *, cost: str = "misses",
             max_accesses: int = MAX_ACCESSES) -> LPBound:
    """LP lower bound for one cache of ``capacity_bytes`` under the engine's pinned steps.

    Args:
        page, step: the trace's access columns.
        page_bytes: stored bytes per page id.
        cost: ``misses`` or ``bytes`` (bytes fetched into the cache, first touches included).
        max_accesses: refuse longer traces (the LP grows with the trace).
    """
    if cost not in COSTS:
        raise ConfigError(f"lp_bound: cost={cost!r}; valid: {', '.join(COSTS)}")
    page = np.asarray(page, np.int64)
    step = np.asarray(step, np.int64)
    size_all = np.asarray(page_bytes, np.int64)
    if len(page) > max_accesses:
        raise ConfigError(f"lp_bound: {len(page)} accesses exceed max_accesses={max_accesses} "
                          "(use the cumulative Belady bound for long traces, or a window)")
    if len(page) == 0:
        return LPBound(0.0, 0.0, 0.0, cost, True, 0, 0, int(capacity_bytes))
    p, s, T = _pairs(page, step)
    touched = np.unique(p)
    sizes = size_all[touched]
    uniform = bool((sizes == sizes[0]).all())
    # Work in pages when sizes are uniform, so the capacity is a whole number of pages.
    unit = int(sizes[0]) if uniform else 1
    cap = int(capacity_bytes) // unit
    sz = size_all // unit if uniform else size_all
    pinned = np.bincount(s, weights=sz[p], minlength=T)
    if (bad := np.flatnonzero(pinned > cap)).size:
        raise SimulationError(f"lp_bound: step #{int(bad[0])} needs {int(pinned[bad[0]]) * unit} bytes of distinct "
                              f"pages at once, more than the capacity ({int(capacity_bytes)} bytes)")
    weight = size_all[p].astype(np.float64) if cost == "bytes" else np.ones(len(p))
    first = np.ones(len(p), bool)
    first[1:] = p[1:] != p[:-1]
    compulsory = float(weight[first].sum())
    # Reuse intervals: consecutive pairs of the same page at steps a < b.
    nxt = np.flatnonzero(~first)            # index of the later access of each reuse
    a, b = s[nxt - 1], s[nxt]
    gap = b - a >= 2                        # b == a + 1: kept for free
    a, b, w, ps = a[gap], b[gap], weight[nxt][gap], sz[p[nxt]][gap].astype(np.float64)
    k = len(a)
    if k == 0 or T < 3:
        return LPBound(compulsory, compulsory, compulsory, cost, uniform, 0, T, int(capacity_bytes))
    # Variables: y_0 .. y_{T-1} (free capacity on each step's chain arc), then x_0 .. x_{k-1}.
    # Rows: conservation at nodes 1 .. T-1 (node n sits between chain arcs n-1 and n):
    #   y_{n-1} - y_n + sum(size * x, interval ends at n) - sum(size * x, interval starts at n) = 0
    # where interval (a, b) is an arc from node a + 1 to node b.
    rows_y = np.concatenate([np.arange(T - 1), np.arange(T - 1)])
    cols_y = np.concatenate([np.arange(T - 1), np.arange(1, T)])
    vals_y = np.concatenate([np.ones(T - 1), -np.ones(T - 1)])
    rows_x = np.concatenate([b - 1, a])           # node n -> row n - 1
    cols_x = np.concatenate([T + np.arange(k), T + np.arange(k)])
    vals_x = np.concatenate([ps, -ps])
    A = sp.csr_matrix((np.concatenate([vals_y, vals_x]), (np.concatenate([rows_y, rows_x]),
                                                          np.concatenate([cols_y, cols_x]))), shape=(T - 1, T + k))
    c = np.concatenate([np.zeros(T), -w])
    lo = np.concatenate([[cap], pinned[1:], np.zeros(k)])
    hi = np.concatenate([np.full(T, cap, np.float64), np.ones(k)])
    res = linprog(c, A_eq=A, b_eq=np.zeros(T - 1), bounds=np.column_stack([lo, hi]), method="highs")
    if res.status != 0:  # pragma: no cover - the zero-keep point is always feasible
        raise SimulationError(f"lp_bound: HiGHS did not solve the LP ({res.message})")
    value = compulsory + float(w.sum()) + float(res.fun)
    bound = math.ceil(value - 1e-6) if cost == "misses" else value
    if uniform and cost == "misses":
        value = float(round(value))
        bound = value
    return LPBound(value, float(bound), compulsory, cost, uniform, k, T, int(capacity_bytes))
