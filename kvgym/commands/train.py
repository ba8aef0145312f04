"""``kvgym train``: train learned eviction agents, evaluate them on held-out traces, build the zoo.

- ``kvgym train imitation|ppo --config FILE.json [--set key=value] [--out DIR]``: train one
  agent (Belady imitation with DAgger, or MaskablePPO), write its folder (model, config,
  training metrics), then score it on the task's held-out test split (``heldout.json``).
- ``kvgym train report [--zoo DIR]``: the leaderboard of every agent folder under the zoo among
  the baselines and the oracle, per held-out trace (``leaderboard.md`` and ``.json``).
- ``kvgym train benchmark --out DIR [--splits ...]``: write the benchmark's traces (deterministic;
  ``agents/benchmark.json``) as Parquet with their digests.
- ``kvgym train convert DIR --trust-pickle [--sha256 HEX]``: turn a legacy PPO folder (SB3
  zip, a pickle) into ``policy.pt`` tensors plus the network's shape in ``agent.json``.
- ``kvgym train zoo [--seeds 0,1,2]``: train imitation and PPO for each seed into the zoo, then
  write the report (the command that produces ``artifacts/agents/``, families a, b, d, e).
- ``kvgym train serving [--seeds 0,1,2]``: family c, serving mode (:mod:`kvgym.agents.serving`):
  train an imitation agent per seed into ``artifacts/agents/serving/serving-s<seed>``, then score
  them with the serving baselines on the test windows (``leaderboard.md`` and ``.json`` there).

Torch and SB3 are imported inside the handlers, so ``kvgym --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

ALGOS = ("imitation", "ppo")
DEFAULT_ZOO = "artifacts/agents"
DEFAULT_SERVING_ZOO = "artifacts/agents/serving"


def _args_class(algo: str):
    if algo == "imitation":
        from kvgym.agents.imitation import ImitationArgs
        return ImitationArgs
    from kvgym.agents.ppo import PPOArgs
    return PPOArgs


def _train_module(algo: str):
    import importlib

    return importlib.import_module(f"kvgym.agents.{algo}")


def train_one(algo: str, config=None, sets=(), out=None, test: bool = True, log=print) -> Path:
    """Train one agent into ``out`` (default ``artifacts/agents/<algo>-s<seed>``); returns the folder."""
    from kvgym.agents.common import load_args
    from kvgym.agents.evaluation import pct

    args = load_args(_args_class(algo), config, sets)
    folder = Path(out) if out else Path(DEFAULT_ZOO) / f"{algo}-s{args.seed}"
    log(f"training {algo} (seed {args.seed}) on the train split of families {', '.join(args.families)} "
        f"-> {folder}")
    m = _train_module(algo).train(args, folder, log=log)
    log(f"trained in {m['train_time_s']:.1f} s; validation score {pct(m['validation_score'])}")
    if test:
        evaluate_heldout(folder, args, log)
    return folder


def evaluate_heldout(folder: Path, args, log=print) -> Path:
    """Score a trained agent (as shipped, and without its gate when it has one) on the test split of every
    family; write ``heldout.json``."""
    from kvgym.agents.agent import load_agent
    from kvgym.agents.evaluation import heldout, pct
    from kvgym.files import read_json, write_json

    manifest = read_json(folder / "agent.json", "agent manifest")
    env = manifest.get("env", args.env_kwargs())
    h = heldout(load_agent(folder), args, env)
    if manifest.get("gate"):
        h["ungated"] = heldout(load_agent(folder, gate=False), args, env)["traces"]
    m = read_json(folder / "metrics.json", "agent metrics")
    h.update(agent=folder.name, algo=m["algo"], seed=m["seed"], train_time_s=m["train_time_s"])
    out = write_json(folder / "heldout.json", h)
    fams = ", ".join(f"{f} {pct(d['pooled_gap_closed'])}" for f, d in h["families"].items())
    log(f"held-out test split, pooled gap closed by family: {fams} -> {out}")
    return out


def _cmd_train(args) -> int:
    train_one(args.algo, args.config, args.sets, args.out, test=not args.no_test,
              log=(lambda *_: None) if args.quiet else print)
    return 0


def _cmd_report(args) -> int:
    from kvgym.agents.zoo import write_report

    md, js = write_report(args.zoo, args.out)
    print(f"wrote {md} and {js}")
    return 0


def _cmd_benchmark(args) -> int:
    from kvgym.agents.benchmark import SPLITS, load_benchmark, write_cases
    from kvgym.bench.cli_common import csv_list
    from kvgym.errors import ConfigError

    splits = csv_list(args.splits) or ["train", "validation"]
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise ConfigError(f"--splits: unknown {bad}; valid: {', '.join(SPLITS)}")
    bench = load_benchmark(args.benchmark)
    print(f"wrote {write_cases(bench, splits, args.out, csv_list(args.families))}")
    return 0


def _cmd_convert(args) -> int:
    from kvgym.agents.agent import convert_sb3

    for folder in args.folders:
        print(f"wrote {convert_sb3(folder, args.trust_pickle, args.sha256)}")
    return 0


def _cmd_zoo(args) -> int:
    from kvgym.agents.zoo import write_report
    from kvgym.bench.cli_common import csv_list, int_list
    from kvgym.errors import ConfigError

    seeds = int_list(args.seeds) or [0, 1, 2]
    algos = csv_list(args.algos) or list(ALGOS)
    bad = [a for a in algos if a not in ALGOS]
    if bad:
        raise ConfigError(f"--algos: unknown {bad}; valid: {', '.join(ALGOS)}")
    configs = {"imitation": args.imitation_config, "ppo": args.ppo_config}
    for algo in algos:
        for s in seeds:
            sets = [*args.sets, f"seed={s}"]
            if algo == "ppo" and "imitation" in algos:  # PPO starts from the imitation agent of its seed
                sets.append(f"init_from={Path(args.zoo) / f'imitation-s{s}'}")
            train_one(algo, configs[algo], sets, Path(args.zoo) / f"{algo}-s{s}",
                      log=(lambda *_: None) if args.quiet else print)
    md, js = write_report(args.zoo, None)
    print(f"wrote {md} and {js}")
    return 0


def _cmd_serving(args) -> int:
    from kvgym.agents.common import load_args
    from kvgym.agents.evaluation import pct
    from kvgym.agents.serving import ServingArgs, train, write_report
    from kvgym.bench.cli_common import int_list

    log = (lambda *_: None) if args.quiet else print
    if not args.report_only:
        for s in int_list(args.seeds) or [0, 1, 2]:
            a = load_args(ServingArgs, args.config, [*args.sets, f"seed={s}"])
            folder = Path(args.zoo) / f"serving-s{s}"
            log(f"training the serving-mode imitation agent (seed {s}) -> {folder}")
            m = train(a, folder, log=log)
            log(f"trained in {m['train_time_s']:.1f} s; validation pooled gap closed {pct(m['validation_score'])} "
                f"(round {m['best_round']})")
    md, js = write_report(args.zoo, log=log)
    print(f"wrote {md} and {js}")
    return 0


def register(subparsers) -> None:
    from kvgym.bench.cli_common import add_config_args, add_list_arg

    p = subparsers.add_parser(
        "train", help="train learned eviction agents (imitation, ppo) and report them",
        description="kvgym train imitation|ppo: train one agent into an agent folder (model, config, metrics) and "
                    "score it on the held-out test split; kvgym train report: the leaderboard of a zoo of agent "
                    "folders among the baselines and the oracle; kvgym train zoo: train both algorithms for "
                    "several seeds, then the report; kvgym train serving: the serving-mode family (c). See "
                    "docs/agents.md.")
    sub = p.add_subparsers(dest="train_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda a: (p.print_help(), 1)[1])
    for algo, what in (("imitation", "Belady imitation with DAgger (a small torch scorer)"),
                       ("ppo", "sb3-contrib MaskablePPO on kvgym/Evict-v0")):
        q = sub.add_parser(algo, help=f"train {what}",
                           description=f"Train {what}; write model, config and training metrics into --out, "
                                       f"then score it on the held-out test split (heldout.json). Config keys: "
                                       f"the fields of kvgym.agents.{algo}.{_cls_name(algo)} (docs/agents.md).")
        add_config_args(q)
        q.add_argument("--out", metavar="DIR", help=f"agent folder (default {DEFAULT_ZOO}/{algo}-s<seed>)")
        q.add_argument("--no-test", action="store_true", help="skip the held-out evaluation after training")
        q.add_argument("--quiet", action="store_true", help="no log lines (the progress bar follows 'progress')")
        q.set_defaults(func=_cmd_train, algo=algo)
    r = sub.add_parser("report", help="leaderboard of trained agents among baselines and the oracle",
                       description="Read every agent folder under --zoo (agent.json + heldout.json), score every "
                                   "baseline and Belady on the same held-out traces, and write leaderboard.md and "
                                   "leaderboard.json: fraction of the LRU-to-Belady miss gap closed per trace, mean "
                                   "± std over training seeds.")
    r.add_argument("--zoo", default=DEFAULT_ZOO, help=f"folder of agent folders (default {DEFAULT_ZOO})")
    r.add_argument("--out", metavar="FILE", help="markdown output (default ZOO/leaderboard.md)")
    r.set_defaults(func=_cmd_report)
    b = sub.add_parser("benchmark", help="write the benchmark's traces (Parquet) and their digests",
                       description="Build every case of the benchmark's splits (agents/benchmark.json: real attention "
                                   "captures, Mooncake block windows, synthetic workloads; deterministic) and write "
                                   "the traces under --out/<split>/ with cases.json (label, capacity, digest). The "
                                   "test split only when named in --splits.")
    b.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_list_arg(b, "splits", "splits (default train,validation)")
    add_list_arg(b, "families", "family letters (default all)")
    b.add_argument("--benchmark", help="splits file (default the shipped agents/benchmark.json)")
    b.set_defaults(func=_cmd_benchmark)
    c = sub.add_parser("convert", help="turn a legacy PPO agent (SB3 .zip, a pickle) into tensors plus JSON",
                       description="Load each folder's SB3 model.zip (a pickle: only with --trust-pickle, and only if "
                                   "its sha256 matches agent.json's or --sha256), write policy.pt (the policy's tensors, "
                                   "read back with weights_only) and the network's shape in agent.json, check that the "
                                   "rebuilt policy's tensors are equal, then remove the zip.")
    c.add_argument("folders", nargs="+", metavar="DIR", help="agent folders")
    c.add_argument("--trust-pickle", action="store_true", dest="trust_pickle",
                   help="allow unpickling the zip (it can run code: only for files you trust)")
    c.add_argument("--sha256", help="expected sha256 of model.zip when agent.json records none")
    c.set_defaults(func=_cmd_convert)
    z = sub.add_parser("zoo", help="train every algorithm for several seeds, then write the report",
                       description="Train imitation and PPO agents for each seed into --zoo (folders "
                                   "<algo>-s<seed>; PPO starts from the imitation agent of its seed), each scored on "
                                   "the held-out split, then write the leaderboard.")
    z.add_argument("--zoo", default=DEFAULT_ZOO, help=f"output folder (default {DEFAULT_ZOO})")
    add_list_arg(z, "seeds", "training seeds (default 0,1,2)")
    add_list_arg(z, "algos", "algorithms (default imitation,ppo)")
    z.add_argument("--imitation-config", metavar="FILE", help="config file for the imitation runs")
    z.add_argument("--ppo-config", metavar="FILE", help="config file for the PPO runs")
    z.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override an argument of every run (repeatable)")
    z.add_argument("--quiet", action="store_true")
    z.set_defaults(func=_cmd_zoo)
    s = sub.add_parser("serving", help="family c: train serving-mode agents (PrefixCache-v0), then their report",
                       description="Train an imitation agent of prefix-aware Belady in kvgym/PrefixCache-v0 for each "
                                   "seed on the train windows of the benchmark's serving family (agents/benchmark.json, "
                                   "key serving) into --zoo/serving-s<seed>, then score them with the serving baselines "
                                   "and prefix_belady on the test windows: leaderboard.md and leaderboard.json in --zoo. "
                                   "Config keys: the fields of kvgym.agents.serving.ServingArgs (docs/agents.md).")
    add_config_args(s)
    s.add_argument("--zoo", default=DEFAULT_SERVING_ZOO, help=f"output folder (default {DEFAULT_SERVING_ZOO})")
    add_list_arg(s, "seeds", "training seeds (default 0,1,2)")
    s.add_argument("--report-only", action="store_true", dest="report_only",
                   help="only rebuild the report from the agent folders already in --zoo")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_cmd_serving)


def _cls_name(algo: str) -> str:
    return "ImitationArgs" if algo == "imitation" else "PPOArgs"
