"""The learning task: scenario, training and held-out workloads, and the train / validation / test split.

**Split.** Seeds come from :class:`kvgym.envs.Splits` (the env's bookkeeping: train seeds
``[0, 1000)``, validation ``[1000, 1100)``, test ``[1100, 1200)`` by default):

- ``train``: the first ``train_seeds`` train seeds of every training workload;
- ``validation``: the first ``validation_seeds`` validation seeds of every training workload
  (model selection, progress);
- ``test`` (held out): the first ``test_seeds`` test seeds of every training workload **and** of
  every held-out workload, which no training or validation trace comes from.

A workload whose traces do not depend on the seed (``periodic_reuse``, ``prefetch_friendly``)
gives the same trace for every seed: duplicates are dropped from the test set (same arrays, one
row), so such a workload's "held-out seed" is the trace it was trained on; the report says so.

**Ledger.** Every trace a split hands out is recorded in :data:`LEDGER` (``(split, label)``);
training code asks only for ``train`` and ``validation`` traces, and the training manifests
store what was read, so a test can check that nothing in training read the test split.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, fields

import numpy as np

from kvgym.agents.common import is_int, need
from kvgym.errors import ConfigError

SPLITS = ("train", "validation", "test")

#: Traces handed out, in order: ``(split, "workload#seed")``. Cleared by :func:`reset_ledger`.
LEDGER: list[tuple[str, str]] = []

#: The default task (see ``docs/agents.md`` for why): kv-hierarchy-lab's eight access patterns,
#: tier 0 = 10% of the footprint (6 to 12 pages of 4 KiB). Six patterns train; two never do.
DEFAULT_TRAIN = ("periodic_reuse", "rag_burst", "long_tail_mix", "mixed_locality", "adversarial_burst",
                 "chat_continuation")
DEFAULT_HOLDOUT = ("prefetch_friendly", "adversarial_prefetch")


@dataclass(frozen=True)
class TaskArgs:
    """What an agent learns on and is judged on (shared by every training script's arguments).

    Attributes:
        scenario: harness scenario name (``kvgym scenarios``).
        train_workloads: workloads whose train seeds are trained on (and validation seeds
            validated on).
        holdout_workloads: workloads never seen in training; only their test seeds are evaluated.
        train_seeds: traces per training workload (the first seeds of the train split).
        validation_seeds: validation traces per training workload.
        test_seeds: held-out test traces per workload (training and held-out workloads).
        k: candidate slots of the env (``Discrete(k)``).
        sample: of the ``k`` slots, how many are random non-LRU-tail residents.
    """

    scenario: str = "h200_10pct_fp16_no_prefetch"
    train_workloads: tuple = DEFAULT_TRAIN
    holdout_workloads: tuple = DEFAULT_HOLDOUT
    train_seeds: int = 16
    validation_seeds: int = 2
    test_seeds: int = 3
    k: int = 32
    sample: int = 8

    def __post_init__(self) -> None:
        for f in ("train_workloads", "holdout_workloads"):
            v = getattr(self, f)
            object.__setattr__(self, f, tuple(v) if isinstance(v, (list, tuple)) else (v,))
        self.validate()

    def validate(self) -> None:
        from kvgym.bench.scenarios import scenario_names
        from kvgym.envs.config import EnvConfig
        from kvgym.workloads import workload_names

        owner = type(self).__name__
        need(owner, "scenario", self.scenario, self.scenario in scenario_names(),
             f"a harness scenario name ({', '.join(scenario_names())})")
        names = workload_names()
        for f in ("train_workloads", "holdout_workloads"):
            v = getattr(self, f)
            bad = [w for w in v if w not in names]
            need(owner, f, list(v), not bad, f"unknown workloads {bad}; valid: {', '.join(names)}")
        need(owner, "train_workloads", list(self.train_workloads), len(self.train_workloads) > 0, "at least one")
        both = sorted(set(self.train_workloads) & set(self.holdout_workloads))
        need(owner, "holdout_workloads", list(self.holdout_workloads), not both,
             f"must not overlap train_workloads (both: {both})")
        for f in ("train_seeds", "validation_seeds", "test_seeds"):
            v = getattr(self, f)
            need(owner, f, v, is_int(v) and v >= 1, "an int >= 1")
        try:
            EnvConfig(k=self.k, sample=self.sample)
        except ConfigError as e:
            raise ConfigError(f"{owner}: {e}") from None

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def task_dict(self) -> dict:
        """Only the task's own fields (not a subclass's training knobs)."""
        return {f.name: self.to_dict()[f.name] for f in fields(TaskArgs)}

    # -- traces ---------------------------------------------------------------------------
    def seeds(self, split: str) -> list[int]:
        from kvgym.envs.config import Splits

        n = {"train": self.train_seeds, "validation": self.validation_seeds, "test": self.test_seeds}[split]
        rng = Splits().seeds(split)
        if n > len(rng):
            raise ConfigError(f"{type(self).__name__}: {split}_seeds={n} exceeds the {len(rng)} seeds of the split")
        return list(rng[:n])

    def workloads(self, split: str) -> tuple:
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
        return self.train_workloads + (self.holdout_workloads if split == "test" else ())

    def traces(self, split: str) -> list[LabelledTrace]:
        """The split's traces (deduplicated by content), recorded in :data:`LEDGER`."""
        out, seen = [], set()
        for w in self.workloads(split):
            for s in self.seeds(split):
                tr = _make(w, s)
                LEDGER.append((split, f"{w}#{s}"))
                h = trace_digest(tr)
                if h in seen:
                    continue
                seen.add(h)
                out.append(LabelledTrace(f"{w}#{s}", w, s, split, w in self.holdout_workloads, tr))
        return out

    def scenario_obj(self):
        from kvgym.bench.scenarios import get_scenario

        return get_scenario(self.scenario)

    def env_kwargs(self) -> dict:
        """Keyword arguments of ``gym.make("kvgym/Evict-v0", ...)`` for this task."""
        return {"scenario": self.scenario, "k": self.k, "sample": self.sample}


@dataclass(frozen=True, eq=False)
class LabelledTrace:
    label: str
    workload: str
    seed: int
    split: str
    holdout: bool
    trace: object


def _make(workload: str, seed: int):
    from kvgym.workloads import make_trace

    return make_trace(workload, seed)


def reset_ledger() -> None:
    LEDGER.clear()


def trace_digest(trace) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(trace.step, np.int64).tobytes())
    h.update(np.ascontiguousarray(trace.page, np.int64).tobytes())
    return h.hexdigest()[:16]


# -- LRU-to-Belady gap --------------------------------------------------------------------
_MISSES: dict[tuple[str, str, str], int] = {}


def policy_misses(scenario_name: str, trace, policy: str) -> int:
    """Tier-0 misses of a registered policy on ``trace`` (the engine), cached by trace content:
    the references (LRU, Belady) are asked for again at every validation."""
    key = (scenario_name, trace_digest(trace), policy)
    if key not in _MISSES:
        from kvgym.bench.scenarios import get_scenario
        from kvgym.sim import run

        _MISSES[key] = int(run(trace, get_scenario(scenario_name), policy).misses)
    return _MISSES[key]


def gap_closed(misses: float, lru: float, belady: float) -> float | None:
    """``100 * (lru - misses) / (lru - belady)``: LRU = 0, Belady = 100; ``None`` when LRU is optimal."""
    if lru <= belady:
        return None
    return 100.0 * (lru - misses) / (lru - belady)
