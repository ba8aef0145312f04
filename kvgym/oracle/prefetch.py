"""What prefetching can buy: Cao et al.'s integrated prefetching and caching schedules, given the future.

Reference: P. Cao, E. W. Felten, A. R. Karlin, K. Li, "A study of integrated prefetching and
caching strategies", SIGMETRICS 1995. Their model, used here as published:

- one cache of ``K`` pages; a reference to a page in the cache takes 1 time unit (the CPU time
  of one access); a fetch takes ``F`` time units and the single disk serves one fetch at a time;
- a page being fetched occupies its cache slot from the start of the fetch (its victim leaves
  then); a reference to a page not yet arrived stalls the CPU until it arrives;
- elapsed time = accesses + stall.

Schedules, all given the whole future (offline), on the flat page sequence:

- ``demand_min``: no prefetch, Belady's MIN: every miss stalls ``F`` (elapsed ``n + F * misses``).
- ``conservative``: exactly MIN's fetches and victims, in MIN's order, but each fetch starts as
  early as the rules allow: not before the previous fetch ends (one disk), and not before the CPU
  has finished the victim's last reference before it is replaced (first opportunity; "do no
  harm" holds because MIN's victim is next used after the fetched page). Same number of fetches
  as MIN, never more elapsed time. Cao et al. prove it within a factor ``1 + F / K`` of optimal
  elapsed time.
- ``aggressive``: whenever the disk is free, fetch the next page in the reference stream that is
  not in the cache (optimal prefetching), evicting the cached page whose next reference is
  farthest (optimal replacement), but only if that page is referenced after the one fetched (do
  no harm); otherwise wait until the CPU moves on. Within a factor ``min(1 + F, 2)`` of optimal.

Decisions are taken at the exact time the disk frees (times are real numbers); the CPU position
at that time is the access being served or waited for. For kvgym scenarios ``F`` is the time to
promote a page from the first lower tier, in units of the mean decode compute per access
(:func:`fetch_time_units`); the model ignores the engine's multi-access steps, lower tiers
and link concurrency (assumptions stated in ``docs/oracle.md``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numba
import numpy as np

from kvgym.errors import ConfigError
from kvgym.oracle.belady import _down, _up, belady
from kvgym.oracle.nextuse import next_use


@dataclass(frozen=True)
class PrefetchSchedule:
    """Outcome of one schedule: fetches (disk reads), stall and elapsed time in access units."""

    name: str
    accesses: int
    capacity: int
    fetch_time: float
    fetches: int
    stall: float
    elapsed: float

    @property
    def stall_per_access(self) -> float:
        return self.stall / self.accesses if self.accesses else 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@numba.njit(cache=True)
def _conservative(miss_pos, last_victim_use, F, n):
    """Elapsed time of MIN's fetches started at their first opportunity (see module docstring)."""
    T = 0.0          # completion time of the previous reference
    disk = 0.0       # time the disk becomes free
    done = np.zeros(n, np.float64)   # completion time of each reference
    k = 0
    nk = miss_pos.shape[0]
    for i in range(n):
        start = T
        if k < nk and miss_pos[k] == i:
            lv = last_victim_use[k]
            ready = 0.0 if lv < 0 else done[lv]
            s = max(ready, disk)
            arrive = s + F
            disk = arrive
            start = max(start, arrive)
            k += 1
        T = start + 1.0
        done[i] = T
    return T


@numba.njit(cache=True)
def _aggressive(page, nxt, n_pages, K, F):
    n = page.shape[0]
    h = np.empty(max(K, 1), np.int64)      # max-heap of cached pages by next reference
    hpos = np.full(n_pages, -1, np.int64)
    key = np.zeros(n_pages, np.int64)
    arrival = np.zeros(n_pages, np.float64)
    size = 0
    now = 0.0
    disk = 0.0
    look = 0
    fetches = 0
    i = 0
    while i < n:
        p = page[i]
        present = hpos[p] >= 0 and arrival[p] <= now
        # Disk decisions with the CPU at reference i: while it waits (disk free by ``now``) or
        # while it serves reference i (the disk frees during [now, now + 1)).
        while disk <= now or (present and disk < now + 1.0):
            look = max(look, i)
            while look < n and hpos[page[look]] >= 0:
                look += 1
            if look >= n:
                break
            q = page[look]
            if size >= K:
                v = h[0]
                if key[v] <= look:   # do no harm: the victim must be used after q
                    break
                hpos[v] = -1
                size -= 1
                if size > 0:
                    h[0] = h[size]
                    hpos[h[0]] = 0
                    _down(h, key, hpos, 0, size)
            key[q] = look
            h[size] = q
            hpos[q] = size
            size += 1
            _up(h, key, hpos, size - 1)
            t = max(now, disk)
            arrival[q] = t + F
            disk = t + F
            fetches += 1
        if hpos[p] < 0:
            now = disk       # not cached, not fetched: the disk is busy, wait for it
            continue
        if arrival[p] > now:
            now = arrival[p]  # in flight: wait for it
            continue
        now += 1.0
        key[p] = nxt[i]
        _up(h, key, hpos, hpos[p])
        _down(h, key, hpos, hpos[p], size)
        i += 1
    return fetches, now


def _check(capacity, fetch_time):
    if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 1:
        raise ConfigError(f"prefetch schedules: capacity must be an int >= 1 (pages), got {capacity!r}")
    if not (isinstance(fetch_time, (int, float)) and math.isfinite(fetch_time) and fetch_time >= 0):
        raise ConfigError(f"prefetch schedules: fetch_time must be a finite number >= 0 (access units), got {fetch_time!r}")


def prefetch_schedules(page, capacity: int, fetch_time: float, n_pages: int | None = None) -> dict[str, PrefetchSchedule]:
    """``demand_min``, ``conservative`` and ``aggressive`` on the flat sequence ``page``."""
    _check(capacity, fetch_time)
    page = np.ascontiguousarray(page, np.int64)
    n = len(page)
    if n_pages is None:
        n_pages = int(page.max()) + 1 if n else 0
    F = float(fetch_time)
    nxt, _ = next_use(page, n_pages)
    r = belady(page, int(capacity), n_pages=n_pages, next_pos=nxt, record=True)
    miss_pos = np.flatnonzero(~r.hits)
    # Victim of each miss (-1 while the cache fills) and its last reference before that miss.
    victim = np.full(len(miss_pos), -1, np.int64)
    idx = np.searchsorted(miss_pos, r.evict_pos)
    victim[idx] = r.evict_page
    last_use = np.full(len(miss_pos), -1, np.int64)
    if len(r.evict_page):
        order = np.argsort(page, kind="stable")
        key = page[order] * (n + 1) + order
        q = np.searchsorted(key, r.evict_page * (n + 1) + r.evict_pos, side="left") - 1
        last_use[idx] = order[q]
    out = {"demand_min": PrefetchSchedule("demand_min", n, int(capacity), F, r.misses, F * r.misses, n + F * r.misses)}
    el = float(_conservative(miss_pos.astype(np.int64), last_use, F, n)) if n else 0.0
    out["conservative"] = PrefetchSchedule("conservative", n, int(capacity), F, r.misses, el - n, el)
    fetches, el = _aggressive(page, nxt, int(n_pages), int(capacity), F) if n else (0, 0.0)
    out["aggressive"] = PrefetchSchedule("aggressive", n, int(capacity), F, int(fetches), float(el) - n, float(el))
    return out


def fetch_time_units(setup, trace) -> float:
    """``F`` for a kvgym scenario: promotion time of one page from tier 1 (one copy on an idle link,
    µs) divided by the mean ``overlap`` compute per access (µs); the smallest page size is used."""
    from kvgym.oracle.hierarchy import compute_us

    if len(trace) == 0 or len(setup.tiers) < 2:
        return 0.0
    s = int(setup.page_bytes[np.unique(trace.page)].min())
    per_access = compute_us(trace, setup) / len(trace)
    return setup.link(1, 0).time_us(s) / per_access if per_access > 0 else math.inf
