"""``kvgym trace stats FILE [--plot OUT.png] [--json OUT.json]``: describe a trace.

Prints accesses, steps, distinct pages, the footprint of the distinct pages under each
quantization, reuse-distance quantiles (on the first ``--reuse-limit`` accesses) and, when the
trace has attention weights, attention concentration (recent page, first page, top-k coverage
by layer). ``--plot`` writes a reuse-distance histogram and a page-access heat map; ``--json``
saves everything as JSON. Definitions: :mod:`kvgym.bench.tracestats`.
"""

from __future__ import annotations

from pathlib import Path

from kvgym.bench.tracestats import DEFAULT_REUSE_LIMIT, DEFAULT_TOPK
from kvgym.errors import ConfigError
from kvgym.files import check_outputs, write_json


def register_trace(sub) -> None:
    p = sub.add_parser("stats", help="print statistics of a trace and plot its reuse distances and heat map",
                       description="Describe a trace file: size, footprint by quantization, reuse distances, "
                                   "attention concentration.")
    p.add_argument("file", help="trace file (.parquet)")
    p.add_argument("--plot", metavar="OUT.png", help="write a reuse-distance histogram and access heat map")
    p.add_argument("--json", metavar="OUT.json", help="save the statistics as JSON")
    p.add_argument("--reuse-limit", type=int, default=DEFAULT_REUSE_LIMIT, metavar="N",
                   help=f"reuse distances on the first N accesses only (0 = all; default {DEFAULT_REUSE_LIMIT:,})")
    p.add_argument("--heat-layer", default="auto", metavar="L",
                   help="layer shown in the heat map: an int, 'all', or 'auto' (layer 0 if the trace has several)")
    p.add_argument("--topk", default=",".join(map(str, DEFAULT_TOPK)), metavar="K1,K2,...",
                   help=f"top-k sizes for attention coverage (default {','.join(map(str, DEFAULT_TOPK))})")
    p.set_defaults(func=run)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.2f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def parse_topk(text: str) -> list[int]:
    try:
        ks = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        ks = []
    if not ks or any(k < 1 for k in ks):
        raise ConfigError(f"--topk expects comma-separated ints >= 1, got {text!r}")
    return ks


def format_stats(name: str, st: dict, att: dict | None) -> str:
    r = st["reuse_distance"]
    fp = st["footprint_bytes"]
    lines = [
        f"trace: {name}",
        f"accesses: {st['accesses']:,}   steps: {st['steps']:,}   accesses/step: {st['accesses_per_step']:,.1f}",
        (f"pages: {st['distinct_pages']:,} distinct of {st['pages_in_table']:,} in the table; "
         f"sequences {st['sequences']:,}, layers {st['layers']:,}"),
        "footprint of distinct pages: " + " | ".join(f"{k} {human_bytes(v)}" for k, v in fp.items()),
        ("feasible tier-0 capacity (auto:0 .. auto:1; below it a step's pinned pages do not fit, at its top "
         "nothing is evicted): " + " | ".join(f"{k} {st['tier0_min_bytes'][k]:,} .. {v:,} bytes"
                                               for k, v in fp.items())),
        "page table (the base of 'N%' capacities): " + " | ".join(f"{k} {human_bytes(v)}"
                                                                  for k, v in st["table_bytes"].items()),
    ]
    head = f"reuse distance (first {r['accesses']:,} accesses; {r['first_touches']:,} first touches)"
    if r["reuses"]:
        lines.append(f"{head}: p50 {r['p50']:,}  p90 {r['p90']:,}  p99 {r['p99']:,}  max {r['max']:,}  mean {r['mean']:,.1f}")
    else:
        lines.append(f"{head}: no reuse")
    if att is not None and att.get("groups"):
        lines.append(f"attention ({att['groups']:,} (step, seq, layer) groups, {att['mean_pages_per_group']:.1f} pages each): "
                     f"recent page {att['recent_page_share']:.3f}, first page {att['first_page_share']:.3f}")
        tk = att["topk_coverage"]
        lines.append("  top-k coverage: " + "  ".join(f"k={k}: {v:.3f}" for k, v in zip(tk["k"], tk["mean"])))
        by = tk["by_layer"]
        layers = sorted(by, key=int)
        shown = layers if len(layers) <= 8 else layers[:4] + layers[-4:]
        for l in shown:
            lines.append(f"    layer {l:>3}: " + "  ".join(f"{v:.3f}" for v in by[l]))
        if len(shown) < len(layers):
            lines.append(f"    ({len(layers) - len(shown)} more layers in --json)")
    return "\n".join(lines)


def compute(trace, *, reuse_limit: int, ks) -> tuple[dict, dict | None]:
    """Stats and attention stats, with per-access request ids when the generator provides them."""
    from kvgym.bench.tracestats import attention_stats, trace_stats
    from kvgym.workloads import access_seq

    st = trace_stats(trace, reuse_limit=reuse_limit)
    att = attention_stats(trace, ks=ks, seq=access_seq(trace)) if trace.weight is not None else None
    return st, att


def run(args) -> int:
    from kvgym.bench.tracestats import heat_layer_default, plot_stats, reuse_distances
    from kvgym.traces.parquet import read_trace

    if args.reuse_limit < 0:
        raise ConfigError(f"--reuse-limit must be >= 0, got {args.reuse_limit}")
    ks = parse_topk(args.topk)
    if args.heat_layer not in ("auto", "all") and not args.heat_layer.isdigit():
        raise ConfigError(f"--heat-layer expects an int >= 0, 'all' or 'auto', got {args.heat_layer!r}")
    check_outputs(args.json, args.plot)
    trace = read_trace(args.file)
    st, att = compute(trace, reuse_limit=args.reuse_limit, ks=ks)
    name = Path(args.file).name
    print(format_stats(name, st, att))
    if args.json:
        out = {"trace": name, "meta": trace.meta, "stats": st, "attention": att}
        write_json(args.json, out, indent=1)
        print(f"wrote {args.json}")
    if args.plot:
        lim = len(trace) if args.reuse_limit == 0 else min(len(trace), args.reuse_limit)
        layer = {"auto": heat_layer_default(trace), "all": None}.get(args.heat_layer)
        if layer is None and args.heat_layer.isdigit():
            layer = int(args.heat_layer)
        plot_stats(trace, args.plot, title=name, dist=reuse_distances(trace.page[:lim], len(trace.pages)), layer=layer)
        print(f"wrote {args.plot}")
    return 0
