"""``kvgym list KIND``: every registered item, one line each, described from its own documentation."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kvgym.bench.scenarios import scenario_names
from kvgym.cli import main
from kvgym.envs.registration import ENV_IDS
from kvgym.sim import policy as P
from kvgym.workloads import workload_names


def listed(kind: str, capsys) -> dict[str, str]:
    assert main(["list", kind]) == 0
    rows = {}
    for line in capsys.readouterr().out.splitlines():
        name, _, desc = line.partition("  ")
        rows[name.strip()] = desc.strip()
    return rows


@pytest.mark.parametrize("kind,names", [("policies", P.policy_names), ("prefetchers", P.prefetcher_names),
                                        ("workloads", workload_names), ("scenarios", scenario_names),
                                        ("envs", lambda: list(ENV_IDS))])
def test_each_kind_lists_its_whole_registry_with_descriptions(kind, names, capsys):
    rows = listed(kind, capsys)
    assert list(rows) == list(names())
    assert all(len(d) > 10 for d in rows.values()), rows


def test_descriptions_come_from_the_items_docs(capsys):
    pol = listed("policies", capsys)
    assert pol["lru"] == "Least recently used goes first."
    assert pol["belady"].endswith("[reads the future]") and "[reads the future]" not in pol["lru"]
    assert listed("prefetchers", capsys)["sequential"] == "Fetch the next token blocks of the same sequence and layer."
    assert listed("workloads", capsys)["streaming"] == "Attention sinks plus a sliding window (StreamingLLM)."
    assert listed("scenarios", capsys)["h200_10pct_int4_prefetch"] == \
        "realistic: h200-measured tiers 10%/profile/profile/profile, overlap costs, int4, prefetch on"
    envs = listed("envs", capsys)
    assert envs["kvgym/EvictPrefetch-Streaming-v0"] == \
        "eviction and prefetch decisions (EvictPrefetchEnv): workload streaming, h200-measured tier 0 6.8%"


def test_a_newly_registered_policy_is_listed(monkeypatch, capsys):
    import types

    mod = types.ModuleType("kvgym_test_mru")
    mod.__doc__ = "``mru_test``: most recently used goes first (a test policy).\n\nMore text."
    monkeypatch.setitem(sys.modules, mod.__name__, mod)

    class Mru(P.Policy):
        def scores(self, cands, step):
            return -cands

    Mru.__module__ = mod.__name__
    monkeypatch.setitem(P._POLICIES, "mru_test", Mru)
    assert listed("policies", capsys)["mru_test"] == "Most recently used goes first (a test policy)."


def test_agents_are_listed_without_importing_torch(tmp_path):
    code = ("import sys; from kvgym.cli import main; main(['list', 'agents']); "
            "assert 'torch' not in sys.modules, 'listing agents imported torch'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True).stdout
    rows = [line.split("  ")[0].strip() for line in out.splitlines()]
    assert rows == ["policy:NAME", "kvgym train imitation", "kvgym train ppo", "kvgym train serving"]  # no zoo here
    assert "Belady imitation with DAgger" in out
