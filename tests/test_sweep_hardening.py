"""Sweeps that survive sharing, crashes and clusters (issue 16, defects 6 and 7; the Ray backend):
one sweep per output directory, cleanup of only the sweep's own temporaries, process workers
that die with their parent, trace files shipped to Ray workers by content, and a Ray sweep whose
worker is killed mid-sweep ending with the serial results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _bench_helpers import small_config, tiny_traces

from kvgym.bench.backends import KILL_ONCE_ENV, batches, file_payload, run_batch, run_shipped
from kvgym.bench.cells import _TRACES, expand
from kvgym.bench.sweep import LOCK_NAME, SweepBusy, run_sweep, sweep_lock
from kvgym.cli import main
from kvgym.files import TMP_SUFFIX

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("sweep")
    traces = tiny_traces(d, n=2, accesses=400)
    return d, traces


def test_a_second_sweep_on_a_busy_directory_stops_at_once(setup, tmp_path):
    _, traces = setup
    cfg = small_config(tmp_path, traces, policies=("lru",))
    out = Path(cfg.out)
    with sweep_lock(out, cfg.with_(name="first")):
        with pytest.raises(SweepBusy, match=rf"output directory {out} is in use by another sweep \(pid {os.getpid()}, "
                                            r"sweep 'first'"):
            run_sweep(cfg)
        assert not (out / "cells").exists()  # it wrote nothing
    res = run_sweep(cfg)  # the lock is free again
    assert res.ran == len(res.cells) > 0 and (out / LOCK_NAME).is_file()


def test_cleanup_removes_only_this_sweeps_temporaries(setup, tmp_path):
    _, traces = setup
    cfg = small_config(tmp_path, traces, policies=("lru",))
    out = Path(cfg.out)
    cell = expand(cfg)[0]
    (out / "cells").mkdir(parents=True)
    ours = [out / "cells" / f".{cell.cell_id}.json.ab12cd34{TMP_SUFFIX}", out / f".results.csv.x9y8z7w6{TMP_SUFFIX}"]
    theirs = [out / ".mine.tmp1", out / ".results.csv.tmp", out / "cells" / f".othersweep.json.ab12cd34{TMP_SUFFIX}",
              out / "notes.txt"]
    for f in ours + theirs:
        f.write_text("x")
    run_sweep(cfg)
    assert [f.exists() for f in ours] == [False, False]
    assert [f.exists() for f in theirs] == [True] * len(theirs)


def test_out_that_is_a_file_is_one_line(setup, tmp_path, capsys):
    _, traces = setup
    f = tmp_path / "out.txt"
    f.write_text("keep")
    rc = main(["sweep", "--traces", traces[0], "--policies", "lru", "--scenarios", "h200_10pct_fp16_no_prefetch",
               "--backend", "serial", "--quiet", "--out", str(f)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"kvgym sweep: error: sweep output {f}: is a file; --out names a folder"]
    assert f.read_text() == "keep"


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_process_workers_die_with_a_killed_sweep(tmp_path):
    # Enough work (64 generated 65k-access traces, four policies each; tens of seconds) that the
    # sweep is surely mid-way when it is killed.
    cfg = small_config(tmp_path, [], workloads=("topk_drift",), policies=("arc", "lfu", "s3fifo", "sieve"),
                       seeds=tuple(range(64)), backend="process", workers=2, oracle="")
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    code = ("import json; from kvgym.bench.config import SweepConfig; from kvgym.bench.sweep import run_sweep; "
            "run_sweep(SweepConfig(**json.load(open('cfg.json'))))")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path)
    try:
        deadline = time.time() + 60
        workers: list[int] = []
        while time.time() < deadline and len(workers) < 2:
            time.sleep(0.2)
            workers = [c for c in _children(proc.pid) if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert len(workers) == 2, "the process pool did not start"
        everyone = _children(proc.pid)  # the workers and multiprocessing's resource tracker
        time.sleep(1.0)
        assert proc.poll() is None, "the sweep ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.time() + 15
        while time.time() < deadline and any(_alive(c) for c in everyone):
            time.sleep(0.2)
        assert [c for c in everyone if _alive(c)] == []
        assert not list((tmp_path / "out").glob("*.csv"))  # killed before the tables: nothing partial either
    finally:
        if proc.poll() is None:
            proc.kill()


def test_trace_files_are_shipped_by_content(setup, tmp_path):
    _, traces = setup
    cfg = small_config(tmp_path, traces[:1], policies=("lru", "fifo"))
    b = batches(expand(cfg))[0]
    want = run_batch(b)
    payload = file_payload(traces[0])
    assert sorted(payload["files"]) == ["trace0.pages.parquet", "trace0.parquet"]
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for name in payload["files"]:  # the driver's path no longer exists on this "node"
        os.replace(Path(traces[0]).parent / name, moved / name)
    try:
        _TRACES.clear()
        got = run_shipped(b, payload)
        assert [(c, r) for c, r, _ in got] == [(c, r) for c, r, _ in want]
        _TRACES.clear()
        bad = {"name": payload["name"], "files": {**payload["files"], "trace0.parquet": b"tampered"}}
        recs = run_shipped(b, bad)
        assert {r["status"] for _, r, _ in recs} == {"error"}
        assert "do not match the sweep's sha256" in recs[0][1]["error"]
    finally:
        for name in payload["files"]:
            os.replace(moved / name, Path(traces[0]).parent / name)
        _TRACES.clear()


def test_ray_sweep_survives_a_killed_worker(setup, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    _, traces = setup
    cfg = small_config(tmp_path, traces, policies=("lru", "fifo", "regret_aware"), workloads=("periodic_reuse",),
                       seeds=(0, 1))
    serial = run_sweep(cfg.with_(out=str(tmp_path / "serial")))
    marker = tmp_path / "killed"
    monkeypatch.setenv(KILL_ONCE_ENV, str(marker))  # inherited by the Ray workers started below
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        res = run_sweep(cfg.with_(out=str(tmp_path / "ray"), backend="ray", ray_retries=2))
    finally:
        ray.shutdown()
    assert marker.exists()  # a worker did die mid-sweep (and its batch was rerun)
    assert res.ran == len(serial.cells) > 0
    for name in ("results.csv", "summary.json", "leaderboard.md"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "serial" / name).read_bytes(), name
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["backend"] == "ray" and manifest["cells_failed"] == 0
