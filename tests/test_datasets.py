"""Datasets registry and `kvgym trace fetch`: offline failure, local paths, checksums (no network)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import urllib.error

import numpy as np
import pytest

from kvgym.bundled import mooncake_synthetic
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


CONVERSATION_SHA = "b8cbb061a85206d729d91cdc2981f43c9e0d99209dce588d3af5f7934408b9df"


def test_registry_entries_pin_their_digests():
    assert set(DATASETS) == {"mooncake-synthetic", "mooncake-conversation"}
    for d in DATASETS.values():
        assert re.fullmatch(r"https://raw\.githubusercontent\.com/kvcache-ai/Mooncake/main/FAST25-release/"
                            r"(traces|arxiv-trace)/\w+\.jsonl", d.url), d.url
        assert re.fullmatch(r"[0-9a-f]{64}", d.sha256) and d.size > 0
        assert (d.license, d.format, d.importer) == ("Apache-2.0", "mooncake-jsonl", "mooncake")
    assert (DATASETS["mooncake-synthetic"].sha256, DATASETS["mooncake-synthetic"].size) == (SYNTH_SHA, 1_136_313)
    assert (DATASETS["mooncake-conversation"].sha256, DATASETS["mooncake-conversation"].size) == \
        (CONVERSATION_SHA, 3_029_533)
    assert DATASETS["mooncake-synthetic"].filename == "synthetic_trace.jsonl"


def test_an_entry_without_a_digest_cannot_be_made():
    kw = {"name": "x", "url": "https://example.org/x.jsonl", "license": "MIT", "format": "mooncake-jsonl",
          "importer": "mooncake", "source": "-", "description": "-", "size": 1}
    for bad in (None, "", "ab" * 31, "AB" * 32, "g" * 64):
        with pytest.raises(ValueError, match="sha256 must be 64 lowercase hex digits"):
            ds.Dataset(sha256=bad, **kw)


def test_the_shipped_copy_is_used_offline_and_checked(monkeypatch, tmp_path):
    monkeypatch.setenv("KVGYM_OFFLINE", "1")
    path = fetch("mooncake-synthetic")
    assert path == mooncake_synthetic() and ds.sha256_file(path) == SYNTH_SHA
    assert not (tmp_path / "data").exists()  # nothing copied into the data directory
    # A shipped copy that does not match its pin is refused, not trusted.
    monkeypatch.setitem(DATASETS, "mooncake-synthetic",
                        dataclasses.replace(DATASETS["mooncake-synthetic"], sha256="0" * 64))
    with pytest.raises(DatasetError, match=f"has sha256 {SYNTH_SHA}, expected {'0' * 64}"):
        fetch("mooncake-synthetic")


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
    dest = tmp_path / "data" / "mooncake-conversation" / "conversation_trace.jsonl"
    with pytest.raises(DatasetError) as e:
        fetch("mooncake-conversation")
    msg = str(e.value)
    assert f"put it at {dest}" in msg and CONVERSATION_SHA in msg and DATASETS["mooncake-conversation"].url in msg
    assert not dest.exists() and not any(dest.parent.glob(".*part"))  # nothing half-written


def test_cli_fetch_offline_is_one_line(tmp_path, capsys):
    assert main(["trace", "fetch", "mooncake-conversation", "--data-dir", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(tmp_path / "d" / "mooncake-conversation" / "conversation_trace.jsonl") in err
    assert f"expected sha256: {CONVERSATION_SHA}" in err


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
    with pytest.raises(ConfigError, match="unknown dataset 'nope'; valid: mooncake-conversation, mooncake-synthetic"):
        fetch("nope")


def test_download_verifies_and_installs_atomically(monkeypatch, tmp_path):
    calls: list = []
    conv = DATASETS["mooncake-conversation"]
    # Wrong bytes are refused, even on the first fetch; nothing is left behind.
    with pytest.raises(DatasetError, match=f"expected {CONVERSATION_SHA}"):
        fetch("mooncake-conversation", urlopen=_opener(b"not the file", calls))
    d = tmp_path / "data" / "mooncake-conversation"
    assert calls[0][0] == conv.url and list(d.iterdir()) == []
    # The right bytes (here: an entry pinned to LINES' digest) install atomically.
    pinned = dataclasses.replace(conv, sha256=hashlib.sha256(LINES).hexdigest())
    monkeypatch.setitem(DATASETS, "mooncake-conversation", pinned)
    path = fetch("mooncake-conversation", urlopen=_opener(LINES, calls))
    assert path == d / "conversation_trace.jsonl" and path.read_bytes() == LINES
    assert sorted(p.name for p in d.iterdir()) == ["conversation_trace.jsonl"]
    # Later fetches use the cached copy (no download) and check it against the pin.
    n = len(calls)
    assert fetch("mooncake-conversation", urlopen=_opener(b"other", calls)) == path and len(calls) == n
    path.write_bytes(LINES + LINES)
    with pytest.raises(DatasetError, match="a different or corrupt file"):
        fetch("mooncake-conversation")


def test_install_by_hand_then_offline_use(monkeypatch, tmp_path, capsys):
    src = mooncake_synthetic()
    assert main(["trace", "fetch", "mooncake-synthetic", "--from", str(src)]) == 0
    dest = tmp_path / "data" / "mooncake-synthetic" / "synthetic_trace.jsonl"
    assert capsys.readouterr().out.strip() == str(dest) and dest.read_bytes() == src.read_bytes()
    monkeypatch.setenv("KVGYM_OFFLINE", "1")
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
