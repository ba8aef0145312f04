"""The one metrics object used by the engine, the fast path, the env and the harness.

Counts are ints; times are µs; bytes are bytes. Per-tier lists are indexed by tier (0 =
fastest). Per-link lists are indexed by the tier that owns the link (see ``kvgym.sim.tiers``:
a promotion from tier i uses link i, a demotion into tier i uses link i); entry 0 is always 0
because tier 0 has no link of its own.

Definitions:
- ``accesses`` = ``hits + misses``; ``hits`` = accesses served by tier 0.
- ``tier_hits[i]`` (i > 0): misses served by a page resident in tier i. ``full_misses``: misses
  of pages resident nowhere (first touches and pages dropped from the coldest tier), served
  from the backing tier; ``first_touch_misses`` is the first-touch part.
  ``hits + sum(tier_hits[1:]) + full_misses == accesses``.
- ``evictions[i]``: pages evicted from tier i (demoted to i+1, or dropped from the last tier).
- ``link_bytes_demand/prefetch/demotion[i]``: bytes moved over link i by demand promotions,
  prefetch promotions and demotions.
- ``prefetch_issued = prefetch_useful + prefetch_wasted`` at the end of a run; ``prefetch_late``
  (⊆ useful): demanded while still in flight (``overlap`` cost model only).
- ``stall_us``: time steps waited for demand data; ``compute_us``: decode compute;
  ``total_time_us = stall_us + compute_us``. In the ``serial`` cost model every charge is
  stall and compute is 0, so ``total_time_us`` is kv-hierarchy-lab's total latency.
- ``peak_bytes[i]``: most bytes tier i held right after any insertion.
- ``steps``: decode steps; ``tokens``: (step, sequence) pairs, i.e. tokens decoded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Metrics:
    n_tiers: int
    accesses: int = 0
    hits: int = 0
    misses: int = 0
    full_misses: int = 0
    first_touch_misses: int = 0
    tier_hits: list[int] = field(default_factory=list)
    evictions: list[int] = field(default_factory=list)
    link_bytes_demand: list[int] = field(default_factory=list)
    link_bytes_prefetch: list[int] = field(default_factory=list)
    link_bytes_demotion: list[int] = field(default_factory=list)
    prefetch_issued: int = 0
    prefetch_useful: int = 0
    prefetch_late: int = 0
    prefetch_wasted: int = 0
    stall_us: float = 0.0
    compute_us: float = 0.0
    total_time_us: float = 0.0
    peak_bytes: list[int] = field(default_factory=list)
    steps: int = 0
    tokens: int = 0

    def __post_init__(self) -> None:
        for name in ("tier_hits", "evictions", "link_bytes_demand", "link_bytes_prefetch",
                     "link_bytes_demotion", "peak_bytes"):
            if not getattr(self, name):
                setattr(self, name, [0] * self.n_tiers)

    # Derived figures -------------------------------------------------------------------
    @property
    def hit_rate(self) -> float:
        """Tier-0 hit rate (0.0 with no accesses)."""
        return self.hits / self.accesses if self.accesses else 0.0

    @property
    def bytes_moved(self) -> int:
        return sum(self.link_bytes_demand) + sum(self.link_bytes_prefetch) + sum(self.link_bytes_demotion)

    @property
    def avg_access_latency_us(self) -> float:
        return self.total_time_us / self.accesses if self.accesses else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / (self.total_time_us * 1e-6) if self.total_time_us > 0 else 0.0

    @property
    def prefetch_usefulness(self) -> float:
        return self.prefetch_useful / self.prefetch_issued if self.prefetch_issued else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(hit_rate=self.hit_rate, bytes_moved=self.bytes_moved,
                 avg_access_latency_us=self.avg_access_latency_us, tokens_per_s=self.tokens_per_s,
                 prefetch_usefulness=self.prefetch_usefulness)
        return d

    def summary(self) -> dict:
        """The headline figures, for tables."""
        return {"accesses": self.accesses, "hit_rate": round(self.hit_rate, 6), "misses": self.misses,
                "evictions": sum(self.evictions), "bytes_moved": self.bytes_moved,
                "stall_ms": round(self.stall_us / 1e3, 3), "total_ms": round(self.total_time_us / 1e3, 3),
                "tokens_per_s": round(self.tokens_per_s, 1), "prefetch_useful": self.prefetch_useful,
                "prefetch_issued": self.prefetch_issued}
