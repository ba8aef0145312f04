"""Scenarios: a tier profile with capacities, a cost model, a quantization, prefetch on/off.

A :class:`Scenario` is a frozen, JSON-serialisable config; :meth:`Scenario.build` resolves it
against a trace's page table into a :class:`Setup` (concrete tiers, per-page stored bytes and
decode cost, compute model) and checks that the trace fits (no page larger than any bounded
tier). All validation of scenario fields happens in :meth:`Scenario.validate`.

Capacities, one entry per tier of the profile: an int (bytes), a string ``"10%"`` (a fraction
of the page table's total stored bytes), or ``None`` (the profile's value). An empty tuple
keeps every profile capacity.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from functools import cached_property

import numpy as np

from kvgym.errors import ConfigError, SimulationError
from kvgym.sim.quant import Quantization, quantization
from kvgym.sim.tiers import ComputeModel, Link, Tier, make_link, profile
from kvgym.traces.format import PageTable

COST_MODELS = ("serial", "overlap")
DECODE_MODELS = ("calibrated", "parity")
LOWER_POLICIES = ("lru", "same")
FIRST_TOUCH = ("backing", "create")
# kv-hierarchy-lab v0.1's fixed decode penalty per page use, µs.
PARITY_DECODE_US = {"fp16": 0.0, "fp8": 10.0, "int4": 30.0, "int2": 60.0}


@dataclass(frozen=True)
class Scenario:
    """Where KV lives and what moving it costs.

    Attributes:
        name: label.
        profile: tier profile name (``kvgym profiles``).
        capacities: per-tier capacity specs (see module docstring).
        cost_model: ``overlap`` (decode-step clock, FIFO links, prefetch overlaps compute) or
            ``serial`` (kv-hierarchy-lab's sum of transfer costs).
        quantization: storage format of every page (fp16, fp8, int4, int2).
        decode: ``calibrated`` (dequant throughput from the profile's calibration) or
            ``parity`` (kv-hierarchy-lab's fixed per-page penalty).
        prefetch: whether the prefetch phase runs after each step.
        max_prefetch: most prefetches issued per step.
        backing_tier: tier that first touches come from (-1 = the last tier).
        lower_policy: eviction in tiers below 0: ``lru``, or ``same`` (the tier-0 policy, as
            in kv-hierarchy-lab).
        first_touch: where a page's first access is served from: ``backing`` (cold-inserted in
            the backing tier and promoted from it, kv-hierarchy-lab's rule) or ``create`` (the
            page is new KV written by the GPU: placed straight into tier 0, no transfer, no
            bytes; still counted as a first-touch miss). Pages dropped from the last tier and
            touched again always come from the backing tier.
        description: free text.
    """

    name: str = "default"
    profile: str = "h200-measured"
    capacities: tuple = ()
    cost_model: str = "overlap"
    quantization: str = "fp16"
    decode: str = "calibrated"
    prefetch: bool = False
    max_prefetch: int = 2
    backing_tier: int = -1
    lower_policy: str = "lru"
    first_touch: str = "backing"
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "capacities", tuple(self.capacities))
        self.validate()

    def validate(self) -> None:
        where = f"scenario {self.name!r}"
        prof = profile(self.profile)
        quantization(self.quantization)
        for f, valid in (("cost_model", COST_MODELS), ("decode", DECODE_MODELS), ("lower_policy", LOWER_POLICIES),
                         ("first_touch", FIRST_TOUCH)):
            if getattr(self, f) not in valid:
                raise ConfigError(f"{where}: {f}={getattr(self, f)!r}; valid: {', '.join(valid)}")
        if not isinstance(self.prefetch, bool):
            raise ConfigError(f"{where}: prefetch must be true or false, got {self.prefetch!r}")
        if not isinstance(self.max_prefetch, int) or self.max_prefetch < 0:
            raise ConfigError(f"{where}: max_prefetch must be an int >= 0, got {self.max_prefetch!r}")
        n = len(prof.tiers)
        if not -n <= self.backing_tier < n:
            raise ConfigError(f"{where}: backing_tier {self.backing_tier} outside the {n} tiers")
        if self.capacities and len(self.capacities) != n:
            raise ConfigError(f"{where}: capacities has {len(self.capacities)} entries, profile "
                              f"{self.profile!r} has {n} tiers")
        for i, c in enumerate(self.capacities):
            _parse_capacity(c, 1, f"{where}: capacities[{i}]")

    def with_(self, **changes) -> Scenario:
        return replace(self, **changes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["capacities"] = list(self.capacities)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Scenario:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"scenario: unknown keys {sorted(unknown)}; valid: {', '.join(sorted(known))}")
        return cls(**d)

    def build(self, pages: PageTable) -> Setup:
        """Resolve against a page table: concrete tiers, per-page bytes and decode cost."""
        prof = profile(self.profile)
        q = quantization(self.quantization)
        if self.decode == "parity":
            q = replace(q, dequant_bytes_per_us=math.inf, fixed_us=PARITY_DECODE_US[q.name])
        size = pages.bytes.astype(np.int64) if pages.bytes is not None else np.asarray(q.footprint(pages.fp16_bytes), np.int64)
        total = int(size.sum())
        tiers = list(prof.tiers)
        for i, c in enumerate(self.capacities):
            if c is not None:
                tiers[i] = replace(tiers[i], capacity_bytes=_parse_capacity(c, total, f"scenario {self.name!r}: capacities[{i}]"))
        tiers = tuple(tiers)
        biggest = int(size.max()) if len(size) else 0
        for t in tiers:
            if t.capacity_bytes is not None and biggest > t.capacity_bytes:
                pid = int(np.argmax(size))
                raise ConfigError(f"scenario {self.name!r}: page {pid} ({biggest} bytes) is larger than tier "
                                  f"{t.name!r} ({t.capacity_bytes} bytes)")
        decode = q.decode_us(pages.fp16_bytes)
        return Setup(self, tiers, prof.compute, q, size, np.asarray(decode, np.float64), pages)


def _parse_capacity(spec, total: int, where: str) -> int | None:
    if spec is None:
        return None
    if isinstance(spec, str) and spec.endswith("%"):
        try:
            frac = float(spec[:-1]) / 100
        except ValueError:
            raise ConfigError(f"{where}: capacity {spec!r} is not a percentage") from None
        if not frac > 0:
            raise ConfigError(f"{where}: capacity {spec!r} must be > 0%")
        return max(1, int(total * frac))
    if isinstance(spec, bool) or not isinstance(spec, int) or spec <= 0:
        raise ConfigError(f"{where}: capacity must be a positive int (bytes), 'N%' or null, got {spec!r}")
    return spec


@dataclass(frozen=True, eq=False)
class Setup:
    """A scenario resolved against a page table. Arrays are indexed by page id."""

    scenario: Scenario
    tiers: tuple[Tier, ...]
    compute: ComputeModel
    quant: Quantization
    page_bytes: np.ndarray
    decode_us: np.ndarray
    pages: PageTable

    @property
    def backing(self) -> int:
        return self.scenario.backing_tier % len(self.tiers)

    @cached_property
    def _links(self) -> dict[tuple[int, int], Link]:
        curves = profile(self.scenario.profile).curves
        n = len(self.tiers)
        return {(a, b): make_link(self.tiers, curves, a, b) for a in range(n) for b in range(n) if a != b}

    def link(self, src: int, dst: int) -> Link:
        """The copy-time model from tier ``src`` to tier ``dst`` (see :mod:`kvgym.sim.tiers`)."""
        return self._links[src, dst]

    def check_steps(self, step: np.ndarray, page: np.ndarray, source: str = "trace") -> None:
        """Raise if one step's distinct pages alone overflow tier 0 (they are all pinned).

        ``step`` must be non-decreasing and ``page`` inside the page table (the loader checks both).
        One pass in compiled code (:mod:`kvgym.sim.cengine`), so it is cheap next to a run.
        """
        from kvgym.sim import _engine

        cap = self.tiers[0].capacity_bytes
        if cap is None or len(step) == 0:
            return
        bad = _engine.check_steps(np.ascontiguousarray(step, np.int64), np.ascontiguousarray(page, np.int64),
                                  np.ascontiguousarray(self.page_bytes, np.int64), int(cap))
        if bad is not None:
            raise SimulationError(f"{source}: step {bad[0]} needs {bad[1]} bytes of distinct pages "
                                  f"at once, more than tier 0 {self.tiers[0].name!r} holds ({cap} bytes)")

    def to_dict(self) -> dict:
        return {"scenario": self.scenario.to_dict(), "tiers": [t.to_dict() for t in self.tiers]}
