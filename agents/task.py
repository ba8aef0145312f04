"""The learning task: which benchmark families an agent trains and validates on, and how it sees the env.

Every trace comes from the benchmark's splits file (:mod:`kvgym.agents.benchmark`): training rolls
out ``train`` cases of ``families``, model selection reads their ``validation`` cases, and the
``test`` split of *every* family is read only after training, inside ``LEDGER.evaluation()``
(:mod:`kvgym.agents.evaluation`). The env shows ``k`` candidates, ``sample`` of them drawn at
random outside the LRU tail; the agent is evaluated with the same two numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from kvgym.agents.common import is_int, need
from kvgym.errors import ConfigError


@dataclass(frozen=True)
class TaskArgs:
    """What an agent learns on (shared by every training script's arguments).

    Attributes:
        benchmark: the splits file ("" = the shipped ``agents/benchmark.json``).
        families: family letters whose train cases are trained on and whose validation cases
            select the model (a mixture of families).
        k: candidate slots of the env (``Discrete(k)``).
        sample: of the ``k`` slots, how many are random residents outside the LRU tail.
    """

    benchmark: str = ""
    families: tuple = ("a", "b", "d", "e")
    k: int = 32
    sample: int = 16

    def __post_init__(self) -> None:
        v = self.families
        object.__setattr__(self, "families", tuple(v) if isinstance(v, (list, tuple)) else (v,))
        self.validate()

    def validate(self) -> None:
        from kvgym.envs.config import EnvConfig

        owner = type(self).__name__
        need(owner, "benchmark", self.benchmark, isinstance(self.benchmark, str), "a path ('' = the shipped one)")
        bench = self.bench()
        bad = [f for f in self.families if f not in bench.families]
        need(owner, "families", list(self.families), bool(self.families) and not bad,
             f"letters of the benchmark's families ({', '.join(bench.letters())}); unknown: {bad}")
        for f in ("k", "sample"):
            need(owner, f, getattr(self, f), is_int(getattr(self, f)), "an int")
        try:
            EnvConfig(k=self.k, sample=self.sample)
        except ConfigError as e:
            raise ConfigError(f"{owner}: {e}") from None

    def bench(self):
        from kvgym.agents.benchmark import load_benchmark

        return load_benchmark(self.benchmark or None)

    def cases(self, split: str):
        """The ``split`` cases of the trained families (through the ledger)."""
        return self.bench().cases(split, self.families)

    def env_kwargs(self) -> dict:
        """Keyword arguments of the env for this task (besides scenario and trace)."""
        return {"k": self.k, "sample": self.sample}

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def task_dict(self) -> dict:
        """Only the task's own fields (not a subclass's training knobs)."""
        return {f.name: self.to_dict()[f.name] for f in fields(TaskArgs)}
