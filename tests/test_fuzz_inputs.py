"""Fuzzing the inputs a user hands kvgym (issue 16, "Must show"): Parquet trace pairs with changed
or cut bytes (both files), scenario JSON, Mooncake JSON Lines, and command-line arguments.

Every outcome must be one of two: accepted correctly (the command exits 0; a loaded trace passes
every check and simulates), or a kvgym error: exit status 2 with exactly one line on stderr that
starts ``kvgym ...: error:``, no traceback, and nothing left behind in the output folder. An
exception escaping ``kvgym.cli.main`` (a traceback) fails the test.

The default run tries a few dozen cases per campaign; ``-m slow`` runs the large campaigns
(``KVGYM_FUZZ_EXAMPLES`` sets their size, default 600). ``docs/reliability.md`` records the counts.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvgym.cli import main
from kvgym.sim import run
from kvgym.sim.catalog import get_scenario
from kvgym.traces.format import PageTable, Trace, validate
from kvgym.traces.parquet import pages_path, read_trace, write_trace

SMALL = 40
LARGE = int(os.environ.get("KVGYM_FUZZ_EXAMPLES", "600"))
OUTCOMES: dict[str, Counter] = {}


def _settings(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


def cli(argv: list[str], campaign: str) -> tuple[int, str, str]:
    """Run ``kvgym argv`` in this process; check the outcome is accepted or one error line."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse: --help, or a usage error (one line, see kvgym.cli.Parser)
            rc = e.code if isinstance(e.code, int) else 2
    lines = err.getvalue().splitlines()
    lines = [s for s in lines if s.strip()]
    if rc == 0:
        OUTCOMES.setdefault(campaign, Counter())["accepted"] += 1
    else:
        assert rc == 2, (argv, rc, err.getvalue())
        assert len(lines) == 1 and lines[0].startswith("kvgym") and ": error: " in lines[0], (argv, err.getvalue())
        assert "Traceback" not in err.getvalue()
        OUTCOMES.setdefault(campaign, Counter())["error"] += 1
    return rc, out.getvalue(), err.getvalue()


def _left(folder: Path, before: set[str]) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if str(p.relative_to(folder)) not in before)


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    for name, c in sorted(OUTCOMES.items()):
        print(f"\nfuzz {name}: {sum(c.values())} cases, {c['accepted']} accepted, {c['error']} one-line errors")


# -- Parquet mutations of both files -----------------------------------------------------------
def _pair(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    steps = np.repeat(np.arange(30), 3)
    page = rng.integers(0, 24, len(steps))
    pages = PageTable.uniform(24, 65536, layers=2)
    t = Trace(steps.astype(np.int64), page.astype(np.int64), pages, rng.random(len(steps)).astype(np.float32),
              {"generator": "fuzz", "seed": 0})
    validate(t)
    return write_trace(t, folder / "t.parquet", row_group_size=32)


@pytest.fixture(scope="module")
def pair_bytes(tmp_path_factory):
    p = _pair(tmp_path_factory.mktemp("pair"))
    return p.read_bytes(), pages_path(p).read_bytes()


mutation = st.tuples(
    st.sampled_from(["trace", "pages", "both"]),
    st.lists(st.tuples(st.floats(0, 1, allow_nan=False), st.integers(0, 255)), min_size=0, max_size=6),
    st.one_of(st.none(), st.floats(0, 1, allow_nan=False)),  # truncate to this share of the file
)


def _mutate(data: bytes, edits, cut) -> bytes:
    b = bytearray(data)
    for where, value in edits:
        b[min(int(where * len(b)), len(b) - 1)] = value
    if cut is not None:
        b = b[: int(cut * len(b))]
    return bytes(b)


def _check_pair(pair_bytes, case) -> None:
    which, edits, cut = case
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        tb, pb = pair_bytes
        (d / "t.parquet").write_bytes(_mutate(tb, edits, cut) if which in ("trace", "both") else tb)
        (d / "t.pages.parquet").write_bytes(_mutate(pb, edits, cut) if which in ("pages", "both") else pb)
        before = {p.name for p in d.iterdir()}
        rc, _, _ = cli(["run", "--trace", str(d / "t.parquet"), "--scenario", "h200_25pct_fp16_no_prefetch",
                          "--json", str(d / "m.json")], "parquet")
        if rc == 0:  # accepted: it must be a valid trace, and the run's numbers consistent
            t = read_trace(d / "t.parquet")
            validate(t)
            m = json.loads((d / "m.json").read_text())["metrics"]
            assert m["hits"] + m["misses"] == m["accesses"] == len(t)
        else:
            assert _left(d, before) == []


@pytest.mark.parametrize("n", [SMALL, pytest.param(LARGE, marks=pytest.mark.slow)])
def test_fuzz_parquet_pairs(pair_bytes, n):
    @_settings(n)
    @given(mutation)
    def case(c):
        _check_pair(pair_bytes, c)

    case()


# -- scenario JSON ------------------------------------------------------------------------------
FIELDS = ["name", "profile", "capacities", "cost_model", "quantization", "decode", "prefetch", "max_prefetch",
          "backing_tier", "lower_policy", "first_touch", "description"]
odd_numbers = st.sampled_from([0, -1, 1, 2, 3, 4, 0.5, 1.0, 2**63, 2**63 - 1, -(2**63), 2**70, True, False, None])
odd_strings = st.sampled_from(["", "150%", "100%", "0%", "-3%", "inf%", "nan%", "1e400%", "10%", "auto:0.5",
                               "auto:2", "auto:-1", "auto:nan", "3 pages", "0 pages", "1 page", "x", "fp16", "int4",
                               "serial", "overlap", "h200-measured", "seed-toy", "single-tier", "lru", "same",
                               "create", "backing", "parity", "calibrated", "1", "null"])
scalar = st.one_of(odd_numbers, odd_strings, st.integers(), st.floats(allow_nan=False), st.text(max_size=8))
json_value = st.recursive(scalar, lambda kids: st.one_of(st.lists(kids, max_size=5),
                                                         st.dictionaries(st.text(max_size=6), kids, max_size=3)),
                          max_leaves=12)
capacity = st.one_of(odd_numbers, odd_strings)
scenario_doc = st.one_of(
    st.fixed_dictionaries({}, optional={f: (st.lists(capacity, max_size=5) if f == "capacities" else
                                            st.one_of(scalar, json_value)) for f in FIELDS}),
    st.builds(lambda base, extra: {**base, **extra},
              st.just(get_scenario("h200_25pct_fp16_no_prefetch").to_dict()),
              st.dictionaries(st.sampled_from(FIELDS + ["nope", "Capacities"]), st.one_of(scalar, json_value,
                                                                                         st.lists(capacity, max_size=5)),
                              max_size=3)),
    json_value,
)
raw_file = st.one_of(
    scenario_doc.map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=64),
    st.integers(1, 50_000).map(lambda n: b"[" * n + b"]" * n),
    st.just(b'{"name": "x", "max_prefetch": NaN}'),
    st.just(b'\xff\xfe{"name": "x"}'),
    st.just(b'{"capacities": [' + b"9" * 5000 + b', null, null, null]}'),
)


@pytest.fixture(scope="module")
def tiny_trace(tmp_path_factory):
    return str(_pair(tmp_path_factory.mktemp("tiny")))


def _check_scenario(tiny_trace, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "s.json"
        f.write_bytes(data)
        before = {p.name for p in Path(d).iterdir()}
        rc, _, _ = cli(["run", "--trace", tiny_trace, "--scenario", str(f), "--json", str(Path(d) / "m.json")],
                         "scenario")
        if rc != 0:
            assert _left(Path(d), before) == []


@pytest.mark.parametrize("n", [SMALL * 2, pytest.param(LARGE, marks=pytest.mark.slow)])
def test_fuzz_scenario_json(tiny_trace, n):
    @_settings(n)
    @given(raw_file)
    def case(c):
        _check_scenario(tiny_trace, c)

    case()


# -- Mooncake lines -----------------------------------------------------------------------------
def _line(ts, n_in, ids, n_out=1):
    return json.dumps({"timestamp": ts, "input_length": n_in, "output_length": n_out, "hash_ids": ids})


good_line = st.builds(lambda ts, blocks, first: _line(ts, blocks * 512 - 3, list(range(first, first + blocks))),
                      st.integers(0, 10**6), st.integers(1, 4), st.integers(0, 50))
bad_line = st.one_of(
    st.builds(_line, st.one_of(scalar, st.just(-1)), st.one_of(scalar, st.just(1024)),
              st.one_of(st.lists(st.one_of(st.integers(-5, 2**64), scalar), max_size=4), scalar)),
    st.text(max_size=40), json_value.map(json.dumps),
    st.binary(max_size=30).map(lambda b: b.decode("latin-1")),
)
mooncake_file = st.lists(st.one_of(good_line, good_line, bad_line), min_size=0, max_size=8)


def _check_mooncake(lines) -> None:
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "in.jsonl").write_bytes(("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"))
        before = {p.name for p in d.iterdir()}
        rc, _, _ = cli(["trace", "import", str(d / "in.jsonl"), "-o", str(d / "out.parquet"),
                        "--geometry", "stories260k"], "mooncake")
        if rc == 0:
            t = read_trace(d / "out.parquet")
            validate(t)
            run(t, get_scenario("default"), "lru")
        else:
            assert _left(d, before) == []


@pytest.mark.parametrize("n", [SMALL, pytest.param(LARGE, marks=pytest.mark.slow)])
def test_fuzz_mooncake_lines(n):
    @_settings(n)
    @given(mooncake_file)
    def case(c):
        _check_mooncake(c)

    case()


# -- command-line arguments ---------------------------------------------------------------------
VALUES = ["", "-1", "0", "1", "2", "nan", "inf", "1e400", "[1]", "150%", "x", "lru", "bogus", "sequential",
          "capacities=5", "capacities=150%", "profile=[1]", "backing_tier=0", "max_prefetch=false", "prefetch=true",
          "capacities=[\"auto:0.5\",null,null,null]", "regret_weight=nan", "window_size=3", "k=2", "DIR", "FILE",
          "FILE/x.json", "OUT.json", "TRACE", "periodic_reuse", "periodic_reuse(length=40)", "default",
          "h200_10pct_fp16_no_prefetch", "small_fp16_prefetch", "seed-toy", "12"]
FLAGS = {
    "run": ["--trace", "--seed", "--scenario", "--set", "--policy", "--prefetcher", "--engine", "--json"],
    "trace stats": ["--plot", "--json", "--reuse-limit", "--heat-layer", "--topk"],
    "trace gen": ["-o", "--seed"],
    "oracle": ["--scenario", "--seed", "--out", "--lp-max", "--fetch-time"],
    "regret": ["--policy", "--policies", "--trace", "--traces", "--scenario", "--seed", "--window", "--top", "--out"],
    "scenarios": ["--group"],
}
POSITIONAL = {"trace stats": ["TRACE"], "trace gen": ["periodic_reuse"], "oracle": ["TRACE"]}
argv_case = st.sampled_from(sorted(FLAGS)).flatmap(lambda cmd: st.tuples(
    st.just(cmd), st.lists(st.tuples(st.sampled_from(FLAGS[cmd]), st.sampled_from(VALUES)), max_size=4),
    st.booleans()))


def _check_argv(case, trace: str) -> None:
    cmd, pairs, positional = case
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "DIR").mkdir()
        (d / "FILE").write_text("keep")
        sub = {"DIR": str(d / "DIR"), "FILE": str(d / "FILE"), "FILE/x.json": str(d / "FILE" / "x.json"),
               "OUT.json": str(d / "OUT.json"), "TRACE": trace}
        argv = cmd.split()
        if positional:
            argv += [sub.get(v, v) for v in POSITIONAL.get(cmd, [])]
        for flag, v in pairs:
            argv += [flag, sub.get(v, v)]
        if cmd == "trace gen" and "-o" not in argv:
            argv += ["-o", str(d / "g.parquet")]
        if cmd in ("oracle", "regret") and "--out" not in argv:
            argv += ["--out", str(d / "o")]
        if cmd == "regret" and "--trace" not in argv:
            argv += ["--trace", trace]
        if cmd == "regret" and "--policy" not in argv:
            argv += ["--policy", "lru"]
        before = {str(p.relative_to(d)) for p in d.rglob("*")}
        with contextlib.chdir(d):  # relative output paths land in the case's own folder
            rc, _, _ = cli(argv, "cli")
        if rc != 0:  # refused: nothing new, and the user's file untouched (a command may overwrite it when it succeeds)
            assert _left(d, before) == [], argv
            assert (d / "FILE").read_bytes() == b"keep", argv


@pytest.mark.parametrize("n", [SMALL * 2, pytest.param(LARGE, marks=pytest.mark.slow)])
def test_fuzz_cli_arguments(tiny_trace, n):
    @_settings(n)
    @given(argv_case)
    def case(c):
        _check_argv(c, tiny_trace)

    case()


def test_the_checker_fails_on_a_traceback(monkeypatch):
    # An exception escaping main() (a traceback for a user) must fail a campaign, not pass as an error.
    import kvgym.commands.scenarios as sc

    monkeypatch.setattr(sc, "_cmd", lambda args: int("boom"))
    with pytest.raises(ValueError, match="boom"):
        cli(["scenarios"], "self-check")
    OUTCOMES.pop("self-check", None)
