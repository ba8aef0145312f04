"""``kvgym vllm replay [SOURCE]``: vLLM's own CPU-tier counts on a Mooncake trace, over a grid of
capacities, cache policies and store thresholds (the peer table)."""

from __future__ import annotations

from kvgym.bench.cli_common import add_list_arg, csv_list, int_list, invocation


def _replay(args) -> int:
    from kvgym.integrations.vllm_peer import (
        peer_grid,
        synthetic_trace,
        table_markdown,
        write_peer_table,
    )
    from kvgym.integrations.vllm_replay import from_mooncake
    from kvgym.traces.datasets import fetch, sha256_file
    from kvgym.traces.requests import requests_from_mooncake

    path = fetch(args.source) if args.source else synthetic_trace()
    req = from_mooncake(path, block_tokens=args.block_tokens, partial_block=args.partial_block, limit=args.limit)
    # kvgym mirrors vLLM's own rules: whole prompts, partial blocks dropped, built-in policies.
    mirrored = args.partial_block == "drop" and args.prefill_tokens is None and args.module_path is None
    trace = requests_from_mooncake(path, block_tokens=args.block_tokens, limit=args.limit) if mirrored else None
    rows = peer_grid(req, csv_list(args.capacities or "1%,5%,10%"), csv_list(args.policies or "lru,arc"),
                     int_list(args.store_thresholds or "1,2"), trace=trace,
                     cache_policy_module_path=args.module_path, prefill_tokens=args.prefill_tokens)
    print(f"{path.name}: {len(req):,} requests, {len(req.blocks):,} full prompt blocks")
    print(table_markdown(rows))
    if args.output:
        out = write_peer_table(rows, args.output, source=f"`{path.name}` (sha256 {sha256_file(path)[:16]}...)",
                               command=invocation("vllm") or "kvgym vllm replay")
        print(f"wrote {out} and counts.csv")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("vllm", help="vLLM's own offloading code as a peer (replay)")
    sub = p.add_subparsers(dest="vllm_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])
    r = sub.add_parser("replay", help="replay a Mooncake trace through vLLM's CPUOffloadingManager",
                       description="Drive vLLM's real CPUOffloadingManager with a Mooncake trace, calling it as "
                                   "vLLM's offloading connector does (requests one at a time, transfers complete "
                                   "at once, GPU prefix cache empty; docs/vllm.md#replay), and print its counts "
                                   "(blocks) for every capacity x policy x store threshold. Needs kvgym[vllm].")
    r.add_argument("source", nargs="?", default=None,
                   help="Mooncake JSON Lines file or dataset name (default: the Mooncake synthetic trace)")
    add_list_arg(r, "capacities", "CPU-tier capacities: blocks, or shares of the distinct full blocks "
                                  "(default 1%%,5%%,10%%)")
    add_list_arg(r, "policies", "vLLM cache policies (default lru,arc)")
    add_list_arg(r, "store-thresholds", "vLLM store_threshold values (default 1,2)")
    r.add_argument("--module-path", default=None, help="cache_policy_module_path for an out-of-tree policy")
    r.add_argument("--block-tokens", type=int, default=512, help="tokens per block (default 512)")
    r.add_argument("--partial-block", default="drop", choices=["drop", "keep"],
                   help="a prompt's last partial block: drop (vLLM's rule, default) or keep as a full block")
    r.add_argument("--prefill-tokens", type=int, default=None,
                   help="tokens prefilled per step (vLLM's token budget; default: the whole prompt at once)")
    r.add_argument("--limit", type=int, default=None, help="replay only the first N requests")
    r.add_argument("-o", "--output", default=None, help="folder to write counts.csv and README.md to")
    r.set_defaults(func=_replay)
