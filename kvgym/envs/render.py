"""Rendering of an env's state: ``ansi`` text and a small ``rgb_array`` image (numpy only).

Both read a :class:`Snapshot` (tier occupancy, totals, the recent decisions), so the
renderers know nothing about backends. The image is 96 x 256 pixels: one bar per tier
(occupancy, left to right), then the timeline of the last 256 decisions (one column each;
red = share of the accesses since the previous decision that missed tier 0, green = hits,
dark = none).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WIDTH, HEIGHT = 256, 96
_BAR, _GAP = 10, 4
_TIER_COLORS = np.array([[66, 133, 244], [171, 71, 188], [255, 167, 38], [141, 110, 99], [120, 144, 156]], np.uint8)
_BG = np.array([24, 24, 24], np.uint8)
_HIT = np.array([67, 160, 71], np.uint8)
_MISS = np.array([229, 57, 53], np.uint8)


@dataclass
class Snapshot:
    """What the renderers show. ``history`` rows: (decision, step, phase, page, hits, misses)."""

    title: str
    tier_names: list[str]
    used: np.ndarray
    caps: list[int | None]
    footprint: int
    step: int
    pos: int
    n_acc: int
    decisions: int
    hits: int
    misses: int
    stall_us: float
    bytes_moved: int
    history: list[tuple]


def _fraction(used: int, cap: int | None, footprint: int) -> float:
    denom = cap if cap is not None else max(footprint, 1)
    return min(1.0, used / denom) if denom else 0.0


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def render_ansi(s: Snapshot, last: int = 8) -> str:
    acc = s.hits + s.misses
    lines = [f"{s.title} | step {s.step} | access {s.pos + 1}/{s.n_acc} | decisions {s.decisions}"]
    for t, name in enumerate(s.tier_names):
        frac = _fraction(int(s.used[t]), s.caps[t], s.footprint)
        bar = "#" * round(frac * 20)
        cap = _human(s.caps[t]) if s.caps[t] is not None else "unbounded"
        lines.append(f"tier {t} {name:<12s} [{bar:<20s}] {100 * frac:5.1f}%  {_human(int(s.used[t]))} of {cap}")
    hr = s.hits / acc if acc else 0.0
    lines.append(f"hit rate {hr:.3f} | misses {s.misses} | stall {s.stall_us / 1e3:.3f} ms | "
                 f"bytes moved {_human(s.bytes_moved)}")
    if s.history:
        lines.append("last decisions:")
        for d, step, phase, page, hits, misses in s.history[-last:]:
            what = "no prefetch" if page < 0 else f"page {page}"
            lines.append(f"  #{d} step {step} {phase}: {what}  (+{hits} hits, +{misses} misses before the next)")
    return "\n".join(lines) + "\n"


def render_rgb(s: Snapshot) -> np.ndarray:
    img = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    img[:] = _BG
    y = _GAP
    for t in range(len(s.tier_names)):
        frac = _fraction(int(s.used[t]), s.caps[t], s.footprint)
        img[y:y + _BAR, :, :] = 48
        img[y:y + _BAR, : round(frac * WIDTH)] = _TIER_COLORS[t % len(_TIER_COLORS)]
        y += _BAR + _GAP
    top = y + _GAP
    h = HEIGHT - top - _GAP
    if h > 0 and s.history:
        hist = s.history[-WIDTH:]
        hits = np.array([r[4] for r in hist], np.float64)
        miss = np.array([r[5] for r in hist], np.float64)
        tot = hits + miss
        share = np.divide(miss, tot, out=np.zeros_like(miss), where=tot > 0)
        red = np.round(share * h).astype(int)
        x0 = WIDTH - len(hist)
        rows = np.arange(h)[:, None]
        # Misses fill each column from the bottom, hits above them; empty intervals stay dark.
        is_miss = rows >= (h - red)[None, :]
        col = np.where(is_miss[..., None], _MISS, _HIT)
        col[:, tot == 0] = _BG
        img[top:top + h, x0:] = col
    return img
