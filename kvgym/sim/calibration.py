"""Build the ``h200-measured`` tier profile from a calibration file (``calibration/h200.json``).

Each number of the profile is traced to rows of the file (the returned provenance string says
which). Links are fitted with the α-β model: β from the largest copy, α from the smallest.
``python -m kvgym.sim.calibration PATH`` prints the profile as JSON; the shipped copy in
``kvgym/data/profiles.json`` is checked against this derivation by the tests.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from kvgym.errors import ConfigError
from kvgym.sim.tiers import ComputeModel, Tier, TierProfile

GiB = 1 << 30


def _alpha_beta(rows: list[dict], key: str) -> tuple[float, float]:
    small, large = rows[0], rows[-1]
    beta = large["bytes"] / large[f"{key}_us"]  # bytes/µs
    alpha = small[f"{key}_us"] - small["bytes"] / beta
    return round(alpha, 3), round(beta, 3)


def profile_from_calibration(path: str | Path) -> TierProfile:
    """The 4-tier H200 profile: HBM, HBM overflow pool, pinned host RAM, local disk."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        cal = json.loads(raw)
        copies = sorted(cal["copies"], key=lambda r: r["bytes"])
        attn = sorted(cal["attention"], key=lambda r: r["context_tokens"])
        disk = {r["op"]: r for r in cal["disk"]}
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not a calibration file ({e})") from None
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
        "compute floor = min attention us/layer, attention bw = 1M-token row"
    )
    return TierProfile("h200-measured", tiers, ComputeModel(floor, attn_bw), prov)


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(profile_from_calibration(sys.argv[1]).to_dict(), indent=2))
