"""The one metrics object used by both engines, the env and the harness.

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
    def bytes_demand(self) -> int:
        return sum(self.link_bytes_demand)

    @property
    def bytes_prefetch(self) -> int:
        return sum(self.link_bytes_prefetch)

    @property
    def bytes_demotion(self) -> int:
        return sum(self.link_bytes_demotion)

    @property
    def bytes_moved(self) -> int:
        return self.bytes_demand + self.bytes_prefetch + self.bytes_demotion

    @property
    def total_evictions(self) -> int:
        return sum(self.evictions)

    @property
    def avg_access_latency_us(self) -> float:
        return self.total_time_us / self.accesses if self.accesses else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / (self.total_time_us * 1e-6) if self.total_time_us > 0 else 0.0

    @property
    def prefetch_usefulness(self) -> float:
        return self.prefetch_useful / self.prefetch_issued if self.prefetch_issued else 0.0

    #: The derived figures :meth:`to_dict` adds to the fields.
    DERIVED = ("hit_rate", "bytes_demand", "bytes_prefetch", "bytes_demotion", "bytes_moved", "total_evictions",
               "avg_access_latency_us", "tokens_per_s", "prefetch_usefulness")

    def to_dict(self) -> dict:
        """Every field (per-tier lists as lists) and every derived figure: the one flat record of
        a run (``kvgym run --json``, the harness's result rows, the env's episode info)."""
        d = asdict(self)
        d.update({k: getattr(self, k) for k in self.DERIVED})
        return d

    def summary(self) -> dict:
        """The headline figures, for tables."""
        return {"accesses": self.accesses, "hit_rate": round(self.hit_rate, 6), "misses": self.misses,
                "evictions": sum(self.evictions), "bytes_moved": self.bytes_moved,
                "stall_ms": round(self.stall_us / 1e3, 3), "total_ms": round(self.total_time_us / 1e3, 3),
                "tokens_per_s": round(self.tokens_per_s, 1), "prefetch_useful": self.prefetch_useful,
                "prefetch_issued": self.prefetch_issued}


@dataclass
class ServingMetrics:
    """The metrics of a serving-mode run (:mod:`kvgym.sim.serving`), beside :class:`Metrics`.

    Units as in :class:`Metrics`: counts, bytes, µs. Per-tier lists are indexed by serving tier
    (0 = the GPU prefix cache); per-link lists by the tier that owns the link (a load from tier
    i and a store or demotion into tier i use link i; entry 0 is always 0). Fields that
    :class:`Metrics` also has keep its definitions: ``n_tiers``, ``accesses``, ``hits``,
    ``misses``, ``evictions``, ``peak_bytes``.

    Blocks and hits:

    - ``accesses``: prompt block references (every cacheable block of every prompt chain, once
      per request); ``hits``: those whose block was resident in tier 0 when referenced (whether
      or not it was usable: this is the plain cache's hit, the one libcachesim counts);
      ``misses = accesses - hits``.
    - ``prefix_hits[t]``: blocks of the usable cached prefix served by tier t (t = 0: a GPU
      prefix-cache hit; t > 0: loaded over link t); ``prefix_hit_tokens[t]``: their tokens.
    - ``broken_prefix_blocks``: prompt blocks recomputed although some tier held them (after the
      first miss, or past the usable limit).
    - ``prompt_blocks``, ``prompt_tokens``; ``prefill_tokens_computed`` (prompt tokens prefilled)
      and ``prefill_tokens_saved`` (prompt tokens served by a cached prefix): computed + saved =
      prompt tokens. ``sum(prefix_hit_tokens)`` exceeds ``saved`` by one token per fully served
      block-aligned prompt (its last token is recomputed).
    - ``output_blocks``: output blocks completed with an id (reusable by a later turn).
    - ``loads[t]``: blocks loaded from tier t; ``stores[t]``: blocks stored into tier t
      (write-through stores and write-back demotions); ``stores_skipped[t]``: offered blocks the
      admission policy refused (each offer counts, retries included); ``stores_failed[t]``: store
      batches that did not fit (a batch stores all its blocks or none; each retry counts, as
      vLLM counts its failed ``prepare_store`` calls); ``evictions[t]``: blocks evicted from
      tier t (``drops[t]`` of them kept no copy anywhere below).
    - ``link_bytes_load[i]`` / ``link_bytes_store[i]``: bytes over link i toward / away from
      tier 0.

    Time (all 0 when timing is off):

    - per request: queueing delay = admission - arrival; TTFT = end of the iteration that
      computes its last prompt token - arrival; TPOT = (finish - first token) / (output - 1)
      for requests with at least 2 output tokens.
    - ``ttft_*_us``, ``queue_*_us``: mean and nearest-rank percentiles (the p-th percentile of
      n sorted values is value number ``ceil(p * n / 100)``, 1-based); means are sums in request
      order divided by the count. ``tpot_mean_us`` likewise.
    - ``makespan_us``: last finish - first arrival; ``requests_per_s = requests / makespan``;
      ``compute_us``: sum of iteration times; ``iterations``: iterations run.
    """

    n_tiers: int
    requests: int = 0
    accesses: int = 0
    hits: int = 0
    misses: int = 0
    prompt_blocks: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    output_blocks: int = 0
    prefix_hits: list[int] = field(default_factory=list)
    prefix_hit_tokens: list[int] = field(default_factory=list)
    broken_prefix_blocks: int = 0
    prefill_tokens_computed: int = 0
    prefill_tokens_saved: int = 0
    loads: list[int] = field(default_factory=list)
    stores: list[int] = field(default_factory=list)
    stores_skipped: list[int] = field(default_factory=list)
    stores_failed: list[int] = field(default_factory=list)
    evictions: list[int] = field(default_factory=list)
    drops: list[int] = field(default_factory=list)
    link_bytes_load: list[int] = field(default_factory=list)
    link_bytes_store: list[int] = field(default_factory=list)
    peak_bytes: list[int] = field(default_factory=list)
    ttft_mean_us: float = 0.0
    ttft_p50_us: float = 0.0
    ttft_p90_us: float = 0.0
    ttft_p99_us: float = 0.0
    tpot_mean_us: float = 0.0
    queue_mean_us: float = 0.0
    queue_p90_us: float = 0.0
    makespan_us: float = 0.0
    requests_per_s: float = 0.0
    compute_us: float = 0.0
    iterations: int = 0

    def __post_init__(self) -> None:
        for name in ("prefix_hits", "prefix_hit_tokens", "loads", "stores", "stores_skipped", "stores_failed",
                     "evictions", "drops", "link_bytes_load", "link_bytes_store", "peak_bytes"):
            if not getattr(self, name):
                setattr(self, name, [0] * self.n_tiers)

    @property
    def hit_rate(self) -> float:
        """Tier-0 resident hit rate of prompt block references (0.0 with none)."""
        return self.hits / self.accesses if self.accesses else 0.0

    def prefix_hit_rate(self, tier: int) -> float:
        """Share of prompt blocks served by ``tier`` as part of a usable prefix."""
        return self.prefix_hits[tier] / self.prompt_blocks if self.prompt_blocks else 0.0

    def prefix_token_rate(self, tier: int) -> float:
        """Share of prompt tokens served by ``tier`` as part of a usable prefix."""
        return self.prefix_hit_tokens[tier] / self.prompt_tokens if self.prompt_tokens else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(hit_rate=self.hit_rate,
                 prefix_hit_rate=[self.prefix_hit_rate(t) for t in range(self.n_tiers)],
                 prefix_token_rate=[self.prefix_token_rate(t) for t in range(self.n_tiers)])
        return d

    def summary(self) -> dict:
        """The headline figures, for tables."""
        return {"requests": self.requests, "prefix_hit_rate": round(sum(self.prefix_hits) / self.prompt_blocks, 6)
                if self.prompt_blocks else 0.0, "prefill_tokens_computed": self.prefill_tokens_computed,
                "ttft_mean_ms": round(self.ttft_mean_us / 1e3, 3), "ttft_p99_ms": round(self.ttft_p99_us / 1e3, 3),
                "tpot_mean_ms": round(self.tpot_mean_us / 1e3, 3), "requests_per_s": round(self.requests_per_s, 3),
                "stores": sum(self.stores), "evictions": sum(self.evictions)}


def nearest_rank(values, p: int) -> float:
    """The p-th percentile (integer p in 1..100) of ``values`` by the nearest-rank rule: the
    ``ceil(p * n / 100)``-th smallest (1-based). 0.0 for no values."""
    n = len(values)
    if n == 0:
        return 0.0
    return float(sorted(values)[(p * n + 99) // 100 - 1])


def sequential_mean(values) -> float:
    """Sum in the given order (plain float64 additions), divided by the count; 0.0 for none."""
    s = 0.0
    for v in values:
        s += float(v)
    return s / len(values) if len(values) else 0.0
