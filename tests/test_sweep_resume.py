"""Resume: a sweep stopped midway (an injected failure, or a real SIGKILL of the process) leaves
only finished cell files and no partial file; the rerun runs only the missing cells and ends
with the same artifacts as an uninterrupted run."""

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

from kvgym.bench.sweep import run_sweep
from kvgym.errors import KvgymError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("ref")
    traces = tiny_traces(d)
    res = run_sweep(small_config(d, traces))
    return traces, res, d / "out"


def _artifacts(out: Path) -> dict:
    return {n: (out / n).read_bytes() for n in ("results.csv", "summary.json", "leaderboard.md")}


def _partial_files(out: Path) -> list[Path]:
    from kvgym.bench.sweep import (
        LOCK_NAME,  # the directory's lock file stays (an flock, not a partial file)
    )

    return [p for p in out.rglob("*") if (p.name.startswith(".") and p.name != LOCK_NAME) or p.suffix == ".tmp"]


def test_injected_failure_then_resume(reference, tmp_path):
    traces, ref, ref_out = reference
    cfg = small_config(tmp_path, traces)
    with pytest.raises(KvgymError, match="stopped after 5 cells"):
        run_sweep(cfg.with_(fail_after=5))
    out = tmp_path / "out"
    assert len(list((out / "cells").glob("*.json"))) == 5
    assert not (out / "results.csv").exists()  # nothing is written for a sweep that did not finish
    assert _partial_files(out) == []
    res = run_sweep(cfg)
    assert (res.reused, res.ran) == (5, len(ref.cells) - 5)
    assert _artifacts(out) == _artifacts(ref_out)
    # A third run has nothing left to do and still gives the same files.
    res = run_sweep(cfg)
    assert (res.reused, res.ran) == (len(ref.cells), 0)
    assert _artifacts(out) == _artifacts(ref_out)


def test_changed_cell_is_rerun(reference, tmp_path):
    traces, ref, _ = reference
    cfg = small_config(tmp_path, traces)
    run_sweep(cfg)
    # Changing a policy parameter makes new cells; the others are reused.
    res = run_sweep(cfg.with_(policies=("lru", "fifo", "regret_aware(regret_weight=12)")))
    assert res.ran == 4 and res.reused == len(ref.cells) - 4


def test_sigkill_midway_then_resume(reference, tmp_path):
    traces, ref, ref_out = reference
    cfg = small_config(tmp_path, traces)
    cfg_file = tmp_path / "sweep.json"
    cfg_file.write_text(json.dumps(cfg.to_dict()))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Slow each cell down so the kill lands midway (the sweep itself is unchanged).
    code = ("import time, sys\n"
            "import kvgym.bench.backends as b\n"
            "orig = b.run_cell_safe\n"
            "b.run_cell_safe = lambda c: (time.sleep(0.1), orig(c))[1]\n"
            "from kvgym.cli import main\n"
            "sys.exit(main(['sweep', '--config', sys.argv[1], '--quiet']))\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(cfg_file)], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "cells").glob("*.json"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done = len(list((out / "cells").glob("*.json")))
    assert 2 <= done < len(ref.cells), "the kill should land midway"
    assert not (out / "results.csv").exists()
    res = run_sweep(cfg)
    assert res.reused == done and res.ran == len(ref.cells) - done
    assert _artifacts(out) == _artifacts(ref_out)
    assert _partial_files(out) == []
