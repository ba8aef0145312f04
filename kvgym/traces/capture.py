"""Attention records from a real model, and how they become kvgym traces.

An :class:`AttentionRecord` holds, for every decode step ``t`` (the token at position ``t`` is
fed and attends to positions ``0..t``), every layer and every KV head, the **attention mass per
KV page**: ``mass[t, layer, kv_head, p]`` is the softmax weight the query heads of that KV head
(GQA group, averaged over its query heads) put on the tokens of page ``p`` (tokens
``p * tokens_per_page`` .. ``(p + 1) * tokens_per_page - 1``). Each ``(t, layer, kv_head)`` row
sums to 1 over pages ``0 .. t // tokens_per_page``; later pages are 0. Both the numpy llama2.c
model (:mod:`kvgym.traces.llama2c`) and the Hugging Face hook (:mod:`kvgym.traces.hf_capture`)
produce it.

:func:`record_to_trace` turns a record into a trace with weights. A page is one (token block,
layer, head group) of the model geometry (``heads_per_page`` KV heads per page; all of a layer's
KV heads by default); its mass is the mean of its heads' masses, so each (step, layer, group)
sums to 1. Page id ``= (block * layers + layer) * groups + group``. At step ``t`` the accesses
are, for every layer and group (in that order), the pages chosen by the selection rule, in
block order, each with its mass as ``weight``:

- ``all``: every page ``0 .. t // tokens_per_page``;
- ``topk:K``: the ``K`` pages of largest mass (ties: the earlier block);
- ``mass:P``: the smallest set of pages whose mass adds up to at least ``P`` (0 < P <= 1) of the
  row's total (largest first; relative tolerance 1e-6 for float rounding).
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kvgym import files
from kvgym.errors import ConfigError, TraceError
from kvgym.files import atomic_write, write_bytes
from kvgym.traces.format import PageTable, Trace, validate
from kvgym.traces.geometry import ModelGeometry

MASS_TOL = 1e-6


@dataclass(frozen=True, eq=False)
class AttentionRecord:
    """Per-step, per-layer, per-KV-head attention mass per KV page (see the module docstring).

    Attributes:
        tokens: ``steps + 1`` token ids: the token fed at each step, then the last one generated.
        mass: float32 ``[steps, layers, kv_heads, pages]``.
        tokens_per_page: tokens per KV page.
        geometry: the model's KV geometry (``tokens_per_page`` set, ``heads_per_page`` unset).
        prompt_len: leading tokens given rather than generated (BOS included).
        model: model label (file name or hub id).
        meta: extra provenance (checkpoint sha256, sampling settings, device...).
    """

    tokens: np.ndarray
    mass: np.ndarray
    tokens_per_page: int
    geometry: ModelGeometry
    prompt_len: int = 1
    model: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return int(self.mass.shape[0])

    def save(self, path: str | Path) -> Path:
        """Write the record as a compressed ``.npz`` (atomically); :meth:`load` reads it back."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        head = {"tokens_per_page": self.tokens_per_page, "geometry": self.geometry.to_dict(),
                "prompt_len": self.prompt_len, "model": self.model, "meta": self.meta}
        arrays = {"tokens": self.tokens, "mass": self.mass,
                  "header": np.frombuffer(json.dumps(head, sort_keys=True).encode(), np.uint8)}
        buf = io.BytesIO()
        # np.savez stamps the current time into the zip; a fixed date keeps the file byte-identical.
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, arr in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                with zf.open(info, "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)
        return write_bytes(path, buf.getvalue(), "attention record")

    @classmethod
    def load(cls, path: str | Path) -> AttentionRecord:
        path = Path(path)
        try:
            with np.load(path) as z:
                head = json.loads(bytes(z["header"]).decode())
                tokens, mass = z["tokens"], z["mass"]
        except (OSError, ValueError, KeyError) as e:
            raise TraceError(f"{path}: not an attention record ({e})") from None
        return cls(tokens=tokens, mass=mass, tokens_per_page=int(head["tokens_per_page"]),
                   geometry=ModelGeometry(**head["geometry"]), prompt_len=int(head["prompt_len"]),
                   model=head["model"], meta=head["meta"])


def page_mass(att: np.ndarray, tokens_per_page: int) -> np.ndarray:
    """Sum attention over token positions into pages: ``[..., t] -> [..., ceil(t / tokens_per_page)]``."""
    t = att.shape[-1]
    n = -(-t // tokens_per_page)
    pad = n * tokens_per_page - t
    if pad:
        att = np.concatenate([att, np.zeros(att.shape[:-1] + (pad,), att.dtype)], axis=-1)
    return att.reshape(att.shape[:-1] + (n, tokens_per_page)).sum(axis=-1)


@dataclass(frozen=True)
class Selection:
    """A page-selection rule: ``kind`` in (all, topk, mass) with ``k`` or ``share``."""

    kind: str
    k: int = 0
    share: float = 1.0

    def __str__(self) -> str:
        return {"all": "all", "topk": f"topk:{self.k}", "mass": f"mass:{self.share:g}"}[self.kind]


def parse_select(spec: str | Selection) -> Selection:
    """``all``, ``topk:K`` (K >= 1) or ``mass:P`` (0 < P <= 1)."""
    if isinstance(spec, Selection):
        return spec
    kind, _, arg = str(spec).partition(":")
    try:
        if kind == "all" and not arg:
            return Selection("all")
        if kind == "topk" and int(arg) >= 1:
            return Selection("topk", k=int(arg))
        if kind == "mass" and 0 < float(arg) <= 1:
            return Selection("mass", share=float(arg))
    except ValueError:
        pass
    raise ConfigError(f"select {spec!r}: expected 'all', 'topk:K' (K >= 1) or 'mass:P' (0 < P <= 1)")


def select_pages(m: np.ndarray, sel: Selection) -> np.ndarray:
    """Boolean mask ``[rows, pages]`` of the pages ``sel`` picks in each row of masses ``m``."""
    rows, n = m.shape
    if sel.kind == "all" or (sel.kind == "topk" and sel.k >= n):
        return np.ones((rows, n), bool)
    order = np.argsort(-m, axis=1, kind="stable")  # largest first, earlier block on ties
    if sel.kind == "topk":
        count = np.full(rows, sel.k)
    else:
        sorted_m = np.take_along_axis(m, order, axis=1).astype(np.float64)
        cum = np.cumsum(sorted_m, axis=1)
        need = sel.share * cum[:, -1] * (1 - MASS_TOL)
        count = np.minimum((cum < need[:, None]).sum(axis=1) + 1, n)
    mask = np.zeros((rows, n), bool)
    np.put_along_axis(mask, order, np.arange(n)[None, :] < count[:, None], axis=1)
    return mask


def group_mass(mass: np.ndarray, heads_per_page: int | None) -> np.ndarray:
    """``[steps, L, kv_heads, P] -> [steps, L, groups, P]``: mean over each page's KV heads."""
    s, L, H, P = mass.shape
    hpp = heads_per_page or H
    if H % hpp:
        raise ConfigError(f"heads_per_page must divide kv_heads={H}, got {heads_per_page}")
    return mass.reshape(s, L, H // hpp, hpp, P).mean(axis=3)


def record_to_trace(rec: AttentionRecord, select: str | Selection = "topk:8", *,
                    heads_per_page: int | None = None, meta: dict | None = None) -> Trace:
    """The kvgym trace of ``rec`` under a selection rule (see the module docstring)."""
    sel = parse_select(select)
    geo = rec.geometry.with_(tokens_per_page=rec.tokens_per_page, heads_per_page=heads_per_page)
    gm = group_mass(rec.mass, heads_per_page)
    steps, L, G, _ = gm.shape
    tpp = rec.tokens_per_page
    step_parts, page_parts, w_parts = [], [], []
    rows_id = (np.arange(L)[:, None] * G + np.arange(G)[None, :]).reshape(-1)  # layer * G + group
    for t in range(steps):
        n = t // tpp + 1
        m = gm[t, :, :, :n].reshape(L * G, n)
        mask = select_pages(m, sel)
        r, b = np.nonzero(mask)  # row-major: layer, group, then block order
        page_parts.append(b.astype(np.int64) * (L * G) + rows_id[r])
        w_parts.append(m[r, b])
        step_parts.append(np.full(len(b), t, np.int64))
    n_blocks = -(-steps // tpp) if steps else 0
    n_pages = n_blocks * L * G
    pid = np.arange(n_pages, dtype=np.int64)
    block = pid // (L * G)
    pages = PageTable(seq=np.zeros(n_pages, np.int32), layer=((pid // G) % L).astype(np.int32),
                      token_start=block * tpp, token_end=(block + 1) * tpp,
                      fp16_bytes=np.full(n_pages, geo.page_fp16_bytes, np.int64))
    cat = (lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt))
    info = {
        "generator": rec.meta.get("generator", "attention-capture"),
        "model": rec.model,
        "params": {"select": str(sel), "steps": steps, "tokens_per_page": tpp, "heads_per_page": heads_per_page},
        "geometry": geo.to_dict(),
        "head_groups": G,
        "page_id": "(block * layers + layer) * head_groups + group",
        "step": "decode position (token t attends to tokens 0..t)",
        "weight": "attention mass of the page (mean over its KV heads; each step/layer/group sums to 1)",
        "prompt_len": rec.prompt_len,
        "tokens": [int(x) for x in rec.tokens],
        "capture": dict(rec.meta),
    }
    info.update(meta or {})
    trace = Trace(cat(step_parts, np.int64), cat(page_parts, np.int64), pages, cat(w_parts, np.float32), info)
    validate(trace, f"capture of {rec.model}")
    return trace


def record_stats(rec: AttentionRecord, k: int = 8) -> dict:
    """Attention statistics of a record, by layer (means over steps and KV heads).

    ``recent_page_share``: mass on the page holding the current token; ``first_page_share``:
    mass on page 0 (the attention sink; counted from step ``tokens_per_page`` on, so it is not
    the current page); ``topk_coverage``: mass held by the ``k`` largest pages (steps with more
    than ``k`` pages only); ``pages_for_90pct``: mean size of the smallest page set holding 90%.
    """
    steps, L = rec.mass.shape[:2]
    tpp = rec.tokens_per_page
    t = np.arange(steps)
    cur = t // tpp
    recent = rec.mass[t, :, :, cur]  # [steps, L, H]
    out: dict = {"k": k, "steps": steps, "tokens_per_page": tpp, "layers": []}
    later = t >= tpp
    many = cur + 1 > k
    srt = -np.sort(-rec.mass, axis=-1)
    topk = srt[..., :k].sum(axis=-1)  # [steps, L, H]
    cum = np.cumsum(srt, axis=-1)
    n90 = (cum < 0.9 * (1 - MASS_TOL) * cum[..., -1:]).sum(axis=-1) + 1
    for layer in range(L):
        out["layers"].append({
            "layer": layer,
            "recent_page_share": float(recent[:, layer].mean()),
            "first_page_share": float(rec.mass[later, layer, :, 0].mean()) if later.any() else None,
            "topk_coverage": float(topk[many, layer].mean()) if many.any() else None,
            "pages_for_90pct": float(n90[:, layer].mean()),
        })
    for key in ("recent_page_share", "first_page_share", "topk_coverage", "pages_for_90pct"):
        vals = [d[key] for d in out["layers"] if d[key] is not None]
        out[key] = float(np.mean(vals)) if vals else None
    return out


def plot_record(rec: AttentionRecord, path: str | Path, k: int = 8, title: str | None = None) -> Path:
    """One PNG: per-layer heatmaps of mass by (step, page) and the share curves of :func:`record_stats`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, L, _, P = rec.mass.shape
    tpp = rec.tokens_per_page
    stats = record_stats(rec, k)
    fig, axes = plt.subplots(2, max(L, 2), figsize=(3.0 * max(L, 2), 6.0), squeeze=False)
    for layer in range(L):
        ax = axes[0, layer]
        # Mean over KV heads; log scale shows the long tail next to the sink and recent pages.
        img = np.log10(np.maximum(rec.mass[:, layer].mean(axis=1).T, 1e-4))
        ax.imshow(img, aspect="auto", origin="lower", cmap="viridis", vmin=-4, vmax=0, interpolation="nearest")
        ax.set_title(f"layer {layer}", fontsize=9)
        ax.set_xlabel("decode step", fontsize=8)
        if layer == 0:
            ax.set_ylabel(f"KV page ({tpp} tokens)\nlog10 mass", fontsize=8)
    for ax in axes[0, L:]:
        ax.axis("off")
    t = np.arange(steps)
    ax = axes[1, 0]
    win = np.ones(tpp) / tpp  # moving average over one page of steps: the raw curve is a sawtooth
    for layer in range(L):
        y = rec.mass[t, layer, :, t // tpp].mean(axis=-1)
        ax.plot(t[: len(y) - tpp + 1] + tpp - 1, np.convolve(y, win, mode="valid"), lw=0.8, label=f"L{layer}")
    ax.set_title(f"share on the most recent page ({tpp}-step mean)", fontsize=9)
    ax.set_xlabel("decode step", fontsize=8)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=6, ncol=2)
    ax = axes[1, 1]
    x = np.arange(L)
    for off, key, lab in ((-0.27, "recent_page_share", "recent page"), (0.0, "first_page_share", "first page"),
                          (0.27, "topk_coverage", f"top-{k} pages")):
        ax.bar(x + off, [d[key] or 0.0 for d in stats["layers"]], width=0.27, label=lab)
    ax.set_xticks(x)
    ax.set_xlabel("layer", fontsize=8)
    ax.set_title("mean share of attention mass", fontsize=9)
    ax.set_ylim(0, 1.15)
    ax.legend(fontsize=6, ncol=3, loc="upper center")
    if axes.shape[1] > 2:
        ax = axes[1, 2]
        kmax = min(P, 16)
        late = t // tpp + 1 > kmax  # steps with more pages than the largest k shown
        rows = rec.mass[late] if late.any() else rec.mass
        cov = np.cumsum(-np.sort(-rows, axis=-1), axis=-1)[..., :kmax].mean(axis=(0, 2))  # [L, kmax]
        for layer in range(L):
            ax.plot(np.arange(1, kmax + 1), cov[layer], marker=".", lw=0.8, label=f"L{layer}")
        ax.set_xlabel("k (pages)", fontsize=8)
        ax.set_title("top-k coverage" + (f" (steps with > {kmax} pages)" if late.any() else ""), fontsize=9)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=6, ncol=2)
    for ax in axes[1, 3:]:
        ax.axis("off")
    fig.suptitle(title or f"{rec.model}: attention mass per KV page ({steps} steps)", fontsize=10)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=80, format="png", metadata={"Software": None}), "plot")
    finally:
        plt.close(fig)


def write_json(obj, path: str | Path) -> Path:
    """Write ``obj`` as sorted, indented JSON, atomically."""
    return files.write_json(path, obj, indent=1)
