"""Sweep configuration: one frozen dataclass, read from TOML or JSON plus ``--set`` overrides.

A config file holds the fields of :class:`SweepConfig` at top level (TOML or JSON)::

    name = "my_sweep"
    scenarios = ["h200_10pct_*", "small_fp16_prefetch"]   # names, patterns, groups, or tables
    workloads = ["streaming", "topk_drift(k_pages=8)"]     # names (or groups: decode, patterns, all)
    traces = ["traces/mine.parquet"]                       # trace files (Parquet or parity .json)
    policies = ["all"]                                     # or names / spec strings / tables
    seeds = [0, 1, 2]
    backend = "process"

    [workload_params.streaming]                            # overrides for a workload's defaults
    prompt_tokens = 2048

``--set key=value`` overrides one field (``--set seeds=1,2,3``, ``--set backend=serial``,
``--set workload_params.streaming.prompt_tokens=4096``); list fields take comma-separated
values (commas inside parentheses do not split). Unknown keys are errors that list the valid
ones. :func:`kvgym.configs.load_config` reads it (and any other config dataclass).

Which fields make the results: everything but :data:`EXECUTION_KEYS` (how and where the sweep
runs). The config hash in the manifest is over the result-making fields only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace

from kvgym.errors import ConfigError
from kvgym.params import need_bool, need_choice, need_int, need_num, need_str

BACKENDS = ("serial", "process", "ray")
EXECUTION_KEYS = ("backend", "workers", "out", "plots", "progress", "ray_address", "ray_task_cpus", "ray_retries",
                  "fail_after", "trust_pickle")


@dataclass(frozen=True)
class SweepConfig:
    """A grid of scenarios x trace sources x policies (and agents) x seeds.

    Attributes:
        name: label written into the manifest and the leaderboard's title.
        scenarios: scenario names, shell patterns (``h200_*``), group names (``parity``,
            ``realistic``) or inline tables of :class:`~kvgym.sim.scenario.Scenario` fields.
        workloads: registered workload names or spec strings ``name(k=v,...)``; the groups
            ``decode`` (realistic decode workloads), ``patterns`` (kv-hierarchy-lab's) and ``all``.
        workload_params: per-workload parameter overrides, ``{name: {param: value}}``.
        traces: trace files (kvgym Parquet, or a kv-hierarchy-lab parity cell ``.json``). A file's
            trace does not depend on the seed, so it runs once, with the first seed.
        policies: policy spec strings or tables (``all`` = every registered policy).
        prefetcher: prefetcher for policies that do not bring their own (``none`` = no prefetch).
        agents: agent specs (``policy:NAME`` or a saved agent's path), run through the env.
        oracle: name of the oracle policy shown beside the ranking (privileged, never ranked) when
            registered; ``""`` for none.
        seeds: workload seeds; each (cell, seed) is one result row.
        backend: ``serial``, ``process`` (default; all cores) or ``ray``.
        workers: processes for the ``process`` backend (0 = every core).
        out: output directory (relative paths are relative to the current directory).
        plots: write the plots.
        progress: show the progress bar.
        ray_address: Ray cluster address (``None``: ``RAY_ADDRESS`` or a local Ray).
        ray_task_cpus: CPUs Ray reserves for each task (one batch of cells), > 0.
        ray_retries: times Ray reruns a task whose worker died (a crash, a lost node), >= 0.
        fail_after: testing aid: raise after this many cells have been written (0 = never).
        trust_pickle: allow agents saved as SB3 ``.zip`` files (pickles, which can run code when
            loaded), each only if its sha256 matches the one recorded in its ``agent.json``.
        serving: the serving section, a table of
            :class:`~kvgym.bench.serving.ServingSweepConfig` fields (serving scenarios, request
            sources, policies, admission policies, seeds); empty = none. Written to ``OUT/serving/``.
    """

    name: str = "sweep"
    scenarios: tuple = ("realistic",)
    workloads: tuple = ("decode",)
    workload_params: dict = field(default_factory=dict)
    traces: tuple = ()
    policies: tuple = ("all",)
    prefetcher: str = "none"
    agents: tuple = ()
    oracle: str = "belady"
    seeds: tuple = (0,)
    backend: str = "process"
    workers: int = 0
    out: str = "artifacts/sweep"
    plots: bool = True
    progress: bool = True
    ray_address: str | None = None
    ray_task_cpus: float = 1.0
    ray_retries: int = 3
    fail_after: int = 0
    trust_pickle: bool = False
    serving: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for f in ("scenarios", "workloads", "traces", "policies", "agents", "seeds"):
            v = getattr(self, f)
            object.__setattr__(self, f, tuple(v) if isinstance(v, (list, tuple)) else (v,))
        self.validate()

    def validate(self) -> None:
        need_choice("sweep", "backend", self.backend, BACKENDS)
        need_int("sweep", "workers", self.workers, 0, 4096)
        if not self.seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in self.seeds):
            raise ConfigError(f"sweep: seeds must be a non-empty list of ints >= 0, got {list(self.seeds)!r}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"sweep: seeds has duplicates: {list(self.seeds)!r}")
        if not self.scenarios:
            raise ConfigError("sweep: scenarios is empty")
        if not self.workloads and not self.traces:
            raise ConfigError("sweep: give at least one workload or trace file")
        if not self.policies and not self.agents:
            raise ConfigError("sweep: give at least one policy or agent")
        if not isinstance(self.workload_params, dict) or not all(isinstance(v, dict) for v in self.workload_params.values()):
            raise ConfigError("sweep: workload_params must be a table of {workload: {param: value}}")
        need_int("sweep", "fail_after", self.fail_after, 0)
        need_num("sweep", "ray_task_cpus", self.ray_task_cpus, 0.0, 1024.0, lo_open=True)
        need_int("sweep", "ray_retries", self.ray_retries, 0, 100)
        for f in ("plots", "progress", "trust_pickle"):
            need_bool("sweep", f, getattr(self, f))
        for f in ("name", "prefetcher", "oracle"):
            need_str("sweep", f, getattr(self, f))
        need_str("sweep", "out", self.out, empty=False)
        if self.ray_address is not None:
            need_str("sweep", "ray_address", self.ray_address)
        if self.serving:
            from kvgym.bench.serving import ServingSweepConfig

            ServingSweepConfig.from_dict(self.serving)  # validates the serving grid
        elif not isinstance(self.serving, dict):
            raise ConfigError(f"sweep: serving must be a table of serving sweep fields, got {self.serving!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    def result_dict(self) -> dict:
        """The fields that determine the results (no execution settings)."""
        return {k: v for k, v in self.to_dict().items() if k not in EXECUTION_KEYS}

    def config_hash(self) -> str:
        blob = json.dumps(self.result_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def with_(self, **changes) -> SweepConfig:
        return replace(self, **changes)


