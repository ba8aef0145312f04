"""The simulator: geometry, quantization, tiers, scenarios, the engines and their metrics.

:func:`run` is the one entry point for "simulate this trace under this scenario with this
policy". It runs the compiled engine (:mod:`kvgym.sim.compiled`) for every policy and prefetcher,
or, with ``engine="reference"``, the specification engine (:mod:`kvgym.sim.engine`), which defines
the rules and serves tests as the oracle. Both give identical metrics (tested). This package never
imports gymnasium or torch.
"""

from __future__ import annotations

from pathlib import Path

from kvgym.sim.metrics import Metrics
from kvgym.sim.scenario import Scenario

ENGINES = ("compiled", "reference")


def run(trace, scenario: Scenario, policy="lru", prefetcher=None, *, engine: str = "compiled",
        chunk_rows: int = 1 << 20, **policy_params) -> Metrics:
    """Simulate ``trace`` (a :class:`~kvgym.traces.format.Trace` or a Parquet path) and return metrics.

    Args:
        policy: registered name or a Policy object; ``policy_params`` go to its constructor.
        prefetcher: name, object or None (only used when ``scenario.prefetch`` is on).
        engine: ``compiled`` (default) or ``reference`` (the specification engine).
        chunk_rows: rows per chunk when reading a Parquet trace (bounded memory).

    A trace file is checked as it is read (:mod:`kvgym.traces.parquet`), an in-memory trace by
    :func:`~kvgym.traces.format.validate`, before anything is simulated.
    """
    import numpy as np

    from kvgym.errors import ConfigError
    from kvgym.sim.context import Future
    from kvgym.sim.policy import make_policy, make_prefetcher
    from kvgym.traces.format import Trace, validate
    from kvgym.traces.parquet import iter_chunks, read_pages

    if engine not in ENGINES:
        raise ConfigError(f"engine={engine!r}; valid: {', '.join(ENGINES)}")
    if isinstance(trace, (str, Path)):
        path = trace
        pages = read_pages(path)
        chunks = lambda: iter_chunks(path, chunk_rows)
        page_arr = None
    elif isinstance(trace, Trace):
        validate(trace)  # the engines index arrays by page id without bounds checks
        pages = trace.pages
        chunks = lambda: [(trace.step, trace.page, trace.weight)]
        page_arr = trace.page
    else:
        raise ConfigError(f"trace must be a Trace or a Parquet path, got {type(trace).__name__}")
    setup = scenario.build(pages, chunks())  # accesses are read only for an auto:F capacity
    if page_arr is not None:
        setup.check_steps(trace.step, trace.page)
    pol = make_policy(policy, **policy_params) if isinstance(policy, str) else policy
    pre = make_prefetcher(prefetcher) if isinstance(prefetcher, str) else prefetcher
    if not scenario.prefetch:
        pre = None
    future = None
    if pol.privileged or getattr(pre, "privileged", False):
        if page_arr is None:
            page_arr = np.concatenate([c[1] for c in chunks()])
        future = Future(page_arr, len(pages))
    if engine == "reference":
        from kvgym.sim.engine import Engine

        return Engine(setup, pol, pre, future=future).run_chunks(chunks())
    from kvgym.sim.compiled import CompiledEngine

    return CompiledEngine(setup, pol, pre, future=future).run_chunks(chunks())


__all__ = ["Metrics", "Scenario", "run"]
