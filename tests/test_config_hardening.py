"""Scenarios, settings and the command line (issue 16, defects 3, 8 and 9, scenario and CLI cases;
issue 17's sizing help; issue 12's single resolver and default): every bad value is one line
naming the field and what is valid, capacity forms resolve to exact bytes, and every command
finds its scenario the same way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kvgym.cli import main
from kvgym.errors import ConfigError, SimulationError
from kvgym.sim import run
from kvgym.sim.catalog import DEFAULT_NAME, default_scenario, resolve_scenario
from kvgym.sim.scenario import Scenario, tier0_range
from kvgym.traces.format import PageTable, Trace
from kvgym.traces.parquet import pages_path, write_trace

ROOT = Path(__file__).resolve().parent.parent


def _one_line(argv, capsys) -> str:
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse usage errors (one line too: kvgym.cli.Parser)
        rc = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, (rc, err)
    return err[0]


# -- the scenario validator ---------------------------------------------------------------------
@pytest.mark.parametrize("field,value,message", [
    ("backing_tier", 0, r"backing_tier=0 is invalid; valid: an int in \[1, 3\] or \[-3, -1\]"),
    ("backing_tier", -4, r"backing_tier=-4 is invalid"),
    ("backing_tier", True, r"backing_tier=True is invalid"),
    ("backing_tier", "1", r"backing_tier='1' is invalid"),
    ("backing_tier", None, r"backing_tier=None is invalid"),
    ("backing_tier", 0.5, r"backing_tier=0.5 is invalid"),
    ("max_prefetch", False, r"max_prefetch=False must be an int; valid: 0 <= max_prefetch <= 1048576"),
    ("max_prefetch", -1, r"max_prefetch=-1 is out of range"),
    ("prefetch", 1, r"prefetch=1 is invalid; valid: true or false"),
    ("capacities", "", r"capacities='' is invalid; valid: a list of 4 entries"),
    ("capacities", {}, r"capacities=\{\} is invalid; valid: a list of 4 entries"),
    ("capacities", 5, r"capacities=5 is invalid"),
    ("capacities", None, r"capacities=None is invalid"),
    ("capacities", 1.5, r"capacities=1.5 is invalid"),
    ("capacities", True, r"capacities=True is invalid"),
    ("capacities", "150%", r"capacities='150%' is invalid"),
    ("capacities", ["150%", None, None, None], r"capacities\[0\]='150%' is invalid; valid: 'N%' with 0 < N <= 100"),
    ("capacities", ["inf%", None, None, None], r"capacities\[0\]='inf%' is invalid"),
    ("capacities", ["1e400%", None, None, None], r"capacities\[0\]='1e400%' is invalid"),
    ("capacities", ["nan%", None, None, None], r"capacities\[0\]='nan%' is invalid"),
    ("capacities", [2**63, None, None, None], r"capacities\[0\]=9223372036854775808 is invalid; valid: an int of bytes"),
    ("capacities", [1.5, None, None, None], r"capacities\[0\]=1.5 is invalid"),
    ("capacities", [True, None, None, None], r"capacities\[0\]=True is invalid"),
    ("capacities", ["auto:1.5", None, None, None], r"valid: 'auto:F' with 0 <= F <= 1"),
    ("capacities", ["0 pages", None, None, None], r"valid: 'N pages' with N an int >= 1"),
    ("capacities", [1, 2], r"capacities=\(1, 2\) is invalid; valid: a list of 4 entries, one per tier"),
    ("profile", [1], r"profile=\[1\] is invalid; valid: one of seed-toy, h200-measured"),
    ("quantization", ["fp16"], r"quantization=\['fp16'\] is invalid; valid: one of fp16, fp8, int4, int2"),
    ("cost_model", "magic", r"cost_model='magic' is invalid; valid: one of serial, overlap"),
    ("name", 3, r"scenario: name=3 is invalid; valid: a string"),
])
def test_every_bad_field_is_one_line(field, value, message):
    d = {**default_scenario().to_dict(), field: value}
    with pytest.raises(ConfigError, match=message) as e:
        Scenario.from_dict(d)
    assert "\n" not in str(e.value)


def test_the_backing_tier_is_never_tier_0_of_any_profile():
    for profile, n in (("seed-toy", 4), ("single-tier", 2)):
        assert Scenario(profile=profile, backing_tier=-1).backing_tier == -1
        for b in (0, -n, n):
            with pytest.raises(ConfigError, match="backing_tier"):
                Scenario(profile=profile, backing_tier=b)


def test_unknown_keys_name_the_valid_ones():
    with pytest.raises(ConfigError, match=r"scenario: unknown keys \['Capacities'\]; valid: name, profile, capacities"):
        Scenario.from_dict({"Capacities": []})
    with pytest.raises(ConfigError, match="expected a table of scenario fields, got list"):
        Scenario.from_dict([1])


@pytest.mark.parametrize("data,message", [
    (b'{"name": "x", "max_prefetch": NaN}', "not valid JSON (NaN is not valid JSON)"),
    (b"\xff\xfe{}", "not UTF-8 text (bad byte at offset 0)"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON (nested too deeply)"),
    (b'{"capacities": [' + b"9" * 5000 + b"]}", "not valid JSON (Exceeds the limit"),
    (b"{", "not valid JSON (line 1, column 2"),
    (b"[1, 2]", "expected a JSON object of scenario fields, got list"),
    (b'{"backing_tier": 0}', "backing_tier=0 is invalid"),
])
def test_scenario_files_fail_as_one_line(tmp_path, capsys, data, message):
    f = tmp_path / "s.json"
    f.write_bytes(data)
    line = _one_line(["run", "--trace", "periodic_reuse", "--scenario", str(f)], capsys)
    assert line.startswith(f"kvgym run: error: scenario file {f}: ") and message in line


# -- capacity forms and the feasible range --------------------------------------------------------
def _sized_trace() -> Trace:
    # Nine pages of 1000 bytes and one of 1500 (10,500 bytes in all); the trace touches pages 0..5
    # only. Step 1 pins three distinct pages (page 2 twice): the feasible minimum is 3000 bytes, the
    # footprint 6000.
    fp16 = np.array([1000] * 9 + [1500], np.int64)
    pages = PageTable(np.zeros(10, np.int32), np.zeros(10, np.int32), np.arange(10) * 16, np.arange(10) * 16 + 16,
                      fp16)
    step = np.array([0, 1, 1, 1, 1, 2, 3, 4], np.int64)
    page = np.array([0, 1, 2, 2, 3, 4, 5, 0], np.int64)
    return Trace.from_pages(page, pages, steps=step)


@pytest.mark.parametrize("spec,bytes_", [
    (12345, 12345), ("50%", 5250), ("100%", 10500), ("auto:0", 3000), ("auto:1", 6000), ("auto:0.5", 4500),
    ("auto:0.25", 3750), ("2 pages", 3000), ("1 page", 1500), (None, 1 << 30),
])
def test_capacity_forms_resolve_to_exact_bytes(spec, bytes_):
    t = _sized_trace()
    scen = Scenario(profile="single-tier", capacities=(spec, None))
    assert scen.build(t.pages, [(t.step, t.page)]).tiers[0].capacity_bytes == bytes_


def test_feasible_range_spans_chunks_and_auto_needs_the_accesses():
    t = _sized_trace()
    size = t.pages.fp16_bytes
    assert tier0_range(size, [(t.step, t.page)]) == (3000, 6000)
    chunks = [(t.step[i:i + 2], t.page[i:i + 2]) for i in range(0, len(t), 2)]  # step 1 spans three chunks
    assert tier0_range(size, chunks) == (3000, 6000)
    with pytest.raises(ConfigError, match="an 'auto:F' capacity is sized from the trace's accesses"):
        Scenario(profile="single-tier", capacities=("auto:0.5", None)).build(t.pages)


def test_an_infeasible_capacity_suggests_the_range(tmp_path):
    t = _sized_trace()
    with pytest.raises(SimulationError, match=r"step 1 needs 3000 bytes .* holds \(2999 bytes\); feasible tier-0 "
                                              r"capacities for this trace: 3000 bytes .*'auto:0'\) to 6000 bytes"):
        run(t, Scenario(profile="single-tier", capacities=(2999, None)), "lru")
    m = run(t, Scenario(profile="single-tier", capacities=("auto:0", None)), "lru")
    assert m.accesses == 8 and m.evictions[0] > 0


def test_trace_stats_prints_the_feasible_range(tmp_path, capsys):
    p = write_trace(_sized_trace(), tmp_path / "s.parquet")
    assert main(["trace", "stats", str(p)]) == 0
    out = capsys.readouterr().out
    assert "feasible tier-0 capacity (auto:0 .. auto:1;" in out and "fp16 3,000 .. 6,000 bytes | fp8 1,500" in out
    assert "page table (the base of 'N%' capacities): fp16 10.25 KiB" in out


# -- one resolver, one default --------------------------------------------------------------------
def test_every_command_uses_the_one_default(capsys, tmp_path):
    from kvgym.commands import eval as eval_cmd
    from kvgym.envs.evict import DEFAULT_SCENARIO

    d = default_scenario()
    assert resolve_scenario(None) is d is resolve_scenario(DEFAULT_NAME) and DEFAULT_SCENARIO is d
    assert d.capacities == ("auto:0.5", None, None, None) and d.first_touch == "create"
    assert "DEFAULT_NAME" in Path(eval_cmd.__file__).read_text()
    assert main(["run", "--trace", "streaming"]) == 0
    run_out = capsys.readouterr().out
    assert run_out.startswith("scenario default (h200-measured, overlap, fp16, prefetch off) | trace streaming")
    assert main(["oracle", "streaming", "--out", str(tmp_path / "o")]) == 0
    oracle_out = capsys.readouterr().out
    from kvgym.workloads import make_trace

    t = make_trace("streaming", seed=0)
    cap = d.build(t.pages, [(t.step, t.page)]).tiers[0].capacity_bytes
    assert f"scenario default: profile h200-measured, overlap costs, prefetch off; tier 0 holds " \
           f"{cap // int(t.pages.fp16_bytes[0])} pages" in oracle_out


def test_resolver_inputs():
    scen = resolve_scenario("h200_10pct_fp16_no_prefetch", {"cost_model": "serial"})
    assert scen.cost_model == "serial" and scen.name == "h200_10pct_fp16_no_prefetch"
    assert resolve_scenario(scen.to_dict()) == scen
    with pytest.raises(ConfigError, match="unknown scenario 'nope'; valid: default, small_fp16_prefetch"):
        resolve_scenario("nope")
    with pytest.raises(ConfigError, match="scenario: an empty name"):
        resolve_scenario("")
    with pytest.raises(ConfigError, match="expected a name, a .json file, a table of fields or a Scenario, got int"):
        resolve_scenario(3)


# -- the command line -----------------------------------------------------------------------------
@pytest.mark.parametrize("argv,message", [
    (["run", "--set", "capacities=5"], "kvgym run: error: scenario 'default': capacities=5 is invalid"),
    (["run", "--set", "profile=[1]"], "kvgym run: error: scenario 'default': profile=[1] is invalid"),
    (["run", "--set", "capacities=150%"], "kvgym run: error: scenario 'default': capacities='150%' is invalid"),
    (["run", "--set", "backing_tier=0"], "kvgym run: error: scenario 'default': backing_tier=0 is invalid"),
    (["run", "--trace", ""], "kvgym run: error: --trace: an empty name"),
    (["run", "--prefetcher", "bogus"], "kvgym run: error: unknown prefetcher 'bogus'; valid: markov, none"),
    (["run", "--policy", "lru(x=1)"], "kvgym run: error: policy 'lru': unknown parameters ['x']"),
    (["run", "--seed", "x"], "kvgym run: error: argument --seed: invalid int value: 'x' (see kvgym run --help)"),
    (["oracle", "periodic_reuse", "--lp-max", "-1"], "kvgym oracle: error: oracle: --lp-max=-1 is out of range"),
    (["regret", "--policy", "lru", "--trace", "periodic_reuse", "--top", "-1"],
     "kvgym regret: error: regret: --top=-1 is out of range"),
    (["trace", "stats", ""], "kvgym trace stats: error: trace: an empty path"),
])
def test_bad_arguments_are_one_line(argv, message, capsys):
    assert _one_line(argv, capsys).startswith(message)


def test_output_paths_that_cannot_be_written_leave_nothing(tmp_path, capsys):
    d = tmp_path / "D"
    d.mkdir()
    f = tmp_path / "F"
    f.write_text("keep")
    cases = [
        (["run", "--trace", "periodic_reuse", "--json", str(d)], f"--json {d}: is a folder; give a file path"),
        (["run", "--trace", "periodic_reuse", "--json", str(f / "x.json")], f"{f} is a file, not a folder"),
        (["trace", "gen", "periodic_reuse", "-o", str(d)], f"output {d}: is a folder; give a file path"),
        (["eval", "--json", str(d)], f"--json {d}: is a folder"),
        (["oracle", "periodic_reuse", "--out", str(f)], f"--out {f}: {f} is a file, not a folder"),
        (["sweep", "--workloads", "periodic_reuse", "--policies", "lru", "--backend", "serial", "--quiet",
          "--out", str(f)], f"sweep output {f}: is a file; --out names a folder"),
        (["run", "--trace", "periodic_reuse", "--json", "/proc/kvgym-test/m.json"], "/proc/kvgym-test"),
    ]
    for argv, message in cases:
        assert message in _one_line(argv, capsys), argv
        assert sorted(p.name for p in tmp_path.rglob("*")) == ["D", "F"] and f.read_text() == "keep"
    assert not pages_path(d).exists()


def test_a_closed_pipe_ends_quietly():
    proc = subprocess.Popen([sys.executable, "-m", "kvgym.cli", "scenarios"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT)
    proc.stdout.close()  # the reader is gone before kvgym writes a byte (`kvgym ... | head -0`)
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 141 and err == ""


def test_sweep_settings_are_checked(tmp_path):
    from kvgym.bench.config import SweepConfig

    for kw, message in (({"ray_task_cpus": 0}, "ray_task_cpus=0 is out of range"),
                        ({"ray_retries": -1}, "ray_retries=-1 is out of range"),
                        ({"workers": True}, "workers=True must be an int"),
                        ({"plots": "yes"}, "plots='yes' is invalid; valid: true or false"),
                        ({"out": ""}, "out='' is invalid; valid: a non-empty string")):
        with pytest.raises(ConfigError, match=message):
            SweepConfig(**kw)
    assert json.loads(json.dumps(SweepConfig().to_dict()))["trust_pickle"] is False
