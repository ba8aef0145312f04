"""Belady imitation with DAgger on a mixture of benchmark families (the Parrot approach), one script.

Liu et al., "An Imitation Learning Approach for Cache Replacement" (ICML 2020) train a model to
rank cache lines by next-use distance with labels from Belady's oracle, and roll out the learned
policy so that it also learns from the states its own mistakes lead to (DAgger, Ross et al.
2011). Here:

1. **Data.** Every training case of every trained family (:mod:`kvgym.agents.benchmark`) is an
   episode of ``kvgym/Evict-v0``. A DAgger iteration rolls out ``cases_per_family`` cases of
   each family (drawn anew each iteration) and keeps about ``decisions_per_family`` of their
   decisions per family (a random subset), so every family weighs the same whatever its length.
2. **Observation.** The agent's own scale-free features (:mod:`kvgym.agents.features`): per-page
   history, attention mass, layer and block position, and a sequence context.
3. **Labels.** Each shown candidate's next-use distance (accesses) from the oracle's privileged
   view (:mod:`kvgym.agents.labels`), plus the case's *relaxed-Belady boundary*: the
   ``relaxed_quantile`` of the next-use distances of the candidates MIN would have chosen at the
   decisions of the first pass over the case.
4. **Loss** (``pairwise``, default): a logistic loss on every pair of candidates whose next uses
   differ (the farther should score higher), *except* pairs whose nearer member is itself beyond
   the boundary (relaxed Belady: both are fine victims, their order is noise); ``listwise``:
   cross-entropy to the farthest candidates; ``both``: their sum; ``relaxed``: LRB's relaxed
   Belady as a classification (binary cross-entropy: is the next use beyond the boundary?).
5. **DAgger.** Iteration 0 rolls out LRU; iteration ``i >= 1`` follows the oracle with
   probability ``beta0 * beta_decay ** (i - 1)`` and the model otherwise. Not the oracle first:
   in the states Belady's MIN visits, the pages that stayed long in the cache are the ones it
   knew would come back, so its states teach "evict the recently used" (on the decode family
   the LRU order ranks MIN's candidates backwards, pair accuracy 0.27), which in an online
   policy's states is MRU and loses to LRU. After each iteration
   the model (and its gated form, :mod:`kvgym.agents.gate`) is scored on the validation cases
   (:func:`kvgym.agents.evaluation.selection_score`: the mean over families of the pooled gap
   closed); the best iteration's weights are kept.

Everything runs inside ``LEDGER.development()``: a test case cannot be read. ``kvgym train
imitation --config FILE.json`` runs it.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kvgym.agents.common import is_int, is_num, need
from kvgym.agents.evaluation import pct
from kvgym.agents.task import TaskArgs

LOSSES = ("listwise", "pairwise", "both", "relaxed")


@dataclass(frozen=True)
class ImitationArgs(TaskArgs):
    """Arguments of :func:`train` (JSON-serialisable; ``kvgym train imitation --set key=value``).

    Attributes (beyond :class:`~kvgym.agents.task.TaskArgs`):
        seed: seeds torch, the case and decision draws, the DAgger coin flips and the env.
        hidden: scorer width.
        dagger_iters: DAgger iterations after the first pass (which follows LRU).
        beta0, beta_decay: probability of following the oracle in iteration ``i >= 1`` is
            ``beta0 * beta_decay ** (i - 1)``.
        cases_per_family: training cases of each family rolled out per iteration.
        decisions_per_family: decisions of each family kept per iteration (a random subset).
        max_decisions: cap on the aggregated data set (a random subset is kept beyond it).
        epochs: passes over the aggregated data set after each rollout.
        batch_size, lr, weight_decay: Adam on minibatches of decisions.
        loss: ``pairwise``, ``listwise``, ``both`` or ``relaxed`` (module docstring).
        relaxed_quantile: quantile of MIN's victim distances taken as the relaxed-Belady boundary
            (1.0 = no relaxation).
        gate_fallback: the fallback heuristic of the saved agent's safety gate ("" = no gate).
        time_budget_s: start a DAgger iteration only if it should end within this wall time (s),
            judging by the previous iteration's length.
        progress: show the tqdm progress bar.
    """

    seed: int = 0
    hidden: int = 64
    dagger_iters: int = 5
    beta0: float = 0.2
    beta_decay: float = 0.5
    cases_per_family: int = 10
    decisions_per_family: int = 5000
    max_decisions: int = 60000
    epochs: int = 4
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-5
    loss: str = "both"
    relaxed_quantile: float = 0.1
    gate_fallback: str = "arc"
    time_budget_s: float = 480.0
    progress: bool = True

    def validate(self) -> None:
        super().validate()
        o = type(self).__name__
        need(o, "seed", self.seed, is_int(self.seed) and self.seed >= 0, "an int >= 0")
        need(o, "hidden", self.hidden, is_int(self.hidden) and 4 <= self.hidden <= 1024, "an int in [4, 1024]")
        for f in ("dagger_iters",):
            need(o, f, getattr(self, f), is_int(getattr(self, f)) and getattr(self, f) >= 0, "an int >= 0")
        for f in ("cases_per_family", "decisions_per_family", "max_decisions", "epochs", "batch_size"):
            need(o, f, getattr(self, f), is_int(getattr(self, f)) and getattr(self, f) >= 1, "an int >= 1")
        for f in ("beta0", "beta_decay"):
            v = getattr(self, f)
            need(o, f, v, is_num(v) and 0.0 <= v <= 1.0, "a number in [0, 1]")
        need(o, "relaxed_quantile", self.relaxed_quantile,
             is_num(self.relaxed_quantile) and 0.0 < self.relaxed_quantile <= 1.0, "a number in (0, 1]")
        need(o, "lr", self.lr, is_num(self.lr) and self.lr > 0, "a number > 0")
        need(o, "weight_decay", self.weight_decay, is_num(self.weight_decay) and self.weight_decay >= 0, "a number >= 0")
        need(o, "loss", self.loss, self.loss in LOSSES, f"one of {', '.join(LOSSES)}")
        need(o, "time_budget_s", self.time_budget_s, is_num(self.time_budget_s) and self.time_budget_s > 0, "a number > 0")
        need(o, "progress", self.progress, isinstance(self.progress, bool), "true or false")
        need(o, "gate_fallback", self.gate_fallback, isinstance(self.gate_fallback, str), "a policy name or ''")
        if self.gate_fallback:
            from kvgym.agents.gate import GateArgs

            GateArgs(fallback=self.gate_fallback)


# -- data -----------------------------------------------------------------------------------
class Dataset:
    """Labelled decisions: each stores only its valid candidate rows (slots ``0..n-1``)."""

    def __init__(self):
        self.cand: list[np.ndarray] = []
        self.ctx: list[np.ndarray] = []
        self.dist: list[np.ndarray] = []
        self.bound: list[float] = []

    def __len__(self) -> int:
        return len(self.cand)

    def add(self, obs: dict, dist: np.ndarray, n: int, bound: float) -> None:
        self.cand.append(np.asarray(obs["candidates"][:n], np.float32).copy())
        self.ctx.append(np.asarray(obs["context"], np.float32).copy())
        self.dist.append(dist[:n].astype(np.float32))
        self.bound.append(bound)

    def keep(self, idx) -> None:
        self.cand = [self.cand[i] for i in idx]
        self.ctx = [self.ctx[i] for i in idx]
        self.dist = [self.dist[i] for i in idx]
        self.bound = [self.bound[i] for i in idx]

    def arrays(self):
        """Padded ``(cand[N, W, F], ctx[N, G], mask[N, W], dist[N, W], bound[N])``, ``W`` the widest decision."""
        w = max(len(d) for d in self.dist)
        n, f = len(self), self.cand[0].shape[1]
        cand = np.zeros((n, w, f), np.float32)
        mask = np.zeros((n, w), bool)
        dist = np.full((n, w), -1.0, np.float32)
        for i, (c, d) in enumerate(zip(self.cand, self.dist)):
            cand[i, : len(d)] = c
            mask[i, : len(d)] = True
            dist[i, : len(d)] = d
        return cand, np.stack(self.ctx), mask, dist, np.asarray(self.bound, np.float32)


def loss_fn(kind: str, scores, mask, dist, bound=None):
    """Imitation loss of a minibatch (module docstring). ``dist``: next-use distances; ``bound``:
    relaxed-Belady boundary per decision (``None``: no relaxation)."""
    import torch
    import torch.nn.functional as F

    total = scores.new_zeros(())
    if kind in ("listwise", "both"):
        far = dist.masked_fill(~mask, -1.0)
        if bound is not None:  # every candidate beyond the boundary is as good as the farthest
            far = torch.minimum(far, bound.unsqueeze(1))
        best = far.amax(1, keepdim=True)
        target = ((far == best) & mask).float()
        target = target / target.sum(1, keepdim=True)
        logp = torch.log_softmax(scores, 1)
        total = total - (target * logp.masked_fill(~mask, 0.0)).sum(1).mean()
    if kind == "relaxed":
        # LRB's relaxed Belady as a classification: is the candidate's next use beyond the boundary?
        if bound is None:
            bound = dist.masked_fill(~mask, -1.0).amax(1)
        y = (dist >= bound.unsqueeze(1)).float()
        bce = F.binary_cross_entropy_with_logits(scores.clamp(-30, 30), y, reduction="none")
        total = total + (bce * mask).sum() / mask.sum().clamp(min=1)
    if kind in ("pairwise", "both"):
        diff = scores.unsqueeze(2) - scores.unsqueeze(1)  # s_i - s_j
        want = (dist.unsqueeze(2) > dist.unsqueeze(1)) & mask.unsqueeze(2) & mask.unsqueeze(1)
        if bound is not None:  # the nearer one must be within the boundary to be a wrong victim
            want &= (dist < bound.unsqueeze(1)).unsqueeze(1)
        w = want.float()
        total = total + (F.softplus(-diff) * w).sum() / w.sum().clamp(min=1e-6)
    return total


# -- rollouts -------------------------------------------------------------------------------
def rollout(model, case, args: ImitationArgs, beta: float, rng, data: Dataset, keep: float,
            env_seed: int) -> tuple[int, list]:
    """One episode on ``case`` following the oracle with probability ``beta`` and otherwise ``model``
    (a :class:`~kvgym.agents.model.NumpyScorer`; ``None``: LRU, slot 0); each decision is labelled
    and kept in ``data`` with probability ``keep`` (its boundary is set by the caller). Returns the
    episode's misses and the next-use distances of the oracle's choices among the shown candidates
    (for the boundary)."""
    import gymnasium as gym

    from kvgym.agents.features import FeatureTracker
    from kvgym.agents.labels import FutureView, candidate_next_use, decision_pos, oracle_slot

    future = FutureView(case.trace.page)
    tracker = FeatureTracker()
    env = gym.make("kvgym/Evict-v0", scenario=case.scenario, trace=case.trace, reward="misses",
                   disable_env_checker=True, **args.env_kwargs())
    n_acc = len(case.trace)
    victims = []
    try:
        obs, info = env.reset(seed=env_seed)
        while True:
            nu, valid = candidate_next_use(env, future)
            n = int(valid.sum())
            pos = decision_pos(env)
            dist = np.where(nu >= n_acc, n_acc + 1 - pos, nu - pos)
            use_oracle = rng.random() < beta
            store = rng.random() < keep
            if store or not (use_oracle or model is None):
                o = tracker.observe(env, obs)
            if store:
                data.add(o, dist, n, np.inf)
            best = oracle_slot(nu, valid)
            victims.append(int(dist[best]))
            if use_oracle:
                a = best
            elif model is None:
                a = 0
            else:
                a = int(np.argmax(model(o["candidates"], o["context"], o["action_mask"].astype(bool))))
            obs, _, term, trunc, info = env.step(a)
            if term or trunc:
                return int(info["metrics"].misses), victims
    finally:
        env.close()


def manifest_for(args: ImitationArgs, scorer_cfg) -> dict:
    from kvgym.agents.features import CONTEXT, FEATURES
    from kvgym.envs.observation import FEATURES as ENV_FEATURES

    m = {"kind": "imitation", "model": "model.pt", "scorer": scorer_cfg.to_dict(), "features": list(ENV_FEATURES),
         "agent_features": list(FEATURES), "agent_context": list(CONTEXT), "env": args.env_kwargs(),
         "task": args.task_dict()}
    if args.gate_fallback:
        from kvgym.agents.gate import GateArgs

        m["gate"] = GateArgs(fallback=args.gate_fallback).to_dict()
    return m


def validate_model(model, manifest: dict, cases, env_kwargs: dict) -> dict:
    """The model and its gated form on ``cases``: rows and the selection score of each."""
    from kvgym.agents.agent import ImitationAgent
    from kvgym.agents.evaluation import by_family, score_cases, selection_score

    out = {}
    agent = ImitationAgent(model, manifest)
    rows = score_cases(agent, cases, env_kwargs)
    out["raw"] = {"score": selection_score(rows), "families": by_family(rows), "rows": rows}
    if manifest.get("gate"):
        from kvgym.agents.gate import GateArgs, GatedAgent

        rows = score_cases(GatedAgent(ImitationAgent(model, manifest), GateArgs.from_dict(manifest["gate"])), cases,
                           env_kwargs)
        out["gated"] = {"score": selection_score(rows), "families": by_family(rows), "rows": rows}
    return out


def scorer_bytes(model) -> bytes:
    """The scorer's state dict as ``torch.save`` bytes. Through a buffer: torch names the archive
    after the file, so a temporary file's name would make equal weights give different bytes."""
    import torch

    buf = io.BytesIO()
    torch.save({k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}, buf)
    return buf.getvalue()


def train(args: ImitationArgs, out: str | Path | None = None, log=print) -> dict:
    """Train per ``args`` (inside ``LEDGER.development()``); with ``out``, write the agent folder.

    Returns the training metrics (also written to ``metrics.json``).
    """
    from kvgym.agents.benchmark import LEDGER

    with LEDGER.development():
        return _train(args, out, log)


def _train(args: ImitationArgs, out, log) -> dict:
    import torch
    from tqdm import tqdm

    from kvgym.agents.benchmark import LEDGER
    from kvgym.agents.common import seed_everything
    from kvgym.agents.evaluation import policy_misses
    from kvgym.agents.features import N_CONTEXT, N_FEATURES
    from kvgym.agents.labels import relaxed_boundary
    from kvgym.agents.model import CandidateScorer, NumpyScorer, ScorerConfig

    t0 = time.perf_counter()
    seed_everything(args.seed)
    ledger_start = len(LEDGER.reads)
    train_cases = args.cases("train")
    val_cases = args.cases("validation")
    by_fam: dict[str, list] = {}
    for c in train_cases:
        by_fam.setdefault(c.family, []).append(c)
    cfg = ScorerConfig(N_FEATURES, N_CONTEXT, args.hidden)
    model = CandidateScorer(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    manifest = manifest_for(args, cfg)
    rng = np.random.Generator(np.random.PCG64(args.seed))
    gen = torch.Generator().manual_seed(args.seed)
    data = Dataset()
    bounds: dict[str, float] = {}
    history = []
    best = (-np.inf, None, -1, None)
    bar = tqdm(total=args.dagger_iters + 1, desc="imitation", unit="iter", disable=not args.progress, leave=False)
    last = 0.0
    for it in range(args.dagger_iters + 1):
        # Start an iteration only if one as long as the last still ends within the budget.
        if it > 0 and time.perf_counter() - t0 + last > args.time_budget_s:
            log(f"time budget {args.time_budget_s:.0f} s: stopping after {it} iterations")
            break
        t_it = time.perf_counter()
        beta = 0.0 if it == 0 else args.beta0 * args.beta_decay ** (it - 1)
        model.eval()
        fast = None if it == 0 else NumpyScorer(model)
        misses = 0
        for letter in sorted(by_fam):
            pool = by_fam[letter]
            picked = [pool[i] for i in sorted(rng.choice(len(pool), min(len(pool), args.cases_per_family),
                                                          replace=False))]
            # Keep about decisions_per_family of the picked cases' decisions (LRU's misses estimate them).
            est = sum(max(1, policy_misses(c, "lru")) for c in picked)
            keep = min(1.0, args.decisions_per_family / est)
            for j, c in enumerate(picked):
                first = len(data)
                m, victims = rollout(fast, c, args, beta, rng, data, keep, env_seed=args.seed * 1_000_003 + it * 10_007 + j)
                misses += m
                if c.label not in bounds and victims:  # from the first pass over the case
                    bounds[c.label] = relaxed_boundary(victims, args.relaxed_quantile)
                b = bounds.get(c.label, np.inf) if args.relaxed_quantile < 1.0 else np.inf
                data.bound[first:] = [b] * (len(data) - first)
        if len(data) > args.max_decisions:
            data.keep(np.sort(rng.choice(len(data), args.max_decisions, replace=False)))
        cand, ctx, mask, dist, bound = (torch.as_tensor(a) for a in data.arrays())
        model.train()
        losses = []
        for _ in range(args.epochs):
            perm = torch.randperm(len(cand), generator=gen)
            for b in range(0, len(perm), args.batch_size):
                idx = perm[b:b + args.batch_size]
                bd = None if args.relaxed_quantile >= 1.0 else bound[idx]
                loss = loss_fn(args.loss, model(cand[idx], ctx[idx], mask[idx]), mask[idx], dist[idx], bd)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
        model.eval()
        val = validate_model(model, manifest, val_cases, args.env_kwargs())
        vs = val["gated"]["score"] if "gated" in val else val["raw"]["score"]
        row = {"iteration": it, "beta": beta, "decisions": len(data), "rollout_misses": misses,
               "loss": float(np.mean(losses[-max(1, len(losses) // args.epochs):])),
               "validation": {k: {"score": v["score"], "families": v["families"]} for k, v in val.items()},
               "elapsed_s": round(time.perf_counter() - t0, 3)}
        history.append(row)
        last = time.perf_counter() - t_it
        score = -np.inf if vs is None else vs
        if score > best[0] or best[1] is None:
            best = (score, {k: v.detach().clone() for k, v in model.state_dict().items()}, it, val)
        bar.update(1)
        fams = " ".join(f"{f}:{pct(d['pooled_gap_closed'])}" for f, d in val["raw"]["families"].items())
        log(f"iter {it}: beta {beta:.3f}, {len(data)} decisions, loss {row['loss']:.4f}, validation score "
            f"{pct(val['raw']['score'])} raw / {pct(vs)} used (pooled by family: {fams}) ({row['elapsed_s']:.0f} s)")
    bar.close()
    model.load_state_dict(best[1])
    train_s = time.perf_counter() - t0
    val = best[3]
    metrics = {"algo": "imitation", "seed": args.seed, "train_time_s": round(train_s, 2), "best_iteration": best[2],
               "decisions": len(data), "validation_score": best[0] if np.isfinite(best[0]) else None,
               "validation": {k: v["rows"] for k, v in val.items()}, "history": history,
               "relaxed_boundaries": {k: (None if not np.isfinite(v) else v) for k, v in sorted(bounds.items())},
               "traces_read": LEDGER.since(ledger_start),
               "parameters": int(sum(p.numel() for p in model.parameters()))}
    if out is not None:
        save_agent(out, manifest, scorer_bytes(model), args, metrics)
    return metrics


def save_agent(out, manifest: dict, model_bytes: bytes, args, metrics: dict) -> Path:
    """Write an agent folder: the model file, ``config.json``, ``metrics.json`` and ``agent.json``."""
    from kvgym.agents.agent import write_manifest
    from kvgym.files import write_bytes, write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_bytes(out / manifest["model"], model_bytes)
    write_json(out / "config.json", {"algo": manifest["kind"], "args": args.to_dict()})
    write_json(out / "metrics.json", metrics)
    write_manifest(out, manifest)
    return out
