"""The held-out benchmark: families of traces and their splits, declared in one file, and the ledger.

**The splits file** (``agents/benchmark.json``, :data:`SPLITS_FILE`) names a base scenario and
the families. A family has a letter (``a``, ``b``, ...), a *kind* that says how its traces are
made (:mod:`kvgym.agents.families`), variants (parameters plus the tier-0 capacities each trace
is run at) and, per split, the seeds (half-open ranges) or time windows its traces come from. A
*case* is one trace under one scenario: the base scenario with tier 0 set to one capacity. The
serving-mode family (``c``) has its own key, ``serving``: its traces are request windows played in
``kvgym/PrefixCache-v0`` (:mod:`kvgym.agents.serving`).

**The ledger** (:data:`LEDGER`) records every case a split hands out and enforces the rule
*development never reads the test split*: a test case is handed out only inside
``LEDGER.evaluation()``, and never inside ``LEDGER.development()`` (training wraps itself in
it, so not even a caller in an evaluation can make training read test). A refused read raises
:class:`SplitLeakError` naming the case. Reads are listed in each agent's ``metrics.json``.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from kvgym.errors import ConfigError, KvgymError

SPLITS = ("train", "validation", "test")
SPLITS_FILE = Path(__file__).with_name("benchmark.json")
FORMAT = "kvgym-benchmark/1"


class SplitLeakError(KvgymError):
    """A test-split trace was asked for outside an evaluation (or inside development)."""


class Ledger:
    """Which cases were handed out, and the guard that keeps development off the test split."""

    def __init__(self):
        self.reads: list[tuple[str, str]] = []  # (split, case label), in order
        self._development = 0
        self._evaluation = 0

    def check(self, split: str, what: str) -> None:
        """Raise :class:`SplitLeakError` if ``split`` may not be read now (``what``: for the message)."""
        if split == "test" and (self._development or not self._evaluation):
            where = "during development" if self._development else "outside LEDGER.evaluation()"
            raise SplitLeakError(f"benchmark: {what} of the test split requested {where}; development reads "
                                 "only the train and validation splits")

    def record(self, split: str, label: str) -> None:
        self.check(split, f"case {label!r}")
        self.reads.append((split, label))

    @contextmanager
    def development(self):
        """Training, validation and model selection: test reads are refused, even in an evaluation."""
        self._development += 1
        try:
            yield self
        finally:
            self._development -= 1

    @contextmanager
    def evaluation(self):
        """Scoring finished agents: test reads are allowed (not inside :meth:`development`)."""
        if self._development:
            raise SplitLeakError("benchmark: an evaluation cannot start during development")
        self._evaluation += 1
        try:
            yield self
        finally:
            self._evaluation -= 1

    def since(self, start: int) -> list[str]:
        return [f"{s}:{lab}" for s, lab in self.reads[start:]]


LEDGER = Ledger()


@dataclass(frozen=True)
class Variant:
    """One way a family makes traces: ``params`` for its kind, run at each of ``capacities``."""

    name: str
    params: dict
    capacities: tuple
    splits: tuple = SPLITS
    params_by_split: dict = field(default_factory=dict)
    workload: str | None = None

    def params_for(self, split: str) -> dict:
        return {**self.params, **self.params_by_split.get(split, {})}


@dataclass(frozen=True)
class Family:
    letter: str
    name: str
    kind: str
    doc: str
    variants: tuple
    seeds: dict  # split -> tuple of seeds (kinds with time windows ignore it)
    options: dict


@dataclass(frozen=True, eq=False)
class Case:
    """One benchmark trace under one scenario (tier 0 = ``capacity``)."""

    family: str  # letter
    split: str
    variant: str
    seed: int
    capacity: str
    key: tuple  # what identifies the trace (shared by the case's capacities)
    base_scenario: str

    @property
    def label(self) -> str:
        cap = self.capacity.replace(" pages", "p").replace(" page", "p")
        return f"{self.family}/{self.variant}/s{self.seed}@{cap}"

    @property
    def workload(self) -> str:
        """The trace's generator for workload families, else the family letter plus variant."""
        return self.key[1] if self.key[0] == "workload" else f"{self.family}/{self.variant}"

    @cached_property
    def trace(self):
        from kvgym.agents.families import build_trace

        return build_trace(self.key)

    @cached_property
    def scenario(self):
        from kvgym.sim.catalog import resolve_scenario

        base = resolve_scenario(self.base_scenario)
        return base.with_(capacities=(self.capacity, *base.capacities[1:]))

    @cached_property
    def digest(self) -> str:
        return trace_digest(self.trace)


def trace_digest(trace) -> str:
    """16 hex digits of a sha256 over the trace's steps, pages and weights (equal traces, equal digest)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(trace.step, np.int64).tobytes())
    h.update(np.ascontiguousarray(trace.page, np.int64).tobytes())
    if trace.weight is not None:
        h.update(np.ascontiguousarray(trace.weight, np.float32).tobytes())
    return h.hexdigest()[:16]


class Benchmark:
    """The parsed splits file. :meth:`cases` hands out a split's cases through the ledger."""

    def __init__(self, spec: dict, source: str = "benchmark"):
        from kvgym.agents.families import KINDS

        self.source = source
        if not isinstance(spec, dict) or spec.get("format") != FORMAT:
            raise ConfigError(f"{source}: expected format {FORMAT!r}")
        self.scenario = _need(spec, "scenario", str, source)
        self.families: dict[str, Family] = {}
        for i, f in enumerate(_need(spec, "families", list, source)):
            where = f"{source}: families[{i}]"
            letter = _need(f, "letter", str, where)
            kind = _need(f, "kind", str, where)
            if kind not in KINDS:
                raise ConfigError(f"{where}: kind {kind!r}; valid: {', '.join(KINDS)}")
            if letter in self.families:
                raise ConfigError(f"{where}: family letter {letter!r} declared twice")
            seeds = {}
            for s in SPLITS:
                rng = f.get("seeds", {}).get(s, [0, 0])
                if not (isinstance(rng, list) and len(rng) == 2 and all(isinstance(x, int) for x in rng)
                        and 0 <= rng[0] <= rng[1]):
                    raise ConfigError(f"{where}: seeds.{s} must be [start, stop) ints, got {rng!r}")
                seeds[s] = tuple(range(*rng))
            spans = sorted(seeds.values(), key=lambda r: r[0] if r else -1)
            flat = [x for r in spans for x in r]
            if len(flat) != len(set(flat)):
                raise ConfigError(f"{where}: the seed ranges of the splits overlap")
            variants = []
            for j, v in enumerate(_need(f, "variants", list, where)):
                vw = f"{where}.variants[{j}]"
                caps = tuple(_need(v, "capacities", list, vw))
                splits = tuple(v.get("splits", SPLITS))
                if not caps or any(s not in SPLITS for s in splits):
                    raise ConfigError(f"{vw}: needs capacities and splits among {', '.join(SPLITS)}")
                variants.append(Variant(_need(v, "name", str, vw), dict(v.get("params", {})), caps, splits,
                                        dict(v.get("params_by_split", {})), v.get("workload")))
            fam = Family(letter, _need(f, "name", str, where), kind, f.get("doc", ""), tuple(variants), seeds,
                         dict(f.get("options", {})))
            KINDS[kind].check(fam, where)
            self.families[letter] = fam
        #: The serving-mode family (:mod:`kvgym.agents.serving`): its own env, agent and report.
        self.serving = None
        if "serving" in spec:
            from kvgym.agents.serving import ServingFamily

            self.serving = ServingFamily.from_dict(spec["serving"], f"{source}: serving")
            if self.serving.letter in self.families:
                raise ConfigError(f"{source}: serving: family letter {self.serving.letter!r} declared twice")

    def letters(self) -> list[str]:
        return list(self.families)

    def cases(self, split: str, families=None) -> list[Case]:
        """Every case of ``split`` (of the given family letters, default all), recorded in :data:`LEDGER`.

        Traces that come out identical within a variant (a generator that ignores its seed) are
        kept once.
        """
        from kvgym.agents.families import KINDS

        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
        LEDGER.check(split, "the cases")  # before any trace is built
        letters = self.letters() if families is None else list(families)
        out = []
        for letter in letters:
            if letter not in self.families:
                known = ", ".join(self.letters())
                raise ConfigError(f"{self.source}: no family {letter!r}; valid: {known}")
            fam = self.families[letter]
            for v in fam.variants:
                if split not in v.splits:
                    continue
                for seed, key in KINDS[fam.kind].keys(fam, v, split):
                    for cap in v.capacities:
                        case = Case(letter, split, v.name, seed, cap, key, self.scenario)
                        LEDGER.record(split, case.label)
                        out.append(case)
        return out


def _need(d, key: str, typ, where: str):
    if not isinstance(d, dict) or key not in d:
        raise ConfigError(f"{where}: missing {key!r}")
    v = d[key]
    if not isinstance(v, typ):
        raise ConfigError(f"{where}: {key!r} must be a {typ.__name__}, got {type(v).__name__}")
    return v


def write_cases(bench: Benchmark, splits, out, families=None, log=print) -> Path:
    """Write the traces of ``splits`` (Parquet, :func:`kvgym.traces.parquet.write_trace`) under
    ``out/<split>/`` and ``out/cases.json`` (every case: label, family, split, variant, seed,
    capacity, trace file, digest, accesses, pages). A trace shared by several capacities is
    written once. Test cases only inside an evaluation (the caller asks for them by name)."""
    from kvgym.files import write_json
    from kvgym.traces.parquet import write_trace

    out = Path(out)
    rows, written = [], {}
    for split in splits:
        ctx = LEDGER.evaluation() if split == "test" else LEDGER.development()
        with ctx:
            for c in bench.cases(split, families):
                name = f"{split}/{c.family}-{c.variant}-s{c.seed}.parquet"
                if c.key not in written:
                    path = out / name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    write_trace(c.trace, path)
                    written[c.key] = name
                rows.append({"case": c.label, "family": c.family, "split": split, "variant": c.variant, "seed": c.seed,
                             "capacity": c.capacity, "trace": written[c.key], "digest": c.digest,
                             "accesses": len(c.trace), "pages": len(c.trace.pages)})
        log(f"{split}: {sum(r['split'] == split for r in rows)} cases")
    return write_json(out / "cases.json", {"benchmark": bench.source, "cases": rows})


_LOADED: dict[str, Benchmark] = {}


def load_benchmark(path=None) -> Benchmark:
    """The benchmark of ``path`` (default :data:`SPLITS_FILE`), parsed once per path."""
    from kvgym.files import read_json

    p = Path(path) if path is not None else SPLITS_FILE
    key = str(p.resolve())
    if key not in _LOADED:
        _LOADED[key] = Benchmark(read_json(p, "benchmark splits file"), str(p.name))
    return _LOADED[key]
