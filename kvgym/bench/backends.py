"""Where cells run: ``serial`` (this process), ``process`` (a local process pool, all cores by
default) and ``ray`` (Ray tasks: a local Ray, or a cluster given by ``ray_address`` /
``RAY_ADDRESS``, so the same sweep runs across machines).

Every backend runs the same :func:`run_batch` on the same batches and yields ``(cell_id,
record, wall_s)`` as batches finish; the driver alone writes result files, so a worker on
another machine needs no shared file system (trace *files* must be readable at the same path
on every node; generated workloads are regenerated from their seed on the worker).

Batches: cells are grouped by trace (source and seed) so a worker generates each trace once,
and cut into batches of at most ``batch_size`` cells so the progress bar and resume stay
fine-grained.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

from kvgym.bench.cells import Cell, run_cell_safe
from kvgym.errors import ConfigError


def batches(cells: list[Cell], batch_size: int = 8) -> list[list[Cell]]:
    """Cells grouped by (source, seed), then cut into batches; deterministic order."""
    groups: dict[str, list[Cell]] = {}
    for c in cells:
        k = json.dumps([c.source.to_dict(), c.seed if c.source.seeded else None], sort_keys=True)
        groups.setdefault(k, []).append(c)
    out = []
    for g in groups.values():
        for i in range(0, len(g), batch_size):
            out.append(g[i:i + batch_size])
    return out


def run_batch(batch: list[Cell]) -> list[tuple[str, dict, float]]:
    """Run a batch of cells; return ``(cell_id, record, wall seconds)`` for each."""
    out = []
    for c in batch:
        t = time.perf_counter()
        rec = run_cell_safe(c)
        out.append((c.cell_id, rec, time.perf_counter() - t))
    return out


def run_serial(bs: list[list[Cell]], **_) -> Iterator[tuple[str, dict, float]]:
    for b in bs:
        yield from run_batch(b)


def run_process(bs: list[list[Cell]], workers: int = 0, **_) -> Iterator[tuple[str, dict, float]]:
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    n = workers or os.cpu_count() or 1
    n = max(1, min(n, len(bs)))
    if not bs:
        return
    # spawn: workers start from a clean interpreter (no inherited threads or locks), the same
    # on Linux and macOS.
    ex = ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context("spawn"))
    finished = False
    try:
        pending = {ex.submit(run_batch, b) for b in bs}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                yield from f.result()
        finished = True
    finally:
        if finished:
            ex.shutdown(wait=True)
        else:
            # Interrupted (error, Ctrl-C, SIGTERM, or the consumer stopped early): stop the workers
            # now instead of letting them finish batches whose results nobody will write.
            procs = list(getattr(ex, "_processes", {}).values())
            ex.shutdown(wait=False, cancel_futures=True)
            for proc in procs:
                proc.terminate()


def run_ray(bs: list[list[Cell]], ray_address: str | None = None, **_) -> Iterator[tuple[str, dict, float]]:
    try:
        import ray
    except ImportError:
        raise ConfigError("backend 'ray' needs Ray: pip install -e '.[ray]'") from None
    started = False
    if not ray.is_initialized():
        ray.init(address=ray_address, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        task = ray.remote(run_batch)
        refs = [task.remote(b) for b in bs]
        while refs:
            ready, refs = ray.wait(refs, num_returns=1)
            yield from ray.get(ready[0])
    finally:
        if started:
            ray.shutdown()


BACKENDS = {"serial": run_serial, "process": run_process, "ray": run_ray}
