"""The data shipped in ``kvgym/data``: every file has its provenance and sha256 in a NOTICE.md, every
file is declared as package data (so an installed kvgym has it), and nothing reads outside the
repository."""

from __future__ import annotations

import fnmatch
import hashlib
import re
import tomllib
from pathlib import Path

import pytest

from kvgym import bundled

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "kvgym" / "data"
#: Files of the package's own (no third-party origin), described where they are read.
OWN = {"profiles.json", "scenarios.json", "serving_scenarios.json", "compute.json"}
ROW = re.compile(r"^\| `([^`]+)` \| (\d+) \| `([0-9a-f]{64})` \|$")


def notices() -> dict[Path, tuple[int, str]]:
    """Every (file -> (bytes, sha256)) row of every NOTICE.md under kvgym/data."""
    out = {}
    for notice in sorted(DATA.rglob("NOTICE.md")):
        rows = [ROW.match(line) for line in notice.read_text().splitlines()]
        for m in filter(None, rows):
            out[notice.parent / m.group(1)] = (int(m.group(2)), m.group(3))
    return out


def test_every_shipped_file_matches_its_notice():
    rows = notices()
    assert len(rows) == 4 + 35 + 3 + 2 + 1  # parity (4 + 35 traces), calibration, models, Mooncake trace
    for path, (size, sha) in rows.items():
        data = path.read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (size, sha), path


def test_every_shipped_file_has_a_notice():
    listed = set(notices())
    for path in DATA.rglob("*"):
        if path.is_dir() or "__pycache__" in path.parts:
            continue
        rel = path.relative_to(DATA)
        if path.name == "NOTICE.md" or str(rel) in OWN or path.name.startswith("LICENSE"):
            continue
        assert path in listed, f"kvgym/data/{rel} has no row in a NOTICE.md"
    # Third-party files carry their license: the MIT texts inline, Apache-2.0 as a file beside the trace.
    assert "Copyright (c) 2023 Andrej" in (DATA / "models" / "NOTICE.md").read_text()
    assert "kv-hierarchy-lab contributors" in (DATA / "parity" / "NOTICE.md").read_text()
    assert "Apache License" in (DATA / "traces" / "LICENSE-Apache-2.0.txt").read_text()


def test_every_data_file_is_declared_package_data():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages, globs = set(tool["packages"]), tool["package-data"]
    for folder in [DATA, *(p for p in DATA.rglob("*") if p.is_dir() and p.name != "__pycache__")]:
        pkg = ".".join(folder.relative_to(ROOT).parts)
        assert pkg in packages, f"{pkg} is not in [tool.setuptools] packages (setuptools would warn)"
        for f in folder.iterdir():
            if f.is_file():
                assert any(fnmatch.fnmatch(f.name, g) for g in globs.get(pkg, [])), f"{f} is not package data"


def test_accessors_point_at_the_shipped_files():
    assert (bundled.parity_dir() / "manifest.json").is_file()
    from kvgym.sim.calibration import default_calibration
    assert default_calibration() == bundled.data_path("calibration", "h200.json") and default_calibration().is_file()
    assert bundled.mooncake_synthetic().is_file()
    ckpt, tok = bundled.model_files("stories260K")
    assert ckpt.stat().st_size == 1_056_540 and tok.stat().st_size == 6_227
    from kvgym.errors import ConfigError
    with pytest.raises(ConfigError, match="unknown bundled model 'gpt5'; valid: stories260K"):
        bundled.model_files("gpt5")


def test_nothing_reads_outside_the_repository():
    # The project's data lives in kvgym/data; a path into a sibling folder of the checkout would
    # work on a developer's machine and fail in a user's fresh clone.
    pattern = re.compile(r"\.\./shared|parents\[\d\]\.parent|parent\.parent\.parent|/ \"shared\"")
    for folder in ("kvgym", "baselines", "agents", "tests", "benchmarks"):
        for f in (ROOT / folder).rglob("*.py"):
            if f == Path(__file__) or "data" in f.relative_to(ROOT).parts[:2]:
                continue
            for i, line in enumerate(f.read_text().splitlines(), 1):
                assert not pattern.search(line), f"{f.relative_to(ROOT)}:{i}: {line.strip()}"
