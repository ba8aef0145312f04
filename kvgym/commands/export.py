"""``kvgym export vllm POLICY [k=v ...] -o my_policy.py``: a kvgym policy as a vLLM cache policy module."""

from __future__ import annotations

from kvgym.bench.cli_common import invocation
from kvgym.callspec import parse_call


def _vllm(args) -> int:
    from kvgym.integrations.vllm_export import export_vllm

    policy, params = parse_call(args.policy, "policy")
    path, name = export_vllm(policy, params, args.output, class_name=args.class_name, history=args.history,
                             command=invocation("export"))
    print(f"wrote {path}: class {name} (kvgym policy {args.policy!r})")
    print(f'vLLM kv_connector_extra_config: "eviction_policy": "{name}", "cache_policy_module_path": "{path.stem}" '
          f"(with {path.parent.resolve()} on PYTHONPATH)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a policy to a serving engine (vllm)")
    sub = p.add_subparsers(dest="export_target", metavar="TARGET")
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])
    v = sub.add_parser("vllm", help="write a module vLLM loads as an out-of-tree cache policy",
                       description="Write a Python module defining a vLLM CachePolicy that runs a kvgym policy "
                                   "(for vLLM's OffloadingConnector CPU tier). The policy must use only what a "
                                   "vLLM policy sees (block keys, request positions, its own history): oracles "
                                   "and policies reading attention, layers or tier costs are refused. "
                                   "See docs/vllm.md.")
    v.add_argument("policy", help="kvgym policy spec NAME(key=value,...) (kvgym list policies)")
    v.add_argument("-o", "--output", required=True, help="module to write, NAME.py (NAME is the import path)")
    v.add_argument("--class-name", default=None, help="class name (default Kvgym<Policy>); vLLM's eviction_policy")
    v.add_argument("--history", type=int, default=None,
                   help="evicted keys whose kvgym history is kept (default 4 x the CPU tier's capacity)")
    v.set_defaults(func=_vllm)
