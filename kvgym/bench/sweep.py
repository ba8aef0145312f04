"""The sweep runner: expand a config into cells, run the unfinished ones, write the artifacts.

Layout of the output directory ``out``::

    cells/<cell_id>.json   one result per finished cell (written atomically as each cell ends)
    results.csv            one row per cell and seed (byte-identical for the same config)
    results.parquet        the same table, typed
    summary.json           mean and std over seeds per (scenario, source, policy)
    leaderboard.md         every policy and agent ranked, per scenario and overall
    plots/*.png            hit rate, latency vs bytes, per-tier hits, prefetch usefulness, stall
    serving/               the serving section, when the config has one (:mod:`kvgym.bench.serving`)
    manifest.json          kvgym version, git commit, package versions, config and its hash,
                           the command that ran it, machine, wall time, cells run / reused
    report.html            all of the above on one self-contained page (:mod:`kvgym.bench.report`)

**Resume**: a rerun reads ``cells/`` and runs only the cells without a result file; since a
cell's id is the hash of its full config, a finished cell is reused only if nothing that
determines its result changed. Every file is written to a temporary name and renamed, so a
killed sweep leaves finished cells and no partial file (the temporaries a killed run left, of
the files this sweep writes, are removed on the next run; nothing else in ``out`` is touched).
Cells that fail with a kvgym error are not stored; the sweep writes what it has and then
reports them as an error.

**One sweep per directory**: a sweep holds ``out/.kvgym-sweep.lock`` (an ``flock``, released
when the process ends, however it ends) while it runs; a second sweep on the same ``out`` stops
at once with one line naming the holder, rather than overwriting its tables or computing the
same cells twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from kvgym import __version__
from kvgym.bench import leaderboard, plots, report
from kvgym.bench.backends import BACKENDS, batches
from kvgym.bench.cells import Cell, expand
from kvgym.bench.config import SweepConfig
from kvgym.bench.results import write_results
from kvgym.errors import KvgymError, OutputError
from kvgym.files import remove_temporaries, write_json

PACKAGES = ("numpy", "numba", "pandas", "pyarrow", "matplotlib", "gymnasium", "scipy", "tqdm", "ray",
            "torch", "stable-baselines3", "sb3-contrib")


@dataclass
class SweepResult:
    out: Path
    cells: list[Cell]
    records: list[dict]
    summary: dict
    board: dict
    ran: int
    reused: int
    wall_s: float
    serving: object = None  # kvgym.bench.serving.ServingResult when the config has a serving section


class CellsFailed(KvgymError):
    """Some cells raised a kvgym error; the message lists them."""


def git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=False)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=False)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


def machine() -> dict:
    return {"platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "python": sys.implementation.name}


def _cell_path(cells_dir: Path, cell: Cell) -> Path:
    return cells_dir / f"{cell.cell_id}.json"


#: The lock file of an output directory (an ``flock``: released by the OS when its holder dies).
LOCK_NAME = ".kvgym-sweep.lock"
#: The files a sweep writes directly into its output directory.
OUT_FILES = ("results.csv", "results.parquet", "summary.json", "leaderboard.md", "manifest.json", "report.html")


class SweepBusy(KvgymError):
    """Another sweep holds the output directory's lock."""


@contextlib.contextmanager
def sweep_lock(out: Path, cfg: SweepConfig):
    """Hold ``out``'s lock for the whole sweep; another sweep on the same ``out`` gets
    :class:`SweepBusy` at once (one line naming its pid), instead of racing it for the files."""
    import fcntl

    if out.exists() and not out.is_dir():
        raise OutputError(f"sweep output {out}: is a file; --out names a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise OutputError(f"sweep output {out}: cannot write there ({e.strerror or e})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
            raise SweepBusy(f"sweep: output directory {out} is in use by another sweep ({holder}); wait for it "
                            f"to finish or give another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, sweep {cfg.name!r}, config {cfg.config_hash()}, since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _clean_temporaries(out: Path, cells: list[Cell]) -> int:
    """Remove temporaries that a killed run of a sweep left behind, of the files this sweep writes
    only (kvgym temporaries of its cells, tables and plots); other files are never touched."""
    return (remove_temporaries(out / "cells", (f"{c.cell_id}.json" for c in cells))
            + remove_temporaries(out, OUT_FILES) + remove_temporaries(out / "plots", plots.PLOTS))


def load_finished(cells: list[Cell], cells_dir: Path) -> dict[str, dict]:
    """Records of cells that already have a valid result file."""
    done = {}
    for c in cells:
        p = _cell_path(cells_dir, c)
        if not p.is_file():
            continue
        try:
            d = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # unreadable: run it again (atomic writes make this unlikely)
        rec = d.get("record", {})
        if rec.get("cell_id") == c.cell_id and d.get("cell") == c.to_dict():
            done[c.cell_id] = rec
    return done


def run_sweep(cfg: SweepConfig, *, log=None, title: str | None = None, command: str | None = None) -> SweepResult:
    """Run (or resume) a sweep and write every artifact; return the records and the leaderboard.

    ``command``: the command line that ran it, recorded in ``manifest.json`` and the report.
    """
    t0 = time.perf_counter()
    out = Path(cfg.out)
    cells = expand(cfg)
    if not cells:
        raise KvgymError("sweep: the grid is empty")
    ids = [c.cell_id for c in cells]
    if len(set(ids)) != len(ids):
        raise KvgymError("sweep: the grid lists the same cell twice (duplicate policy or source)")
    with sweep_lock(out, cfg):
        return _run_locked(cfg, out, cells, t0, log, title, command)


def _run_locked(cfg: SweepConfig, out: Path, cells: list[Cell], t0: float, log, title,
                command: str | None) -> SweepResult:
    cells_dir = out / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    _clean_temporaries(out, cells)
    done = load_finished(cells, cells_dir)
    todo = [c for c in cells if c.cell_id not in done]
    by_id = {c.cell_id: c for c in cells}
    if log:
        log(f"sweep {cfg.name}: {len(cells)} cells, {len(done)} already done, {len(todo)} to run "
            f"on backend {cfg.backend}")
    from tqdm import tqdm

    bar = tqdm(total=len(cells), initial=len(done), unit="cell", desc=cfg.name, disable=not cfg.progress,
               dynamic_ncols=True, smoothing=0.1)
    errors: list[str] = []
    ran = 0
    try:
        runner = BACKENDS[cfg.backend]
        for cell_id, rec, wall in runner(batches(todo), workers=cfg.workers, ray_address=cfg.ray_address,
                                         ray_task_cpus=cfg.ray_task_cpus, ray_retries=cfg.ray_retries):
            bar.update(1)
            if rec.get("status") == "error":
                errors.append(f"{rec['scenario']} / {rec['source']} / {rec['policy']} / seed {rec['seed']}: {rec['error']}")
                continue
            write_json(_cell_path(cells_dir, by_id[cell_id]),
                       {"cell": by_id[cell_id].to_dict(), "record": rec, "wall_s": round(wall, 6)})
            done[cell_id] = rec
            ran += 1
            if cfg.fail_after and ran >= cfg.fail_after:
                raise KvgymError(f"sweep: stopped after {ran} cells (fail_after={cfg.fail_after})")
    finally:
        bar.close()
    records = [done[c.cell_id] for c in cells if c.cell_id in done]
    summary = write_results(out, records)
    board, _ = leaderboard.write(out, records, title or f"Leaderboard: {cfg.name}")
    if cfg.plots:
        plots.write_all(records, out)
    serving = None
    if cfg.serving and not errors:
        from kvgym.bench.serving import ServingSweepConfig, run_serving

        serving = run_serving(ServingSweepConfig.from_dict(cfg.serving), out / "serving", backend=cfg.backend,
                              workers=cfg.workers, ray_address=cfg.ray_address, ray_task_cpus=cfg.ray_task_cpus,
                              ray_retries=cfg.ray_retries, plots=cfg.plots, progress=cfg.progress, log=log)
    wall = time.perf_counter() - t0
    write_json(out / "manifest.json", {
        "format": "kvgym-sweep-manifest/1", "kvgym_version": __version__, "git_commit": git_commit(),
        "packages": package_versions(), "machine": machine(), "config": cfg.to_dict(),
        "config_hash": cfg.config_hash(), "command": command, "cells": len(cells), "cells_run": ran,
        "cells_reused": len(cells) - len(todo), "cells_failed": len(errors), "wall_time_s": round(wall, 3),
        "backend": cfg.backend,
        **({"serving_cells": len(serving.cells), "serving_cells_run": serving.ran,
            "serving_cells_reused": serving.reused} if serving is not None else {}),
    })
    report.write(out)
    if errors:
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise CellsFailed(f"{len(errors)} cells failed: " + "; ".join(errors[:5]) + more)
    return SweepResult(out, cells, records, summary, board, ran, len(cells) - len(todo), wall, serving)
