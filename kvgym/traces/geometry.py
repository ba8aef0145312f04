"""Model geometry: how many bytes one KV page holds.

A page is one (sequence, layer, token block): K and V for ``tokens_per_page`` tokens of the KV
heads it covers. By default a page covers every KV head of its layer (``heads_per_page =
kv_heads``); a smaller ``heads_per_page`` splits a layer's block into head groups so that
per-head policies can be studied.

fp16 bytes of a page = ``tokens_per_page * heads_per_page * head_dim * 2 (K and V) * 2 bytes``;
16 tokens of Llama-3.1-8B (8 KV heads, head dim 128) = 65,536 bytes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from kvgym.errors import ConfigError, unknown_name


@dataclass(frozen=True)
class ModelGeometry:
    """Attention geometry of a decoder-only transformer.

    Attributes:
        name: preset name or a free label.
        layers: transformer layers.
        kv_heads: key/value heads per layer (GQA groups).
        head_dim: dimension of one head.
        q_heads: query heads per layer (only used for compute-time scaling).
        tokens_per_page: tokens per KV page (block size of a paged KV cache).
        heads_per_page: KV heads covered by one page; ``None`` means all ``kv_heads``.
    """

    name: str
    layers: int
    kv_heads: int
    head_dim: int
    q_heads: int
    tokens_per_page: int = 16
    heads_per_page: int | None = None

    def __post_init__(self) -> None:
        for field in ("layers", "kv_heads", "head_dim", "q_heads", "tokens_per_page"):
            value = getattr(self, field)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"geometry {self.name!r}: {field} must be a positive int, got {value!r}")
        hpp = self.heads_per_page
        if hpp is not None and (not isinstance(hpp, int) or hpp <= 0 or self.kv_heads % hpp):
            raise ConfigError(
                f"geometry {self.name!r}: heads_per_page must divide kv_heads={self.kv_heads}, got {hpp!r}"
            )

    @property
    def head_groups(self) -> int:
        """Pages per (sequence, layer, token block): kv_heads / heads_per_page."""
        return self.kv_heads // (self.heads_per_page or self.kv_heads)

    @property
    def page_scalars(self) -> int:
        """Scalars (K and V elements) stored in one page."""
        return self.tokens_per_page * (self.heads_per_page or self.kv_heads) * self.head_dim * 2

    @property
    def page_fp16_bytes(self) -> int:
        """Bytes of one page at fp16."""
        return self.page_scalars * 2

    def kv_bytes_per_token(self) -> int:
        """fp16 KV bytes one token adds across all layers."""
        return self.layers * self.kv_heads * self.head_dim * 2 * 2

    def with_(self, **changes) -> ModelGeometry:
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, ModelGeometry] = {
    g.name: g
    for g in (
        ModelGeometry("llama-3.1-8b", layers=32, kv_heads=8, head_dim=128, q_heads=32),
        ModelGeometry("llama-3.1-70b", layers=80, kv_heads=8, head_dim=128, q_heads=64),
        ModelGeometry("qwen2.5-7b", layers=28, kv_heads=4, head_dim=128, q_heads=28),
        ModelGeometry("mistral-7b-v0.3", layers=32, kv_heads=8, head_dim=128, q_heads=32),
        # Karpathy's tinyllamas stories260K (llama2.c): dim 64, 8 q heads, 4 kv heads -> head dim 8.
        ModelGeometry("stories260k", layers=5, kv_heads=4, head_dim=8, q_heads=8),
    )
}


def geometry(name: str, **overrides) -> ModelGeometry:
    """A preset by name (case-insensitive), with optional field overrides."""
    key = name.lower()
    if key not in PRESETS:
        raise unknown_name("model geometry", name, PRESETS)
    return replace(PRESETS[key], **overrides) if overrides else PRESETS[key]
