"""Every code block of the README and ``docs/*.md`` is run (or, where marked, checked), so the docs
cannot drift from the code.

A fenced block must name its language: ``bash``/``sh`` blocks run with ``bash -eo pipefail``,
``python`` blocks in a fresh interpreter, ``toml``/``json`` blocks are parsed, ``text`` blocks (output,
diagrams) are not run. The blocks of one document run in order in one temporary folder, with the
venv's ``kvgym`` on the PATH, no network (``KVGYM_OFFLINE=1``), a private data directory, and a copy
of ``artifacts/`` where the document uses it; a block may use the files an earlier block made.

A mark in an HTML comment right before the block changes that (several marks: separate with ``;``)::

    <!-- docs: slow -->              runs only in the slow set (``-m slow``); checked otherwise
    <!-- docs: needs agents -->      needs an optional extra (named in pyproject.toml); run where it
                                     is installed (``make test`` installs it), checked otherwise
    <!-- docs: no-run REASON -->     never run here (a GPU, a model hub, an install): checked only
    <!-- docs: file NAME -->         the block is the content of file NAME (written, then parsed)

*Checked* means: bash is parsed (``bash -n``), every ``kvgym ...`` line's arguments are parsed by the
real CLI parser, every ``make TARGET`` is dry-run (``make -n``); python is compiled. So a marked block
still fails when a command, flag or target it shows no longer exists. An unmarked block must finish
within :data:`BLOCK_TIMEOUT_S`, else the test says to mark it slow.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import extra_required

from kvgym.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK_TIMEOUT_S = 90
SLOW_TIMEOUT_S = 900
RUN = {"bash", "sh", "python"}
PARSED = {"toml", "json"}
LANGS = RUN | PARSED | {"text"}
MARKS = {"slow", "needs", "no-run", "file"}
FENCE = re.compile(r"^```(.*)$")
MARK = re.compile(r"^<!--\s*docs:\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    doc: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    marks: dict = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def parse_marks(text: str, where: str) -> dict:
    marks = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, _, arg = part.partition(" ")
        assert name in MARKS, f"{where}: unknown docs mark {name!r}; valid: {', '.join(sorted(MARKS))}"
        assert name == "slow" or arg.strip(), f"{where}: docs mark {name!r} needs an argument"
        marks[name] = arg.strip()
    return marks


def blocks(doc: Path) -> list[Block]:
    lines = doc.read_text().split("\n")
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        assert j < len(lines), f"{doc.name}:{i + 1}: unclosed code block"
        prev = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        where = f"{doc.relative_to(ROOT)}:{i + 1}"
        mm = MARK.match(prev)
        out.append(Block(doc, i + 1, m.group(1).strip(), "\n".join(lines[i + 1:j]) + "\n",
                         parse_marks(mm.group(1), where) if mm else {}))
        i = j + 1
    return out


def extras() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def command_lines(code: str) -> list[str]:
    """Shell lines of a block with continuations joined and comments dropped."""
    out = []
    for line in code.replace("\\\n", " ").split("\n"):
        try:
            words = shlex.split(line, comments=True)
        except ValueError as e:
            raise AssertionError(f"cannot parse shell line {line!r}: {e}") from None
        if words:
            out.append(words)
    return out


def check_block(b: Block) -> None:
    """What a block that is not run must still pass."""
    if b.lang in ("bash", "sh"):
        r = subprocess.run(["bash", "-n"], check=False, input=b.code, capture_output=True, text=True)
        assert r.returncode == 0, f"{b.where}: bash syntax: {r.stderr}"
        for words in command_lines(b.code):
            if words[0] == "kvgym":
                try:
                    build_parser().parse_args(words[1:])
                except SystemExit as e:
                    raise AssertionError(f"{b.where}: `{shlex.join(words)}` does not parse") from e
            elif words[0] == "make":
                r = subprocess.run(["make", "-n", *words[1:]], check=False, cwd=ROOT, capture_output=True, text=True)
                assert r.returncode == 0, f"{b.where}: `{shlex.join(words)}`: {r.stderr.strip()}"
    elif b.lang == "python":
        compile(b.code, b.where, "exec")


def parse_block(b: Block) -> None:
    """A toml or json block must parse (json: one value, or JSON Lines)."""
    if b.lang == "toml":
        tomllib.loads(b.code)
    elif b.lang == "json":
        try:
            json.loads(b.code)
        except json.JSONDecodeError:
            for line in filter(str.strip, b.code.splitlines()):
                json.loads(line)


def env_for(tmp: Path) -> dict:
    env = dict(os.environ)
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", KVGYM_OFFLINE="1",
               KVGYM_DATA_DIR=str(tmp / ".kvgym-data"), MPLBACKEND="Agg", PYTHONHASHSEED="0")
    return env


def run_block(b: Block, cwd: Path, timeout: float) -> float:
    cmd = ["bash", "-eo", "pipefail", "-c", b.code] if b.lang in ("bash", "sh") else [sys.executable, "-c", b.code]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, check=False, cwd=cwd, env=env_for(cwd), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{b.where}: still running after {timeout:.0f} s; mark it `<!-- docs: slow -->`") from None
    assert r.returncode == 0, f"{b.where}: exit {r.returncode}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr, f"{b.where}: a traceback on stderr:\n{r.stderr[-3000:]}"
    return time.perf_counter() - t0


def runnable(b: Block, slow_set: bool) -> bool:
    if "no-run" in b.marks:
        return False
    if "slow" in b.marks and not slow_set:
        return False
    if "needs" in b.marks:
        from conftest import needs_extra

        mods = {"agents": ["torch", "sb3_contrib"], "hf": ["transformers", "torch"], "dev": ["pytest"],
                "ray": ["ray"], "vllm": ["vllm"]}.get(b.marks["needs"], [])
        try:
            for m in mods:
                __import__(m)
        except ImportError:
            if extra_required(b.marks["needs"]):
                needs_extra(b.marks["needs"], *mods)  # fails, naming the extra
            return False
    return True


def run_doc(doc: Path, tmp: Path, slow_set: bool) -> None:
    if "artifacts/" in doc.read_text():
        shutil.copytree(ROOT / "artifacts", tmp / "artifacts")
    for b in blocks(doc):
        if "file" in b.marks:
            (tmp / b.marks["file"]).write_text(b.code)
        if b.lang not in RUN:
            parse_block(b)
        elif runnable(b, slow_set):
            run_block(b, tmp, SLOW_TIMEOUT_S if slow_set else BLOCK_TIMEOUT_S)
        else:
            check_block(b)


def test_every_block_names_its_language_and_marks_are_valid():
    names = extras()
    n = 0
    for doc in DOCS:
        for b in blocks(doc):
            n += 1
            assert b.lang in LANGS, f"{b.where}: code block language {b.lang!r}; use one of {sorted(LANGS)}"
            if "needs" in b.marks:
                assert b.marks["needs"] in names, f"{b.where}: no optional extra {b.marks['needs']!r} in pyproject.toml"
            if b.lang == "text":
                assert not b.marks, f"{b.where}: a text block is never run; it takes no mark"
    assert n >= 25  # the README and docs/ have code; a parser that finds none is broken


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_doc_blocks(doc, tmp_path):
    run_doc(doc, tmp_path, slow_set=False)


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_doc_blocks_slow_set(doc, tmp_path):
    run_doc(doc, tmp_path, slow_set=True)


def test_checks_catch_drift(tmp_path):
    # A flag that does not exist, a target that does not exist, a python syntax error: each fails.
    for lang, code in (("bash", "kvgym run --no-such-flag\n"), ("bash", "make no-such-target\n"),
                       ("python", "print(\n")):
        with pytest.raises((AssertionError, SyntaxError)):
            check_block(Block(ROOT / "README.md", 1, lang, code, {"no-run": "test"}))
    with pytest.raises(AssertionError, match="unknown docs mark 'fast'"):
        parse_marks("fast", "x.md:1")
