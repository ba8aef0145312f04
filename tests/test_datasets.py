"""Datasets registry and `kvgym trace fetch`: offline failure, local paths, checksums (no network)."""

from __future__ import annotations

import io
import re
import urllib.error

import numpy as np
import pytest

from kvgym.cli import main
from kvgym.errors import ConfigError
from kvgym.traces import datasets as ds
from kvgym.traces.datasets import DATASETS, DatasetError, fetch
from kvgym.traces.parquet import read_trace

SYNTH_SHA = "bd070915a98fc0ed264d7cfef2ce746002eb3076a695ec31ba2674c0111ec131"
LINES = b'{"timestamp": 0, "input_length": 600, "output_length": 3, "hash_ids": [4, 5]}\n'


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No test may touch the user's cache or the network."""
    monkeypatch.setenv("KVGYM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("KVGYM_OFFLINE", raising=False)

    def no_network(*a, **k):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(ds.urllib.request, "urlopen", no_network)


def _opener(payload: bytes, calls: list):
    def urlopen(url, timeout):
        calls.append((url, timeout))
        return io.BytesIO(payload)
    return urlopen


def test_registry_entries():
    assert {"mooncake-synthetic", "mooncake-conversation", "mooncake-toolagent"} <= set(DATASETS)
    for d in DATASETS.values():
        assert re.fullmatch(r"https://raw\.githubusercontent\.com/kvcache-ai/Mooncake/main/FAST25-release/"
                            r"(traces|arxiv-trace)/\w+\.jsonl", d.url), d.url
        assert d.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", d.sha256)
        assert (d.license, d.format, d.importer) == ("Apache-2.0", "mooncake-jsonl", "mooncake")
    assert DATASETS["mooncake-synthetic"].sha256 == SYNTH_SHA
    assert DATASETS["mooncake-synthetic"].filename == "synthetic_trace.jsonl"


@pytest.mark.shared
def test_registry_sha_matches_the_shared_copy(shared_dir):
    assert ds.sha256_file(shared_dir / "traces/mooncake_fast25_synthetic_trace.jsonl") == SYNTH_SHA


def test_data_dir_precedence(monkeypatch, tmp_path):
    assert ds.data_dir() == tmp_path / "data"
    monkeypatch.delenv("KVGYM_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ds.data_dir() == tmp_path / "xdg" / "kvgym"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ds.data_dir() == tmp_path / "home" / ".cache" / "kvgym"


@pytest.mark.parametrize("how", ["no-network", "env"])
def test_offline_says_where_to_put_the_file(monkeypatch, tmp_path, how):
    if how == "env":
        monkeypatch.setenv("KVGYM_OFFLINE", "1")
    dest = tmp_path / "data" / "mooncake-synthetic" / "synthetic_trace.jsonl"
    with pytest.raises(DatasetError) as e:
        fetch("mooncake-synthetic")
    msg = str(e.value)
    assert f"put it at {dest}" in msg and SYNTH_SHA in msg and DATASETS["mooncake-synthetic"].url in msg
    assert not dest.exists() and not any(dest.parent.glob(".*part"))  # nothing half-written


def test_cli_fetch_offline_is_one_line(tmp_path, capsys):
    assert main(["trace", "fetch", "mooncake-toolagent", "--data-dir", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(tmp_path / "d" / "mooncake-toolagent" / "toolagent_trace.jsonl") in err
    assert "recorded at first fetch" in err


def test_local_path_is_accepted_instead_of_a_name(tmp_path, capsys):
    p = tmp_path / "mine.jsonl"
    p.write_bytes(LINES)
    assert fetch(str(p)) == p
    assert main(["trace", "fetch", str(p)]) == 0
    assert capsys.readouterr().out.strip() == str(p)
    out = tmp_path / "mine.parquet"
    assert main(["trace", "import", str(p), "--geometry", "stories260k", "-o", str(out)]) == 0
    tr = read_trace(out)
    np.testing.assert_array_equal(tr.page, [0, 1])
    with pytest.raises(DatasetError, match="no such file"):
        fetch(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ConfigError, match="unknown dataset 'nope'; valid: mooncake-arxiv"):
        fetch("nope")


def test_download_verifies_and_installs_atomically(tmp_path):
    calls: list = []
    # Known sha256 and wrong bytes: refused, nothing left behind.
    with pytest.raises(DatasetError, match=f"expected {SYNTH_SHA}"):
        fetch("mooncake-synthetic", urlopen=_opener(b"not the file", calls))
    d = tmp_path / "data" / "mooncake-synthetic"
    assert calls[0][0] == DATASETS["mooncake-synthetic"].url and list(d.iterdir()) == []
    # Unknown sha256: the first fetch records the digest it saw (trust on first use).
    path = fetch("mooncake-conversation", urlopen=_opener(LINES, calls))
    assert path == tmp_path / "data" / "mooncake-conversation" / "conversation_trace.jsonl"
    assert path.read_bytes() == LINES
    rec = path.with_name("conversation_trace.jsonl.sha256").read_text().split()
    assert rec == [ds.sha256_file(path), "conversation_trace.jsonl"]
    # Later fetches use the cached copy (no download) and check it against the record.
    n = len(calls)
    assert fetch("mooncake-conversation", urlopen=_opener(b"other", calls)) == path and len(calls) == n
    path.write_bytes(LINES + LINES)
    with pytest.raises(DatasetError, match="a different or corrupt file"):
        fetch("mooncake-conversation")


@pytest.mark.shared
def test_install_by_hand_then_offline_use(shared_dir, monkeypatch, tmp_path, capsys):
    src = shared_dir / "traces/mooncake_fast25_synthetic_trace.jsonl"
    assert main(["trace", "fetch", "mooncake-synthetic", "--from", str(src)]) == 0
    dest = tmp_path / "data" / "mooncake-synthetic" / "synthetic_trace.jsonl"
    assert capsys.readouterr().out.strip() == str(dest) and dest.read_bytes() == src.read_bytes()
    monkeypatch.setenv("KVGYM_OFFLINE", "1")
    assert fetch("mooncake-synthetic") == dest
    # A registered name imports with its registered importer.
    out = tmp_path / "synth.parquet"
    assert main(["trace", "import", "mooncake-synthetic", "--limit", "10", "-o", str(out)]) == 0
    assert read_trace(out).meta["source_sha256"] == SYNTH_SHA
    # A wrong file put by hand is refused.
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(LINES)
    with pytest.raises(DatasetError, match="has sha256"):
        fetch("mooncake-synthetic", source=bad)


def test_fetch_list(capsys):
    assert main(["trace", "fetch", "--list"]) == 0
    out = capsys.readouterr().out
    for name in DATASETS:
        assert name in out
