"""``kvgym trace import``: turn an external trace (a file or a registered dataset) into a kvgym trace."""

from __future__ import annotations

from kvgym.traces.geometry import PRESETS


def _run(args) -> int:
    from kvgym.files import check_outputs
    from kvgym.traces.datasets import import_dataset
    from kvgym.traces.parquet import pages_path, write_trace

    check_outputs(args.output, pages_path(args.output))
    trace = import_dataset(args.source, format=args.format, root=args.data_dir, geometry=args.geometry,
                           per_layer=args.per_layer, block_tokens=args.block_tokens, limit=args.limit,
                           block_stream=args.block_stream)
    out = write_trace(trace, args.output)
    m = trace.meta
    print(f"{out}: {m['requests']} requests, {len(trace)} accesses ({m['block_refs']} block references), "
          f"{len(trace.pages)} pages ({m['distinct_blocks']} distinct blocks) of "
          f"{int(trace.pages.fp16_bytes[0]) if len(trace.pages) else 0} fp16 bytes, geometry {m['params']['geometry']}"
          f"{' per layer' if args.per_layer else ''}{', one block per step' if args.block_stream else ''}")
    return 0


def register_trace(sub) -> None:
    p = sub.add_parser("import", help="import an external trace file or a registered dataset (Mooncake JSON Lines)",
                       description="Import a Mooncake FAST'25 JSON Lines trace (a file path, or a dataset name "
                                   "from `kvgym trace fetch --list`, fetched if needed) as a kvgym block trace: "
                                   "step = request in arrival order, one page per 512-token prefix block.")
    p.add_argument("source", help="file path or dataset name")
    p.add_argument("-o", "--output", required=True, help="output trace (.parquet)")
    p.add_argument("--format", default=None, choices=["mooncake"], help="input format (default: from the "
                   "dataset registry, or mooncake for .jsonl files)")
    p.add_argument("--geometry", default="llama-3.1-8b", choices=sorted(PRESETS),
                   help="model geometry that sizes the blocks (default llama-3.1-8b)")
    p.add_argument("--per-layer", action="store_true", help="expand each block into one page per layer")
    p.add_argument("--block-stream", action="store_true",
                   help="one block reference per step (no two blocks pinned together): the block stream of "
                        "classic cache studies; give capacities as 'N pages'")
    p.add_argument("--block-tokens", type=int, default=512, help="tokens per hash block (default 512)")
    p.add_argument("--limit", type=int, default=None, help="import only the first N requests")
    p.add_argument("--data-dir", default=None, help="dataset directory (default $KVGYM_DATA_DIR or ~/.cache/kvgym)")
    p.set_defaults(func=_run)
