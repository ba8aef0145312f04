"""A registry of named public traces, fetched on demand into a local data directory.

Each :class:`Dataset` records where the raw file lives in its public repository, its sha256,
license, file format and the kvgym importer that reads it. :func:`fetch` resolves a name (or a
local file path, always accepted instead of a name) to a file on disk:

- data directory: ``$KVGYM_DATA_DIR`` if set, else ``$XDG_CACHE_HOME/kvgym``, else
  ``~/.cache/kvgym``; dataset ``NAME`` is stored as ``<data dir>/NAME/<file name>``.
- a dataset shipped with the package (``bundled``, under ``kvgym/data/``) is verified and used
  from there, with no download;
- a file already in the data directory is verified against the registry's sha256 and used as is;
- otherwise it is downloaded (temporary file, sha256 check, then an atomic rename);
- offline (the download fails, or ``KVGYM_OFFLINE=1``), :class:`DatasetError` says where to
  put the file by hand and which sha256 it must have.

Every entry pins the sha256 of its file: no file is trusted because it was the first one
received. A dataset whose digest is not known is not registered.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from kvgym.errors import TraceError, unknown_name
from kvgym.files import atomic_write

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
        sha256: hex digest of the file (64 lowercase hex digits), checked on every use.
        license: the file's license (SPDX id).
        format: file format (``mooncake-jsonl``).
        importer: kvgym importer for the format (``kvgym trace import --format``).
        source: repository and path, for citation.
        description: what the trace is.
        size: the file's size in bytes (for the listing; the sha256 is what is checked).
        bundled: path of a copy shipped in ``kvgym/data/`` (relative to it), or ``None``.
    """

    name: str
    url: str
    sha256: str
    license: str
    format: str
    importer: str
    source: str
    description: str
    size: int
    bundled: str | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[0-9a-f]{64}", str(self.sha256)):
            raise ValueError(f"dataset {self.name!r}: sha256 must be 64 lowercase hex digits, got {self.sha256!r}")

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def to_dict(self) -> dict:
        return asdict(self)


_MOONCAKE_RAW = "https://raw.githubusercontent.com/kvcache-ai/Mooncake/main/FAST25-release/"


def _mooncake(name: str, rel: str, sha256: str, size: int, description: str, bundled: str | None = None) -> Dataset:
    return Dataset(name=name, url=_MOONCAKE_RAW + rel, sha256=sha256, license="Apache-2.0",
                   format="mooncake-jsonl", importer="mooncake",
                   source=f"github.com/kvcache-ai/Mooncake FAST25-release/{rel}", description=description,
                   size=size, bundled=bundled)


# Mooncake's tool & agent trace and its arXiv trace are not registered: their digests have not been
# checked yet. Add an entry only with the sha256 and size of a verified copy.
DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        _mooncake("mooncake-synthetic", "traces/synthetic_trace.jsonl",
                  "bd070915a98fc0ed264d7cfef2ce746002eb3076a695ec31ba2674c0111ec131", 1_136_313,
                  "Mooncake FAST'25 synthetic trace: 3,993 requests, 512-token prefix blocks",
                  bundled="traces/mooncake_fast25_synthetic_trace.jsonl"),
        _mooncake("mooncake-conversation", "traces/conversation_trace.jsonl",
                  "b8cbb061a85206d729d91cdc2981f43c9e0d99209dce588d3af5f7934408b9df", 3_029_533,
                  "Mooncake FAST'25 conversation trace (multi-turn chat), 512-token prefix blocks"),
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


def _verify(d: Dataset, path: Path) -> Path:
    digest = sha256_file(path)
    if digest != d.sha256:
        raise DatasetError(f"dataset {d.name!r}: {path} has sha256 {digest}, expected {d.sha256} "
                           f"(a different or corrupt file; delete it and fetch again)")
    return path


def _install(d: Dataset, src: Path, dest: Path) -> Path:
    """Verify ``src`` and copy it atomically to ``dest``."""
    _verify(d, src)
    atomic_write(dest, lambda tmp: shutil.copyfile(src, tmp), f"dataset {d.name!r}")
    return dest


def _by_hand(d: Dataset, dest: Path, why: str) -> DatasetError:
    return DatasetError(f"dataset {d.name!r}: cannot download {d.url} ({why}). Offline? Download it elsewhere "
                        f"and put it at {dest} (or pass --from FILE, or the file's path instead of the name); "
                        f"expected sha256: {d.sha256}")


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
    if d.bundled is not None:
        from kvgym.bundled import data_path

        return _verify(d, data_path(*d.bundled.split("/")))
    if dest.exists():
        return _verify(d, dest)
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        raise _by_hand(d, dest, f"{OFFLINE_ENV} is set")
    opener = urlopen or urllib.request.urlopen

    def download(tmp: Path) -> None:
        with tmp.open("wb") as out:
            try:
                with opener(d.url, timeout=timeout_s) as resp:
                    shutil.copyfileobj(resp, out, 1 << 20)
            except (urllib.error.URLError, OSError, ValueError) as e:
                raise _by_hand(d, dest, f"{type(e).__name__}: {getattr(e, 'reason', e)}") from None
        _verify(d, tmp)

    atomic_write(dest, download, f"dataset {d.name!r}")
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
