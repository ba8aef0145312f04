"""What policies, prefetchers and the env may read about a running simulation.

:class:`SimContext` holds the setup (tiers, per-page bytes and decode cost) and per-page
engine state as numpy arrays indexed by page id, kept current by the engine:

- ``tier_of``: tier holding the page, -1 if none.
- ``last_access``: step of the most recent access (-1 never); ``freq``: accesses so far;
  ``weight_sum``: accumulated attention weight.
- ``insert_step``: step the page last entered tier 0 (-1 never).
- ``evict_step``: step it was last evicted from tier 0 (-1 never); ``regret``: times it was
  accessed again within ``regret_horizon`` steps of a tier-0 eviction (the regret signal).
- ``pos``: index of the access being processed; ``step``: its step.

``future`` is the privileged view (:class:`Future`), present only when a privileged policy or
prefetcher runs; ordinary policies must not read it.
"""

from __future__ import annotations

import numpy as np

from kvgym.sim.scenario import Setup

#: Per-page engine state, one record per page (the compiled engine's C record has this layout; the
#: import of :mod:`kvgym.sim.compiled` checks it). ``SimContext`` exposes the fields as views.
PAGE_DTYPE = np.dtype({
    "names": ["last_access", "freq", "weight_sum", "insert_step", "evict_step", "regret", "ins", "ready", "pin",
              "used", "tier", "seen", "pending", "mark"],
    "formats": ["i8", "i8", "f8", "i8", "i8", "i8", "i8", "f8", "i8", "i8", "i1", "u1", "u1", "u1"],
    "offsets": [0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 81, 82, 83],
    "itemsize": 88,
})


def new_page_state(n: int) -> np.ndarray:
    """Initial state of ``n`` pages: never accessed, resident nowhere, nothing in flight."""
    st = np.zeros(n, PAGE_DTYPE)
    for f in ("last_access", "insert_step", "evict_step", "pin", "used"):
        st[f] = -1
    st["tier"] = -1
    st["ready"] = np.nan
    return st


class Future:
    """Next-use arrays of a whole trace, computed once in O(n).

    ``next_pos[i]``: index of the next access to the page of access ``i`` (``n`` if none);
    ``first_pos[p]``: index of page ``p``'s first access (``n`` if never).
    """

    def __init__(self, page: np.ndarray, n_pages: int):
        self.n = len(page)
        self.page = np.ascontiguousarray(page, dtype=np.int64)
        self.next_pos, self.first_pos = next_use(self.page, int(n_pages))


def next_use(page: np.ndarray, n_pages: int) -> tuple[np.ndarray, np.ndarray]:
    """``(next_pos, first_pos)`` of a page-id sequence in one backward pass, O(n).

    ``next_pos[i]``: index of the next access to ``page[i]`` (``n`` if none); ``first_pos[p]``:
    index of ``p``'s first access (``n`` if never)."""
    from kvgym.sim import _engine

    page = np.ascontiguousarray(page, dtype=np.int64)
    nxt = np.empty(len(page), np.int64)
    first = np.empty(int(n_pages), np.int64)
    _engine.next_use(page, nxt, first)
    return nxt, first


class SimContext:
    """Views of the per-page state (``state``: a :data:`PAGE_DTYPE` array, new if omitted)."""

    def __init__(self, setup: Setup, regret_horizon: int = 32, state: np.ndarray | None = None):
        n = len(setup.page_bytes)
        self.setup = setup
        self.n_pages = n
        self.tiers = setup.tiers
        self.page_bytes = setup.page_bytes
        self.decode_us = setup.decode_us
        self.pages = setup.pages
        self.regret_horizon = regret_horizon
        self.state = new_page_state(n) if state is None else state
        st = self.state
        self.tier_of = st["tier"]
        self.last_access = st["last_access"]
        self.freq = st["freq"]
        self.weight_sum = st["weight_sum"]
        self.insert_step = st["insert_step"]
        self.evict_step = st["evict_step"]
        self.regret = st["regret"]
        self.pos = 0
        self.step = 0
        self.future: Future | None = None
        #: the trace has a weight column (set by the engine before the first access)
        self.has_weights = False

    def refetch_cost_us(self, pages: np.ndarray, tier) -> np.ndarray:
        """µs to promote ``pages`` from ``tier`` (scalar or per-page array) back to tier 0: one copy on
        an idle link (:meth:`kvgym.sim.tiers.Link.time_us`), plus dequantization."""
        pages = np.asarray(pages, np.int64)
        tier = np.broadcast_to(np.asarray(tier), pages.shape)
        copy = np.zeros(pages.shape)
        for t in np.unique(tier):
            if t > 0:
                link, sel = self.setup.link(int(t), 0), tier == t
                copy[sel] = [link.time_us(int(b)) for b in self.page_bytes[pages[sel]]]
        return copy + self.decode_us[pages]
