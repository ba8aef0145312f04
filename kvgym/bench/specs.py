"""What a sweep runs, as small frozen specs: a policy (with its prefetcher), a trace source, an agent.

Spec strings, used on the command line and in config files alike::

    lru                                   a registered policy, default parameters
    regret_aware(regret_weight=12,regret_horizon=8)
    lru+sequential                        a policy with an explicit prefetcher
    lru+sequential(depth=4)               ... with prefetcher parameters
    streaming(prompt_tokens=2048)         a registered workload with parameter overrides
    path/to/trace.parquet                 a trace file (kvgym Parquet, or a parity cell .json)
    policy:lru                            an agent: a baseline acting through the Gymnasium env
    path/to/agent.zip                     an agent saved by kvgym.agents

Parameter values are read as JSON scalars (``12`` int, ``0.5`` float, ``true`` bool), anything
else as a string. A config file may give the same as tables
(``{name = "regret_aware", params = {regret_weight = 12}}``).

Prefetcher pairing: a policy that comes with its own prefetcher (``predictive`` uses ``markov``,
as in kv-hierarchy-lab) gets it unless one is named; every other policy gets the sweep's
``prefetcher`` (default ``none``). The prefetcher only runs in scenarios with prefetch on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kvgym.callspec import fmt_call, parse_call, split_top
from kvgym.errors import ConfigError

#: Policies that bring their own prefetcher (kv-hierarchy-lab's ``predictive`` prefetches with
#: its transition table, which kvgym splits into the ``markov`` prefetcher). A policy class may
#: also declare ``default_prefetcher = "name"``; that wins.
PAIRED_PREFETCHER = {"predictive": "markov"}

def _params(d, what: str) -> dict:
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise ConfigError(f"{what}: params must be a table of key = value, got {d!r}")
    for k, v in d.items():
        if not isinstance(v, (int, float, bool, str)):
            raise ConfigError(f"{what}: parameter {k}={v!r} must be a number, bool or string")
    return dict(sorted(d.items()))


@dataclass(frozen=True)
class PolicySpec:
    """An eviction policy by registry name, its parameters, and the prefetcher it runs with.

    ``prefetcher`` ``None`` means: resolve by pairing (see module docstring) when the sweep is
    expanded; after :meth:`resolve` it is a registered prefetcher name or ``"none"``.
    """

    name: str
    params: dict = field(default_factory=dict)
    prefetcher: str | None = None
    prefetcher_params: dict = field(default_factory=dict)
    explicit_prefetcher: bool = False

    @classmethod
    def parse(cls, spec) -> PolicySpec:
        if isinstance(spec, PolicySpec):
            return spec
        if isinstance(spec, dict):
            known = {"name", "params", "prefetcher", "prefetcher_params"}
            if set(spec) - known:
                raise ConfigError(f"policy {spec!r}: unknown keys {sorted(set(spec) - known)}; valid: {', '.join(sorted(known))}")
            if "name" not in spec:
                raise ConfigError(f"policy {spec!r}: missing 'name'")
            pf = spec.get("prefetcher")
            return cls(str(spec["name"]), _params(spec.get("params"), f"policy {spec['name']!r}"), pf,
                       _params(spec.get("prefetcher_params"), f"prefetcher {pf!r}"), pf is not None)
        if not isinstance(spec, str):
            raise ConfigError(f"policy entry {spec!r}: expected a string or a table")
        parts = split_top(spec, "+")
        if not 1 <= len(parts) <= 2:
            raise ConfigError(f"policy {spec!r}: expected POLICY[(k=v,...)][+PREFETCHER[(k=v,...)]]")
        name, params = parse_call(parts[0], "policy")
        if len(parts) == 2:
            pf, pfp = parse_call(parts[1], "prefetcher")
            return cls(name, dict(sorted(params.items())), pf, dict(sorted(pfp.items())), True)
        return cls(name, dict(sorted(params.items())))

    def resolve(self, default_prefetcher: str) -> PolicySpec:
        """Fill in the prefetcher (pairing, else the sweep default) and check names and params."""
        from kvgym.sim.policy import (
            make_policy,
            make_prefetcher,
            policy_class,
            policy_names,
            prefetcher_names,
        )

        if self.name not in policy_names():
            raise ConfigError(f"unknown policy {self.name!r}; valid: {', '.join(policy_names())}")
        make_policy(self.name, **self.params)  # raises ConfigError on bad parameters
        pf = self.prefetcher
        if pf is None:
            pf = getattr(policy_class(self.name), "default_prefetcher", None) or PAIRED_PREFETCHER.get(self.name) or default_prefetcher
        if pf != "none":
            if pf not in prefetcher_names():
                raise ConfigError(f"unknown prefetcher {pf!r}; valid: none, {', '.join(prefetcher_names())}")
            make_prefetcher(pf, **self.prefetcher_params)
        elif self.prefetcher_params:
            raise ConfigError(f"policy {self.name!r}: prefetcher parameters given but no prefetcher")
        return PolicySpec(self.name, self.params, pf, self.prefetcher_params, self.explicit_prefetcher)

    @property
    def label(self) -> str:
        """The name shown in tables: ``name(params)``, plus ``+prefetcher`` when named explicitly."""
        s = fmt_call(self.name, self.params)
        if self.explicit_prefetcher:
            s += "+" + fmt_call(self.prefetcher or "none", self.prefetcher_params)
        return s

    def to_dict(self) -> dict:
        return {"name": self.name, "params": self.params, "prefetcher": self.prefetcher,
                "prefetcher_params": self.prefetcher_params}


@dataclass(frozen=True)
class SourceSpec:
    """Where a cell's trace comes from: a registered workload (generated per seed) or a file.

    ``digest`` (files only): sha256 of the file, filled in when the sweep is expanded, so that a
    changed file makes a new cell instead of a stale resume.
    """

    kind: str  # "workload" | "file"
    name: str
    params: dict = field(default_factory=dict)
    digest: str = ""

    @classmethod
    def workload(cls, spec, overrides: dict | None = None) -> SourceSpec:
        if isinstance(spec, dict):
            known = {"name", "params"}
            if set(spec) - known or "name" not in spec:
                raise ConfigError(f"workload {spec!r}: expected a table with 'name' and optional 'params'")
            name, params = str(spec["name"]), _params(spec.get("params"), f"workload {spec['name']!r}")
        else:
            name, params = parse_call(str(spec), "workload")
        params = {**(overrides or {}), **params}
        return cls("workload", name, dict(sorted(params.items())))

    @classmethod
    def file(cls, path: str) -> SourceSpec:
        return cls("file", str(path))

    @property
    def label(self) -> str:
        if self.kind == "file":
            n = Path(self.name).name
            for suf in (".parquet", ".json"):
                n = n.removesuffix(suf)
            return n
        return fmt_call(self.name, self.params)

    @property
    def seeded(self) -> bool:
        """Whether the seed changes the trace (generated workloads) or not (files)."""
        return self.kind == "workload"

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "name": self.name, "params": self.params}
        if self.kind == "file":
            d["digest"] = self.digest
        return d


@dataclass(frozen=True)
class AgentSpec:
    """An agent evaluated through the env (``kvgym.envs.evaluate.evaluate``).

    ``policy:NAME(...)``: a baseline wrapped as a ``PolicyAgent``; anything else is the path of a
    saved agent loaded by ``kvgym.agents.load_agent``.
    """

    spec: str
    digest: str = ""  # sha256 over the saved agent's files, so a retrained agent makes new cells
    #: Allow a legacy SB3 ``.zip`` (a pickle; see :func:`kvgym.agents.agent.load_agent`). Not part
    #: of the cell: it changes whether the agent may load, not what it does.
    trust_pickle: bool = False

    @property
    def label(self) -> str:
        if self.spec.startswith("policy:"):
            return "agent:" + self.spec[len("policy:"):]
        return "agent:" + Path(self.spec).stem

    def to_dict(self) -> dict:
        return {"agent": self.spec, "digest": self.digest}


def agent_digest(spec: str) -> str:
    """sha256 over the files of a saved agent, found exactly as the loader finds it
    (:func:`kvgym.agents.agent.agent_folder`: ``~`` expanded, links resolved, ``zoo:NAME`` in the
    project's zoo); ``""`` for ``policy:`` agents or a path that does not resolve (the loader then
    reports it, and the cell fails rather than reusing anything)."""
    import hashlib

    from kvgym.errors import KvgymError

    if spec.startswith("policy:"):
        return ""
    from kvgym.agents.agent import agent_folder

    try:
        folder = agent_folder(spec)
    except KvgymError:
        return ""
    h = hashlib.sha256()
    for f in sorted(x for x in folder.rglob("*") if x.is_file()):
        h.update(f.relative_to(folder).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()
