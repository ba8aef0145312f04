"""``kvgym trace fetch``: download a registered public trace (or check a local copy)."""

from __future__ import annotations


def _run(args) -> int:
    from kvgym.errors import ConfigError
    from kvgym.traces import datasets as ds

    if args.list:
        for d in ds.DATASETS.values():
            where = "shipped with kvgym" if d.bundled else d.url
            print(f"{d.name:24} {d.license:11} {d.format:15} {d.description}\n{'':24} {where}\n"
                  f"{'':24} {d.size:,} bytes, sha256 {d.sha256}")
        print(f"data directory: {ds.data_dir() if args.data_dir is None else args.data_dir}")
        return 0
    if not args.name:
        raise ConfigError("give a dataset NAME (see --list) or a file path")
    path = ds.fetch(args.name, root=args.data_dir, source=args.source)
    print(path)
    return 0


def register_trace(sub) -> None:
    p = sub.add_parser("fetch", help="download a named public trace into the data directory (sha256-checked)",
                       description="Download a registered trace (see --list) into $KVGYM_DATA_DIR (default "
                                   "~/.cache/kvgym), verify its sha256 and print its path. A local file path is "
                                   "accepted instead of a name. Offline, the error says where to put the file.")
    p.add_argument("name", nargs="?", help="dataset name or local file path")
    p.add_argument("--list", action="store_true", help="list the registered datasets")
    p.add_argument("--from", dest="source", default=None, metavar="FILE",
                   help="install this local copy (sha256-checked) instead of downloading")
    p.add_argument("--data-dir", default=None, help="data directory (default $KVGYM_DATA_DIR or ~/.cache/kvgym)")
    p.set_defaults(func=_run)
