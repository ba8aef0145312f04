"""The observation spec: candidate selection, features and context.

The compiled engine computes every observation (``kvgym/sim/cengine/observe.c``); this module is
its specification and names the features.

**Candidate selection** (eviction phase). Eligible pages are the unpinned tier-0 residents. They
are ordered by last use (the ``lru`` policy's order: the serial of each page's latest access or
entry into tier 0). If at most ``k`` are eligible all are shown. Otherwise: (1) the
``k - sample`` least recently used, the LRU tail; (2) up to
``sample`` others drawn uniformly without replacement by rejection over tier 0's residents
(proposal ``i`` takes the resident in slot ``⌊u_i · residents⌋``, ``u_i`` the ``i``-th output of
the SplitMix64 generator seeded with the decision seed (``splitmix64(seed ^ splitmix64(decision))``);
at most ``64 * sample`` proposals; pinned, tail and already drawn pages are rejected) over tier 0's
slots (a page is appended on entry and swap-removed on exit); (3) if fewer were drawn (eligible
pages are a tiny share of tier 0), the tail is extended to fill the slots. Shown candidates are
sorted by last use: slot 0 is the least recently used page, ``lru``'s own victim. Cost: O(k) plus
the proposals, independent of tier 0's size when most residents are eligible.

**Features** (one row per candidate, all in ``[0, 1]``, float32); ``squash(x, τ) = x / (x + τ)``
maps ``[0, ∞)`` onto ``[0, 1)`` monotonically (τ is where it reaches 0.5):

====  ==============  =====================================================================
 #    name            definition
====  ==============  =====================================================================
 0    recency         squash(steps since last use, 16); last use = last access, or entry into
                      tier 0 if later (eviction phase); 1.0 if never used
 1    frequency       squash(accesses so far, 4)
 2    attention       squash(accumulated attention weight, 1)
 3    size            stored bytes (under the scenario's quantization) / largest page's bytes
 4    tier            tier the page would fall to (eviction: 1) or comes from (prefetch; the
                      backing tier when resident nowhere), / (tiers - 1)
 5    refetch_cost    squash(µs to bring it back to tier 0 from that tier: one copy on an
                      idle link, ``Link.time_us``, + dequantization, 100)
 6    layer           layer / largest layer index (0 with one layer)
 7    age             squash(steps since it last entered tier 0, 16); 1.0 if never
 8    regret          squash(re-references within ``regret_horizon`` steps of a tier-0
                      eviction, 1)
 9    evicted_ago     squash(steps since its last tier-0 eviction, 16); 1.0 if never
 10   prefetched      1.0 if it sits in tier 0 as a prefetch not yet used, else 0.0
====  ==============  =====================================================================

**Context** (float32, in ``[0, 1]``), ``n`` = number of tiers: ``[0, n)`` occupancy of each tier
(used / capacity; 0 for an unbounded tier); ``[n, 2n-1)`` backlog of each link 1..n-1,
squash(µs from the current step's start until its first channel is free, 100) (0 under the
serial cost model); then progress (accesses processed / accesses in the episode), pressure (stored bytes of the
current step's distinct pages / tier-0 capacity), miss rate so far, eligible share
(eligible / (eligible + k)), phase (0 eviction, 1 prefetch), prefetch-room (1 if this eviction
makes room for a prefetch).
"""

from __future__ import annotations

FEATURES = ("recency", "frequency", "attention", "size", "tier", "refetch_cost", "layer", "age", "regret",
            "evicted_ago", "prefetched")
N_FEATURES = len(FEATURES)
#: Feature normalisation scales (``squash(x, tau)``), as the compiled code uses them.
TAU_STEPS, TAU_FREQ, TAU_WEIGHT, TAU_US, TAU_REGRET = 16.0, 4.0, 1.0, 100.0, 1.0


def context_names(n_tiers: int) -> tuple[str, ...]:
    return (tuple(f"occupancy_{t}" for t in range(n_tiers)) + tuple(f"backlog_{t}" for t in range(1, n_tiers))
            + ("progress", "pressure", "miss_rate", "eligible", "phase", "prefetch_room"))


def n_context(n_tiers: int) -> int:
    return 2 * n_tiers + 5
