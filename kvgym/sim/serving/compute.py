"""Compute time of one continuous-batching iteration, from the model geometry (a roofline).

Units: FLOPs, bytes, µs. An iteration computes ``N`` tokens (prefill chunks and one token per
decoding request), samples ``S`` of them (the last token of each prefill that completes, and
every decode token), attends ``A`` (query, key) pairs in total and reads the KV of ``K`` tokens:

- a prefill chunk of positions ``[s, e)`` of one request: ``N += e - s``,
  ``A += sum_{p=s}^{e-1} (p + 1) = (e (e + 1) - s (s + 1)) / 2`` (causal: position ``p`` attends
  ``p + 1`` keys), ``K += e`` (its whole prefix is read once);
- a decode token at position ``p``: ``N += 1``, ``A += p + 1``, ``K += p + 1``, ``S += 1``.

Then, with ``L`` layers, ``H`` hidden size, ``I`` MLP size, ``V`` vocabulary, ``q``/``kv`` heads
and head dim ``d``:

- linear parameters per layer ``P = H*q*d (Q) + 2*H*kv*d (K, V) + q*d*H (O) + 3*H*I (SwiGLU MLP)``;
- ``FLOPs = 2*L*P*N + 2*H*V*S + 4*L*q*d*A`` (matmuls of the layers, the LM head on sampled
  tokens, QK^T and AV over the prefix);
- ``bytes = 2*(L*P + H*V) + K * kv_bytes_per_token`` (bf16 weights read once per iteration, plus
  the KV read; embeddings and norms are left out);
- ``time_us = max(FLOPs / flops_per_us, bytes / bytes_per_us)`` with
  ``flops_per_us = peak_flops_per_s * flops_fraction / 1e6`` and
  ``bytes_per_us = hbm_bytes_per_s * bytes_fraction / 1e6``. An empty iteration takes 0 µs.

Float rule (the compiled engine must do exactly this): FLOPs and bytes are exact integers
(Python ints; int64 suffices below 9.2e18), each converted to float64 once, divided, and the
larger quotient taken. Constants come from ``kvgym/data/compute.json``: GPUs (datasheet peak,
achieved fraction, provenance) mapped from tier profiles, and model dimensions per geometry.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources

from kvgym.errors import ConfigError, unknown_name
from kvgym.traces.geometry import ModelGeometry


@dataclass(frozen=True)
class GPU:
    """Peak rates and the achieved fractions used by :class:`BatchCompute`."""

    name: str
    peak_flops_per_s: float
    flops_fraction: float
    hbm_bytes_per_s: float
    bytes_fraction: float
    provenance: str = ""

    def __post_init__(self) -> None:
        for f in ("peak_flops_per_s", "hbm_bytes_per_s"):
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0):
                raise ConfigError(f"gpu {self.name!r}: {f} must be > 0, got {v!r}")
        for f in ("flops_fraction", "bytes_fraction"):
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1):
                raise ConfigError(f"gpu {self.name!r}: {f} must be in (0, 1], got {v!r}")

    @property
    def flops_per_us(self) -> float:
        return float(self.peak_flops_per_s) * float(self.flops_fraction) / 1e6

    @property
    def bytes_per_us(self) -> float:
        return float(self.hbm_bytes_per_s) * float(self.bytes_fraction) / 1e6

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ModelDims:
    """The dimensions the KV geometry does not give: hidden, MLP and vocabulary sizes."""

    hidden: int
    intermediate: int
    vocab: int


@cache
def _data() -> dict:
    return json.loads(resources.files("kvgym").joinpath("data/compute.json").read_text())


def gpu(name: str) -> GPU:
    """A GPU of ``kvgym/data/compute.json`` by name, or the GPU of a tier profile name."""
    d = _data()
    key = d["profiles"].get(name, name)
    if key not in d["gpus"]:
        raise unknown_name("gpu", name, list(d["gpus"]) + list(d["profiles"]))
    return GPU(name=key, **d["gpus"][key])


def model_dims(geometry_name: str) -> ModelDims:
    d = _data()["models"]
    if geometry_name not in d:
        raise unknown_name("model (for compute dimensions)", geometry_name, d)
    m = d[geometry_name]
    return ModelDims(m["hidden"], m["intermediate"], m["vocab"])


@dataclass(frozen=True)
class BatchCompute:
    """Iteration time of a batch (see the module docstring for every term)."""

    geometry: ModelGeometry
    dims: ModelDims
    gpu: GPU

    @classmethod
    def of(cls, geometry: ModelGeometry, gpu_spec: str | GPU) -> BatchCompute:
        return cls(geometry, model_dims(geometry.name), gpu(gpu_spec) if isinstance(gpu_spec, str) else gpu_spec)

    @property
    def linear_params_per_layer(self) -> int:
        g, m = self.geometry, self.dims
        qd, kvd = g.q_heads * g.head_dim, g.kv_heads * g.head_dim
        return m.hidden * qd + 2 * m.hidden * kvd + qd * m.hidden + 3 * m.hidden * m.intermediate

    def flops(self, tokens: int, attended: int, sampled: int) -> int:
        g = self.geometry
        return (2 * g.layers * self.linear_params_per_layer * tokens + 2 * self.dims.hidden * self.dims.vocab * sampled
                + 4 * g.layers * g.q_heads * g.head_dim * attended)

    def bytes_read(self, kv_tokens: int) -> int:
        g = self.geometry
        return 2 * (g.layers * self.linear_params_per_layer + self.dims.hidden * self.dims.vocab) \
            + kv_tokens * g.kv_bytes_per_token()

    def iteration_us(self, tokens: int, attended: int, sampled: int, kv_tokens: int) -> float:
        """µs of an iteration computing ``tokens`` tokens (0 for an empty one)."""
        if tokens == 0:
            return 0.0
        return max(float(self.flops(tokens, attended, sampled)) / self.gpu.flops_per_us,
                   float(self.bytes_read(kv_tokens)) / self.gpu.bytes_per_us)


def prefill_terms(start: int, end: int) -> tuple[int, int, int]:
    """``(N, A, K)`` of a prefill chunk of positions ``[start, end)``."""
    return end - start, (end * (end + 1) - start * (start + 1)) // 2, end


def decode_terms(position: int) -> tuple[int, int, int]:
    """``(N, A, K)`` of one decode token at ``position``."""
    return 1, position + 1, position + 1
