"""``kvgym trace gallery [-o artifacts/workloads]``: one heat-map PNG per workload, at its defaults.

For every registered workload (or those named with ``--names``): generate it with its default
parameters and ``--seed``, write ``<out>/<name>.png`` (reuse-distance histogram and page-access
heat map, as ``kvgym trace stats --plot``; layer 0 for multi-layer traces) and a
``<out>/summary.json`` with each trace's statistics. These are the plots shown in
``docs/workloads.md``; the output is byte-identical for the same seed and library versions.
"""

from __future__ import annotations

from pathlib import Path

from kvgym.errors import ConfigError


def register_trace(sub) -> None:
    p = sub.add_parser("gallery", help="plot every workload's access heat map at its defaults",
                       description="Generate each workload at its defaults and plot its reuse distances and heat map.")
    p.add_argument("-o", "--output", default="artifacts/workloads", help="output folder (default artifacts/workloads)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--names", default="", help="comma-separated workload names (default: all)")
    p.set_defaults(func=run)


def run(args) -> int:
    from kvgym.bench.tracestats import heat_layer_default, plot_stats, reuse_distances
    from kvgym.commands.trace_stats import compute
    from kvgym.files import write_json
    from kvgym.workloads import get_workload, make_trace, workload_names

    names = [n.strip() for n in args.names.split(",") if n.strip()] or workload_names()
    for n in names:
        get_workload(n)  # unknown names fail before any work
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    out = Path(args.output)
    summary = {}
    for n in names:
        trace = make_trace(n, seed=args.seed)
        st, att = compute(trace, reuse_limit=0, ks=(1, 4, 16, 64))
        dist = reuse_distances(trace.page, len(trace.pages))
        title = f"{n} (defaults, seed {args.seed}): {len(trace):,} accesses, {st['distinct_pages']:,} pages"
        path = plot_stats(trace, out / f"{n}.png", title=title, dist=dist, layer=heat_layer_default(trace))
        summary[n] = {"params": trace.meta["params"], "seed": args.seed, "stats": st,
                      "attention": None if att is None else {k: v for k, v in att.items() if not k.endswith("by_layer")}}
        if att is not None:
            summary[n]["attention"]["topk_coverage"] = {"k": att["topk_coverage"]["k"], "mean": att["topk_coverage"]["mean"]}
        print(f"wrote {path}")
    if not args.names:
        write_json(out / "summary.json", summary, indent=1)
        print(f"wrote {out / 'summary.json'}")
    return 0
