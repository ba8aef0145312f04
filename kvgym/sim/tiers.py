"""Memory tiers, the links between them, and tier profiles shipped as data.

Link model (α-β): moving page X from tier A to tier B costs

    α + bytes(X) / β,   α = A.read_latency_us + B.write_latency_us,   β = min(A.bw, B.bw)

in µs, with bandwidths in bytes/µs (1 GB/s = 1e3 bytes/µs). This is kv-hierarchy-lab's serial
formula, generalised: with tier 0's latencies at 0 it is the DESIGN's per-tier link
(α = the slower tier's fixed cost). **Which link a transfer occupies** (the FIFO server in the
``overlap`` cost model): a promotion from tier i (any i > 0) straight to tier 0 uses tier i's
link; a demotion from tier i to tier i+1 uses tier i+1's link (host RAM -> disk is the disk's
link). Each link has ``channels`` identical servers.

Profiles (``seed-toy``, ``h200-measured``, ``h100-datasheet``) live in
``kvgym/data/profiles.json`` with their provenance; ``kvgym profiles`` lists them.
"""

from __future__ import annotations

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

    def __post_init__(self) -> None:
        where = f"profile {self.name!r}"
        if len(self.tiers) < 1:
            raise ConfigError(f"{where}: needs at least one tier")
        for i, t in enumerate(self.tiers):
            t.validate(where)
            if t.capacity_bytes is None and i != len(self.tiers) - 1:
                raise ConfigError(f"{where}: only the last tier may be unbounded (tier {t.name!r})")
        self.compute.validate(where)

    def to_dict(self) -> dict:
        return {"name": self.name, "tiers": [t.to_dict() for t in self.tiers],
                "compute": asdict(self.compute), "provenance": self.provenance}

    @classmethod
    def from_dict(cls, d: dict) -> TierProfile:
        try:
            return cls(name=d["name"], tiers=tuple(Tier(**t) for t in d["tiers"]),
                       compute=ComputeModel(**d.get("compute", {})), provenance=d.get("provenance", ""))
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
