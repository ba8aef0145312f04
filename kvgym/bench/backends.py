"""Where cells run: ``serial`` (this process), ``process`` (a local process pool, all cores by
default) and ``ray`` (Ray tasks: a local Ray, or a cluster given by ``ray_address`` /
``RAY_ADDRESS``, so the same sweep runs across machines).

Every backend runs the same :func:`run_batch` on the same batches and yields ``(cell_id,
record, wall_s)`` as batches finish; the driver alone writes result files, so a worker on
another machine needs no shared file system.

- **process**: workers die with the sweep. Each worker asks the kernel to kill it when its parent
  dies (``PR_SET_PDEATHSIG`` on Linux) and watches its parent pid, so a sweep killed with SIGKILL
  leaves no worker (and so no blocked resource tracker) behind; an interrupted sweep terminates
  them.
- **ray**: each task (one batch) reserves ``ray_task_cpus`` CPUs and is rerun up to
  ``ray_retries`` times if its worker dies. Trace *files* are shipped by content: the driver reads
  each file once (trace and page table), puts the bytes in Ray's object store, and the worker
  checks them against the cell's sha256 and reads them from a private temporary folder; no node
  needs the driver's paths. Generated workloads are regenerated from their seed on the worker.

Batches: cells are grouped by trace (source and seed) so a worker generates each trace once,
and cut into batches of at most ``batch_size`` cells so the progress bar and resume stay
fine-grained.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from kvgym.bench.cells import Cell, load_trace, run_cell_safe
from kvgym.errors import ConfigError, KvgymError

#: Testing aid: when set to a path, the first worker to claim it (an exclusive create) kills
#: itself with SIGKILL at the start of a batch, as a crashing worker would.
KILL_ONCE_ENV = "KVGYM_TEST_KILL_WORKER_ONCE"


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


def _maybe_crash() -> None:
    marker = os.environ.get(KILL_ONCE_ENV)
    if marker:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        os.kill(os.getpid(), signal.SIGKILL)


def run_batch(batch: list) -> list[tuple[str, dict, float]]:
    """Run a batch of cells (decode :class:`Cell`, or serving cells, which run themselves with
    ``run_safe()``); return ``(cell_id, record, wall seconds)`` for each."""
    _maybe_crash()
    out = []
    for c in batch:
        t = time.perf_counter()
        rec = run_cell_safe(c) if isinstance(c, Cell) else c.run_safe()
        out.append((c.cell_id, rec, time.perf_counter() - t))
    return out


def run_serial(bs: list[list[Cell]], **_) -> Iterator[tuple[str, dict, float]]:
    for b in bs:
        yield from run_batch(b)


# -- process ----------------------------------------------------------------------------------
def _die_with_parent(parent: int) -> None:
    """Worker initializer: end this worker when the sweep's process ends, however it ends."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: the kernel kills us when our parent dies
    except (OSError, AttributeError):  # not Linux: the watch below still ends us
        pass
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="kvgym-parent-watch").start()


def run_process(bs: list[list[Cell]], workers: int = 0, **_) -> Iterator[tuple[str, dict, float]]:
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    n = workers or os.cpu_count() or 1
    n = max(1, min(n, len(bs)))
    if not bs:
        return
    # spawn: workers start from a clean interpreter (no inherited threads or locks), the same
    # on Linux and macOS.
    ex = ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context("spawn"), initializer=_die_with_parent,
                             initargs=(os.getpid(),))
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


# -- ray --------------------------------------------------------------------------------------
def file_payload(path: str) -> dict:
    """A trace file's bytes (and its page table's, for Parquet), to ship to a worker."""
    from kvgym.traces.parquet import pages_path

    p = Path(path)
    files = {p.name: p.read_bytes()}
    if p.suffix == ".parquet":
        pp = pages_path(p)
        if pp.is_file():
            files[pp.name] = pp.read_bytes()
    return {"name": p.name, "files": files}


def run_shipped(batch: list[Cell], payload: dict | None) -> list[tuple[str, dict, float]]:
    """:func:`run_batch` on a worker that may not see the driver's files: a trace file's cells read
    it from ``payload`` (checked against the cell's sha256) in a private temporary folder."""
    if payload is None:
        return run_batch(batch)
    src = batch[0].source
    h = hashlib.sha256()
    for data in payload["files"].values():  # the order file_digest hashes them in: trace, then pages
        h.update(data)
    if h.hexdigest() != src.digest:
        err = f"{src.name}: the shipped bytes do not match the sweep's sha256 {src.digest[:12]}..."
        return [(c.cell_id, {"cell_id": c.cell_id, **c.key, "status": "error", "error": err}, 0.0) for c in batch]
    with tempfile.TemporaryDirectory(prefix="kvgym-ray-") as tmp:
        for name, data in payload["files"].items():
            (Path(tmp) / name).write_bytes(data)
        load_trace(src, batch[0].seed, path=str(Path(tmp) / payload["name"]))  # now cached for the batch
        return run_batch(batch)


def run_ray(bs: list[list[Cell]], ray_address: str | None = None, ray_task_cpus: float = 1.0,
            ray_retries: int = 3, **_) -> Iterator[tuple[str, dict, float]]:
    try:
        import ray
    except ImportError:
        raise ConfigError("backend 'ray' needs Ray: pip install -e '.[ray]'") from None
    started = False
    if not ray.is_initialized():
        ray.init(address=ray_address, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        task = ray.remote(num_cpus=ray_task_cpus, max_retries=ray_retries)(run_shipped)
        shipped: dict[str, object] = {}
        refs = []
        for b in bs:
            src = b[0].source
            payload = None
            if src.kind == "file" and isinstance(b[0], Cell):  # a serving cell reads its file by path
                if src.name not in shipped:
                    shipped[src.name] = ray.put(file_payload(src.name))
                payload = shipped[src.name]
            refs.append(task.remote(b, payload))
        while refs:
            ready, refs = ray.wait(refs, num_returns=1)
            try:
                out = ray.get(ready[0])
            except ray.exceptions.RayError as e:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                raise KvgymError(f"sweep: a Ray task failed after {ray_retries} retries ({type(e).__name__}: "
                                 f"{first})") from None
            yield from out
    finally:
        if started:
            ray.shutdown()


BACKENDS = {"serial": run_serial, "process": run_process, "ray": run_ray}
