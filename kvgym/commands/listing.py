"""``kvgym list policies|prefetchers|workloads|scenarios|envs|agents``: what is registered, one line each.

Every list is read from its registry at run time (nothing here is a copy of a list), and every
description from the item's own documentation: a policy's or prefetcher's module docstring, a
workload generator's docstring, a scenario's fields, an environment's registered kwargs, a learned
agent's training script. Registering a new item adds it here with no other change.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

KINDS = ("policies", "prefetchers", "workloads", "scenarios", "envs", "agents")


def first_line(doc: str | None, name: str = "") -> str:
    """A docstring's first line, without the ````name``: ```` (or ````name`` prefetcher: ````) it opens with."""
    line = (doc or "").strip().splitlines()[0].strip() if (doc or "").strip() else ""
    for head in (f"``{name}``: ", f"``{name}`` prefetcher: "):
        if name and line.startswith(head):
            line = line[len(head):]
            break
    return line[:1].upper() + line[1:]


def _registered(names, cls_of, privileged_note: bool) -> list[tuple[str, str]]:
    rows = []
    for n in names:
        cls = cls_of(n)
        desc = first_line(sys.modules[cls.__module__].__doc__ or cls.__doc__, n)
        if privileged_note and getattr(cls, "privileged", False):
            desc += " [reads the future]"
        rows.append((n, desc))
    return rows


def policies() -> list[tuple[str, str]]:
    from kvgym.sim.policy import policy_class, policy_names

    return _registered(policy_names(), policy_class, True)


def prefetchers() -> list[tuple[str, str]]:
    from kvgym.sim.policy import prefetcher_class, prefetcher_names

    return _registered(prefetcher_names(), prefetcher_class, True)


def workloads() -> list[tuple[str, str]]:
    from kvgym.workloads import get_workload, workload_names

    return [(n, get_workload(n).summary) for n in workload_names()]


def scenarios() -> list[tuple[str, str]]:
    from kvgym.bench.scenarios import describe, scenario_line, scenario_names
    from kvgym.bench.scenarios import scenarios as table

    scen = table()
    return [(n, scenario_line(describe(scen[n]))) for n in scenario_names()]


def envs() -> list[tuple[str, str]]:
    import gymnasium as gym

    from kvgym.envs.registration import ENV_IDS

    rows = []
    for env_id in ENV_IDS:
        spec = gym.spec(env_id)
        module, cls_name = spec.entry_point.split(":")
        cls = getattr(importlib.import_module(module), cls_name)
        kw = spec.kwargs
        if hasattr(cls, "preset_line"):  # the serving env describes its own presets
            rows.append((env_id, cls.preset_line(kw)))
            continue
        scen = kw.get("scenario")
        wl = kw.get("workload", cls.__init__.__kwdefaults__["workload"])
        where = "its default scenario" if scen is None else \
            f"{scen['profile']} tier 0 {scen['capacities'][0]}" + (f", {scen['quantization']}" if "quantization" in scen else "")
        decides = "eviction and prefetch" if cls._prefetch_decisions else "eviction"
        rows.append((env_id, f"{decides} decisions ({cls_name}): workload {wl}, {where}"))
    return rows


def _script_doc(module: str) -> str:
    """A module's docstring, read from its source without importing it (no torch import here)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        return ""
    return ast.get_docstring(ast.parse(Path(spec.origin).read_text())) or ""


def agents(zoo: str | Path = "artifacts/agents") -> list[tuple[str, str]]:
    import json

    from kvgym.commands.train import ALGOS

    rows = [("policy:NAME", "any registered policy acting through the Gymnasium env (kvgym.envs.agents.PolicyAgent)")]
    rows += [(f"kvgym train {a}", first_line(_script_doc(f"kvgym.agents.{a}")) + " (needs the agents extra)")
             for a in ALGOS]
    rows.append(("kvgym train serving", ("family c: imitation of a prefix-aware Belady in kvgym/PrefixCache-v0, in "
                                         "a safety gate (needs the agents extra)")))
    for manifest in sorted(Path(zoo).glob("*/agent.json")):
        try:
            d = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        rows.append((f"zoo:{manifest.parent.name}", f"trained {d.get('kind', '?')} agent ({manifest.parent})"))
    rows += [(str(m.parent), "trained serving-mode agent (kvgym.agents.serving.load, PrefixCache-v0)")
             for m in sorted(Path(zoo).glob("serving/serving-s*/agent.json"))]
    return rows


def _run(args) -> int:
    rows = globals()[args.kind]()
    width = max(len(n) for n, _ in rows)
    for name, desc in rows:
        print(f"{name:<{width}}  {desc}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("list", help="list registered policies, prefetchers, workloads, scenarios, envs, agents",
                              description="List what is registered, one item a line with a one-line description "
                                          "taken from the item's own documentation.")
    p.add_argument("kind", choices=KINDS, help="what to list")
    p.set_defaults(func=_run)
