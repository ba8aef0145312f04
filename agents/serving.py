"""Family c: a learned eviction agent in serving mode (``kvgym/PrefixCache-v0``), trained by
imitation of a prefix-aware Belady and scored on held-out windows of the Mooncake trace.

**The family** (``agents/benchmark.json``, key ``serving``; :class:`ServingFamily`): the Mooncake
FAST'25 synthetic request trace, split by time as family b is (train on the first 80% of the
requests, validate on the next 10%, test on the last 10%), each split cut into windows of about
``window_requests`` requests. A window is one episode and starts with empty tiers. The serving setup
(``serving``, :class:`~kvgym.sim.serving.config.ServingConfig` fields): one H200 HBM tier of 1,700
blocks of 512 tokens (Llama-3.1-8B in fp16; the room one H200 has for KV beside the weights, as in
``kvgym/PrefixCache-Mooncake-v0``) and no host tier, so a block evicted from HBM is recomputed when a
later prompt needs it. The agent picks every HBM victim among the blocks whose eviction keeps the
cache prefix-closed (``victims="leaves"``), from ``k`` shown candidates.

**Metric**: a window's *misses* are its prompt blocks not served from HBM as part of a usable prefix
(``ServingMetrics.prompt_blocks - prefix_hits[0]``); the gap closed (:mod:`kvgym.oracle.gap`) runs
from ``radix_lru`` (SGLang's leaf-first LRU: 0) to :class:`PrefixBelady` (100).

**PrefixBelady**, the reference and the teacher: evict the evictable leaf whose next reference
comes last, counting references by requests from index ``ServingContext.req`` on (the request whose
placement needs the room; blocks of running requests are pinned, not candidates); a block never
referenced again comes last of all; a non-leaf only when no leaf is evictable.
It reads the future (``privileged``). It is Belady's rule under prefix semantics, not a bound:
batching and pinning decide the rest, so a policy may beat it on a window.

**The agent**: :class:`~kvgym.agents.model.CandidateScorer` over the env's 10 block features and
its context, shipped inside :class:`ServingGate` (the decode agents' safety gate, against
``radix_lru``). DAgger: the first round of rollouts follows slot 0 (the least recently used leaf,
``radix_lru``'s order); later rounds follow the model trained so far; every pending decision is
labelled with *every* shown slot whose next reference is the farthest (a set: several blocks are
often never used again), and the loss is minus the log of the probability the model gives that
set. Model selection: the round with the best pooled gap closed on the validation windows.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from kvgym.errors import ConfigError
from kvgym.params import need_bool, need_int, need_num
from kvgym.sim.policy import Policy

NEVER = 1 << 60  # next reference of a block no later request uses
FAMILY_KEYS = ("letter", "name", "doc", "dataset", "fractions", "window_requests", "serving", "k", "sample",
               "baselines")


# -- the family ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServingFamily:
    """The serving-mode family as ``agents/benchmark.json`` declares it (module docstring)."""

    letter: str
    name: str
    doc: str
    dataset: str
    fractions: tuple
    window_requests: int
    serving: dict
    k: int
    sample: int
    baselines: tuple

    @classmethod
    def from_dict(cls, d, where: str) -> ServingFamily:
        if not isinstance(d, dict) or set(d) != set(FAMILY_KEYS):
            got = sorted(d) if isinstance(d, dict) else d
            raise ConfigError(f"{where}: expected the keys {', '.join(FAMILY_KEYS)}, got {got!r}")
        fr = d["fractions"]
        if not (isinstance(fr, list) and len(fr) == 3 and all(isinstance(x, (int, float)) and x > 0 for x in fr)
                and abs(sum(fr) - 1.0) < 1e-9):
            raise ConfigError(f"{where}: fractions must be three positive shares adding up to 1, got {fr!r}")
        from kvgym.sim.policy import serving_policy_names
        from kvgym.sim.serving.config import ServingConfig

        ServingConfig.from_dict(d["serving"])  # a bad field is a ConfigError naming it
        bad = [b for b in d["baselines"] if b not in serving_policy_names()] if isinstance(d["baselines"], list) else 1
        if bad or "radix_lru" not in d["baselines"]:
            raise ConfigError(f"{where}: baselines must list serving policies, radix_lru among them (bad: {bad})")
        k = need_int(where, "k", d["k"], 2)
        return cls(str(d["letter"]), str(d["name"]), str(d["doc"]), str(d["dataset"]), tuple(fr),
                   need_int(where, "window_requests", d["window_requests"], 1), dict(d["serving"]), k,
                   need_int(where, "sample", d["sample"], 0, k - 1), tuple(d["baselines"]))

    def windows(self, split: str) -> list[tuple[int, int]]:
        """``[start, stop)`` request windows of ``split``: the split's requests in equal consecutive
        parts of about ``window_requests`` requests (at least one)."""
        from kvgym.agents.benchmark import SPLITS

        n = len(full_trace(self.dataset))
        edges = np.round(np.cumsum([0.0, *self.fractions]) * n).astype(int)
        i = SPLITS.index(split)
        a, b = int(edges[i]), int(edges[i + 1])
        parts = max(1, round((b - a) / self.window_requests))
        cut = np.round(np.linspace(a, b, parts + 1)).astype(int)
        return [(int(x), int(y)) for x, y in itertools.pairwise(cut)]

    def cases(self, split: str) -> list[Window]:
        """The windows of ``split`` with their traces, recorded in the benchmark's ledger."""
        from kvgym.agents.benchmark import LEDGER
        from kvgym.traces.requests import slice_requests

        LEDGER.check(split, "the serving windows")
        out = []
        for a, b in self.windows(split):
            label = f"{self.letter}:{split}:requests[{a},{b})"
            LEDGER.record(split, label)
            tr = slice_requests(full_trace(self.dataset), a, b)
            out.append(Window(label, tr, NextRequest(tr)))
        return out

    def config(self):
        from kvgym.sim.serving.config import ServingConfig

        return ServingConfig.from_dict(self.serving)


@lru_cache(maxsize=2)
def full_trace(dataset: str):
    from kvgym.workloads.request_sources import request_trace

    return request_trace(dataset)


class NextRequest:
    """For every block of a trace, the requests whose prompt chain references it: one sorted key
    ``block * (requests + 1) + request`` per reference, so a lookup is one vectorised search."""

    def __init__(self, trace):
        self.n = len(trace)
        blk = np.asarray(trace.blocks, np.int64)
        req = np.repeat(np.arange(self.n, dtype=np.int64), np.diff(trace.offsets))
        key = np.sort(blk * (self.n + 1) + req)
        # A sentinel past every block, so that every search lands on a key.
        self.key = np.append(key, trace.n_blocks * (self.n + 1))

    def after(self, blocks, r: int) -> np.ndarray:
        """For each block, the first request index >= ``r`` referencing it (:data:`NEVER` if none)."""
        b = np.asarray(blocks, np.int64)
        k = self.key[np.searchsorted(self.key, b * (self.n + 1) + r)]
        return np.where(k // (self.n + 1) == b, k % (self.n + 1), NEVER)


@dataclass(frozen=True)
class Window:
    label: str
    trace: object
    nxt: NextRequest


class PrefixBelady(Policy):
    """The farthest next reference among the evictable leaves (module docstring). Not registered:
    it needs the trace it runs on (``PrefixBelady(trace)``), and it runs through Python callbacks."""

    name = "prefix_belady"
    privileged = True

    def __init__(self, trace):
        self.nxt = NextRequest(trace)

    def scores(self, cands: np.ndarray, step: int) -> np.ndarray:
        nxt = self.nxt.after(cands, self.ctx.req).astype(np.float64)
        return np.where(self.ctx.kids[cands] > 0, 2.0 * NEVER, -nxt)  # lowest goes first: leaves, farthest first


def misses_of(metrics) -> int:
    """Prompt blocks not served from HBM as part of a usable prefix."""
    return int(metrics.prompt_blocks) - int(metrics.prefix_hits[0])


def policy_misses(fam: ServingFamily, w: Window, policy) -> int:
    """Misses of a baseline (by name, compiled engine) or of a policy object on window ``w``."""
    from kvgym.sim.serving import simulate_serving

    return misses_of(simulate_serving(w.trace, fam.config(), policy))


# -- acting in the env --------------------------------------------------------------------------
def make_env(fam: ServingFamily):
    from kvgym.envs.prefix import PrefixCacheEnv

    return PrefixCacheEnv(config={"serving": fam.serving, "k": fam.k, "sample": fam.sample, "victims": "leaves",
                                  "evict_tiers": [0], "policy": "radix_lru", "reward": "prefill_tokens"})


def rollout(env, w: Window, actor, seed: int, record: bool = False) -> tuple[int, list]:
    """One episode on window ``w`` acting with ``actor(obs) -> slot``: ``(misses, samples)``; with
    ``record``, a sample per decision: ``(candidates, context, mask, teacher's slots)``."""
    from kvgym.envs.config import NoDecisionError

    try:
        obs, _ = env.reset(seed=seed, options={"trace": w.trace})
    except NoDecisionError:  # nothing to evict: every policy gets the same misses
        from kvgym.sim.serving import simulate_serving

        return misses_of(simulate_serving(w.trace, env.unwrapped.serving, "radix_lru")), []
    samples = []
    u = env.unwrapped
    if hasattr(actor, "begin"):
        actor.begin(u, w.trace)
    while True:
        if record:
            m = obs["action_mask"].astype(bool)
            valid = np.flatnonzero(m)
            nxt = w.nxt.after(u.candidate_pages()[valid], u.request)
            target = np.zeros_like(m)
            target[valid[nxt == nxt.max()]] = True
            samples.append((obs["candidates"], obs["context"], m, target))
        obs, _, term, trunc, _ = env.step(int(actor(obs)))
        if term or trunc:
            return misses_of(u.metrics()), samples


class ServingAgent:
    """A trained scorer acting in ``PrefixCache-v0``: the shown slot with the highest score."""

    def __init__(self, model):
        from kvgym.agents.model import NumpyScorer

        self.model = model
        self.score = NumpyScorer(model)

    def __call__(self, obs) -> int:
        return int(np.argmax(self.score(obs["candidates"], obs["context"], obs["action_mask"])))


def lru_first(obs) -> int:
    return 0


class ServingGate:
    """The serving agent as shipped: the safety gate of :mod:`kvgym.agents.gate` with two experts,
    the agent and ``radix_lru`` (slot 0: the least recently used leaf).

    At each decision the gate executes the leader's victim ``v``; when the other expert named another
    block ``u``, the pair is settled by whichever of the two a later prompt references first, read
    from the prompts of the requests placed so far (up to :attr:`PrefixCacheEnv.request
    <kvgym.envs.prefix.PrefixCacheEnv.request>`; never ahead): ``v`` first, the other expert would have
    saved that miss; ``u`` first, it would have cost one. Decay, margins and the start with LRU are the
    decode gate's (:class:`~kvgym.agents.gate.GateArgs`); it has no third, fallback expert.
    """

    def __init__(self, agent, args=None):
        from kvgym.agents.gate import GateArgs

        self.agent, self.args = agent, args or GateArgs()
        self.followed = np.zeros(2, np.int64)  # decisions executed per expert (agent, lru), last episode

    def begin(self, env, trace) -> None:
        """A new episode of ``env`` (the unwrapped env) on ``trace``."""
        from kvgym.agents.gate import Regret

        self.env, self.trace = env, trace
        self.seen = -1  # prompts scanned: requests 0 .. seen
        self.regret = Regret(self.args, 2, 1)  # experts (agent, radix_lru); radix_lru leads first
        self.pending: dict[int, list] = {}
        self.followed[:] = 0

    def _settle(self, upto: int) -> None:
        for r in range(self.seen + 1, upto + 1):
            for b in self.trace.chain(r).tolist() if self.pending else ():
                for c in self.pending.pop(b, ()):
                    if c[3]:
                        continue  # settled by its other block already
                    c[3] = True
                    self.regret.settle(c[4], c[2], b == c[0])
        self.seen = max(self.seen, upto)

    def __call__(self, obs) -> int:
        u = self.env
        self._settle(u.request)
        slots = (int(self.agent(obs)), 0)
        x = self.regret.lead()
        pages = u.candidate_pages()
        v, other = int(pages[slots[x]]), int(pages[slots[1 - x]])
        if other != v:
            c = [v, other, 1 - x, False, x]
            self.pending.setdefault(v, []).append(c)
            self.pending.setdefault(other, []).append(c)
        self.followed[x] += 1
        return slots[x]


# -- training -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServingArgs:
    """Imitation in serving mode (module docstring).

    Attributes:
        seed: torch initialisation, candidate sampling and minibatch order.
        hidden: scorer width.
        rounds: DAgger rounds (round 0 follows slot 0, the others the model of the round before).
        epochs, batch_size, learning_rate: each round's training of a fresh scorer on every
            sample gathered so far (Adam).
        max_train_windows, max_validation_windows: use only the first N windows (``None``: all);
            for smoke tests.
        progress: log a line per round.
    """

    seed: int = 0
    hidden: int = 64
    rounds: int = 3
    epochs: int = 8
    batch_size: int = 256
    learning_rate: float = 1e-3
    max_train_windows: int | None = None
    max_validation_windows: int | None = None
    progress: bool = True

    def __post_init__(self):
        w = "train serving"
        need_int(w, "seed", self.seed, 0)
        need_int(w, "hidden", self.hidden, 4)
        need_int(w, "rounds", self.rounds, 1)
        need_int(w, "epochs", self.epochs, 1)
        need_int(w, "batch_size", self.batch_size, 1)
        need_num(w, "learning_rate", self.learning_rate, 0.0, lo_open=True)
        for f in ("max_train_windows", "max_validation_windows"):
            if getattr(self, f) is not None:
                need_int(w, f, getattr(self, f), 1)
        need_bool(w, "progress", self.progress)


def fit(samples: list, args: ServingArgs, n_context: int):
    """A fresh scorer trained on ``samples`` (the set loss of the module docstring)."""
    import torch

    from kvgym.agents.model import CandidateScorer, ScorerConfig

    torch.manual_seed(args.seed)
    c = torch.as_tensor(np.stack([s[0] for s in samples]))
    g = torch.as_tensor(np.stack([s[1] for s in samples]))
    m = torch.as_tensor(np.stack([s[2] for s in samples]))
    t = torch.as_tensor(np.stack([s[3] for s in samples]))
    model = CandidateScorer(ScorerConfig(c.shape[2], n_context, args.hidden))
    opt = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    gen = torch.Generator().manual_seed(args.seed)
    for _ in range(args.epochs):
        for idx in torch.randperm(len(c), generator=gen).split(args.batch_size):
            s = model(c[idx], g[idx], m[idx])
            loss = (torch.logsumexp(s, 1) - torch.logsumexp(s.masked_fill(~t[idx], -1e9), 1)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def validation_score(fam, env, windows, refs, actor, seed: int) -> tuple[float | None, list[int]]:
    from kvgym.oracle.gap import pooled_gap_closed

    misses = [rollout(env, w, actor, seed + i)[0] for i, w in enumerate(windows)]
    return pooled_gap_closed((m, lru, orc) for m, (lru, orc) in zip(misses, refs)), misses


def train(args: ServingArgs, folder, log=print) -> dict:
    """Train one agent into ``folder`` (``model.pt``: a state dict; ``agent.json``: everything else)."""
    from kvgym.agents.benchmark import LEDGER, load_benchmark
    from kvgym.agents.common import seed_everything
    from kvgym.agents.evaluation import pct
    from kvgym.agents.imitation import scorer_bytes
    from kvgym.envs.prefix_episode import n_context
    from kvgym.files import write_bytes, write_json

    seed_everything(args.seed)
    fam = load_benchmark().serving
    t0 = time.perf_counter()
    start = len(LEDGER.reads)
    with LEDGER.development():
        train_w = fam.cases("train")[:args.max_train_windows]
        val_w = fam.cases("validation")[:args.max_validation_windows]
    refs = [(policy_misses(fam, w, "radix_lru"), policy_misses(fam, w, PrefixBelady(w.trace))) for w in val_w]
    env = make_env(fam)
    G = n_context(len(fam.config().tiers))
    samples, history, best = [], [], None
    actor = lru_first
    for rnd in range(args.rounds):
        for i, w in enumerate(train_w):
            samples += rollout(env, w, actor, args.seed * 100_003 + i, record=True)[1]
        model = fit(samples, args, G)
        actor = ServingAgent(model)
        score, val_misses = validation_score(fam, env, val_w, refs, actor, 7_000_000 + args.seed)
        history.append({"round": rnd, "samples": len(samples), "validation_pooled_gap_closed": score,
                        "validation_misses": val_misses})
        if args.progress:
            log(f"  round {rnd}: {len(samples):,} labelled decisions, validation pooled gap closed {pct(score)}")
        if best is None or (score is not None and (best[0] is None or score > best[0])):
            best = (score, rnd, model)  # each round trains a fresh model: no copy needed
    env.close()
    folder = Path(folder)
    write_bytes(folder / "model.pt", scorer_bytes(best[2]))
    meta = {"kind": "serving-imitation", "family": fam.letter, "scorer": best[2].cfg.to_dict(), "args": asdict(args),
            "best_round": best[1], "validation_score": best[0], "validation_refs": refs, "history": history,
            "train_time_s": round(time.perf_counter() - t0, 1), "ledger": LEDGER.since(start)}
    write_json(folder / "agent.json", meta)
    return meta


def load(folder) -> ServingAgent:
    """A trained serving agent from its folder (weights read with ``weights_only=True``)."""
    from kvgym.agents.agent import read_state_dict
    from kvgym.agents.common import local_path
    from kvgym.agents.model import CandidateScorer, ScorerConfig
    from kvgym.files import read_json

    folder = local_path(folder, "serving agent")
    meta = read_json(folder / "agent.json", "serving agent")
    model = CandidateScorer(ScorerConfig(**meta["scorer"]))
    model.load_state_dict(read_state_dict(folder / "model.pt", "serving scorer"))
    return ServingAgent(model.eval())


# -- the held-out report ------------------------------------------------------------------------
def report(zoo, log=print) -> dict:
    """Score every agent folder ``zoo/serving-s*`` with the baselines and PrefixBelady on the test
    windows; per policy: pooled and mean gap closed, spreads, wins, traces worse than LRU."""
    from kvgym.agents.benchmark import LEDGER, load_benchmark
    from kvgym.agents.evaluation import sample_std
    from kvgym.files import read_json
    from kvgym.oracle.gap import gap_closed, mean_gap_closed, pooled_gap_closed

    fam = load_benchmark().serving
    folders = sorted(Path(zoo).glob("serving-s*"), key=lambda p: int(p.name.split("-s")[-1]))
    if not folders:
        raise ConfigError(f"{zoo}: no serving-s<seed> agent folders (train them with kvgym train serving)")
    with LEDGER.evaluation():
        test = fam.cases("test")
    rows = {name: [policy_misses(fam, w, name) for w in test] for name in fam.baselines}
    rows["prefix_belady"] = [policy_misses(fam, w, PrefixBelady(w.trace)) for w in test]
    per_seed: dict[str, list] = {"imitation+gate": [], "imitation": []}
    for f in folders:
        agent, env = load(f), make_env(fam)
        for name, actor in (("imitation+gate", ServingGate(agent)), ("imitation", agent)):
            per_seed[name].append([rollout(env, w, actor, 9_000_000 + i)[0] for i, w in enumerate(test)])
            log(f"  {f.name} as {name}: {sum(per_seed[name][-1]):,} misses on {len(test)} test windows")
        env.close()
    for name, runs in per_seed.items():
        rows[name] = [float(np.mean(col)) for col in zip(*runs)]
    lru, orc = rows["radix_lru"], rows["prefix_belady"]
    board = []
    for name, ms in rows.items():
        trip = list(zip(ms, lru, orc))
        gaps = [gap_closed(*t) for t in trip]
        others = [o for o in fam.baselines if o != name]
        ent = {"policy": name, "kind": "learned" if name in per_seed else "oracle" if name == "prefix_belady"
               else "baseline", "misses": ms, "pooled_gap_closed": pooled_gap_closed(trip),
               "mean_gap_closed": mean_gap_closed(trip), "gap_closed": gaps,
               "std_traces": sample_std(gaps),
               "wins": sum(all(m < rows[o][i] for o in others) for i, m in enumerate(ms)),
               "worse_than_lru": sum(m > lr for m, lr in zip(ms, lru)),
               "worst_excess_pct": max(0.0, *(100.0 * (m - lr) / lr for m, lr in zip(ms, lru) if lr))}
        if name in per_seed:
            seeds = [pooled_gap_closed(zip(s, lru, orc)) for s in per_seed[name]]
            ent.update(per_seed_misses=per_seed[name], std_seeds=sample_std(seeds))
        board.append(ent)
    board.sort(key=lambda e: -(e["pooled_gap_closed"] if e["pooled_gap_closed"] is not None else -math.inf))
    meta = [read_json(f / "agent.json", "serving agent") for f in folders]
    return {"family": asdict(fam), "windows": [w.label for w in test], "board": board,
            "agents": [f.name for f in folders], "train_time_s": [m["train_time_s"] for m in meta],
            "best_round": [m["best_round"] for m in meta]}


def render(rep: dict) -> str:
    fam = rep["family"]
    f1 = lambda v: "–" if v is None else f"{v:.1f}"
    n = len(rep["windows"])
    L = [f"# Family {fam['letter']}: learned eviction in serving mode (held-out test windows)", "",
         ("Produced by `kvgym train serving` (training, then this report); every number is in `leaderboard.json`. "
          "Family declared in `agents/benchmark.json` (key `serving`; docs/agents.md). " + fam["doc"]), "",
         (f"Test windows ({n}, never read by training or model selection): {', '.join(rep['windows'])}. Misses: "
          "prompt blocks not served from HBM as part of a usable prefix. Gap closed (`kvgym.oracle.gap`): "
          "`radix_lru` = 0, `prefix_belady` = 100. A learned agent's misses are the mean over its training seeds "
          f"({', '.join(rep['agents'])}; best DAgger round {rep['best_round']}, chosen on the bare model's validation "
          f"score; training {rep['train_time_s']} s); *imitation+gate* is the agent as shipped, inside the safety gate "
          "against `radix_lru` (`kvgym.agents.serving.ServingGate`), *imitation* the bare model."),
         "", ("| rank | policy | kind | pooled gap closed | mean gap closed | std (traces, ddof 1) | std (seeds) | "
         "misses (sum) | wins vs every baseline | worse than radix_lru | worst excess over radix_lru |"),
         "|---|---|---|---:|---:|---:|---:|---:|---|---|---:|"]
    for i, e in enumerate(rep["board"], 1):
        name = f"**{e['policy']}**" if e["kind"] == "learned" else e["policy"]
        L.append(f"| {i} | {name} | {e['kind']} | {f1(e['pooled_gap_closed'])} | {f1(e['mean_gap_closed'])} | "
                 f"{f1(e['std_traces'])} | {f1(e.get('std_seeds'))} | {sum(e['misses']):,.0f} | {e['wins']}/{n} | "
                 f"{e['worse_than_lru']}/{n} | {e['worst_excess_pct']:.1f}% |")
    L += ["", "Per window (misses):", "", "| policy | " + " | ".join(rep["windows"]) + " |",
          "|---|" + "---:|" * n]
    for e in rep["board"]:
        L.append(f"| {e['policy']} | " + " | ".join(f"{m:,.1f}" if isinstance(m, float) else f"{m:,}"
                                                    for m in e["misses"]) + " |")
    return "\n".join(L) + "\n"


def write_report(zoo, log=print) -> tuple[Path, Path]:
    from kvgym.files import write_json, write_text

    rep = report(zoo, log)
    zoo = Path(zoo)
    return write_text(zoo / "leaderboard.md", render(rep)), write_json(zoo / "leaderboard.json", rep)
