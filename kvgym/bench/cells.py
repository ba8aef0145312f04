"""Sweep cells: the expansion of a config into cells, and running one cell.

A **cell** is (scenario, trace source, policy or agent, seed). Its result is a pure function of
that config: the trace is regenerated from (workload, parameters, seed) or read from a file
whose sha256 is part of the config, and the simulation is deterministic. The cell id is a hash
of the cell's canonical JSON, so a rerun recognises finished cells (resume), and a changed
scenario, parameter or file makes a new cell.

:func:`run_cell` is the one place where the harness calls the simulator (``kvgym.sim.run``
on the compiled engine), and the one place where agents are evaluated
(``kvgym.envs.evaluate.evaluate``).

A cell whose trace does not fit its scenario (a page bigger than a tier, or one step's pinned
pages overflowing tier 0) is recorded with ``status="infeasible"`` and the reason, not as a
crash of the whole sweep.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from kvgym.bench.config import SweepConfig
from kvgym.bench.scenarios import resolve_scenarios
from kvgym.bench.specs import AgentSpec, PolicySpec, SourceSpec
from kvgym.errors import ConfigError, KvgymError, SimulationError, TraceError
from kvgym.sim.scenario import Scenario

#: Bumped when the meaning of a cell result changes, so old per-cell files are not reused.
CELL_SCHEMA = 1

@dataclass(frozen=True)
class Cell:
    """One unit of work. ``runner`` is a :class:`PolicySpec` (resolved) or an :class:`AgentSpec`."""

    scenario: Scenario
    source: SourceSpec
    runner: PolicySpec | AgentSpec
    seed: int
    oracle: bool = False

    def to_dict(self) -> dict:
        return {"schema": CELL_SCHEMA, "scenario": self.scenario.to_dict(), "source": self.source.to_dict(),
                "runner": self.runner.to_dict(), "seed": self.seed}

    @property
    def cell_id(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    @property
    def kind(self) -> str:
        return "agent" if isinstance(self.runner, AgentSpec) else ("oracle" if self.oracle else "policy")

    @property
    def key(self) -> dict:
        """The identifying columns of this cell's result row."""
        return {"scenario": self.scenario.name, "source": self.source.label, "policy": self.runner.label,
                "kind": self.kind, "seed": self.seed}


# ---------------------------------------------------------------------------------------------
def _check_workload(src: SourceSpec) -> None:
    from kvgym.workloads import GROUPS, workloads

    wl = workloads()
    if src.name not in wl:
        raise ConfigError(f"unknown workload {src.name!r}; valid: {', '.join(sorted(wl))} (or the groups "
                          f"{', '.join(GROUPS)}, all)")
    bad = sorted(set(src.params) - set(wl[src.name].defaults))
    if bad:
        raise ConfigError(f"workload {src.name!r}: unknown parameters {bad}; valid: {', '.join(sorted(wl[src.name].defaults))}")


def file_digest(path: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"trace file {path!r} not found")
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if p.suffix == ".parquet":  # the page table beside it is part of the trace
        from kvgym.traces.parquet import pages_path
        pp = pages_path(p)
        if pp.is_file():
            h.update(pp.read_bytes())
    return h.hexdigest()


def sources_of(cfg: SweepConfig) -> list[SourceSpec]:
    from kvgym.workloads import expand_groups, workloads

    registered = workloads()
    for name in cfg.workload_params:
        if name not in registered:
            raise ConfigError(f"workload_params: unknown workload {name!r}; valid: {', '.join(sorted(registered))}")
    out: list[SourceSpec] = []
    for spec in expand_groups(cfg.workloads):
        name = spec["name"] if isinstance(spec, dict) else str(spec).split("(", 1)[0].strip()
        src = SourceSpec.workload(spec, cfg.workload_params.get(name))
        _check_workload(src)
        out.append(src)
    for path in cfg.traces:
        out.append(SourceSpec("file", str(path), {}, file_digest(str(path))))
    seen, uniq = set(), []
    for s in out:
        k = json.dumps(s.to_dict(), sort_keys=True)
        if k not in seen:
            seen.add(k)
            uniq.append(s)
    return uniq


def runners_of(cfg: SweepConfig) -> list[tuple[PolicySpec | AgentSpec, bool]]:
    """Resolved policies (and agents), each with a flag: is it the oracle reference?"""
    from kvgym.sim.policy import policy_class, policy_names

    specs = []
    for p in cfg.policies:
        if p == "all":
            specs += policy_names()
        else:
            specs.append(p)
    pols: list[PolicySpec] = []
    for s in specs:
        ps = PolicySpec.parse(s).resolve(cfg.prefetcher)
        if ps not in pols:
            pols.append(ps)
    if cfg.oracle and cfg.oracle in policy_names() and not any(p.name == cfg.oracle and not p.params for p in pols):
        pols.append(PolicySpec(cfg.oracle).resolve(cfg.prefetcher))
    out: list[tuple] = []
    for p in pols:
        privileged = bool(getattr(policy_class(p.name), "privileged", False))
        out.append((p, privileged))
    from kvgym.bench.specs import agent_digest

    out += [(AgentSpec(str(a), agent_digest(str(a)), cfg.trust_pickle), False) for a in cfg.agents]
    return out


def expand(cfg: SweepConfig) -> list[Cell]:
    """Every cell of the sweep, in the result table's order: scenario, source, runner, seed."""
    scen = resolve_scenarios(cfg.scenarios)
    sources = sources_of(cfg)
    runners = runners_of(cfg)
    cells = []
    for s in scen:
        for src in sources:
            seeds = cfg.seeds if src.seeded else cfg.seeds[:1]
            for r, oracle in runners:
                for seed in seeds:
                    cells.append(Cell(s, src, r, int(seed), oracle))
    return cells


# ---------------------------------------------------------------------------------------------
_TRACES: OrderedDict = OrderedDict()


def load_trace(src: SourceSpec, seed: int, path: str | None = None):
    """The cell's trace; the last few are cached per process (cells sharing a trace run together).
    ``path``: where a file source's bytes are on this machine, when not at ``src.name``."""
    key = (json.dumps(src.to_dict(), sort_keys=True), seed if src.seeded else None)
    if key in _TRACES:
        _TRACES.move_to_end(key)
        return _TRACES[key]
    if src.kind == "workload":
        from kvgym.workloads import make_trace
        trace = make_trace(src.name, seed, **src.params)
    elif src.name.endswith(".json"):
        from kvgym.bench.parity import load_cell
        trace = load_cell(path or src.name).trace
    else:
        from kvgym.traces.parquet import read_trace
        trace = read_trace(path or src.name)
    _TRACES[key] = trace
    while len(_TRACES) > 3:
        _TRACES.popitem(last=False)
    return trace


def simulate(trace, scenario: Scenario, policy: str, prefetcher: str | None, **params):
    """The harness's single call into the simulator."""
    from kvgym.sim import run

    return run(trace, scenario, policy, prefetcher, **params)


def _run_agent(spec: AgentSpec, scenario: Scenario, trace, seed: int):
    from kvgym.envs.evaluate import evaluate

    if spec.spec.startswith("policy:"):
        from kvgym.callspec import parse_call
        from kvgym.envs import PolicyAgent

        name, params = parse_call(spec.spec[len("policy:"):], "agent policy")
        # k="all": the agent sees every tier-0 resident, so it makes exactly the policy's choices.
        return evaluate(PolicyAgent(name, **params), scenario, trace, seed=seed, k="all", sample=0)
    from kvgym.agents import load_agent

    return evaluate(load_agent(spec.spec, trust_pickle=spec.trust_pickle), scenario, trace, seed=seed)


def run_cell(cell: Cell) -> dict:
    """Run one cell; return its result record (``key`` columns, ``status``, ``error``, metrics)."""
    rec = {"cell_id": cell.cell_id, **cell.key, "status": "ok", "error": ""}
    trace = load_trace(cell.source, cell.seed)
    rec["trace_accesses"] = len(trace)
    rec["trace_pages"] = len(trace.pages)
    try:
        # The scenario was validated when it was made, so a ConfigError here is about this trace
        # (a page bigger than a tier): the cell is infeasible, like a step that overflows tier 0.
        setup = cell.scenario.build(trace.pages, [(trace.step, trace.page)])
        setup.check_steps(trace.step, trace.page, f"{cell.source.label} seed {cell.seed}")
    except (SimulationError, ConfigError) as e:
        rec.update(status="infeasible", error=str(e).splitlines()[0])
        return rec
    try:
        if isinstance(cell.runner, AgentSpec):
            m = _run_agent(cell.runner, cell.scenario, trace, cell.seed)
        else:
            p = cell.runner
            pf = None if p.prefetcher in (None, "none") else p.prefetcher
            if pf is not None and p.prefetcher_params:
                from kvgym.sim.policy import make_prefetcher
                pf = make_prefetcher(pf, **p.prefetcher_params)
            m = simulate(trace, cell.scenario, p.name, pf, **p.params)
    except SimulationError as e:  # e.g. a prefetch that finds every tier-0 resident pinned
        rec.update(status="infeasible", error=str(e).splitlines()[0])
        return rec
    row = m.to_dict()
    for k, v in row.items():
        if isinstance(v, float) and not math.isfinite(v):
            row[k] = None
    rec.update(row)
    return rec


def run_cell_safe(cell: Cell) -> dict:
    """:func:`run_cell` for worker processes: a kvgym error becomes a failed record with its
    message (so one bad trace file is reported, not a lost pool)."""
    try:
        return run_cell(cell)
    except (KvgymError, TraceError) as e:
        return {"cell_id": cell.cell_id, **cell.key, "status": "error", "error": str(e).splitlines()[0]}
