"""``kvgym parity [DIR]``: reproduce kv-hierarchy-lab v0.1's default sweep, cell by cell.

DIR (default: the copy shipped in ``kvgym/data/parity``) holds ``manifest.json``, the 35 cell
traces and ``expected_fixed.json`` (210 records = 35 cells x 6 policies; see its README). Each
record is rerun with the ``serial`` cost model through :func:`kvgym.bench.parity.load_cell` and
compared metric by metric: integers exactly, floats within 1e-9 relative. The command prints one
row per record (with every field that identifies its cell, e.g. a ``seed``), ends with
``parity: N/210 records match`` and exits 1 unless every record matches.

Other parity folders work the same way: a record is matched to the manifest cell whose every
identifying field (all of a cell's fields but ``trace``: ``scenario``, ``workload``, ``seed``,
...) it shares, and a record that fits no cell, or several, is an error; a record's policy is the
manifest entry of that ``name`` (any label, e.g. ``regret_aware_w1.0_h8``), built from its
``kind`` (the original class, :data:`KINDS`) and ``params``.

The original ``predictive`` policy both evicted and prefetched; in kvgym its eviction half is
policy ``predictive`` and its prefetch half prefetcher ``markov`` (which takes the manifest's
``min_confidence`` and ``max_prefetches``). The other five run without a prefetcher, so their
prefetch phase is a no-op, as in the original (whose other policies propose nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from kvgym.errors import ConfigError
from kvgym.files import read_json

TOLERANCE = 1e-9
#: Original policies whose prefetch half is a separate kvgym prefetcher: name -> prefetcher.
PREFETCH_HALF = {"predictive": "markov"}


def default_dir() -> Path:
    """The parity data shipped with the package (:func:`kvgym.bundled.parity_dir`)."""
    from kvgym.bundled import parity_dir

    return parity_dir()


#: kv-hierarchy-lab v0.1's policy classes (a manifest entry's ``kind``) -> kvgym policy names.
KINDS = {"LRUPolicy": "lru", "WindowedRecencyPolicy": "windowed_recency", "HeavyHitterPolicy": "heavy_hitter",
         "CostAwarePolicy": "cost_aware", "PredictivePrefetchPolicy": "predictive", "RegretAwarePolicy": "regret_aware"}


@dataclass(frozen=True)
class Record:
    """One compared record: the identifying fields of its cell (``scenario``, ``workload`` and any
    other, such as ``seed``), the policy label, and the comparison."""

    key: tuple[tuple[str, object], ...]
    policy: str
    ok: bool
    worst_rel: float
    bad: tuple[str, ...]

    @property
    def scenario(self) -> str:
        return dict(self.key).get("scenario", "")

    @property
    def workload(self) -> str:
        return dict(self.key).get("workload", "")


def policy_of(entry: dict) -> tuple[str, dict]:
    """``(kvgym policy name, params)`` of a manifest policy entry: from its ``kind`` (the original
    class) when given, else its ``name`` (which may be any label, e.g. ``regret_aware_w1.0_h8``)."""
    from kvgym.sim.policy import policy_names

    kind, name, params = entry.get("kind"), entry.get("name"), entry.get("params", {})
    if not isinstance(params, dict):
        raise ConfigError(f"parity: policy {name!r}: params must be an object, got {params!r:.80}")
    if kind is not None:
        if kind not in KINDS:
            raise ConfigError(f"parity: policy {name!r}: unknown kind {kind!r}; valid: {', '.join(KINDS)}")
        return KINDS[kind], params
    if name not in policy_names():
        raise ConfigError(f"parity: policy {name!r} has no 'kind' and is not a kvgym policy; valid kinds: "
                          f"{', '.join(KINDS)}")
    return name, params


def runner(name: str, params: dict):
    """(policy, prefetcher or None) reproducing original policy ``name`` (a kvgym policy name) with
    its manifest ``params``."""
    from kvgym.sim.policy import make_policy, make_prefetcher

    if name in PREFETCH_HALF:
        return make_policy(name), make_prefetcher(PREFETCH_HALF[name], **params)
    return make_policy(name, **params), None


def run_record(cell, name: str, params: dict) -> dict:
    """Run original policy ``name`` on a loaded parity cell; metrics in the original record format."""
    from kvgym.bench.parity import parity_metrics
    from kvgym.sim.engine import Engine

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


def _cell_key(cell: dict) -> dict:
    """The fields that identify a manifest cell: every field but the trace path."""
    return {k: v for k, v in cell.items() if k != "trace"}


def match_cell(rec: dict, cells: list[dict], where: str) -> dict:
    """The one cell whose identifying fields all equal the record's; an error when none or several
    match (a record that lacks a field telling cells apart, e.g. ``seed``, is ambiguous)."""
    found = [c for c in cells if all(rec.get(k) == v for k, v in _cell_key(c).items() if k in rec)]
    found = [c for c in found if all(k in rec for k in _cell_key(c))] or found
    if not found:
        key = {k: rec.get(k) for k in sorted({k for c in cells for k in _cell_key(c)}) if k in rec}
        raise ConfigError(f"parity: {where} {key} has no cell in manifest.json")
    if len(found) > 1:
        differ = sorted({k for c in found for k in _cell_key(c) if len({repr(x.get(k)) for x in found}) > 1})
        raise ConfigError(f"parity: {where} matches {len(found)} cells of manifest.json (they differ in "
                          f"{', '.join(differ)}, which the record does not give)")
    return found[0]


def run_all(root: Path, policies: list[str] | None = None, expected: str = "expected_fixed.json") -> list[Record]:
    """Rerun every record of ``root/expected`` (optionally only some policies, by manifest name).

    Each record is matched to its cell by every identifying field of the cells (``scenario``,
    ``workload``, and ``seed`` or any other field they carry), and its policy is built from the
    manifest entry's ``kind`` plus ``params``.
    """
    from kvgym.bench.parity import load_cell

    root = Path(root)
    manifest = read_json(root / "manifest.json", "parity manifest")
    records = read_json(root / expected, "parity records")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("policies"), list) \
            or not isinstance(manifest.get("cells"), list) or not isinstance(records, list):
        raise ConfigError(f"parity data in {root}: expected a manifest with 'policies' and 'cells' lists and a "
                          f"list of records in {expected}")
    entries: dict = {}
    for p in manifest["policies"]:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            raise ConfigError(f"parity: manifest policy {p!r:.80} needs a 'name'")
        if p["name"] in entries:
            raise ConfigError(f"parity: manifest.json lists policy {p['name']!r} twice")
        entries[p["name"]] = policy_of(p)
    cells = manifest["cells"]
    if not all(isinstance(c, dict) and isinstance(c.get("trace"), str) for c in cells):
        raise ConfigError("parity: every manifest cell needs a 'trace' path")
    if policies:
        unknown = sorted(set(policies) - set(entries))
        if unknown:
            raise ConfigError(f"parity: unknown policies {unknown}; valid: {', '.join(entries)}")
    loaded: dict = {}
    out: list[Record] = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or not isinstance(rec.get("metrics"), dict):
            raise ConfigError(f"parity: {expected} record {i} needs a 'metrics' object")
        label = rec.get("policy")
        if policies and label not in policies:
            continue
        if label not in entries:
            raise ConfigError(f"parity: {expected} record {i} has policy {label!r}, not in manifest.json; valid: "
                              f"{', '.join(entries)}")
        cell = match_cell(rec, cells, f"{expected} record {i}")
        if cell["trace"] not in loaded:
            loaded[cell["trace"]] = load_cell(root / cell["trace"])
        name, params = entries[label]
        got = run_record(loaded[cell["trace"]], name, params)
        ok, worst, bad = compare(got, rec["metrics"])
        out.append(Record(tuple(_cell_key(cell).items()), label, ok, worst, tuple(bad)))
    return out


def _run(args) -> int:
    from kvgym.bench.cli_common import csv_list

    root = Path(args.dir) if args.dir else default_dir()
    if not (root / "manifest.json").is_file():
        raise ConfigError(f"no parity data at {root} (expected manifest.json there); pass DIR, "
                          "the folder holding manifest.json, traces/ and expected_fixed.json")
    records = run_all(root, csv_list(args.policies))
    fields = list(dict.fromkeys(k for r in records for k, _ in r.key))
    rows = [[str(dict(r.key).get(f, "")) for f in fields] + [r.policy] for r in records]
    head = fields + ["policy"]
    w = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(head)]
    print("  ".join(h.ljust(x) for h, x in zip(head, w)) + "  match  worst_rel  differing")
    for r, row in zip(records, rows):
        worst = "inf" if math.isinf(r.worst_rel) else f"{r.worst_rel:.1e}"
        print("  ".join(v.ljust(x) for v, x in zip(row, w)) + f"  {'yes' if r.ok else 'NO ':<5}  {worst:>9}  "
              f"{','.join(r.bad) or '-'}")
    n_ok = sum(r.ok for r in records)
    print(f"parity: {n_ok}/{len(records)} records match")
    return 0 if records and n_ok == len(records) else 1


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "parity", help="reproduce kv-hierarchy-lab v0.1's default sweep (210 cells) exactly",
        description="Rerun every record of DIR/expected_fixed.json (35 cells x 6 policies of "
                    "kv-hierarchy-lab v0.1, with fixes F1 and F2) under the serial cost model and compare "
                    "each metric (integers exactly, floats within 1e-9 relative). Prints one row per "
                    "record and 'parity: N/210 records match'; exits 1 unless all match. The original "
                    "'predictive' runs as policy predictive + prefetcher markov.")
    p.add_argument("dir", nargs="?", metavar="DIR",
                   help="parity data folder (default: the copy shipped in kvgym/data/parity)")
    from kvgym.bench.cli_common import add_list_arg

    add_list_arg(p, "policies", "only these original policies")
    p.set_defaults(func=_run)
