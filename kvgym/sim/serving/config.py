"""Serving-mode configuration: a frozen, validated, JSON-serialisable :class:`ServingConfig`.

It names the tiers (from a tier profile, fastest first, tier 0 = the GPU prefix cache), their
capacities in **blocks**, the model geometry (block bytes and compute), the batching limits and
the rules that the engine's docstring (:mod:`kvgym.sim.serving.engine`) defines. Every field is
checked in :meth:`ServingConfig.validate`; an unknown key in :meth:`ServingConfig.from_dict` is
an error listing the valid ones. :meth:`ServingConfig.resolve` turns it, against a trace, into a
:class:`Resolved` (concrete tiers, capacities, block bytes, compute model).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from kvgym.errors import ConfigError
from kvgym.sim.serving.compute import BatchCompute
from kvgym.sim.tiers import Tier, profile
from kvgym.traces.geometry import ModelGeometry
from kvgym.traces.geometry import geometry as geometry_preset
from kvgym.traces.quant import quantization

WRITE_POLICIES = ("write_back", "write_through")
LOOKUPS = ("per_block", "gpu_prefix_first")
LOAD_OVERLAPS = ("async", "layerwise", "sync")


@dataclass(frozen=True)
class ServingConfig:
    """Where prefix blocks live, what computing and moving them costs, and the serving rules.

    Attributes:
        name: label.
        profile: tier profile (``kvgym profiles``): tier latencies and bandwidths (links).
        tiers: names of the profile's tiers to use, fastest first; the first must be the
            profile's tier 0 (the GPU). Default: GPU + host.
        capacities: per tier, blocks it holds: an int, ``"N%"`` of the trace's distinct blocks,
            or ``None`` (unbounded). Empty = all unbounded.
        geometry: model geometry preset: bytes per block
            (``block_tokens * kv_bytes_per_token`` at fp16, then ``quantization``) and compute.
        quantization: storage format of a block (fp16, fp8, int4, int2): bytes only.
        gpu: compute constants (``kvgym/data/compute.json``); ``None`` = the profile's GPU.
        timing: ``False``: no time at all (arrivals count as 0, every duration is 0) and one
            request at a time in trace order, each run to its end before the next is admitted.
        max_running: most requests running at once (vLLM ``max_num_seqs``).
        token_budget: most tokens computed per iteration (vLLM ``max_num_batched_tokens``).
            Defaults 1024 and 8192: vLLM 0.33's for an OpenAI server on an H100/H200
            (``vllm/engine/arg_utils.py``, ``get_batch_defaults``).
        write_policy: ``write_through`` (computed blocks are offered to tier 1 at once, through
            the admission policy; evictions drop) or ``write_back`` (blocks move down only when
            evicted; exclusive).
        lookup: ``per_block`` (each prefix block from the fastest tier holding it) or
            ``gpu_prefix_first`` (vLLM: the longest tier-0 prefix, then lower tiers only).
        load_overlap: ``async`` (vLLM: a request waits, out of the batch, until its loads land),
            ``layerwise`` (SGLang HiCache, LMCache layerwise: the iteration's layers wait for
            their loads, pipelined) or ``sync`` (the iteration waits for every load).
        pin: running requests pin their blocks in tier 0 and reserve their growth; ``False``
            (block-stream cache studies) pins nothing and gives running requests no slots.
        gpu_prefix_cache: ``False``: tier 0 keeps no block after its request ends (vLLM with
            prefix caching off) and lookups skip it.
        cache_partial_tail: cache a prompt's partial last block as a block of its own (needs
            ``pin=False``; it is never part of a usable prefix). For block-stream studies.
        store_output_blocks: write-through also offers the output blocks a request completes
            (``False``: prompt blocks only, vLLM's default ``offload_prompt_only``).
        description: free text.
    """

    name: str = "serving"
    profile: str = "h200-measured"
    tiers: tuple = ("hbm", "host")
    capacities: tuple = ()
    geometry: str = "llama-3.1-8b"
    quantization: str = "fp16"
    gpu: str | None = None
    timing: bool = True
    max_running: int = 1024
    token_budget: int = 8192
    write_policy: str = "write_through"
    lookup: str = "per_block"
    load_overlap: str = "async"
    pin: bool = True
    gpu_prefix_cache: bool = True
    cache_partial_tail: bool = False
    store_output_blocks: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tiers", tuple(self.tiers))
        object.__setattr__(self, "capacities", tuple(self.capacities))
        self.validate()

    def validate(self) -> None:
        where = f"serving config {self.name!r}"
        prof = profile(self.profile)
        names = [t.name for t in prof.tiers]
        if not self.tiers:
            raise ConfigError(f"{where}: tiers must name at least one tier of profile {self.profile!r} ({names})")
        for t in self.tiers:
            if t not in names:
                raise ConfigError(f"{where}: tier {t!r} is not in profile {self.profile!r}; valid: {', '.join(names)}")
        idx = [names.index(t) for t in self.tiers]
        if idx[0] != 0 or idx != sorted(set(idx)):
            raise ConfigError(f"{where}: tiers must start with {names[0]!r} and follow the profile's order "
                              f"({', '.join(names)}) without repeats, got {list(self.tiers)}")
        if self.capacities and len(self.capacities) != len(self.tiers):
            raise ConfigError(f"{where}: capacities has {len(self.capacities)} entries for {len(self.tiers)} tiers")
        for i, c in enumerate(self.capacities):
            _capacity(c, 1, f"{where}: capacities[{i}]")
        geometry_preset(self.geometry)
        quantization(self.quantization)
        for f, valid in (("write_policy", WRITE_POLICIES), ("lookup", LOOKUPS), ("load_overlap", LOAD_OVERLAPS)):
            if getattr(self, f) not in valid:
                raise ConfigError(f"{where}: {f}={getattr(self, f)!r}; valid: {', '.join(valid)}")
        for f in ("timing", "pin", "gpu_prefix_cache", "cache_partial_tail", "store_output_blocks"):
            if not isinstance(getattr(self, f), bool):
                raise ConfigError(f"{where}: {f} must be true or false, got {getattr(self, f)!r}")
        for f in ("max_running", "token_budget"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{where}: {f} must be an int >= 1, got {v!r}")
        if self.cache_partial_tail and self.pin:
            raise ConfigError(f"{where}: cache_partial_tail needs pin=false (a block-stream setting)")
        BatchCompute.of(geometry_preset(self.geometry), self.gpu or self.profile)

    def with_(self, **changes) -> ServingConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tiers"], d["capacities"] = list(self.tiers), list(self.capacities)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ServingConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"serving config: unknown keys {sorted(unknown)}; valid: {', '.join(sorted(known))}")
        return cls(**d)

    def resolve(self, n_blocks: int, block_tokens: int) -> Resolved:
        """Concrete tiers, capacities (blocks; ``None`` = unbounded), block bytes and compute."""
        prof = profile(self.profile)
        by_name = {t.name: t for t in prof.tiers}
        geo = geometry_preset(self.geometry)
        fp16 = block_tokens * geo.kv_bytes_per_token()
        block_bytes = int(quantization(self.quantization).footprint(fp16))
        caps = tuple(_capacity(c, n_blocks, f"serving config {self.name!r}: capacities[{i}]")
                     for i, c in enumerate(self.capacities or (None,) * len(self.tiers)))
        tiers = tuple(replace(by_name[n], capacity_bytes=None if c is None else c * block_bytes)
                      for n, c in zip(self.tiers, caps))
        return Resolved(self, tiers, caps, block_bytes, geo, BatchCompute.of(geo, self.gpu or self.profile))


def _capacity(spec, n_blocks: int, where: str) -> int | None:
    """Blocks of a capacity spec: an int >= 1, ``"N%"`` (0 < N <= 100) of ``n_blocks`` (at least 1),
    or ``None`` (unbounded). Blocks, not the bytes of a scenario's capacities."""
    if spec is None:
        return None
    if isinstance(spec, str) and spec.endswith("%"):
        try:
            pct = float(spec[:-1])
        except ValueError:
            pct = math.nan
        if not (math.isfinite(pct) and 0 < pct <= 100):
            raise ConfigError(f"{where}: capacity {spec!r} must be 'N%' with 0 < N <= 100")
        return max(1, int(n_blocks * (pct / 100)))
    if isinstance(spec, bool) or not isinstance(spec, int) or spec < 1:
        raise ConfigError(f"{where}: capacity must be an int >= 1 (blocks), 'N%' or null, got {spec!r}")
    return spec


@dataclass(frozen=True)
class Resolved:
    """A :class:`ServingConfig` resolved against a trace."""

    config: ServingConfig
    tiers: tuple[Tier, ...]
    capacities: tuple[int | None, ...]
    block_bytes: int
    geometry: ModelGeometry
    compute: BatchCompute
