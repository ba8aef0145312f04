"""``kvgym parity [DIR]``: reproduce kv-hierarchy-lab v0.1's default sweep, cell by cell.

DIR (default: ``../shared/parity`` beside the repository) holds ``manifest.json``, the 35 cell
traces and ``expected_fixed.json`` (210 records = 35 cells x 6 policies; see its README). Each
record is rerun with the ``serial`` cost model through :func:`kvgym.traces.parity.load_cell` and
compared metric by metric: integers exactly, floats within 1e-9 relative. The command prints one
row per record, ends with ``parity: N/210 cells match`` and exits 1 unless every record matches.

The original ``predictive`` policy both evicted and prefetched; in kvgym its eviction half is
policy ``predictive`` and its prefetch half prefetcher ``markov`` (which takes the manifest's
``min_confidence`` and ``max_prefetches``). The other five run without a prefetcher, so their
prefetch phase is a no-op, as in the original (whose other policies propose nothing).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import kvgym
from kvgym.errors import ConfigError

TOLERANCE = 1e-9
#: Original policies whose prefetch half is a separate kvgym prefetcher: name -> prefetcher.
PREFETCH_HALF = {"predictive": "markov"}


def default_dir() -> Path:
    """``../shared/parity`` relative to the repository root (may not exist)."""
    return Path(kvgym.__file__).resolve().parents[1] / ".." / "shared" / "parity"


@dataclass(frozen=True)
class Record:
    scenario: str
    workload: str
    policy: str
    ok: bool
    worst_rel: float
    bad: tuple[str, ...]


def runner(name: str, params: dict):
    """(policy, prefetcher or None) reproducing original policy ``name`` with its manifest ``params``."""
    from kvgym.sim.policy import make_policy, make_prefetcher

    if name in PREFETCH_HALF:
        return make_policy(name), make_prefetcher(PREFETCH_HALF[name], **params)
    return make_policy(name, **params), None


def run_record(cell, name: str, params: dict) -> dict:
    """Run original policy ``name`` on a loaded parity cell; metrics in the original record format."""
    from kvgym.sim.engine import Engine
    from kvgym.traces.parity import parity_metrics

    setup = cell.scenario.build(cell.trace.pages, [(cell.trace.step, cell.trace.page)])
    policy, prefetcher = runner(name, params)
    m = Engine(setup, policy, prefetcher).run(cell.trace)
    return parity_metrics(m, len(cell.trace), [t.name for t in setup.tiers])


def compare(got: dict, want: dict, tol: float = TOLERANCE) -> tuple[bool, float, list[str]]:
    """(all equal, worst relative difference, differing metric keys) of two metric records."""
    bad: list[str] = []
    worst = 0.0

    def rel(a, b) -> float:
        if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
            return 0.0 if a == b else math.inf
        a, b = float(a), float(b)
        if a == b:
            return 0.0
        return abs(a - b) / max(abs(a), abs(b))

    for key in dict.fromkeys([*want, *got]):
        if key not in got or key not in want:
            bad.append(key)
            worst = math.inf
            continue
        a, b = got[key], want[key]
        if isinstance(b, dict) or isinstance(a, dict):
            if not (isinstance(a, dict) and isinstance(b, dict)) or set(a) != set(b):
                bad.append(key)
                worst = math.inf
                continue
            r = max((rel(a[k], b[k]) for k in b), default=0.0)
        elif isinstance(b, int) and isinstance(a, int):
            r = 0.0 if a == b else math.inf
        else:
            r = rel(a, b)
        worst = max(worst, r)
        if r > tol:
            bad.append(key)
    return not bad, worst, bad


def run_all(root: Path, policies: list[str] | None = None, expected: str = "expected_fixed.json") -> list[Record]:
    """Rerun every record of ``root/expected`` (optionally only some policies)."""
    from kvgym.traces.parity import load_cell

    root = Path(root)
    try:
        manifest = json.loads((root / "manifest.json").read_text())
        records = json.loads((root / expected).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"parity data in {root}: {e}") from None
    params = {p["name"]: p.get("params", {}) for p in manifest["policies"]}
    trace_of = {(c["scenario"], c["workload"]): c["trace"] for c in manifest["cells"]}
    if policies:
        unknown = sorted(set(policies) - set(params))
        if unknown:
            raise ConfigError(f"parity: unknown policies {unknown}; valid: {', '.join(params)}")
    cells: dict = {}
    out: list[Record] = []
    for rec in records:
        name = rec["policy"]
        if policies and name not in policies:
            continue
        key = (rec["scenario"], rec["workload"])
        if key not in trace_of:
            raise ConfigError(f"parity: {expected} record {key} has no cell in manifest.json")
        if key not in cells:
            cells[key] = load_cell(root / trace_of[key])
        got = run_record(cells[key], name, params[name])
        ok, worst, bad = compare(got, rec["metrics"])
        out.append(Record(key[0], key[1], name, ok, worst, tuple(bad)))
    return out


def _run(args) -> int:
    root = Path(args.dir) if args.dir else default_dir()
    if not (root / "manifest.json").is_file():
        raise ConfigError(f"no parity data at {root} (expected manifest.json there); pass DIR, "
                          "the folder holding manifest.json, traces/ and expected_fixed.json")
    records = run_all(root, args.policy)
    w = (max(len(r.scenario) for r in records), max(len(r.workload) for r in records),
         max(len(r.policy) for r in records)) if records else (8, 8, 6)
    print(f"{'scenario':<{w[0]}}  {'workload':<{w[1]}}  {'policy':<{w[2]}}  match  worst_rel  differing")
    for r in records:
        worst = "inf" if math.isinf(r.worst_rel) else f"{r.worst_rel:.1e}"
        print(f"{r.scenario:<{w[0]}}  {r.workload:<{w[1]}}  {r.policy:<{w[2]}}  {'yes' if r.ok else 'NO ':<5}  "
              f"{worst:>9}  {','.join(r.bad) or '-'}")
    n_ok = sum(r.ok for r in records)
    print(f"parity: {n_ok}/{len(records)} cells match")
    return 0 if records and n_ok == len(records) else 1


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "parity", help="reproduce kv-hierarchy-lab v0.1's default sweep (210 cells) exactly",
        description="Rerun every record of DIR/expected_fixed.json (35 cells x 6 policies of "
                    "kv-hierarchy-lab v0.1, with fixes F1 and F2) under the serial cost model and compare "
                    "each metric (integers exactly, floats within 1e-9 relative). Prints one row per "
                    "record and 'parity: N/210 cells match'; exits 1 unless all match. The original "
                    "'predictive' runs as policy predictive + prefetcher markov.")
    p.add_argument("dir", nargs="?", metavar="DIR",
                   help="parity data folder (default: ../shared/parity beside the repository)")
    p.add_argument("--policy", action="append", metavar="NAME",
                   help="only this original policy (repeatable)")
    p.set_defaults(func=_run)
