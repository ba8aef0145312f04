"""RecordingPolicy: record the CPU tier's access stream under vLLM, replay it in kvgym, same counts."""

from __future__ import annotations

import sys

import pytest

from kvgym.integrations.vllm_compat import VllmMissing, require_vllm

try:
    require_vllm()
except VllmMissing as e:
    pytest.skip(str(e), allow_module_level=True)

from test_vllm_export import CAP, stream

from kvgym.baselines.common import cache_setup
from kvgym.errors import ConfigError
from kvgym.integrations.vllm_export import export_vllm
from kvgym.integrations.vllm_record import RecordingPolicy
from kvgym.integrations.vllm_replay import drive_manager, make_manager
from kvgym.sim.engine import Engine
from kvgym.sim.policy import make_policy
from kvgym.traces.parquet import read_trace


@pytest.fixture
def on_path(tmp_path):
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))


def record(folder, inner: str, name: str):
    """Replay the export test's stream under vLLM with a RecordingPolicy around ``inner``."""
    out = folder / f"{name}.parquet"
    (folder / f"{name}_mod.py").write_text(
        "from kvgym.integrations.vllm_record import RecordingPolicy\n\n\n"
        f"class Rec(RecordingPolicy):\n    INNER = {inner!r}\n    OUTPUT = {str(out)!r}\n")
    mgr = make_manager(CAP, "Rec", cache_policy_module_path=f"{name}_mod")
    counts = drive_manager(mgr, stream())
    rec = [p for p in RecordingPolicy.flush_all() if p == out]
    assert rec == [out]
    return counts, read_trace(out)


def test_record_kvgym_policy_under_vllm_replay_in_kvgym(on_path):
    export_vllm("s3fifo", {}, on_path / "kvg_rec_s3fifo.py", history=100000)
    counts, trace = record(on_path, "kvg_rec_s3fifo:KvgymS3fifo", "rec_s3")
    seen = trace.meta["vllm"]
    assert seen["accesses"] == len(trace) == counts.blocks
    assert (seen["inserts"], seen["evictions"]) == (counts.stores, counts.evictions)
    m = Engine(cache_setup(trace.pages, CAP), make_policy("s3fifo")).run(trace)
    assert counts.evictions > 100
    assert (m.hits, m.misses, m.evictions[0]) == (seen["hits"], seen["inserts"], seen["evictions"])


def test_record_vllm_lru(on_path):
    """vLLM's own LRU recorded: the trace holds every block the policy was told about, with the
    manager's counts; vLLM's LRU is not kvgym's, so its replay in kvgym is not expected equal."""
    counts, trace = record(on_path, "lru", "rec_lru")
    seen = trace.meta["vllm"]
    assert (seen["accesses"], seen["inserts"], seen["evictions"]) == (counts.blocks, counts.stores, counts.evictions)
    assert seen["hits"] == counts.blocks - counts.stores
    assert trace.meta["params"] == {"inner": "lru", "cache_capacity": CAP, "chunk_bytes": 1}
    # token positions come from vLLM's request context: block i of a request ends at (i + 1) * 16
    assert set(trace.pages.token_end.tolist()) <= {16 * i for i in range(1, 10)}


def test_bad_inner_policy_one_line():
    with pytest.raises(ConfigError, match=r"^inner policy 'lfu': not a vLLM cache policy name \(built in: arc, lru"):
        RecordingPolicy(4, inner="lfu")
    with pytest.raises(ConfigError, match=r"^inner policy 'kvgym:Nope': module 'kvgym' does not define"):
        RecordingPolicy(4, inner="kvgym:Nope")
