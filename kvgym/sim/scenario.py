"""Scenarios: a tier profile with capacities, a cost model, a quantization, prefetch on/off.

A :class:`Scenario` is a frozen, JSON-serialisable config, fully validated when it is made
(:meth:`Scenario.validate`: every field's type and range, each error one line naming the field
and what is valid). :meth:`Scenario.build` resolves it against a trace into a :class:`Setup`
(concrete tiers, per-page stored bytes and decode cost, compute model) and checks that the trace
fits (no page larger than any bounded tier).

**Capacities**, one entry per tier of the profile (an empty list keeps every profile capacity):

- an int: bytes, ``1 <= c < 2**63``;
- ``"N%"``: N percent (``0 < N <= 100``) of the page table's total stored bytes (every page of
  the table under the scenario's quantization), at least 1 byte;
- ``"auto:F"`` (``0 <= F <= 1``): sized from the trace's **feasible tier-0 range**, from its
  minimum (the largest step's distinct pages, which are all pinned at once) to its footprint (the
  distinct pages the trace touches; a tier this large never evicts): ``min + F * (footprint -
  min)`` bytes, so ``auto:0`` is the smallest tier 0 the trace fits in and ``auto:0.5`` halfway;
  it needs the trace's accesses (:meth:`Scenario.build` ``accesses``);
- ``"N pages"`` (N an int >= 1; also ``"1 page"``): N times the **largest** stored page of the
  page table (so N pages of any size fit);
- ``null``: the profile's value.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from functools import cached_property

import numpy as np

from kvgym.errors import ConfigError, SimulationError
from kvgym.params import check, invalid, need_bool, need_choice, need_int, need_str
from kvgym.sim.tiers import ComputeModel, Link, Tier, make_link, profile, profiles
from kvgym.traces.format import PageTable
from kvgym.traces.quant import SCHEMES as QUANTIZATIONS
from kvgym.traces.quant import Quantization, quantization

COST_MODELS = ("serial", "overlap")
DECODE_MODELS = ("calibrated", "parity")
LOWER_POLICIES = ("lru", "same")
FIRST_TOUCH = ("backing", "create")
# kv-hierarchy-lab v0.1's fixed decode penalty per page use, µs.
PARITY_DECODE_US = {"fp16": 0.0, "fp8": 10.0, "int4": 30.0, "int2": 60.0}
MAX_BYTES = 2**63 - 1
MAX_PREFETCH = 1 << 20
CAPACITY_FORMS = ("an int of bytes in [1, 2**63), 'N%' (0 < N <= 100), 'auto:F' (0 <= F <= 1), "
                  "'N pages' (N >= 1) or null (the profile's value)")


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
        backing_tier: tier that first touches come from: any tier but tier 0, counted from 0 or
            from the end (-1 = the last tier).
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
        self.validate()

    def validate(self) -> None:
        """Check every field; raise a one-line :class:`ConfigError` naming the first bad one."""
        need_str("scenario", "name", self.name)
        where = f"scenario {self.name!r}"
        need_str(where, "description", self.description)
        need_choice(where, "profile", self.profile, profiles())
        need_choice(where, "quantization", self.quantization, QUANTIZATIONS)
        need_choice(where, "cost_model", self.cost_model, COST_MODELS)
        need_choice(where, "decode", self.decode, DECODE_MODELS)
        need_choice(where, "lower_policy", self.lower_policy, LOWER_POLICIES)
        need_choice(where, "first_touch", self.first_touch, FIRST_TOUCH)
        need_bool(where, "prefetch", self.prefetch)
        need_int(where, "max_prefetch", self.max_prefetch, 0, MAX_PREFETCH)
        n = len(profile(self.profile).tiers)
        b = self.backing_tier
        rule = (f"an int in [1, {n - 1}] or [{-(n - 1)}, -1] (any of the profile's {n} tiers but tier 0)"
                if n > 1 else f"none: profile {self.profile!r} has a single tier")
        check(where, "backing_tier", b, isinstance(b, int) and not isinstance(b, bool) and -n <= b < n
              and b % n != 0, rule)
        caps = self.capacities
        if isinstance(caps, list):
            caps = tuple(caps)
            object.__setattr__(self, "capacities", caps)
        check(where, "capacities", caps, isinstance(caps, tuple) and len(caps) in (0, n),
              f"a list of {n} entries, one per tier of profile {self.profile!r} (or an empty list), each "
              + CAPACITY_FORMS)
        for i, c in enumerate(caps):
            parse_capacity(c, where, f"capacities[{i}]")

    def with_(self, **changes) -> Scenario:
        return replace(self, **changes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["capacities"] = list(self.capacities)
        return d

    @classmethod
    def from_dict(cls, d) -> Scenario:
        """A scenario from a dict of its fields (JSON form); unknown keys are errors."""
        if not isinstance(d, dict):
            raise ConfigError(f"scenario: expected a table of scenario fields, got {type(d).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = [k for k in d if k not in known]
        if unknown:
            shown = sorted(str(k) for k in unknown)
            raise ConfigError(f"scenario: unknown keys {shown}; valid: {', '.join(known)}")
        return cls(**d)

    def has_auto(self) -> bool:
        """Whether a capacity is ``auto:F`` (then :meth:`build` needs the trace's accesses)."""
        return any(parse_capacity(c, "scenario")[0] == "auto" for c in self.capacities)

    def build(self, pages: PageTable, accesses=None) -> Setup:
        """Resolve against a page table: concrete tiers, per-page bytes and decode cost.

        ``accesses``: the trace's access rows as an iterable of chunks ``(step, page, ...)`` (an
        in-memory trace is ``[(trace.step, trace.page)]``); needed only for ``auto:F`` capacities.
        """
        prof = profile(self.profile)
        q = quantization(self.quantization)
        if self.decode == "parity":
            q = replace(q, dequant_bytes_per_us=math.inf, fixed_us=PARITY_DECODE_US[q.name])
        size = stored_bytes(pages, q)
        sizing = None
        if self.has_auto():
            if accesses is None:
                raise ConfigError(f"scenario {self.name!r}: an 'auto:F' capacity is sized from the trace's "
                                  "accesses; pass them to Scenario.build(pages, accesses)")
            sizing = tier0_range(size, accesses)
        tiers = list(prof.tiers)
        for i, c in enumerate(self.capacities):
            if c is not None:
                cap = resolve_capacity(c, size, sizing, f"scenario {self.name!r}", f"capacities[{i}]")
                tiers[i] = replace(tiers[i], capacity_bytes=cap)
        tiers = tuple(tiers)
        biggest = int(size.max()) if len(size) else 0
        for t in tiers:
            if t.capacity_bytes is not None and biggest > t.capacity_bytes:
                pid = int(np.argmax(size))
                raise ConfigError(f"scenario {self.name!r}: page {pid} ({biggest} bytes) is larger than tier "
                                  f"{t.name!r} ({t.capacity_bytes} bytes)")
        decode = q.decode_us(pages.fp16_bytes)
        return Setup(self, tiers, prof.compute, q, size, np.asarray(decode, np.float64), pages)


def stored_bytes(pages: PageTable, q: Quantization) -> np.ndarray:
    """Stored bytes per page: the table's ``bytes`` if given, else ``q``'s footprint of ``fp16_bytes``."""
    if pages.bytes is not None:
        return pages.bytes.astype(np.int64)
    return np.asarray(q.footprint(pages.fp16_bytes), np.int64)


def _number(text: str, kind=float):
    try:
        return kind(text)
    except ValueError:
        return None


def parse_capacity(spec, where: str, name: str = "capacity") -> tuple[str, float | int | None]:
    """``(form, number)`` of a capacity spec: ``("bytes", int)``, ``("share", fraction)``,
    ``("auto", F)``, ``("pages", int)`` or ``("profile", None)``; a ConfigError otherwise."""
    if spec is None:
        return "profile", None
    if isinstance(spec, int) and not isinstance(spec, bool):
        check(where, name, spec, 1 <= spec <= MAX_BYTES, "an int of bytes in [1, 2**63)")
        return "bytes", spec
    text = spec.strip() if isinstance(spec, str) else ""
    words = text.split()
    if text.endswith("%"):
        pct = _number(text[:-1])
        check(where, name, spec, pct is not None and math.isfinite(pct) and 0 < pct <= 100, "'N%' with 0 < N <= 100")
        return "share", pct / 100
    if text.startswith("auto:"):
        f = _number(text[len("auto:"):])
        check(where, name, spec, f is not None and math.isfinite(f) and 0 <= f <= 1, "'auto:F' with 0 <= F <= 1")
        return "auto", f
    if len(words) == 2 and words[1] in ("pages", "page"):
        n = _number(words[0], int)
        check(where, name, spec, n is not None and 1 <= n <= MAX_BYTES, "'N pages' with N an int >= 1")
        return "pages", n
    raise invalid(where, name, spec, CAPACITY_FORMS)


def resolve_capacity(spec, size: np.ndarray, sizing: tuple[int, int] | None, where: str,
                     name: str = "capacity") -> int | None:
    """Bytes of capacity ``spec`` for pages of stored sizes ``size``; ``sizing`` is
    :func:`tier0_range` (``auto`` only)."""
    form, x = parse_capacity(spec, where, name)
    if form == "profile":
        return None
    if form == "bytes":
        return x
    if form == "share":
        return max(1, int(int(size.sum()) * x))
    if form == "pages":
        cap = x * (int(size.max()) if len(size) else 1)
        check(where, name, spec, cap <= MAX_BYTES, f"at most {MAX_BYTES} bytes")
        return cap
    lo, hi = sizing
    return max(1, lo + int(x * (hi - lo)))


def step_need(step: np.ndarray, page: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, bytes)``: each distinct step and the bytes of its distinct pages (all pinned at once).

    ``step`` is non-decreasing and ``page`` inside ``size`` (the loader checks both); one compiled pass.
    """
    from kvgym.sim import _engine

    step = np.ascontiguousarray(step, np.int64)
    if len(step) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, step[1:] != step[:-1]])
    need = np.zeros(len(starts), np.int64)
    _engine.step_bytes(step, np.ascontiguousarray(page, np.int64), np.ascontiguousarray(size, np.int64), need)
    return step[starts], need


def tier0_range(size: np.ndarray, accesses) -> tuple[int, int]:
    """The trace's feasible tier-0 range in bytes: ``(largest step's distinct-page bytes, bytes of
    every distinct page touched)``. ``accesses``: chunks ``(step, page, ...)`` in trace order (a
    step may span chunks)."""
    touched = np.zeros(len(size), bool)
    most = 0
    held_s = held_p = np.zeros(0, np.int64)
    for chunk in accesses:
        step, page = np.concatenate([held_s, chunk[0]]), np.concatenate([held_p, chunk[1]])
        touched[chunk[1]] = True
        if len(step) == 0:
            continue
        cut = int(np.searchsorted(step, step[-1], "left"))  # the last step may go on in the next chunk
        _, need = step_need(step[:cut], page[:cut], size)
        most = max(most, int(need.max()) if len(need) else 0)
        held_s, held_p = step[cut:], page[cut:]
    _, need = step_need(held_s, held_p, size)
    most = max(most, int(need.max()) if len(need) else 0)
    return most, int(size[touched].sum())


def feasible_hint(lo: int, hi: int) -> str:
    """The sizing advice that infeasible-capacity errors end with."""
    return (f"feasible tier-0 capacities for this trace: {lo} bytes (the largest step's pages, 'auto:0') to "
            f"{hi} bytes (every page it touches, 'auto:1'); e.g. 'auto:0.5' sits halfway")


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
        """Raise if one step's distinct pages alone overflow tier 0 (they are all pinned); the error
        suggests the trace's feasible tier-0 range.

        ``step`` must be non-decreasing and ``page`` inside the page table (the loader checks both).
        One pass in compiled code (:mod:`kvgym.sim.cengine`), so it is cheap next to a run.
        """
        cap = self.tiers[0].capacity_bytes
        if cap is None or len(step) == 0:
            return
        steps, need = step_need(step, page, self.page_bytes)
        bad = np.flatnonzero(need > cap)
        if bad.size:
            lo = int(need.max())
            hi = int(self.page_bytes[np.unique(page)].sum())
            raise SimulationError(f"{source}: step {int(steps[bad[0]])} needs {int(need[bad[0]])} bytes of distinct pages "
                                  f"at once, more than tier 0 {self.tiers[0].name!r} holds ({cap} bytes); "
                                  + feasible_hint(lo, hi))

    def to_dict(self) -> dict:
        return {"scenario": self.scenario.to_dict(), "tiers": [t.to_dict() for t in self.tiers]}
