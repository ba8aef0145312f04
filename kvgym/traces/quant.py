"""Quantization footprints and dequantization costs of KV pages.

Footprint of a page of ``s`` scalars under a scheme of ``b`` bits with group size ``g``:
``ceil(s * b / 8) + ceil(s / g) * scale_bytes`` (one fp16 scale per group for int4/int2; fp16
and fp8 carry no per-group scale here, fp8 uses a per-tensor scale that is negligible per page).

Dequantization cost of one page, in µs: ``fixed_us + out_bytes / dequant_bytes_per_us`` where
``out_bytes`` is the page's fp16 size. H200 calibration: fp8->bf16 ~665 GB/s (eager); int4 g64
~170 GB/s eager, ~1.36 TB/s with torch.compile. kvgym has **no accuracy model**: quantizing a
page changes its bytes and decode cost only, never which pages attention needs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from kvgym.errors import ConfigError, unknown_name


@dataclass(frozen=True)
class Quantization:
    """A KV storage format.

    Attributes:
        name: scheme name (fp16, fp8, int4, int2).
        bits: bits per scalar.
        group_size: scalars sharing one scale (0 = no per-group scale).
        scale_bytes: bytes of one group scale.
        dequant_bytes_per_us: fp16 output bytes produced per µs when dequantizing (inf = free).
        fixed_us: fixed decode cost per page use, µs (the parity model's per-page penalty).
    """

    name: str
    bits: int
    group_size: int = 0
    scale_bytes: int = 2
    dequant_bytes_per_us: float = math.inf
    fixed_us: float = 0.0

    def __post_init__(self) -> None:
        if self.bits not in (2, 4, 8, 16):
            raise ConfigError(f"quantization {self.name!r}: bits must be 2, 4, 8 or 16, got {self.bits!r}")
        if self.group_size < 0:
            raise ConfigError(f"quantization {self.name!r}: group_size must be >= 0, got {self.group_size}")
        if not self.dequant_bytes_per_us > 0:
            raise ConfigError(f"quantization {self.name!r}: dequant_bytes_per_us must be > 0")
        if self.fixed_us < 0:
            raise ConfigError(f"quantization {self.name!r}: fixed_us must be >= 0")

    def footprint(self, fp16_bytes):
        """Stored bytes of page(s) whose fp16 size is ``fp16_bytes`` (int or int array)."""
        scalars = np.asarray(fp16_bytes, dtype=np.int64) // 2
        data = (scalars * self.bits + 7) // 8
        if self.group_size:
            data = data + (-(-scalars // self.group_size)) * self.scale_bytes
        return int(data) if np.ndim(data) == 0 else data

    def decode_us(self, fp16_bytes):
        """Dequantization time in µs for page(s) of the given fp16 size (0 for fp16)."""
        if self.bits == 16 and self.fixed_us == 0.0:
            return 0.0 if np.ndim(fp16_bytes) == 0 else np.zeros(np.shape(fp16_bytes))
        return self.fixed_us + np.asarray(fp16_bytes, dtype=np.float64) / self.dequant_bytes_per_us

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dequant_bytes_per_us"] = None if math.isinf(self.dequant_bytes_per_us) else self.dequant_bytes_per_us
        return d


# Throughputs from ../shared/calibration/h200.json (GB/s = 1e3 bytes/µs).
SCHEMES: dict[str, Quantization] = {
    "fp16": Quantization("fp16", 16),
    "fp8": Quantization("fp8", 8, dequant_bytes_per_us=664.7e3),
    "int4": Quantization("int4", 4, group_size=64, dequant_bytes_per_us=168.2e3),
    "int2": Quantization("int2", 2, group_size=64, dequant_bytes_per_us=168.2e3),
}


def quantization(name: str) -> Quantization:
    """A scheme by name."""
    if name not in SCHEMES:
        raise unknown_name("quantization", name, SCHEMES)
    return SCHEMES[name]
