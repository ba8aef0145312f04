"""``kvgym ablate POLICY --grid k=v1,v2 ...``: a policy's parameters against latency, hit rate and bytes."""

from __future__ import annotations

import argparse
import sys


def _cmd(args) -> int:
    from kvgym.bench.cli_common import stop_on_sigterm

    stop_on_sigterm()
    from kvgym.bench.ablation import AblateConfig, markdown, parse_grid, run_ablation  # noqa: F401
    from kvgym.bench.cli_common import csv_list, int_list, invocation
    from kvgym.configs import load_config

    grid = parse_grid(args.grid) if args.grid else None
    cfg = load_config(AblateConfig, args.config, args.sets, policy=args.policy, grid=grid,
                      scenarios=csv_list(args.scenarios), workloads=csv_list(args.workloads),
                      seeds=int_list(args.seeds), backend=args.backend, workers=args.workers, out=args.out,
                      plots=False if args.no_plots else None, progress=False if args.quiet else None)
    command = invocation("ablate", drop=("--quiet", "--no-plots")) or "kvgym ablate"
    res, agg = run_ablation(cfg, command, log=lambda m: print(m, file=sys.stderr))
    keys = list(agg["grid"])
    print(f"{'  '.join(keys)}  latency_ms (mean ± std)  hit_rate (mean ± std)")
    for v in agg["variants"]:
        o = v["overall"]
        name = "  ".join(str(v["params"][k]) for k in keys) if v["params"] else f"[{v['policy']}]"
        lat, hit = o.get("latency_ms"), o.get("hit_rate")
        print(f"{name}  {lat['mean']:.4f} ± {lat['std']:.4f}  {hit['mean']:.4f} ± {hit['std']:.4f}" if lat and hit else name)
    print(f"wrote {res.out}/ablation.md, ablation.json, plots/ and the sweep artifacts ({res.wall_s:.1f} s)")
    return 0


def register(subparsers) -> None:
    from kvgym.bench.ablation import AblateConfig
    from kvgym.bench.cli_common import add_config_args, add_list_arg, keys_epilog

    p = subparsers.add_parser(
        "ablate", help="ablate a policy's parameters over scenarios, workloads and seeds",
        description="Run every combination of --grid values of POLICY (plus a reference policy) over scenarios x "
                    "workloads x seeds, and report mean ± std across seeds with the plots latency vs each parameter, "
                    "hit rate vs each parameter and latency vs bytes. Example: kvgym ablate regret_aware --grid "
                    "regret_weight=1,6,12 regret_horizon=8,24,64 --seeds 7,42,91",
        epilog=keys_epilog(AblateConfig), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("policy", nargs="?", help="registered policy name (default regret_aware)")
    p.add_argument("--grid", nargs="+", metavar="PARAM=V1,V2", help="parameter values to combine")
    add_config_args(p)
    add_list_arg(p, "scenarios", "scenario names, patterns or groups (default: parity)")
    add_list_arg(p, "workloads", "workload specs or groups (default: patterns)")
    add_list_arg(p, "seeds", "seeds (default 7,42,91)")
    p.add_argument("--backend", help="serial, process (default) or ray")
    p.add_argument("--workers", type=int, help="processes for the process backend")
    p.add_argument("--out", help="output root (default artifacts/ablation; results go to OUT/POLICY/)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd)
