"""A registry of named public traces, fetched on demand into a local data directory.

Each :class:`Dataset` records where the raw file lives in its public repository, its sha256,
license, file format and the kvgym importer that reads it. :func:`fetch` resolves a name (or a
local file path, always accepted instead of a name) to a file on disk:

- data directory: ``$KVGYM_DATA_DIR`` if set, else ``$XDG_CACHE_HOME/kvgym``, else
  ``~/.cache/kvgym``; dataset ``NAME`` is stored as ``<data dir>/NAME/<file name>``.
- a file already there is verified against the registry's sha256 and used as is;
- otherwise it is downloaded (temporary file, sha256 check, then an atomic rename);
- offline (the download fails, or ``KVGYM_OFFLINE=1``), :class:`DatasetError` says where to
  put the file by hand and which sha256 it must have.

Where the registry has no sha256 for a file (``sha256=None``), the first fetch records the
digest it saw in ``<file>.sha256`` beside it (trust on first use) and later fetches check
against that record.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from kvgym.errors import TraceError, unknown_name
from kvgym.files import atomic_write, write_text

OFFLINE_ENV = "KVGYM_OFFLINE"
DATA_DIR_ENV = "KVGYM_DATA_DIR"


class DatasetError(TraceError):
    """A dataset cannot be fetched or fails its checksum. The message says what to do."""


@dataclass(frozen=True)
class Dataset:
    """One named public trace.

    Attributes:
        name: registry key (``kvgym trace fetch NAME``).
        url: URL of the raw file in its public repository.
        sha256: hex digest of the file, or ``None`` when not yet known (recorded at first fetch).
        license: the file's license (SPDX id).
        format: file format (``mooncake-jsonl``).
        importer: kvgym importer for the format (``kvgym trace import --format``).
        source: repository and path, for citation.
        description: what the trace is.
    """

    name: str
    url: str
    sha256: str | None
    license: str
    format: str
    importer: str
    source: str
    description: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def to_dict(self) -> dict:
        return asdict(self)


_MOONCAKE_RAW = "https://raw.githubusercontent.com/kvcache-ai/Mooncake/main/FAST25-release/"


def _mooncake(name: str, rel: str, sha256: str | None, description: str) -> Dataset:
    return Dataset(name=name, url=_MOONCAKE_RAW + rel, sha256=sha256, license="Apache-2.0",
                   format="mooncake-jsonl", importer="mooncake",
                   source=f"github.com/kvcache-ai/Mooncake FAST25-release/{rel}", description=description)


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        _mooncake("mooncake-synthetic", "traces/synthetic_trace.jsonl",
                  "bd070915a98fc0ed264d7cfef2ce746002eb3076a695ec31ba2674c0111ec131",
                  "Mooncake FAST'25 synthetic trace: 3,993 requests, 512-token prefix blocks"),
        _mooncake("mooncake-conversation", "traces/conversation_trace.jsonl", None,
                  "Mooncake FAST'25 conversation trace (multi-turn chat), 512-token prefix blocks"),
        _mooncake("mooncake-toolagent", "traces/toolagent_trace.jsonl", None,
                  "Mooncake FAST'25 tool & agent trace, 512-token prefix blocks"),
        _mooncake("mooncake-arxiv", "arxiv-trace/mooncake_trace.jsonl", None,
                  "Mooncake arXiv technical-report trace (kimi production sample), 512-token prefix blocks"),
    )
}


def dataset(name: str) -> Dataset:
    """A registered dataset by name."""
    if name not in DATASETS:
        raise unknown_name("dataset", name, DATASETS)
    return DATASETS[name]


def data_dir() -> Path:
    """Where fetched datasets live (see the module docstring)."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "kvgym"
    return Path.home() / ".cache" / "kvgym"


def local_path(name: str, root: str | Path | None = None) -> Path:
    """Where dataset ``name`` is (or would be) stored."""
    d = dataset(name)
    return Path(root if root is not None else data_dir()) / d.name / d.filename


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _expected_sha(d: Dataset, dest: Path) -> str | None:
    if d.sha256:
        return d.sha256
    rec = dest.with_name(dest.name + ".sha256")
    return rec.read_text().split()[0] if rec.exists() and rec.read_text().strip() else None


def _record_sha(dest: Path, digest: str) -> None:
    write_text(dest.with_name(dest.name + ".sha256"), f"{digest}  {dest.name}\n")


def _verify(d: Dataset, path: Path, dest: Path) -> str:
    digest = sha256_file(path)
    want = _expected_sha(d, dest)
    if want is not None and digest != want:
        raise DatasetError(f"dataset {d.name!r}: {path} has sha256 {digest}, expected {want} "
                           f"(a different or corrupt file; delete it and fetch again)")
    return digest


def _install(d: Dataset, src: Path, dest: Path) -> Path:
    """Verify ``src`` and copy it atomically to ``dest``; record its digest when none is known."""
    digest = _verify(d, src, dest)
    atomic_write(dest, lambda tmp: shutil.copyfile(src, tmp), f"dataset {d.name!r}")
    if _expected_sha(d, dest) is None:
        _record_sha(dest, digest)
    return dest


def _by_hand(d: Dataset, dest: Path, why: str) -> DatasetError:
    sha = d.sha256 or "not yet known (recorded at first fetch)"
    return DatasetError(f"dataset {d.name!r}: cannot download {d.url} ({why}). Offline? Download it elsewhere "
                        f"and put it at {dest} (or pass --from FILE, or the file's path instead of the name); "
                        f"expected sha256: {sha}")


def fetch(name_or_path: str | Path, *, root: str | Path | None = None, source: str | Path | None = None,
          urlopen: Callable | None = None, timeout_s: float = 60.0) -> Path:
    """Resolve a dataset name or a local file path to a verified file on disk.

    Args:
        name_or_path: a registry name, or the path of an existing file (returned as is).
        root: data directory (default :func:`data_dir`).
        source: a local copy of the dataset to verify and install instead of downloading.
        urlopen: the opener used to download (``urllib.request.urlopen`` by default; tests
            inject a fake one, since there is no network in tests).
        timeout_s: network timeout, seconds.
    """
    p = Path(name_or_path)
    if str(name_or_path) not in DATASETS:
        if p.is_file():
            return p
        if os.sep in str(name_or_path) or p.suffix:
            raise DatasetError(f"{p}: no such file (and not a dataset name; valid: {', '.join(sorted(DATASETS))})")
    d = dataset(str(name_or_path))
    dest = local_path(d.name, root)
    if source is not None:
        src = Path(source)
        if not src.is_file():
            raise DatasetError(f"dataset {d.name!r}: --from {src}: no such file")
        return _install(d, src, dest)
    if dest.exists():
        digest = _verify(d, dest, dest)
        if _expected_sha(d, dest) is None:
            _record_sha(dest, digest)
        return dest
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        raise _by_hand(d, dest, f"{OFFLINE_ENV} is set")
    opener = urlopen or urllib.request.urlopen
    got = {}

    def download(tmp: Path) -> None:
        with tmp.open("wb") as out:
            try:
                with opener(d.url, timeout=timeout_s) as resp:
                    shutil.copyfileobj(resp, out, 1 << 20)
            except (urllib.error.URLError, OSError, ValueError) as e:
                raise _by_hand(d, dest, f"{type(e).__name__}: {getattr(e, 'reason', e)}") from None
        got["digest"] = _verify(d, tmp, dest)

    atomic_write(dest, download, f"dataset {d.name!r}")
    digest = got["digest"]
    if _expected_sha(d, dest) is None:
        _record_sha(dest, digest)
    return dest


def import_dataset(name_or_path: str | Path, *, format: str | None = None, root: str | Path | None = None, **kw):
    """Fetch (if needed) and import a dataset with its registered importer.

    A local path needs ``format`` unless it ends in ``.jsonl`` (taken as Mooncake JSON Lines).
    Keyword arguments go to the importer.
    """
    path = fetch(name_or_path, root=root)
    fmt = format or (dataset(str(name_or_path)).importer if str(name_or_path) in DATASETS else None)
    if fmt is None and path.suffix == ".jsonl":
        fmt = "mooncake"
    if fmt in ("mooncake", "mooncake-jsonl"):
        from kvgym.traces.mooncake import import_mooncake
        return import_mooncake(path, **kw)
    raise DatasetError(f"{path}: unknown trace format {fmt!r}; valid: mooncake")
