"""Shared fixtures. ``shared_dir`` is ``../shared`` beside the repository; tests that need it
skip with a message when it is absent (a user's fresh clone has none)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is absent (it holds the parity data, calibration, traces and model)")
    return SHARED
