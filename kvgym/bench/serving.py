"""The serving section of a sweep: serving scenarios x request traces x policies x admission x seeds.

A sweep config's ``serving`` table (:class:`ServingSweepConfig`) adds it to ``kvgym sweep`` and
``kvgym demo``; its files go to ``OUT/serving/`` (:func:`run_serving`):

    cells/<cell_id>.json   one result per finished cell (atomic; a rerun reuses unchanged cells)
    results.csv            one row per cell, in config order (byte-identical for the same config)
    results.parquet        the same table, typed
    leaderboard.md         per scenario, every policy (and admission) ranked by time to first token,
                           and the spread between the best and the worst
    plots/*.png            TTFT p50/p90 per policy and scenario; prefill computed vs the reference

A **serving cell** is (serving scenario, request source, policy, admission policy, seed). The
policy runs in every tier of the scenario (a fresh object per tier: ``simulate_serving(...,
policy, lower=policy)``). The admission policy gates write-through stores into tier 1, so it is an
axis only where the scenario writes through to a second tier; elsewhere the cell runs once and its
``admission`` column is empty. Sources are request-trace specs (:mod:`kvgym.workloads.request_sources`):
generated workloads are regenerated from (name, parameters, seed); a dataset or a file does not
depend on the seed and runs with the first seed only; a file's sha256 and a dataset's pinned sha256
are part of the cell, so a changed trace makes new cells.

The results' metric columns are :meth:`kvgym.sim.metrics.ServingMetrics.to_dict`'s keys, in its
order, per-tier lists spread over ``tier{i}_<name>`` (one definition of every metric). A cell whose
trace does not fit its scenario (a request larger than tier 0) is recorded as ``infeasible``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from kvgym.callspec import fmt_call, parse_call, split_top
from kvgym.errors import ConfigError, KvgymError, SimulationError, TraceError
from kvgym.sim.serving.config import ServingConfig

#: Bumped when the meaning of a serving cell's result changes (old cell files are then not reused).
SERVING_CELL_SCHEMA = 1
KEY_COLUMNS = ["scenario", "source", "policy", "admission", "entry", "kind", "seed"]
HEAD_COLUMNS = KEY_COLUMNS + ["cell_id", "status", "error", "trace_requests", "trace_blocks"]


@dataclass(frozen=True)
class ServingSweepConfig:
    """The serving grid of a sweep (the ``serving`` table of a sweep config).

    Attributes:
        scenarios: serving scenario names, patterns (``gpu5_*``), ``serving`` (all) or tables of
            :class:`~kvgym.sim.serving.config.ServingConfig` fields.
        sources: request-trace specs: ``mooncake-synthetic`` (or a window, ``mooncake-synthetic(start=3793)``),
            ``rag(requests=200)``, a request-trace Parquet or a Mooncake JSON Lines file.
        policies: policy specs run in every tier (``all`` = every serving policy).
        admissions: admission policy specs for write-through scenarios with a second tier.
        seeds: seeds of generated sources (a dataset or a file runs with the first one).
        reference: the policy the leaderboard compares with (with the ``always`` admission).
    """

    scenarios: tuple = ("serving",)
    sources: tuple = ("mooncake-synthetic",)
    policies: tuple = ("vllm_lru", "vllm_arc", "radix_lru", "lmcache_lru", "lru", "s3fifo", "sieve", "hits_per_token",
                       "cost_aware_tiered", "session_aware")
    admissions: tuple = ("always", "threshold(store_threshold=2)", "tinylfu")
    seeds: tuple = (0,)
    reference: str = "vllm_lru"

    def __post_init__(self) -> None:
        for f in ("scenarios", "sources", "policies", "admissions", "seeds"):
            v = getattr(self, f)
            if isinstance(v, str):  # ``--set serving.policies=a,b`` arrives as one string
                v = split_top(v)
            object.__setattr__(self, f, tuple(v) if isinstance(v, (list, tuple)) else (v,))
        self.validate()

    def validate(self) -> None:
        w = "sweep serving"
        for f in ("scenarios", "sources", "policies", "admissions"):
            if not getattr(self, f):
                raise ConfigError(f"{w}: {f} is empty")
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in self.seeds) or not self.seeds:
            raise ConfigError(f"{w}: seeds must be a non-empty list of ints >= 0, got {list(self.seeds)!r}")
        if not isinstance(self.reference, str) or not self.reference:
            raise ConfigError(f"{w}: reference must be a policy name")
        expand_serving(self)  # names, parameters and sources fail here, before any work

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d) -> ServingSweepConfig:
        if isinstance(d, ServingSweepConfig):
            return d
        if not isinstance(d, dict):
            raise ConfigError(f"sweep serving: expected a table of {', '.join(f.name for f in fields(cls))}")
        known = {f.name for f in fields(cls)}
        if unknown := set(d) - known:
            raise ConfigError(f"sweep serving: unknown keys {sorted(unknown)}; valid: {', '.join(sorted(known))}")
        return cls(**d)


@dataclass(frozen=True)
class RequestSource:
    """Where a serving cell's requests come from (see :mod:`kvgym.workloads.request_sources`)."""

    kind: str   # workload | dataset | file
    name: str
    params: dict = field(default_factory=dict)
    digest: str = ""

    @classmethod
    def parse(cls, spec: str) -> RequestSource:
        from kvgym.traces.datasets import dataset
        from kvgym.workloads.request_sources import source_kind

        if not isinstance(spec, str):
            raise ConfigError(f"sweep serving: source {spec!r} must be a spec string")
        kind = source_kind(spec)
        if kind == "file":
            from kvgym.bench.cells import file_digest

            return cls("file", spec, {}, file_digest(spec))
        name, params = parse_call(spec, "request source")
        return cls(kind, name, dict(sorted(params.items())), dataset(name).sha256 if kind == "dataset" else "")

    @property
    def seeded(self) -> bool:
        return self.kind == "workload"

    @property
    def label(self) -> str:
        return Path(self.name).stem if self.kind == "file" else fmt_call(self.name, self.params)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "params": self.params, "digest": self.digest}

    def load(self, seed: int):
        from kvgym.workloads.request_sources import request_trace

        return request_trace(self.name if self.kind == "file" else fmt_call(self.name, self.params), seed)


@dataclass(frozen=True)
class ServingCell:
    """One serving run: scenario, source, policy (every tier), admission (``None``: not applicable), seed."""

    scenario: ServingConfig
    source: RequestSource
    policy: tuple      # (name, params)
    admission: tuple | None
    seed: int

    def to_dict(self) -> dict:
        return {"schema": SERVING_CELL_SCHEMA, "scenario": self.scenario.to_dict(), "source": self.source.to_dict(),
                "policy": list(self.policy), "admission": None if self.admission is None else list(self.admission),
                "seed": self.seed}

    @property
    def cell_id(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    @property
    def key(self) -> dict:
        pol = fmt_call(*self.policy)
        adm = "" if self.admission is None else fmt_call(*self.admission)
        return {"scenario": self.scenario.name, "source": self.source.label, "policy": pol, "admission": adm,
                "entry": entry_label(pol, adm), "kind": "policy", "seed": self.seed}

    def run_safe(self) -> dict:
        """:func:`run_serving_cell`, with a kvgym error recorded as a failed cell (worker processes)."""
        try:
            return run_serving_cell(self)
        except (KvgymError, TraceError) as e:
            return {"cell_id": self.cell_id, **self.key, "status": "error", "error": str(e).splitlines()[0]}


def entry_label(policy: str, admission: str) -> str:
    """How a (policy, admission) pair is named in tables: the policy alone when the admission is
    ``always`` or does not apply, else ``policy+admission``."""
    return policy if admission in ("", "always") else f"{policy}+{admission}"


def admits(s: ServingConfig) -> bool:
    """Whether the admission policy matters in scenario ``s`` (write-through into a second tier)."""
    return s.write_policy == "write_through" and len(s.tiers) > 1


def _specs(specs, what: str, names, build) -> list[tuple[str, dict]]:
    out = []
    for spec in specs:
        for s in (names() if spec == "all" else [spec]):
            if not isinstance(s, str):
                raise ConfigError(f"sweep serving: {what} {s!r} must be a spec string")
            name, params = parse_call(s, what)
            if name not in names():
                raise ConfigError(f"sweep serving: unknown {what} {name!r}; valid: {', '.join(names())}")
            build(name, **params)
            if (name, params) not in out:
                out.append((name, dict(sorted(params.items()))))
    return out


def expand_serving(cfg: ServingSweepConfig) -> list[ServingCell]:
    """Every serving cell, in the results' order: scenario, source, policy, admission, seed."""
    from kvgym.bench.serving_scenarios import resolve_serving_scenarios
    from kvgym.sim.policy import admission_names, make_admission, make_policy, serving_policy_names

    scenarios = resolve_serving_scenarios(list(cfg.scenarios))
    sources: list[RequestSource] = []
    for spec in cfg.sources:
        src = RequestSource.parse(spec)
        if src not in sources:
            sources.append(src)
    pols = _specs(cfg.policies, "policy", serving_policy_names, make_policy)
    adms = _specs(cfg.admissions, "admission policy", admission_names, make_admission)
    cells = []
    for sc in scenarios:
        for src in sources:
            seeds = cfg.seeds if src.seeded else cfg.seeds[:1]
            for p in pols:
                for a in (adms if admits(sc) else [None]):
                    for seed in seeds:
                        cells.append(ServingCell(sc, src, p, a, int(seed)))
    return cells


# -- running a cell ---------------------------------------------------------------------------
_TRACES: OrderedDict = OrderedDict()


def load_requests(src: RequestSource, seed: int):
    """The cell's requests; the last few are cached per process (cells sharing a trace run together)."""
    key = (json.dumps(src.to_dict(), sort_keys=True), seed if src.seeded else None)
    if key not in _TRACES:
        _TRACES[key] = src.load(seed)
        while len(_TRACES) > 3:
            _TRACES.popitem(last=False)
    _TRACES.move_to_end(key)
    return _TRACES[key]


def simulate(trace, scenario: ServingConfig, policy: tuple, admission: tuple | None, lower: tuple | None = None,
             engine: str = "compiled"):
    """The serving harness's single call into the simulator: ``policy`` (``(name, params)``) in tier 0
    and, unless ``lower`` names another, in every lower tier; ``admission`` ``None``: ``always``;
    ``engine``: compiled or reference (the specification engine; same results)."""
    from kvgym.sim.serving import simulate_serving

    name, params = policy
    low, low_params = lower if lower is not None else policy
    adm, adm_params = admission if admission is not None else ("always", {})
    return simulate_serving(trace, scenario, name, lower=low, policy_params=params, lower_params=low_params,
                            admission=adm, admission_params=adm_params, engine=engine)


def run_serving_cell(cell: ServingCell) -> dict:
    """Run one serving cell; return its record (key columns, status, error, trace size, metrics)."""
    rec = {"cell_id": cell.cell_id, **cell.key, "status": "ok", "error": ""}
    trace = load_requests(cell.source, cell.seed)
    rec.update(trace_requests=len(trace), trace_blocks=int(trace.n_blocks))
    try:
        m = simulate(trace, cell.scenario, cell.policy, cell.admission)
    except SimulationError as e:  # e.g. a request needs more blocks than tier 0 holds
        rec.update(status="infeasible", error=str(e).splitlines()[0])
        return rec
    d = m.to_dict()
    rec.update({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()})
    return rec


# -- the results table ----------------------------------------------------------------------------
def metric_columns(n_tiers: int) -> list[tuple[str, str, int | None, str]]:
    """``(column, metric, tier or None, dtype)`` for every key of :meth:`ServingMetrics.to_dict`, in
    its order, a per-tier list spread over ``tier{i}_<metric>``."""
    from kvgym.sim.metrics import ServingMetrics

    out = []
    for k, v in ServingMetrics(max(n_tiers, 1)).to_dict().items():
        kind = "float64" if isinstance(v[0] if isinstance(v, list) else v, float) else "Int64"
        if isinstance(v, list):
            out += [(f"tier{i}_{k}", k, i, kind) for i in range(n_tiers)]
        else:
            out.append((k, k, None, kind))
    return out


def _n_tiers(records) -> int:
    return max((r.get("n_tiers") or 0 for r in records), default=0)


def flatten(rec: dict, nt: int) -> dict:
    """One record as a flat row: the head columns, then the metric columns (missing: ``None``)."""
    row = {c: rec.get(c) for c in HEAD_COLUMNS}
    for col, k, i, _ in metric_columns(nt):
        v = rec.get(k)
        row[col] = v if i is None else (v[i] if v is not None and i < len(v) else None)
    return row


def csv_text(records: list[dict]) -> str:
    from kvgym.bench.results import rows_csv

    nt = _n_tiers(records)
    return rows_csv((flatten(r, nt) for r in records), HEAD_COLUMNS + [c for c, *_ in metric_columns(nt)])


INT_HEAD = ("seed", "trace_requests", "trace_blocks")


def table(records: list[dict]):
    """The results as a DataFrame with fixed columns and dtypes (nullable ints)."""
    import pandas as pd

    nt = _n_tiers(records)
    mcols = metric_columns(nt)
    cols = HEAD_COLUMNS + [c for c, *_ in mcols]
    df = pd.DataFrame([flatten(r, nt) for r in records], columns=cols)
    kinds = {c: ("Int64" if c in INT_HEAD else "string") for c in HEAD_COLUMNS} | {c: k for c, _, _, k in mcols}
    for c in cols:
        df[c] = df[c].astype(kinds[c])
    return df


def write_results(out: Path, records: list[dict]) -> None:
    from kvgym.bench.results import write_parquet_atomic
    from kvgym.files import write_text

    write_text(out / "results.csv", csv_text(records))
    write_parquet_atomic(table(records), out / "results.parquet")


def read_records(out: Path) -> list[dict]:
    """Records back from ``OUT/serving/results.parquet`` (per-tier columns gathered into lists)."""
    from kvgym.bench.results import missing, read_frame

    df = read_frame(out, "serving results")
    nt = sum(1 for c in df.columns if c.startswith("tier") and c.endswith("_prefix_hits"))
    mcols = metric_columns(nt)
    typed = lambda v, kind: None if missing(v) else (int(v) if kind == "Int64" else float(v))
    recs = []
    for row in df.to_dict("records"):
        rec = {c: typed(row[c], "Int64") if c in INT_HEAD else (None if missing(row[c]) else row[c])
               for c in HEAD_COLUMNS}
        for col, k, i, kind in mcols:
            v = typed(row[col], kind)
            if i is None:
                rec[k] = v
            elif i < (rec.get("n_tiers") or 0):  # a record has one entry per tier of its scenario
                rec.setdefault(k, []).append(v)
        recs.append(rec)
    return recs


# -- the section's runner ---------------------------------------------------------------------------
#: The files the serving section writes in ``OUT/serving/``.
OUT_FILES = ("results.csv", "results.parquet", "leaderboard.md")


@dataclass
class ServingResult:
    out: Path
    cells: list[ServingCell]
    records: list[dict]
    board: dict
    ran: int
    reused: int


def run_serving(cfg: ServingSweepConfig, out: Path, *, backend: str = "serial", workers: int = 0,
                ray_address=None, ray_task_cpus: float = 1.0, ray_retries: int = 3, plots: bool = True,
                progress: bool = False, log=None) -> ServingResult:
    """Run (or resume) the serving grid into ``out`` (``OUT/serving``) and write its files."""
    from kvgym.bench import serving_board, serving_plots
    from kvgym.bench.backends import BACKENDS, batches
    from kvgym.bench.sweep import load_finished
    from kvgym.files import remove_temporaries, write_json

    out = Path(out)
    cells = expand_serving(cfg)
    ids = [c.cell_id for c in cells]
    if len(set(ids)) != len(ids):
        raise KvgymError("sweep serving: the grid lists the same cell twice (duplicate policy or source)")
    cells_dir = out / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    remove_temporaries(cells_dir, (f"{c.cell_id}.json" for c in cells))
    remove_temporaries(out, OUT_FILES)
    remove_temporaries(out / "plots", serving_plots.PLOTS)
    done = load_finished(cells, cells_dir)
    todo = [c for c in cells if c.cell_id not in done]
    by_id = {c.cell_id: c for c in cells}
    if log:
        log(f"serving: {len(cells)} cells, {len(done)} already done, {len(todo)} to run on backend {backend}")
    from tqdm import tqdm

    bar = tqdm(total=len(cells), initial=len(done), unit="cell", desc="serving", disable=not progress,
               dynamic_ncols=True, smoothing=0.1)
    errors, ran = [], 0
    try:
        for cell_id, rec, wall in BACKENDS[backend](batches(todo, batch_size=4), workers=workers,
                                                     ray_address=ray_address, ray_task_cpus=ray_task_cpus,
                                                     ray_retries=ray_retries):
            bar.update(1)
            if rec.get("status") == "error":
                errors.append(f"{rec['scenario']} / {rec['source']} / {rec['entry']} / seed {rec['seed']}: {rec['error']}")
                continue
            write_json(cells_dir / f"{cell_id}.json", {"cell": by_id[cell_id].to_dict(), "record": rec,
                                                       "wall_s": round(wall, 6)})
            done[cell_id] = rec
            ran += 1
    finally:
        bar.close()
    records = [done[c.cell_id] for c in cells if c.cell_id in done]
    write_results(out, records)
    board = serving_board.build(records, cfg.reference)
    serving_board.write(out, board)
    if plots:
        serving_plots.write_all(board, out / "plots")
    if errors:
        from kvgym.bench.sweep import CellsFailed

        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise CellsFailed(f"{len(errors)} serving cells failed: " + "; ".join(errors[:5]) + more)
    return ServingResult(out, cells, records, board, ran, len(cells) - len(todo))
