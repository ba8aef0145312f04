"""The install and the demo: `make demo` installs the core only and writes an untracked folder;
`make test` installs the extras the tests need; building the package prints no warning and the
wheel carries every shipped data file."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kvgym.bench.demo import DEFAULT_SWEEP

ROOT = Path(__file__).resolve().parents[1]


def dry_run(target: str, tmp_path) -> str:
    # A venv path that does not exist, so make shows every install step it would take.
    r = subprocess.run(["make", "-n", target, f"VENV={tmp_path / 'venv'}"], cwd=ROOT, capture_output=True,
                       text=True, check=True)
    return r.stdout


def test_make_demo_installs_the_core_only_and_writes_runs(tmp_path):
    out = dry_run("demo", tmp_path)
    installs = [line for line in out.splitlines() if "pip install" in line]
    assert len(installs) == 1 and installs[0].rstrip().endswith("-e .")  # no extras, no torch
    assert "torch" not in out and "apt-get" not in out
    assert "kvgym demo --out runs/demo" in out and DEFAULT_SWEEP["out"] == "runs/demo"


def test_make_test_installs_its_extras_and_requires_them(tmp_path):
    out = dry_run("test", tmp_path)
    [extras] = re.findall(r"-e '\.\[([\w,]+)\]'", out)
    assert {"agents", "dev", "hf"} <= set(extras.split(","))
    torch_at = out.index("pip install -q --disable-pip-version-check torch==2.13.0")
    assert torch_at < out.index(f"-e '.[{extras}]'")  # the pinned CPU torch first
    assert "apt-get install" in out and "chromium" in out
    # Every extra it installs (and the browser) is required: a missing one fails, never skips.
    assert f"KVGYM_REQUIRE_EXTRAS={extras},browser" in out and "pytest" in out


def test_the_demo_folder_is_ignored_by_git():
    r = subprocess.run(["git", "check-ignore", "-q", "runs/demo/results.csv"], cwd=ROOT, check=False)
    assert r.returncode == 0, "runs/ must be in .gitignore: `make demo` must leave a clone clean"


@pytest.mark.slow
def test_the_wheel_builds_without_warnings_and_carries_the_data(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                       capture_output=True, text=True, check=True, cwd=tmp_path)
    log = r.stdout + r.stderr
    assert "BuildBackendWarning" not in log and "absent from the `packages`" not in log, log[-3000:]
    [wheel] = tmp_path.glob("kvgym-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    data = [p.relative_to(ROOT).as_posix() for p in (ROOT / "kvgym" / "data").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts]
    assert len(data) > 45 and set(data) <= names
