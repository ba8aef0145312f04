"""Reading JSON input and writing output files safely: the one place kvgym creates files.

Every file is written to a temporary file in its own folder, then renamed into place with
``os.replace``, so a reader sees either the old file or the complete new one, never a partial
one. The temporary is named ``.NAME.<random>.kvgym-tmp``: a writer killed with SIGKILL leaves at
most such a file, which :func:`remove_temporaries` recognises by name (and nothing else).

An output path that cannot be written (a directory, a folder that is a file, a read-only or
missing location, a full disk) raises :class:`~kvgym.errors.OutputError`, one line naming the
path, and leaves nothing behind. :func:`check_output` runs the same checks up front, so a
command can refuse a bad path before it spends minutes computing.

:func:`read_json` reads a JSON input file (a scenario, a config) with every failure as one line.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from kvgym.errors import ConfigError, OutputError

TMP_SUFFIX = ".kvgym-tmp"
#: Mode of every finished file (``mkstemp`` creates 0600; artifacts are meant to be shared).
FILE_MODE = 0o644


def _why(e: OSError) -> str:
    return e.strerror or type(e).__name__


def _writable_from(text: str, start: Path, what: str) -> None:
    """The nearest existing ancestor of ``start`` (itself included) is a folder we may write into."""
    anc = start
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if anc.exists() and not anc.is_dir():
        raise OutputError(f"{what} {text}: {anc} is a file, not a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {text}: folder {anc} is not writable")


def check_output(path: str | os.PathLike, what: str = "output") -> Path:
    """``path`` as a Path if a file can be written there; else an :class:`OutputError`.

    Checks, without creating anything: the path is not an existing folder, and its nearest
    existing ancestor is a folder this process may write into.
    """
    text = os.fspath(path)
    if not str(text).strip():
        raise OutputError(f"{what}: an empty path")
    p = Path(text)
    if p.is_dir():
        raise OutputError(f"{what} {text}: is a folder; give a file path")
    _writable_from(text, p.parent, what)
    return p


def temp_path(path: Path) -> Path:
    """A new, empty temporary file beside ``path`` (its folder is created if needed)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {_why(e)}") from None
    os.close(fd)
    return Path(tmp)


def publish(tmp: Path, path: Path) -> None:
    """Give a finished temporary its final mode and rename it to ``path`` (atomic)."""
    try:
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {_why(e)}") from None


def atomic_write(path: str | os.PathLike, save: Callable[[Path], None], what: str = "output") -> Path:
    """Write ``path`` atomically: ``save(tmp)`` fills a temporary file, which is then renamed.

    On any error the temporary is removed and ``path`` is left as it was; an ``OSError`` becomes
    an :class:`OutputError` naming ``path``.
    """
    path = check_output(path, what)
    tmp = temp_path(path)
    try:
        save(tmp)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{what} {path}: cannot write ({_why(e)})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    publish(tmp, path)
    return path


def write_bytes(path: str | os.PathLike, data: bytes, what: str = "output") -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), what)


def write_text(path: str | os.PathLike, text: str, what: str = "output") -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), what)


def write_json(path: str | os.PathLike, obj, *, indent: int | None = 2, what: str = "output") -> Path:
    """``obj`` as sorted-key JSON plus a final newline (deterministic bytes for equal objects)."""
    return write_text(path, json.dumps(obj, indent=indent, sort_keys=True) + "\n", what)


def temporary_of(name: str) -> str | None:
    """The final file name whose temporary ``name`` is (``.FINAL.<random>.kvgym-tmp``), else None."""
    if not (name.startswith(".") and name.endswith(TMP_SUFFIX)):
        return None
    final, dot, rnd = name[1:-len(TMP_SUFFIX)].rpartition(".")
    return final if dot and final and rnd else None


def remove_temporaries(folder: Path, names: Iterable[str]) -> int:
    """Remove the temporaries that writes of the final file names ``names`` left in ``folder``
    (after a SIGKILL); other files, including other programs' temporaries, are kept."""
    names = set(names)
    n = 0
    if folder.is_dir():
        for f in folder.iterdir():
            if temporary_of(f.name) in names and f.is_file():
                f.unlink(missing_ok=True)
                n += 1
    return n


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def read_json(path: str | os.PathLike, what: str = "file"):
    """A JSON file's value; any problem (missing, a folder, not UTF-8, not JSON, NaN/Infinity,
    nested too deeply, an over-long number) is one :class:`ConfigError` line naming the file."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{what} {p}: not found")
    if p.is_dir():
        raise ConfigError(f"{what} {p}: is a folder, not a file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{what} {p}: cannot read ({_why(e)})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {p}: not UTF-8 text (bad byte at offset {e.start})") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{what} {p}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except RecursionError:
        raise ConfigError(f"{what} {p}: not valid JSON (nested too deeply)") from None
    except ValueError as e:  # NaN/Infinity, or an integer with too many digits
        raise ConfigError(f"{what} {p}: not valid JSON ({str(e).splitlines()[0][:120]})") from None


def check_outputs(*paths, what: str = "output") -> None:
    """:func:`check_output` for each path given (``None`` skipped), before a command does any work,
    so a bad path fails first and no earlier output of the same command is left behind."""
    for p in paths:
        if p is not None:
            check_output(p, what)


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """``path`` as a Path if files can be written into it (it may not exist yet); else one line."""
    text = os.fspath(path)
    if not str(text).strip():
        raise OutputError(f"{what}: an empty path")
    _writable_from(text, Path(text), what)
    return Path(text)
