"""A numpy llama2.c: load a checkpoint and tokenizer, decode, and record attention per KV page.

Checkpoint (llama2.c legacy format, version 0): 7 little-endian int32 ``dim, hidden_dim,
n_layers, n_heads, n_kv_heads, vocab_size, seq_len`` (a negative vocab size means the output
classifier is stored separately, after the RoPE tables), then float32 row-major ``[out, in]``
arrays: token_embedding ``[vocab, dim]``, rms_att ``[L, dim]``, wq ``[L, dim, dim]``, wk and wv
``[L, kv_dim, dim]``, wo ``[L, dim, dim]``, rms_ffn ``[L, dim]``, w1 and w3 ``[L, hidden, dim]``,
w2 ``[L, dim, hidden]``, rms_final ``[dim]``, two legacy RoPE tables of ``seq_len * head_size / 2``
floats each (skipped), and then ``wcls [vocab, dim]`` only when the classifier is not shared.

Forward pass (the same arithmetic as llama2.c's ``run.c``, in float32): RMSNorm with eps 1e-5;
RoPE rotating adjacent pairs ``(2i, 2i+1)`` of each head by ``pos * 10000^(-2i/head_size)``;
causal softmax attention with GQA (query head ``h`` reads KV head ``h // (n_heads/n_kv_heads)``);
SwiGLU feed-forward ``w2(silu(w1 x) * w3 x)``; classifier on the final RMSNorm.

Tokenizer (``tok512.bin`` style): int32 max_token_length, then per token a float32 merge score,
an int32 byte length and the bytes. Ids 0/1/2 are ``<unk>``/BOS/EOS; pieces ``<0xNN>`` are raw
bytes.

:func:`generate` feeds BOS (and an optional prompt) and decodes one token per step, recording
at every step the attention mass each KV head puts on each KV page (see
:class:`kvgym.traces.capture.AttentionRecord`); :mod:`kvgym.traces.capture` turns the record
into a trace.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kvgym.errors import ConfigError, TraceError
from kvgym.traces.capture import AttentionRecord, page_mass
from kvgym.traces.geometry import PRESETS, ModelGeometry

BOS, EOS = 1, 2
RMS_EPS = 1e-5
ROPE_THETA = 10000.0


@dataclass(frozen=True)
class Llama2cConfig:
    """The checkpoint header. ``shared_classifier``: the output layer reuses the embedding."""

    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    seq_len: int
    shared_classifier: bool = True

    @property
    def head_size(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_size


@dataclass(frozen=True, eq=False)
class Llama2cModel:
    """Weights as float32 arrays (shapes as in the module docstring)."""

    config: Llama2cConfig
    tok_emb: np.ndarray
    rms_att: np.ndarray
    wq: np.ndarray
    wk: np.ndarray
    wv: np.ndarray
    wo: np.ndarray
    rms_ffn: np.ndarray
    w1: np.ndarray
    w2: np.ndarray
    w3: np.ndarray
    rms_final: np.ndarray
    wcls: np.ndarray
    name: str = "llama2c"
    sha256: str = ""

    def geometry(self, tokens_per_page: int = 16, heads_per_page: int | None = None) -> ModelGeometry:
        """The KV geometry: the ``stories260k`` preset when the shapes match it."""
        c = self.config
        geo = ModelGeometry("llama2c", layers=c.n_layers, kv_heads=c.n_kv_heads, head_dim=c.head_size,
                            q_heads=c.n_heads)
        ref = PRESETS["stories260k"]
        if (ref.layers, ref.kv_heads, ref.head_dim, ref.q_heads) == (geo.layers, geo.kv_heads, geo.head_dim, geo.q_heads):
            geo = ref
        return geo.with_(tokens_per_page=tokens_per_page, heads_per_page=heads_per_page)


def load_checkpoint(path: str | Path) -> Llama2cModel:
    """Read a llama2.c legacy (version 0) checkpoint; errors name the file and what is wrong."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TraceError(f"{path}: cannot read checkpoint ({e.strerror or e})") from None
    if len(data) < 28:
        raise TraceError(f"{path}: too short for a llama2.c header ({len(data)} bytes)")
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("<7i", data[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    for field, v in (("dim", dim), ("hidden_dim", hidden), ("n_layers", n_layers), ("n_heads", n_heads),
                     ("n_kv_heads", n_kv), ("vocab_size", vocab), ("seq_len", seq_len)):
        if v <= 0:
            raise TraceError(f"{path}: header field {field} must be > 0, got {v}")
    if dim % n_heads or n_heads % n_kv or (dim // n_heads) % 2:
        raise TraceError(f"{path}: inconsistent header: dim={dim}, n_heads={n_heads}, n_kv_heads={n_kv} "
                         "(need dim % n_heads == 0, n_heads % n_kv_heads == 0, even head size)")
    cfg = Llama2cConfig(dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len, shared)
    hs, kv_dim, L = cfg.head_size, cfg.kv_dim, n_layers
    shapes = [("tok_emb", (vocab, dim)), ("rms_att", (L, dim)), ("wq", (L, dim, dim)), ("wk", (L, kv_dim, dim)),
              ("wv", (L, kv_dim, dim)), ("wo", (L, dim, dim)), ("rms_ffn", (L, dim)), ("w1", (L, hidden, dim)),
              ("w2", (L, dim, hidden)), ("w3", (L, hidden, dim)), ("rms_final", (dim,)),
              ("_rope", (2 * seq_len * hs // 2,))]
    if not shared:
        shapes.append(("wcls", (vocab, dim)))
    need = 28 + 4 * sum(int(np.prod(s)) for _, s in shapes)
    if len(data) < need:
        raise TraceError(f"{path}: truncated checkpoint: header {cfg} needs {need} bytes, file has {len(data)}")
    flat = np.frombuffer(data, dtype="<f4", count=(need - 28) // 4, offset=28)
    arrays, off = {}, 0
    for name, shape in shapes:
        n = int(np.prod(shape))
        arrays[name] = flat[off:off + n].reshape(shape).astype(np.float32)
        off += n
    arrays.pop("_rope")
    if shared:
        arrays["wcls"] = arrays["tok_emb"]
    return Llama2cModel(cfg, name=path.name, sha256=hashlib.sha256(data).hexdigest(), **arrays)


def write_checkpoint(model: Llama2cModel, path: str | Path) -> Path:
    """Write ``model`` in the legacy format (used by tests to make small random checkpoints)."""
    c = model.config
    vocab = c.vocab_size if c.shared_classifier else -c.vocab_size
    parts = [struct.pack("<7i", c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, vocab, c.seq_len)]
    for a in (model.tok_emb, model.rms_att, model.wq, model.wk, model.wv, model.wo, model.rms_ffn, model.w1,
              model.w2, model.w3, model.rms_final, np.zeros(c.seq_len * c.head_size, np.float32)):
        parts.append(np.ascontiguousarray(a, dtype="<f4").tobytes())
    if not c.shared_classifier:
        parts.append(np.ascontiguousarray(model.wcls, dtype="<f4").tobytes())
    path = Path(path)
    path.write_bytes(b"".join(parts))
    return path


def random_model(config: Llama2cConfig, seed: int = 0, scale: float = 0.5) -> Llama2cModel:
    """A model with Gaussian weights (``scale / sqrt(fan_in)``), for tests."""
    rng = np.random.Generator(np.random.PCG64(seed))
    c, L = config, config.n_layers

    def w(*shape):
        return (rng.standard_normal(shape) * scale / np.sqrt(shape[-1])).astype(np.float32)

    emb = w(c.vocab_size, c.dim) * np.float32(np.sqrt(c.dim))
    return Llama2cModel(
        c, tok_emb=emb, rms_att=1 + w(L, c.dim), wq=w(L, c.dim, c.dim), wk=w(L, c.kv_dim, c.dim),
        wv=w(L, c.kv_dim, c.dim), wo=w(L, c.dim, c.dim), rms_ffn=1 + w(L, c.dim), w1=w(L, c.hidden_dim, c.dim),
        w2=w(L, c.dim, c.hidden_dim), w3=w(L, c.hidden_dim, c.dim), rms_final=1 + w(c.dim),
        wcls=emb if c.shared_classifier else w(c.vocab_size, c.dim), name=f"random-seed{seed}")


class Tokenizer:
    """llama2.c's BPE tokenizer (vocabulary pieces as bytes, merge scores)."""

    def __init__(self, pieces: list[bytes], scores: np.ndarray, name: str = "tokenizer"):
        self.pieces = pieces
        self.scores = scores
        self.name = name
        self._index = {p: i for i, p in enumerate(pieces)}

    @classmethod
    def load(cls, path: str | Path, vocab_size: int | None = None) -> Tokenizer:
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise TraceError(f"{path}: cannot read tokenizer ({e.strerror or e})") from None
        pieces, scores, off = [], [], 4
        while off < len(data) and (vocab_size is None or len(pieces) < vocab_size):
            if off + 8 > len(data):
                raise TraceError(f"{path}: truncated tokenizer at token {len(pieces)}")
            score, n = struct.unpack_from("<fi", data, off)
            if n < 0 or off + 8 + n > len(data):
                raise TraceError(f"{path}: token {len(pieces)}: bad byte length {n}")
            pieces.append(data[off + 8:off + 8 + n])
            scores.append(score)
            off += 8 + n
        if vocab_size is not None and len(pieces) != vocab_size:
            raise TraceError(f"{path}: {len(pieces)} tokens, the checkpoint's vocabulary has {vocab_size}")
        return cls(pieces, np.array(scores, np.float32), path.name)

    def piece_bytes(self, token: int, prev: int) -> bytes:
        p = self.pieces[token]
        if prev == BOS and p.startswith(b" "):
            p = p[1:]  # sentencepiece strips the leading space after BOS
        if len(p) == 6 and p.startswith(b"<0x") and p.endswith(b">"):
            try:
                return bytes([int(p[3:5], 16)])
            except ValueError:
                pass
        return p

    def decode(self, tokens) -> str:
        """Text of a token sequence (BOS/EOS render as nothing; a BOS after text as a newline)."""
        out, prev = [], -1
        for t in (int(x) for x in tokens):
            if t in (BOS, EOS):
                if t == BOS and out:
                    out.append(b"\n")
            else:
                out.append(self.piece_bytes(t, prev))
            prev = t
        return b"".join(out).decode("utf-8", errors="replace")

    def encode(self, text: str) -> list[int]:
        """llama2.c's encoder (dummy space prefix, byte fallback, greedy best-score merges); no BOS."""
        if not text:
            return []
        tokens = []
        for ch in " " + text:
            b = ch.encode("utf-8")
            if b in self._index:
                tokens.append(self._index[b])
            else:
                tokens.extend(x + 3 for x in b)
        while True:
            best, best_i, best_id = -np.inf, -1, -1
            for i in range(len(tokens) - 1):
                j = self._index.get(self.pieces[tokens[i]] + self.pieces[tokens[i + 1]])
                if j is not None and self.scores[j] > best:
                    best, best_i, best_id = self.scores[j], i, j
            if best_i < 0:
                return tokens
            tokens[best_i:best_i + 2] = [best_id]


def _rmsnorm(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (x / np.sqrt(np.mean(x * x, dtype=np.float32) + np.float32(RMS_EPS))) * w


class Decoder:
    """Incremental decoding with a KV cache; :meth:`step` also returns each head's attention."""

    def __init__(self, model: Llama2cModel):
        self.m = model
        c = model.config
        self.pos = 0
        self.k_cache = np.zeros((c.n_layers, c.seq_len, c.n_kv_heads, c.head_size), np.float32)
        self.v_cache = np.zeros_like(self.k_cache)
        half = np.arange(0, c.head_size, 2, dtype=np.float32)
        self.freq = (1.0 / np.power(np.float32(ROPE_THETA), half / np.float32(c.head_size))).astype(np.float32)

    def _rope(self, x: np.ndarray) -> np.ndarray:
        """Rotate adjacent pairs of ``x [heads, head_size]`` at the current position."""
        ang = np.float32(self.pos) * self.freq
        cos, sin = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
        x0, x1 = x[:, 0::2], x[:, 1::2]
        out = np.empty_like(x)
        out[:, 0::2] = x0 * cos - x1 * sin
        out[:, 1::2] = x0 * sin + x1 * cos
        return out

    def step(self, token: int) -> tuple[np.ndarray, np.ndarray]:
        """Feed ``token`` at the next position. Returns ``(logits [vocab], att [L, n_heads, pos+1])``."""
        m, c = self.m, self.m.config
        if self.pos >= c.seq_len:
            raise ConfigError(f"{m.name}: context full (seq_len {c.seq_len})")
        hs, kv_mul, t = c.head_size, c.n_heads // c.n_kv_heads, self.pos + 1
        x = m.tok_emb[token].copy()
        att_all = np.empty((c.n_layers, c.n_heads, t), np.float32)
        for layer in range(c.n_layers):
            xb = _rmsnorm(x, m.rms_att[layer])
            q = self._rope((m.wq[layer] @ xb).reshape(c.n_heads, hs))
            self.k_cache[layer, self.pos] = self._rope((m.wk[layer] @ xb).reshape(c.n_kv_heads, hs))
            self.v_cache[layer, self.pos] = (m.wv[layer] @ xb).reshape(c.n_kv_heads, hs)
            k = self.k_cache[layer, :t]  # [t, kvh, hs]
            v = self.v_cache[layer, :t]
            qg = q.reshape(c.n_kv_heads, kv_mul, hs)
            scores = np.einsum("gmd,tgd->gmt", qg, k) / np.float32(np.sqrt(hs))
            scores = scores - scores.max(axis=-1, keepdims=True)
            e = np.exp(scores)
            att = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
            att_all[layer] = att.reshape(c.n_heads, t)
            out = np.einsum("gmt,tgd->gmd", att, v).reshape(c.dim)
            x = x + m.wo[layer] @ out
            xb = _rmsnorm(x, m.rms_ffn[layer])
            h1 = m.w1[layer] @ xb
            h = (h1 / (np.float32(1) + np.exp(-h1))) * (m.w3[layer] @ xb)
            x = x + m.w2[layer] @ h
        self.pos += 1
        logits = m.wcls @ _rmsnorm(x, m.rms_final)
        return logits, att_all


def generate(model: Llama2cModel, steps: int, *, prompt: list[int] | None = None, tokens_per_page: int = 16,
             temperature: float = 0.0, seed: int = 0, record: bool = True) -> AttentionRecord:
    """Decode ``steps`` positions from BOS (then ``prompt`` tokens, then sampled tokens).

    Step ``t`` feeds the token at position ``t`` and attends to positions ``0..t``; the record's
    ``tokens`` has ``steps + 1`` entries: the fed tokens and the last generated one. Greedy
    (argmax) when ``temperature == 0``, else sampling from ``softmax(logits / temperature)`` with a
    seeded generator. Returns an :class:`AttentionRecord` (masses are per KV head: the mean over
    its query heads, so each row sums to 1); ``record=False`` leaves its ``mass`` empty.
    """
    c = model.config
    prompt = list(prompt or [])
    if not isinstance(steps, int) or not 1 <= steps <= c.seq_len:
        raise ConfigError(f"tokens must be an int in [1, seq_len={c.seq_len}], got {steps!r}")
    if len(prompt) >= steps:
        raise ConfigError(f"prompt has {len(prompt)} tokens, needs fewer than tokens={steps}")
    if not isinstance(tokens_per_page, int) or tokens_per_page <= 0:
        raise ConfigError(f"tokens_per_page must be a positive int, got {tokens_per_page!r}")
    if temperature < 0:
        raise ConfigError(f"temperature must be >= 0, got {temperature}")
    rng = np.random.Generator(np.random.PCG64(seed))
    dec = Decoder(model)
    n_pages = -(-steps // tokens_per_page)
    mass = np.zeros((steps if record else 0, c.n_layers, c.n_kv_heads, n_pages), np.float32)
    tokens = [BOS] + prompt
    kv_mul = c.n_heads // c.n_kv_heads
    for t in range(steps):
        logits, att = dec.step(tokens[t])
        if record:
            per_kv = att.reshape(c.n_layers, c.n_kv_heads, kv_mul, t + 1).mean(axis=2)
            mass[t, :, :, : t // tokens_per_page + 1] = page_mass(per_kv, tokens_per_page)
        if t + 1 >= len(tokens):
            if temperature == 0:
                nxt = int(np.argmax(logits))
            else:
                z = logits.astype(np.float64) / temperature
                p = np.exp(z - z.max())
                nxt = int(rng.choice(len(p), p=p / p.sum()))
            tokens.append(nxt)
    return AttentionRecord(tokens=np.array(tokens, np.int64), mass=mass, tokens_per_page=tokens_per_page,
                           geometry=model.geometry(tokens_per_page), prompt_len=len(prompt) + 1,
                           model=model.name,
                           meta={"model_sha256": model.sha256, "temperature": temperature, "seed": seed})
