"""The harness commands end to end: --help, config and --set, the artifacts, and one-line errors."""

from __future__ import annotations

import json

import pytest
from _bench_helpers import tiny_traces

from kvgym.cli import main

COMMANDS = ["scenarios", "sweep", "eval", "plot", "leaderboard", "ablate", "demo", "findings"]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert "usage: kvgym " + cmd in capsys.readouterr().out


def test_scenarios_lists_every_scenario(capsys):
    assert main(["scenarios"]) == 0
    out = capsys.readouterr().out
    assert "small_fp16_prefetch" in out and "h200_25pct_int4_prefetch" in out and "24 scenarios" in out
    assert main(["scenarios", "--group", "parity", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows][:2] == ["small_fp16_prefetch", "small_fp16_no_prefetch"]


def test_sweep_artifacts_then_plot_and_leaderboard(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    traces = tiny_traces(tmp_path, n=1)
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'scenarios = ["h200_10pct_fp16_prefetch"]\nworkloads = []\ntraces = ["{traces[0]}"]\n'
                   'policies = ["lru", "predictive"]\nprefetcher = "sequential"\n')
    assert main(["sweep", "--config", str(cfg), "--set", "backend=serial", "--set", "out=res", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Overall" in out and "wrote res/" in out
    for name in ("results.csv", "results.parquet", "summary.json", "leaderboard.md", "manifest.json"):
        assert (tmp_path / "res" / name).is_file()
    man = json.loads((tmp_path / "res" / "manifest.json").read_text())
    assert man["kvgym_version"] and len(man["config_hash"]) == 16 and man["cells"] == 3
    assert {"numpy", "pandas", "python"} <= set(man["packages"]) and man["machine"]["cpus"] >= 1
    for p in ("hit_rate.png", "latency_vs_bytes.png", "tier_hits.png", "prefetch.png", "stall.png"):
        assert (tmp_path / "res" / "plots" / p).stat().st_size > 1000
    (tmp_path / "res" / "leaderboard.md").unlink()
    assert main(["leaderboard", "res", "--top", "1"]) == 0
    assert "Top 1 per scenario" in capsys.readouterr().out
    assert (tmp_path / "res" / "leaderboard.md").is_file()
    assert main(["plot", "res", "--out", "again"]) == 0
    assert (tmp_path / "again" / "plots" / "stall.png").is_file()


def test_eval_prints_metrics(capsys):
    assert main(["eval", "--policy", "lru,regret_aware", "--scenario", "small_fp16_prefetch", "--workload", "rag_burst",
                 "--seeds", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["scenario", "source", "policy", "seed"]
    assert [line.split()[2] for line in out[1:3]] == ["lru", "regret_aware"]


def test_ablate_small_grid(tmp_path, capsys):
    assert main(["ablate", "regret_aware", "--grid", "regret_weight=1,12", "--seeds", "1,2", "--scenarios",
                 "small_fp16_prefetch", "--workloads", "rag_burst", "--backend", "serial", "--out", str(tmp_path),
                 "--quiet"]) == 0
    d = tmp_path / "regret_aware"
    agg = json.loads((d / "ablation.json").read_text())
    assert [v["policy"] for v in agg["variants"]] == ["regret_aware(regret_weight=1)", "regret_aware(regret_weight=12)", "lru"]
    lat = agg["variants"][0]["overall"]["latency_ms"]
    assert lat["seeds"] == 2 and lat["std"] >= 0
    assert " ± " in (d / "ablation.md").read_text()
    for p in ("latency_vs_regret_weight.png", "hit_rate_vs_regret_weight.png", "latency_vs_bytes.png"):
        assert (d / "plots" / p).is_file()


@pytest.mark.parametrize("argv, msg", [
    (["sweep", "--policies", "nope", "--backend", "serial"], "unknown policy 'nope'; valid:"),
    (["sweep", "--set", "bogus=1"], "unknown key 'bogus'; valid:"),
    (["eval", "--scenario", "nope"], "unknown scenario 'nope'; valid:"),
    (["ablate", "regret_aware"], "give a grid"),
    (["ablate", "regret_aware", "--grid", "nope=1,2", "--backend", "serial", "--scenarios", "small_fp16_prefetch",
      "--workloads", "rag_burst"], "policy 'regret_aware'"),
    (["leaderboard", "no_such_dir"], "no summary here"),
    (["scenarios", "--group", "nope"], "unknown scenario group 'nope'"),
])
def test_errors_are_one_line(argv, msg, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0], err
