"""How each benchmark family makes its traces (the ``kind`` of a family in ``agents/benchmark.json``).

Every kind checks its family's entry, lists the trace *keys* of a split (``keys``: ``(seed,
key)`` pairs; a key is a hashable tuple that fully determines the trace) and builds a trace from
a key (``build``). Traces are deterministic functions of their key and are cached in memory.

- ``capture``: real attention of stories260K (:mod:`kvgym.traces.llama2c`, numpy), decoded for
  ``tokens`` positions and turned into a trace by a selection rule
  (:func:`kvgym.traces.capture.record_to_trace`). ``context`` says what the model reads:
  ``sampled`` (from BOS, sampled at ``temperature`` with the case's seed), ``story_prompt`` (a
  48-token story opening sampled at temperature 1 from seed ``10000 + seed``, then continued at
  ``temperature``), ``two_stories`` (200 tokens of one story and, after a BOS, 16 of another,
  from seeds ``20000 + seed`` and ``30000 + seed``: a multi-story context, then continued). The
  model is the one shipped with kvgym (:func:`kvgym.bundled.model_files`). Generated on demand,
  not committed: the 36 records of the benchmark take about 15 s.
- ``mooncake``: the Mooncake FAST'25 synthetic trace as a block stream
  (:func:`kvgym.traces.mooncake.import_mooncake`), cut by time: the first ``fractions[0]`` of the
  requests train (in consecutive windows of ``window_requests``), the next ``fractions[1]``
  validate, the rest test (one window each). A window keeps the whole trace's page table.
- ``workload``: a registered synthetic workload (:func:`kvgym.workloads.make_trace`) with the
  variant's parameters and the split's seeds; seeds that give identical traces (a generator that
  ignores its seed) are kept once.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from kvgym.errors import ConfigError

BOS = 1


def model_files() -> tuple[Path, Path]:
    """``(checkpoint, tokenizer)`` of stories260K, shipped with kvgym (:func:`kvgym.bundled.model_files`)."""
    from kvgym.bundled import model_files as bundled

    return bundled("stories260K")


def _check_caps(fam, where: str) -> None:
    from kvgym.sim.scenario import parse_capacity

    for v in fam.variants:
        for c in v.capacities:
            parse_capacity(c, f"{where}.variants[{v.name}]", "capacity")


# -- capture ------------------------------------------------------------------------------------
class Capture:
    CONTEXTS = ("sampled", "story_prompt", "two_stories")

    @staticmethod
    def check(fam, where: str) -> None:
        from kvgym.traces.capture import parse_select

        _check_caps(fam, where)
        for v in fam.variants:
            p = v.params
            if set(p) != {"select", "heads_per_page", "temperature", "context"}:
                raise ConfigError(f"{where}.variants[{v.name}]: params must be select, heads_per_page, "
                                  f"temperature, context; got {sorted(p)}")
            parse_select(p["select"])
            if p["context"] not in Capture.CONTEXTS:
                raise ConfigError(f"{where}.variants[{v.name}]: context {p['context']!r}; valid: "
                                  f"{', '.join(Capture.CONTEXTS)}")

    @staticmethod
    def keys(fam, v, split):
        o = fam.options
        p = v.params_for(split)
        for seed in fam.seeds[split]:
            yield seed, ("capture", p["select"], p["heads_per_page"], float(p["temperature"]), p["context"], seed,
                         int(o.get("tokens", 512)), int(o.get("tokens_per_page", 16)))

    @staticmethod
    def build(key):
        from kvgym.traces.capture import record_to_trace

        _, select, hpp, temp, context, seed, tokens, tpp = key
        rec = _record(temp, context, seed, tokens, tpp)
        return record_to_trace(rec, select, heads_per_page=hpp,
                               meta={"benchmark": {"context": context, "temperature": temp, "seed": seed}})


@lru_cache(maxsize=8)
def _model():
    from kvgym.traces.llama2c import load_checkpoint

    return load_checkpoint(model_files()[0])


def _sample(n: int, seed: int) -> list[int]:
    """``n`` tokens the model samples at temperature 1 from BOS with ``seed``."""
    from kvgym.traces.llama2c import generate

    rec = generate(_model(), n + 1, temperature=1.0, seed=seed, record=False)
    return [int(t) for t in rec.tokens[1:n + 1]]


@lru_cache(maxsize=64)
def _record(temperature: float, context: str, seed: int, tokens: int, tpp: int):
    from kvgym.traces.llama2c import generate

    if context == "sampled":
        prompt = []
    elif context == "story_prompt":
        prompt = _sample(48, 10_000 + seed)
    else:  # two_stories
        prompt = _sample(200, 20_000 + seed) + [BOS] + _sample(16, 30_000 + seed)
    return generate(_model(), tokens, prompt=prompt, tokens_per_page=tpp, temperature=temperature, seed=seed)


# -- mooncake -----------------------------------------------------------------------------------
class Mooncake:
    @staticmethod
    def check(fam, where: str) -> None:
        from kvgym.traces.datasets import DATASETS

        _check_caps(fam, where)
        o = fam.options
        if o.get("dataset") not in DATASETS:
            raise ConfigError(f"{where}: options.dataset {o.get('dataset')!r}; valid: {', '.join(DATASETS)}")
        fr = o.get("fractions")
        if not (isinstance(fr, list) and len(fr) == 3 and all(isinstance(x, (int, float)) and x > 0 for x in fr)
                and abs(sum(fr) - 1) < 1e-9):
            raise ConfigError(f"{where}: options.fractions must be three positive numbers summing to 1, got {fr!r}")
        w = o.get("window_requests")
        if not (isinstance(w, int) and w >= 1):
            raise ConfigError(f"{where}: options.window_requests must be an int >= 1, got {w!r}")

    @staticmethod
    def windows(fam, split: str) -> list[tuple[int, int]]:
        """Request ranges ``[r0, r1)`` of ``split``: train in windows of ``window_requests``."""
        o = fam.options
        n = _requests(o["dataset"])
        a = int(n * o["fractions"][0])
        b = a + int(n * o["fractions"][1])
        if split == "validation":
            return [(a, b)]
        if split == "test":
            return [(b, n)]
        w = o["window_requests"]
        return [(r, min(a, r + w)) for r in range(0, a, w)]

    @staticmethod
    def keys(fam, v, split):
        for i, (r0, r1) in enumerate(Mooncake.windows(fam, split)):
            yield i, ("mooncake", fam.options["dataset"], r0, r1)

    @staticmethod
    def build(key):
        _, dataset, r0, r1 = key
        full = _mooncake(dataset)
        b = full.step_bounds()
        t = full.window(int(b[r0]), int(b[r1]))
        t.meta["benchmark"] = {"requests": [r0, r1]}
        return t


def mooncake_file(dataset: str) -> Path:
    """The dataset's verified file (:func:`kvgym.traces.datasets.fetch`: the copy shipped with kvgym for
    ``mooncake-synthetic``, else the datasets cache, a download, or instructions)."""
    from kvgym.traces.datasets import fetch

    return fetch(dataset)


@lru_cache(maxsize=2)
def _mooncake(dataset: str):
    from kvgym.traces.mooncake import import_mooncake

    return import_mooncake(mooncake_file(dataset))


def _requests(dataset: str) -> int:
    return int(_mooncake(dataset).meta["requests"])


# -- workload -----------------------------------------------------------------------------------
class Workload:
    @staticmethod
    def check(fam, where: str) -> None:
        from kvgym.workloads import workload_names

        _check_caps(fam, where)
        for v in fam.variants:
            if v.workload not in workload_names():
                raise ConfigError(f"{where}.variants[{v.name}]: workload {v.workload!r}; valid: "
                                  f"{', '.join(workload_names())}")

    @staticmethod
    def keys(fam, v, split):
        from kvgym.agents.benchmark import trace_digest

        params = json.dumps(v.params_for(split), sort_keys=True)
        seen = set()
        for seed in fam.seeds[split]:
            key = ("workload", v.workload, params, seed)
            d = trace_digest(build_trace(key))
            if d in seen:  # the generator ignores its seed: one trace
                continue
            seen.add(d)
            yield seed, key

    @staticmethod
    def build(key):
        from kvgym.workloads import make_trace

        _, name, params, seed = key
        return make_trace(name, seed, **json.loads(params))


KINDS = {"capture": Capture, "mooncake": Mooncake, "workload": Workload}


@lru_cache(maxsize=512)
def build_trace(key: tuple):
    """The trace of a case key (cached: a key's trace is built once per process)."""
    return KINDS[key[0]].build(key)
