"""Lower bounds for the whole hierarchy: misses below each tier, transfer time, stall and total time.

**Cumulative-capacity bound.** Under the engine's semantics (:mod:`kvgym.sim.engine`) a page is in
at most one tier, every accessed page is brought into tier 0 and pinned there for its step, and
a page leaves the union ``U_j`` of tiers ``0..j`` only by a demotion out of tier ``j`` (or a drop
from the last tier). So ``U_j`` behaves as one cache of ``C_0 + ... + C_j`` bytes under pinned
steps, whatever the policies and the prefetcher do, and the pages that *enter* ``U_j`` (promoted
from a tier below ``j``, cold-inserted into a backing tier ``<= j``, or created in tier 0 under
``first_touch="create"``) number at least the optimal miss count of that cache: Belady's MIN
with uniform page sizes (capacity ``floor(sum C / page bytes)`` pages, pinned steps;
:func:`kvgym.oracle.belady.belady`). With a prefetcher this counts fetches, not demand misses:
every fetch into ``U_j`` is an entry, and the lazy (demand) version of any schedule has no more
entries. With variable sizes the capacity is counted in pages of the *smallest* size (no more
pages fit), and, for traces up to ``lp_max`` accesses, the LP bound of :mod:`kvgym.oracle.lp`
(exact bytes) is used when it is higher.

**Cost bounds.** A tiny LP over per-run counts turns the entry bounds ``B_j`` into cost bounds;
every run of the engine gives a feasible point, so each optimum is a valid lower bound:

- ``P_i`` promotions from tier ``i >= 1`` to tier 0 (demand or prefetch), ``Q`` cold inserts
  into the backing tier ``b`` (each then promoted from ``b``: ``P_b >= Q``), ``X`` first-touch
  creations (the number of distinct pages under ``first_touch="create"``, else 0), ``E_j``
  demotions out of tier ``j`` into ``j+1``;
- entries into ``U_j``: ``sum(P_i, i > j) + [b <= j] Q + X >= B_j``; ``Q + X >=`` distinct pages;
- exits: ``E_j >= entries_j - K_j`` (what entered and is not still there left by demotion;
  ``K_j`` = pages ``U_j`` can hold).

Costs per transfer come from the tier model (:meth:`kvgym.sim.tiers.Link.min_time_us`, the least
a copy can take, idle or queued behind another): promotion from ``i`` takes ``c_i`` on link ``i``; a
demotion ``j -> j+1`` takes ``d_j`` on link ``j+1``; page bytes and decode time are the page's (the
smallest, with variable sizes). Bounds reported:

- ``transfer_us``: total link time of promotions and demotions (no queueing), any cost model;
- ``serial``: ``total_time_us >= (A - M)(r_0 + dec) + sum P_i (c_i + dec) + sum E_j (d_j + dec)``
  with ``M`` (demand misses) ``<= min(A, sum P + X)``, equal to ``sum P + X`` without prefetch;
  the serial model charges exactly these terms (creations are free);
- ``overlap``, prefetch off: every promotion is a demand fetch issued at its step's start and the
  step waits for it, so link ``i`` only serves demand promotions during stalls:
  ``stall_us >= P_i c_i / channels_i`` for every link; ``total_time_us >= compute + stall``
  (compute is fixed by the trace). Demotions never stall a step by themselves and are left out.
  Prefetch on: only ``stall_us >= 0`` and ``total_time_us >= compute``. A prefetch hides its
  transfer behind compute, and the engine lets a prefetched page be evicted (demoted) before
  its transfer has landed, so a page can enter the hierarchy's upper tiers without its link time
  ever being waited for: no link-time argument bounds the clock (the property test found such
  runs).

Queueing, channel contention between steps and decode of lower-tier pages only add cost, so
the bounds stay below every policy's cost (property-tested over every registered policy).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.optimize import linprog

from kvgym.errors import ConfigError
from kvgym.oracle.belady import belady
from kvgym.oracle.lp import lp_bound
from kvgym.oracle.nextuse import next_use
from kvgym.sim.scenario import Setup
from kvgym.traces.format import Trace

LP_MAX = 20_000


@dataclass(frozen=True)
class HierarchyBounds:
    """Lower bounds of one trace under one scenario (see the module docstring).

    Counts: ``entry_lb[j]`` (pages entering tiers ``0..j``; for ``j = 0`` without prefetch, the
    tier-0 misses), ``promotion_lb`` / ``demotion_lb`` (transfers), ``bytes_up_lb`` /
    ``bytes_down_lb``. Times in µs: ``transfer_us_lb``, ``stall_us_lb``, ``total_us_lb`` (for the
    scenario's cost model) and ``compute_us`` (overlap model: fixed by the trace).
    ``capacity_pages[j]``: the pages ``U_j`` can hold (``None`` = unbounded).
    """

    accesses: int
    distinct: int
    uniform: bool
    page_bytes: int
    cost_model: str
    prefetch: bool
    capacity_pages: list
    entry_lb: list
    entry_method: list
    promotion_lb: int
    demotion_lb: int
    bytes_up_lb: int
    bytes_down_lb: int
    transfer_us_lb: float
    stall_us_lb: float
    total_us_lb: float
    compute_us: float
    notes: list = field(default_factory=list)

    @property
    def tier0_miss_lb(self) -> int:
        """Tier-0 misses (fetches, with a prefetcher) of any policy are at least this."""
        return int(self.entry_lb[0])

    def to_dict(self) -> dict:
        return asdict(self)


def compute_us(trace: Trace, setup: Setup) -> float:
    """Total decode compute of the ``overlap`` model (µs), which no policy changes: the engine's own
    ``compute_us`` of any run of the trace (one compiled LRU run; the formula is
    :func:`kvgym.sim.costs.step_compute_us`, summed over steps)."""
    from kvgym.sim.compiled import CompiledEngine
    from kvgym.sim.policy import make_policy

    if len(trace) == 0:
        return 0.0
    setup = setup if setup.scenario.cost_model == "overlap" else \
        setup.scenario.with_(cost_model="overlap").build(setup.pages)
    return CompiledEngine(setup, make_policy("lru")).run_chunks([(trace.step, trace.page, trace.weight)]).compute_us


def _solve(c, A_ub, b_ub, n) -> float:
    res = linprog(c, A_ub=A_ub, b_ub=b_ub, bounds=[(0, None)] * n, method="highs")
    if res.status != 0:  # pragma: no cover - the bounds LP is feasible by construction
        raise ConfigError(f"hierarchy bound LP failed: {res.message}")
    return float(res.fun)


def hierarchy_bounds(trace: Trace, setup: Setup, *, lp_max: int = LP_MAX) -> HierarchyBounds:
    """Lower bounds on misses and costs of any policy/prefetcher for ``trace`` under ``setup``."""
    tiers = setup.tiers
    L = len(tiers)
    if L < 2:
        raise ConfigError("hierarchy_bounds: the scenario needs at least two tiers")
    scen = setup.scenario
    b = setup.backing
    if b == 0:
        raise ConfigError("hierarchy_bounds: backing tier 0 is not supported (first touches must come from below)")
    create = getattr(scen, "first_touch", "backing") == "create"
    page, step = trace.page, trace.step
    A = len(page)
    notes = []
    touched = np.unique(page)
    U = len(touched)
    sizes = setup.page_bytes[touched] if U else np.array([1], np.int64)
    uniform = bool((sizes == sizes[0]).all())
    s = int(sizes.min())
    dec = float(setup.decode_us[touched].min()) if U else 0.0
    if not uniform:
        notes.append(f"variable page sizes: capacities counted in pages of the smallest size ({s} bytes)")
    nxt, _ = next_use(page, len(setup.page_bytes))
    caps, entry, method = [], [], []
    cum = 0
    for j, t in enumerate(tiers):
        if t.capacity_bytes is None or cum is None:
            cum = None
        else:
            cum += t.capacity_bytes
        K = None if cum is None else cum // s
        caps.append(K)
        if cum is None or cum >= int(sizes.sum()):
            entry.append(U)          # every page touched fits: first touches only
            method.append("first touches")
            continue
        if K >= U:
            B, how = U, "first touches"
        else:
            B = belady(page, int(K), step=step, n_pages=len(setup.page_bytes), next_pos=nxt).misses
            how = "belady"
        if not uniform and A <= lp_max:
            lp = lp_bound(page, step, setup.page_bytes, int(cum), cost="misses", max_accesses=lp_max)
            if lp.bound > B:
                B, how = int(lp.bound), "lp"
        entry.append(int(B))
        method.append(how)
    X = U if create else 0
    # Variables: P_1..P_{L-1}, Q, E_0..E_{L-2}, M, S  (index helpers below).
    nP = L - 1
    iP = lambda i: i - 1
    iQ = nP
    iE = lambda j: nP + 1 + j
    iM = nP + 1 + (L - 1)
    iS = iM + 1
    n = iS + 1
    rows, rhs = [], []

    def row(coefs: dict, bound: float):
        r = np.zeros(n)
        for k, v in coefs.items():
            r[k] += v
        rows.append(r)
        rhs.append(bound)

    def entries(j: int) -> dict:
        d = {iP(i): 1.0 for i in range(j + 1, L)}
        if b <= j:
            d[iQ] = d.get(iQ, 0.0) + 1.0
        return d

    for j in range(L):
        row({k: -v for k, v in entries(j).items()}, -(entry[j] - X))
    row({iQ: -1.0}, -(U - X))
    row({iQ: 1.0, iP(b): -1.0}, 0.0)
    for j in range(L - 1):
        if caps[j] is None:
            continue
        d = {k: v for k, v in entries(j).items()}
        d[iE(j)] = -1.0
        row(d, caps[j] - X)
    # M: demand misses <= A and <= fetches + creations; without prefetch, = fetches + creations.
    row({iM: 1.0}, A)
    row({iM: 1.0, **{iP(i): -1.0 for i in range(1, L)}}, X)
    if not scen.prefetch:
        row({iM: -1.0, **{iP(i): 1.0 for i in range(1, L)}}, -X)

    cp = np.array([setup.link(i, 0).min_time_us(s) for i in range(1, L)])          # promotions i -> 0
    cd = np.array([setup.link(j, j + 1).min_time_us(s) for j in range(L - 1)])  # demotions j -> j+1
    comp = compute_us(trace, setup) if scen.cost_model == "overlap" else 0.0
    # Stall rows (demand-only runs): S >= P_i c_i / ch_i.
    if not scen.prefetch:
        for i in range(1, L):
            row({iS: -1.0, iP(i): cp[i - 1] / tiers[i].channels}, 0.0)
    A_ub, b_ub = np.array(rows), np.array(rhs, np.float64)

    def minimize(obj: dict) -> float:
        c = np.zeros(n)
        for k, v in obj.items():
            c[k] += v
        return _solve(c, A_ub, b_ub, n)

    prom = minimize({iP(i): 1.0 for i in range(1, L)})
    dem = minimize({iE(j): 1.0 for j in range(L - 1)})
    transfer = minimize({**{iP(i): cp[i - 1] for i in range(1, L)}, **{iE(j): cd[j] for j in range(L - 1)}})
    if scen.cost_model == "serial":
        r0 = tiers[0].read_latency_us
        # (A - M)(r0 + dec) + sum P (c + dec) + sum E (d + dec); the constant A (r0 + dec) added after.
        obj = {iM: -(r0 + dec)}
        obj.update({iP(i): cp[i - 1] + dec for i in range(1, L)})
        obj.update({iE(j): cd[j] + dec for j in range(L - 1)})
        total = A * (r0 + dec) + minimize(obj)
        stall = total
    else:
        stall = minimize({iS: 1.0})
        total = comp + stall
    # Round the LP optima down a hair so solver tolerance never lifts a bound above a real cost.
    fl = lambda v: max(0.0, v * (1 - 1e-9) - 1e-9)
    return HierarchyBounds(
        accesses=A, distinct=U, uniform=uniform, page_bytes=s, cost_model=scen.cost_model,
        prefetch=bool(scen.prefetch), capacity_pages=caps, entry_lb=entry, entry_method=method,
        promotion_lb=math.ceil(prom - 1e-6), demotion_lb=math.ceil(dem - 1e-6),
        bytes_up_lb=math.ceil(prom - 1e-6) * s, bytes_down_lb=math.ceil(dem - 1e-6) * s,
        transfer_us_lb=fl(transfer), stall_us_lb=fl(stall), total_us_lb=fl(total), compute_us=comp, notes=notes)
