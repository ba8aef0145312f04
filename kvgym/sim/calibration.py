"""Build the ``h200-measured`` tier profile from a calibration file (``calibration/h200.json``).

Each number of the profile is traced to rows of the file (the returned provenance string says
which). Tiers keep an α-β fit (β from the largest copy, α from the smallest); the GPU copies that
were measured by size get a measured curve (:class:`kvgym.sim.tiers.LinkCurve`) that replaces the
fit: device-device (HBM <-> HBM pool), host-to-device pinned (host -> HBM) and device-to-host pinned
(HBM pool -> host), with the back-to-back issue cost of the 64 KiB page-copy batches (the median
per-copy time over the batch sizes). The disk keeps its α-β form (only random-read latencies at
three sizes were measured). :func:`fidelity` compares the model with every measured point
(``kvgym calibrate check``). ``python -m kvgym.sim.calibration PATH`` prints the profile as JSON;
the shipped copy in ``kvgym/data/profiles.json`` is checked against this derivation by the tests.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from kvgym.errors import ConfigError
from kvgym.sim.tiers import ComputeModel, LinkCurve, Tier, TierProfile

GiB = 1 << 30


def _alpha_beta(rows: list[dict], key: str) -> tuple[float, float]:
    small, large = rows[0], rows[-1]
    beta = large["bytes"] / large[f"{key}_us"]  # bytes/µs
    alpha = small[f"{key}_us"] - small["bytes"] / beta
    return round(alpha, 3), round(beta, 3)


#: (measured copy kind, source tier, destination tier) of each curve of the profile.
CURVES = (("d2d", "hbm_pool", "hbm"), ("d2d", "hbm", "hbm_pool"), ("h2d_pinned", "host", "hbm"),
          ("d2h_pinned", "hbm_pool", "host"))


def _load(path: str | Path) -> tuple[bytes, dict]:
    path = Path(path)
    raw = path.read_bytes()
    try:
        cal = json.loads(raw)
        cal["copies"] = sorted(cal["copies"], key=lambda r: r["bytes"])
        cal["attention"] = sorted(cal["attention"], key=lambda r: r["context_tokens"])
        cal["disk"] = {r["op"]: r for r in cal["disk"]}
        cal["batching"] = sorted(cal["batching"], key=lambda r: r["pages"])
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not a calibration file ({e})") from None
    return raw, cal


def default_calibration() -> Path:
    """The H200 calibration file shipped with kvgym."""
    from importlib import resources

    return Path(str(resources.files("kvgym").joinpath("data/calibration/h200.json")))


def issue_us(cal: dict) -> float:
    """Per-copy cost of page copies issued back to back: the median over the batching rows, µs."""
    per = sorted(r["separate_us"] / r["pages"] for r in cal["batching"])
    m = len(per)
    return round(per[m // 2] if m % 2 else (per[m // 2 - 1] + per[m // 2]) / 2, 3)


def curve(cal: dict, kind: str, src: str, dst: str, source: str) -> LinkCurve:
    """The measured copy-time curve of ``kind`` (``d2d``, ``h2d_pinned``, ``d2h_pinned``)."""
    rows = cal["copies"]
    big = rows[-1]
    return LinkCurve(src, dst, tuple(r["bytes"] for r in rows), tuple(r[f"{kind}_us"] for r in rows),
                     issue_us(cal), round(big["bytes"] / big[f"{kind}_us"], 3), source)


def profile_from_calibration(path: str | Path) -> TierProfile:
    """The 4-tier H200 profile: HBM, HBM overflow pool, pinned host RAM, local disk."""
    path = Path(path)
    raw, cal = _load(path)
    copies, attn, disk = cal["copies"], cal["attention"], cal["disk"]
    d2d_a, d2d_b = _alpha_beta(copies, "d2d")
    h2d_a, h2d_b = _alpha_beta(copies, "h2d_pinned")
    d2h_a, _ = _alpha_beta(copies, "d2h_pinned")
    disk_bw = round(disk["seq_read_direct_8MiB"]["GBps"] * 1e3, 3)
    disk_lat = disk["rand_read_direct_4KiB"]["p50_us"]
    floor = min(r["us"] for r in attn)
    attn_bw = round(attn[-1]["kv_bytes"] / attn[-1]["us"], 3)
    tiers = (
        # HBM's own fixed costs are carried by the other tier of each transfer.
        Tier("hbm", 96 * GiB, 0.0, 0.0, d2d_b),
        Tier("hbm_pool", 32 * GiB, d2d_a, 0.0, d2d_b),
        Tier("host", 512 * GiB, h2d_a, d2h_a, h2d_b),
        # Disk writes are not measured randomly; the 4 KiB random-read p50 stands in for both.
        Tier("disk", None, disk_lat, disk_lat, disk_bw),
    )
    sha = hashlib.sha256(raw).hexdigest()
    prov = (
        f"{path.name} sha256 {sha[:16]} ({cal.get('meta', {}).get('gpu', '?')}, {cal.get('meta', {}).get('date', '?')}): "
        "hbm/hbm_pool bw = d2d 256 MiB copy (bytes copied per us), hbm_pool alpha = d2d 4 KiB copy; "
        "host alpha/beta = h2d_pinned 4 KiB / 256 MiB copies, host write alpha = d2h_pinned 4 KiB; "
        "disk = O_DIRECT seq read 8 MiB bw, rand 4 KiB read p50 latency; "
        "compute floor = min attention us/layer, attention bw = 1M-token row; "
        "curves: d2d (hbm<->hbm_pool), h2d_pinned (host->hbm), d2h_pinned (hbm_pool->host) copy times "
        "4 KiB..256 MiB, issue cost = median per-copy time of the 64 KiB batching rows"
    )
    curves = tuple(curve(cal, kind, a, b, f"{path.name} copies[{kind}_us], batching") for kind, a, b in CURVES)
    return TierProfile("h200-measured", tiers, ComputeModel(floor, attn_bw), prov, curves)


def fidelity(path: str | Path, profile_name: str = "h200-measured") -> list[dict]:
    """The shipped profile against every measured copy point and batching row.

    Copies (one row per size and kind): the measured per-copy time against the profile's copy on an
    idle link (its curve, interpolated) and against the α-β fit of the same link (the model before
    the curves). Batching (one row per batch size): N page copies of 64 KiB host->HBM issued back
    to back, measured per batch, against N copies queued on a busy link (the batches were timed in
    a loop, so every copy follows another). ``error`` = model / measured - 1.
    """
    from kvgym.sim.tiers import Link, profile

    _, cal = _load(path)
    prof = profile(profile_name)
    names = [t.name for t in prof.tiers]
    rows = []
    for kind, a, b in CURVES:
        if (kind, a) == ("d2d", "hbm"):
            continue  # the same measurement as hbm_pool -> hbm
        link = prof.link(names.index(a), names.index(b))
        ab = Link(link.alpha_us, link.beta)
        for r in cal["copies"]:
            m = r[f"{kind}_us"]
            rows.append({"kind": kind, "link": f"{a}->{b}", "bytes": r["bytes"], "measured_us": m,
                         "model_us": link.time_us(r["bytes"]), "alpha_beta_us": ab.time_us(r["bytes"])})
    link = prof.link(names.index("host"), names.index("hbm"))
    ab = Link(link.alpha_us, link.beta)
    for r in cal["batching"]:
        n, b = r["pages"], r["page_bytes"]
        rows.append({"kind": "h2d_pinned batch", "link": "host->hbm", "bytes": n * b, "pages": n,
                     "measured_us": r["separate_us"], "model_us": n * link.time_us(b, queued=True),
                     "alpha_beta_us": n * ab.time_us(b)})
    for row in rows:
        row["error"] = row["model_us"] / row["measured_us"] - 1
        row["alpha_beta_error"] = row["alpha_beta_us"] / row["measured_us"] - 1
    return rows


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(profile_from_calibration(sys.argv[1]).to_dict(), indent=2))
