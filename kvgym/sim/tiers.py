"""Memory tiers, the links between them, and tier profiles shipped as data.

**Time of one page copy** from tier A to tier B (:class:`Link`, µs, bytes):

- *α-β form* (every profile, unless a measured curve replaces it): ``α + bytes / β`` with
  ``α = A.read_latency_us + B.write_latency_us`` and ``β = min(A.bw, B.bw)`` (bytes/µs; 1 GB/s =
  1e3 bytes/µs). kv-hierarchy-lab's serial formula, generalised: with tier 0's latencies at 0 it is
  the per-tier α-β link of the design guide.
- *Measured form* (:class:`LinkCurve`, e.g. ``h200-measured``'s host->GPU, GPU->host and
  GPU<->GPU-pool copies): a copy issued on an **idle** link takes the measured single-copy time of
  its size, interpolated piecewise linearly between measured sizes (the smallest size's time below
  it, the last segment's slope above it); a copy issued **behind another** on a busy link (the
  ``overlap`` model's FIFO, when the link is still busy at issue time) takes ``max(issue_us,
  bytes / wire)``: back-to-back copies pipeline, each costing its measured issue cost unless the
  wire is the bottleneck (H200: 64 KiB page copies back to back measured 6.6 µs each against 11.7 µs
  for a lone copy). The ``serial`` model charges every copy as on an idle link.

**Which link a transfer occupies** (the FIFO server in the ``overlap`` cost model): a promotion
from tier i (any i > 0) straight to tier 0 uses tier i's link; a demotion from tier i to tier i+1
uses tier i+1's link (host RAM -> disk is the disk's link). Each link has ``channels`` identical
servers. Curves are attached to a (source tier, destination tier) pair by tier name.

Profiles (``seed-toy``, ``h200-measured``, ``h100-datasheet``) live in
``kvgym/data/profiles.json`` with their provenance; ``kvgym profiles`` lists them.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import resources

from kvgym.errors import ConfigError, unknown_name


@dataclass(frozen=True)
class Tier:
    """One memory tier.

    Attributes:
        name: label (e.g. ``hbm``, ``host``, ``disk``).
        capacity_bytes: bytes of KV it may hold; ``None`` = unbounded (backing tier only).
        read_latency_us: fixed cost of reading one page out of this tier, µs.
        write_latency_us: fixed cost of writing one page into this tier, µs.
        bandwidth_bytes_per_us: sustained bandwidth, bytes/µs.
        channels: parallel servers on this tier's link (overlap cost model).
    """

    name: str
    capacity_bytes: int | None
    read_latency_us: float
    write_latency_us: float
    bandwidth_bytes_per_us: float
    channels: int = 1

    def validate(self, where: str) -> None:
        cap = self.capacity_bytes
        if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap <= 0):
            raise ConfigError(f"{where}: tier {self.name!r} capacity_bytes must be a positive int, got {cap!r}")
        for f in ("read_latency_us", "write_latency_us"):
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and v >= 0 and math.isfinite(v)):
                raise ConfigError(f"{where}: tier {self.name!r} {f} must be a finite number >= 0, got {v!r}")
        bw = self.bandwidth_bytes_per_us
        if not (isinstance(bw, (int, float)) and bw > 0):
            raise ConfigError(f"{where}: tier {self.name!r} bandwidth_bytes_per_us must be > 0, got {bw!r}")
        if not isinstance(self.channels, int) or self.channels < 1:
            raise ConfigError(f"{where}: tier {self.name!r} channels must be an int >= 1, got {self.channels!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def transfer_alpha_beta(src: Tier, dst: Tier) -> tuple[float, float]:
    """(α µs, β bytes/µs) of a transfer from ``src`` to ``dst``."""
    return src.read_latency_us + dst.write_latency_us, min(src.bandwidth_bytes_per_us, dst.bandwidth_bytes_per_us)


MAX_CURVE_POINTS = 32


@dataclass(frozen=True)
class LinkCurve:
    """A measured copy-time curve for one direction of a link (see the module docstring).

    Attributes:
        src, dst: tier names the curve applies to (a copy from ``src`` to ``dst``).
        bytes: copy sizes, increasing.
        us: measured time of one copy of each size on an idle link, µs.
        issue_us: measured cost of one copy issued back to back behind another, µs.
        wire_bytes_per_us: the wire's bandwidth (largest measured copy), bytes/µs.
        source: where the numbers come from.
    """

    src: str
    dst: str
    bytes: tuple[float, ...]
    us: tuple[float, ...]
    issue_us: float
    wire_bytes_per_us: float
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "bytes", tuple(float(b) for b in self.bytes))
        object.__setattr__(self, "us", tuple(float(u) for u in self.us))
        where = f"link curve {self.src}->{self.dst}"
        x, y = self.bytes, self.us
        if not 2 <= len(x) == len(y) <= MAX_CURVE_POINTS:
            raise ConfigError(f"{where}: needs 2..{MAX_CURVE_POINTS} (bytes, us) points of equal count")
        if any(b <= a for a, b in itertools.pairwise(x)) or x[0] <= 0:
            raise ConfigError(f"{where}: bytes must be positive and increasing")
        if not all(math.isfinite(v) and v > 0 for v in y):
            raise ConfigError(f"{where}: times must be finite and > 0")
        for f in ("issue_us", "wire_bytes_per_us"):
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"{where}: {f} must be a finite number > 0, got {v!r}")

    def time_us(self, nbytes: int, queued: bool = False) -> float:
        """µs of one copy of ``nbytes``: idle link (interpolated) or queued behind another."""
        b = float(nbytes)
        if queued:
            w = b / self.wire_bytes_per_us
            return max(self.issue_us, w)
        x, y = self.bytes, self.us
        if b <= x[0]:
            return y[0]
        i = 0
        while i + 2 < len(x) and b > x[i + 1]:
            i += 1
        return y[i] + ((b - x[i]) * (y[i + 1] - y[i])) / (x[i + 1] - x[i])

    def to_dict(self) -> dict:
        d = asdict(self)
        d["bytes"], d["us"] = list(self.bytes), list(self.us)
        return d


@dataclass(frozen=True)
class Link:
    """The copy-time model between two tiers: α-β, or a measured curve when the profile has one."""

    alpha_us: float
    beta: float
    curve: LinkCurve | None = None

    def time_us(self, nbytes: int, queued: bool = False) -> float:
        """µs of one copy of ``nbytes`` (``queued``: issued behind another on a busy link)."""
        if self.curve is not None:
            return self.curve.time_us(nbytes, queued)
        return self.alpha_us + nbytes / self.beta

    def min_time_us(self, nbytes: int) -> float:
        """The least a copy of ``nbytes`` can take, idle or queued (for lower bounds)."""
        return min(self.time_us(nbytes), self.time_us(nbytes, True))


def make_link(tiers: tuple[Tier, ...], curves: tuple[LinkCurve, ...], src: int, dst: int) -> Link:
    """The link from ``tiers[src]`` to ``tiers[dst]``: α-β from the tiers, a curve if one names the pair."""
    a, b = tiers[src], tiers[dst]
    alpha, beta = transfer_alpha_beta(a, b)
    curve = next((c for c in curves if c.src == a.name and c.dst == b.name), None)
    return Link(alpha, beta, curve)


@dataclass(frozen=True)
class ComputeModel:
    """Decode-step compute time: ``max(layers * layer_floor_us, attended_bytes / attention_bytes_per_us)``.

    ``attended_bytes`` is the fp16 size of the pages a step reads. H200 (calibration): ~20 µs per
    layer floor, ~4.6 TB/s attention throughput at long context.
    """

    layer_floor_us: float = 20.0
    attention_bytes_per_us: float = 4.6e6

    def validate(self, where: str) -> None:
        if not (self.layer_floor_us >= 0 and self.attention_bytes_per_us > 0):
            raise ConfigError(f"{where}: compute model needs layer_floor_us >= 0 and attention_bytes_per_us > 0")


@dataclass(frozen=True)
class TierProfile:
    """A named hierarchy: tiers (index 0 = fastest), a compute model and where the numbers come from."""

    name: str
    tiers: tuple[Tier, ...]
    compute: ComputeModel = field(default_factory=ComputeModel)
    provenance: str = ""
    curves: tuple[LinkCurve, ...] = ()

    def __post_init__(self) -> None:
        where = f"profile {self.name!r}"
        if len(self.tiers) < 1:
            raise ConfigError(f"{where}: needs at least one tier")
        for i, t in enumerate(self.tiers):
            t.validate(where)
            if t.capacity_bytes is None and i != len(self.tiers) - 1:
                raise ConfigError(f"{where}: only the last tier may be unbounded (tier {t.name!r})")
        self.compute.validate(where)
        names = [t.name for t in self.tiers]
        seen = set()
        for c in self.curves:
            if c.src not in names or c.dst not in names or c.src == c.dst:
                raise ConfigError(f"{where}: link curve {c.src}->{c.dst} must join two of its tiers {names}")
            if (c.src, c.dst) in seen:
                raise ConfigError(f"{where}: two link curves for {c.src}->{c.dst}")
            seen.add((c.src, c.dst))

    def link(self, src: int, dst: int) -> Link:
        """The copy-time model from tier ``src`` to tier ``dst`` (indices)."""
        return make_link(self.tiers, self.curves, src, dst)

    def to_dict(self) -> dict:
        d = {"name": self.name, "tiers": [t.to_dict() for t in self.tiers],
             "compute": asdict(self.compute), "provenance": self.provenance}
        if self.curves:
            d["curves"] = [c.to_dict() for c in self.curves]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TierProfile:
        try:
            return cls(name=d["name"], tiers=tuple(Tier(**t) for t in d["tiers"]),
                       compute=ComputeModel(**d.get("compute", {})), provenance=d.get("provenance", ""),
                       curves=tuple(LinkCurve(**c) for c in d.get("curves", ())))
        except TypeError as e:
            raise ConfigError(f"profile {d.get('name')!r}: {e}") from None


@cache
def _shipped() -> dict[str, TierProfile]:
    text = resources.files("kvgym").joinpath("data/profiles.json").read_text()
    return {d["name"]: TierProfile.from_dict(d) for d in json.loads(text)["profiles"]}


PROFILE_NAMES = ("seed-toy", "h200-measured", "h100-datasheet", "single-tier")


def profile(name: str) -> TierProfile:
    """A shipped tier profile by name."""
    profiles = _shipped()
    if name not in profiles:
        raise unknown_name("tier profile", name, profiles)
    return profiles[name]


def profiles() -> dict[str, TierProfile]:
    return dict(_shipped())
