"""Belady imitation with DAgger (the Parrot approach), one readable script.

Liu et al., "An Imitation Learning Approach for Cache Replacement" (ICML 2020) train a model to
rank cache lines by next-use distance with labels from Belady's oracle, and roll out the
learned policy so that it also learns from the states its own mistakes lead to (DAgger, Ross et
al. 2011). Here:

1. **Label.** At every eviction decision of ``kvgym/Evict-v0`` the oracle's privileged view
   (:mod:`kvgym.agents.labels`) gives each shown candidate's next-use position. The target is
   Belady's choice among the shown candidates: the one(s) used farthest in the future (ties,
   e.g. several pages never used again, share the target mass).
2. **Model.** :class:`kvgym.agents.model.CandidateScorer` scores each candidate from its env
   features, its LRU rank and the context; the policy is the softmax over valid slots.
3. **Loss.** ``pairwise`` (default): a logistic loss on every pair of candidates whose next
   uses differ (the farther one should score higher), Parrot's ranking view; ``listwise``:
   cross-entropy between the softmax and the uniform distribution over the farthest candidates;
   ``both``: their sum; ``regression``: squared error to ``log(1 + distance)``. On the default task
   the pairwise loss generalises best: where the future is random (uniform draws from a working
   set) the argmax label is noise, while the order "a page read again soon vs. a stale page"
   is still learnable.
4. **DAgger.** Iteration 0 rolls out the oracle (behaviour cloning); iteration ``i >= 1`` rolls out
   a mixture that follows the oracle with probability ``beta0 * beta_decay ** (i - 1)`` and the
   current model otherwise; every visited state is labelled by the oracle, added to the data
   set, and the model is trained further on the aggregate. After each iteration the model is
   scored on the validation traces (fraction of the LRU-to-Belady miss gap closed); the best
   iteration's weights are kept.

Only ``train`` traces are rolled out and only ``validation`` traces are evaluated
(:mod:`kvgym.agents.task`); the test split is read after training, by
:mod:`kvgym.agents.evaluation`. Run it with ``kvgym train imitation --config FILE.json``.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kvgym.agents.common import is_int, is_num, need
from kvgym.agents.task import LEDGER, TaskArgs

LOSSES = ("listwise", "pairwise", "both", "regression")
PAIR_WEIGHTS = ("uniform", "logdist")


@dataclass(frozen=True)
class ImitationArgs(TaskArgs):
    """Arguments of :func:`train` (JSON-serialisable; ``kvgym train imitation --set key=value``).

    Attributes (beyond :class:`~kvgym.agents.task.TaskArgs`):
        seed: seeds torch, the data order, the DAgger coin flips and the env's candidate draws.
        hidden: scorer width.
        dagger_iters: DAgger iterations after the oracle's behaviour-cloning pass.
        beta0, beta_decay: probability of following the oracle in DAgger iteration ``i >= 1``
            is ``beta0 * beta_decay ** (i - 1)``.
        epochs: passes over the aggregated data set after each rollout.
        batch_size, lr, weight_decay: Adam on minibatches of decisions.
        loss: ``pairwise``, ``listwise``, ``both`` or ``regression`` (see the module docstring).
        pair_weight: ``uniform`` (every ordered pair counts 1) or ``logdist`` (a pair counts
            ``|log(1 + d_i) - log(1 + d_j)|``, so near-ties in next use, noise on random workloads,
            weigh little).
        history: append the history features (:mod:`kvgym.agents.features`) to the env's.
        time_budget_s: stop starting new DAgger iterations after this much wall time (s).
        progress: show the tqdm progress bar.
    """

    seed: int = 0
    hidden: int = 64
    dagger_iters: int = 6
    beta0: float = 0.5
    beta_decay: float = 0.5
    epochs: int = 6
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-5
    loss: str = "pairwise"
    pair_weight: str = "uniform"
    history: bool = True
    time_budget_s: float = 1200.0
    progress: bool = True

    def validate(self) -> None:
        super().validate()
        o = type(self).__name__
        need(o, "seed", self.seed, is_int(self.seed) and self.seed >= 0, "an int >= 0")
        need(o, "hidden", self.hidden, is_int(self.hidden) and 4 <= self.hidden <= 1024, "an int in [4, 1024]")
        need(o, "dagger_iters", self.dagger_iters, is_int(self.dagger_iters) and self.dagger_iters >= 0, "an int >= 0")
        for f in ("beta0", "beta_decay"):
            v = getattr(self, f)
            need(o, f, v, is_num(v) and 0.0 <= v <= 1.0, "a number in [0, 1]")
        need(o, "epochs", self.epochs, is_int(self.epochs) and self.epochs >= 1, "an int >= 1")
        need(o, "batch_size", self.batch_size, is_int(self.batch_size) and self.batch_size >= 1, "an int >= 1")
        need(o, "lr", self.lr, is_num(self.lr) and self.lr > 0, "a number > 0")
        need(o, "weight_decay", self.weight_decay, is_num(self.weight_decay) and self.weight_decay >= 0, "a number >= 0")
        need(o, "loss", self.loss, self.loss in LOSSES, f"one of {', '.join(LOSSES)}")
        need(o, "pair_weight", self.pair_weight, self.pair_weight in PAIR_WEIGHTS, f"one of {', '.join(PAIR_WEIGHTS)}")
        need(o, "time_budget_s", self.time_budget_s, is_num(self.time_budget_s) and self.time_budget_s > 0, "a number > 0")
        need(o, "history", self.history, isinstance(self.history, bool), "true or false")
        need(o, "progress", self.progress, isinstance(self.progress, bool), "true or false")


# -- data -----------------------------------------------------------------------------------
class Dataset:
    """Labelled decisions: each stores only its valid candidate rows (they are slots ``0..n-1``)."""

    def __init__(self):
        self.cand: list[np.ndarray] = []
        self.ctx: list[np.ndarray] = []
        self.dist: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.cand)

    def add(self, obs: dict, next_use: np.ndarray, valid: np.ndarray, pos: int, n_acc: int) -> None:
        n = int(valid.sum())
        self.cand.append(np.asarray(obs["candidates"][:n], np.float32).copy())
        self.ctx.append(np.asarray(obs["context"], np.float32).copy())
        # Distance in accesses to the next use; never again = beyond the end of the trace.
        self.dist.append(np.where(next_use[:n] >= n_acc, n_acc + 1 - pos, next_use[:n] - pos).astype(np.float32))

    def arrays(self):
        """Padded ``(cand[N, W, F], ctx[N, G], mask[N, W], dist[N, W])`` with ``W`` the widest decision."""
        w = max(len(d) for d in self.dist)
        n, f = len(self), self.cand[0].shape[1]
        cand = np.zeros((n, w, f), np.float32)
        mask = np.zeros((n, w), bool)
        dist = np.full((n, w), -1.0, np.float32)
        for i, (c, d) in enumerate(zip(self.cand, self.dist)):
            cand[i, : len(d)] = c
            mask[i, : len(d)] = True
            dist[i, : len(d)] = d
        return cand, np.stack(self.ctx), mask, dist


def loss_fn(kind: str, scores, mask, dist, weighted: bool = False):
    """Imitation loss of a minibatch (see the module docstring). ``dist``: next-use distances."""
    import torch
    import torch.nn.functional as F

    total = scores.new_zeros(())
    if kind in ("listwise", "both"):
        far = dist.masked_fill(~mask, -1.0)
        best = far.amax(1, keepdim=True)
        target = ((far == best) & mask).float()
        target = target / target.sum(1, keepdim=True)
        logp = torch.log_softmax(scores, 1)
        total = total - (target * logp.masked_fill(~mask, 0.0)).sum(1).mean()
    if kind == "regression":
        # Predict log(1 + distance) of every valid candidate; evicting the highest prediction.
        tgt = torch.log1p(dist.clamp(min=0.0))
        err = (scores - tgt).masked_fill(~mask, 0.0)
        total = total + (err ** 2).sum() / mask.sum().clamp(min=1)
    if kind in ("pairwise", "both"):
        # For every pair (i, j) with dist_i > dist_j, want score_i > score_j; with ``weighted``, a
        # pair counts by how far apart the two next uses are (|log ratio|): near-ties are noise.
        diff = scores.unsqueeze(2) - scores.unsqueeze(1)  # s_i - s_j
        want = (dist.unsqueeze(2) > dist.unsqueeze(1)) & mask.unsqueeze(2) & mask.unsqueeze(1)
        w = want.float()
        if weighted:
            ld = torch.log1p(dist.clamp(min=0.0))
            w = w * (ld.unsqueeze(2) - ld.unsqueeze(1)).abs()
        total = total + (F.softplus(-diff) * w).sum() / w.sum().clamp(min=1e-6)
    return total


# -- rollouts -------------------------------------------------------------------------------
def rollout(model, lt, args: ImitationArgs, beta: float, rng: np.random.Generator, data: Dataset, env_seed: int):
    """One episode on training trace ``lt``, following the oracle with probability ``beta`` (and
    ``model``, a :class:`~kvgym.agents.model.NumpyScorer` or ``None``, otherwise); every decision
    is labelled and added to ``data``. Returns the episode's tier-0 misses."""
    import gymnasium as gym

    from kvgym.agents.features import HistoryTracker
    from kvgym.agents.labels import FutureView, candidate_next_use, decision_pos, oracle_slot

    future = FutureView(lt.trace.page)
    hist = HistoryTracker() if args.history else None
    env = gym.make("kvgym/Evict-v0", trace=lt.trace, reward="misses", disable_env_checker=True, **args.env_kwargs())
    try:
        obs, info = env.reset(seed=env_seed)
        n_acc = len(lt.trace)
        while True:
            if hist is not None:
                obs = hist.augment(env, obs)
            nu, valid = candidate_next_use(env, future)
            data.add(obs, nu, valid, decision_pos(env), n_acc)
            if model is None or rng.random() < beta:
                a = oracle_slot(nu, valid)
            else:
                a = int(np.argmax(model(obs["candidates"], obs["context"], obs["action_mask"].astype(bool))))
            obs, _, term, trunc, info = env.step(a)
            if term or trunc:
                return int(info["metrics"].misses)
    finally:
        env.close()


def validation_gap(model, manifest: dict, traces, args) -> tuple[float | None, list[dict]]:
    """Mean fraction (%) of the LRU-to-Belady gap the model closes on ``traces`` (and per trace)."""
    from kvgym.agents.agent import ImitationAgent
    from kvgym.agents.evaluation import score_agent

    rows = [score_agent(ImitationAgent(model, manifest), args, lt) for lt in traces]
    gaps = [r["gap_closed"] for r in rows if r["gap_closed"] is not None]
    return (float(np.mean(gaps)) if gaps else None), rows


def manifest_for(args: ImitationArgs, scorer_cfg) -> dict:
    from kvgym.agents.features import HISTORY_FEATURES
    from kvgym.envs.observation import FEATURES

    return {"kind": "imitation", "model": "model.pt", "scorer": scorer_cfg.to_dict(), "features": list(FEATURES),
            "history_features": list(HISTORY_FEATURES) if args.history else [], "task": args.task_dict()}


def train(args: ImitationArgs, out: str | Path | None = None, log=print) -> dict:
    """Train per ``args``; with ``out``, write the agent folder (see :mod:`kvgym.agents.agent`).

    Returns the training metrics (also written to ``metrics.json``).
    """
    import torch
    from tqdm import tqdm

    from kvgym.agents.common import seed_everything
    from kvgym.agents.model import CandidateScorer, NumpyScorer, ScorerConfig
    from kvgym.envs.observation import N_FEATURES, n_context
    from kvgym.files import write_bytes

    t0 = time.perf_counter()
    seed_everything(args.seed)
    ledger_start = len(LEDGER)
    train_traces = args.traces("train")
    val_traces = args.traces("validation")
    n_tiers = _n_tiers(args)
    from kvgym.agents.features import HISTORY_FEATURES

    cfg = ScorerConfig(N_FEATURES + (len(HISTORY_FEATURES) if args.history else 0), n_context(n_tiers), args.hidden)
    model = CandidateScorer(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    manifest = manifest_for(args, cfg)
    rng = np.random.Generator(np.random.PCG64(args.seed))
    gen = torch.Generator().manual_seed(args.seed)
    data = Dataset()
    history = []
    best = (-np.inf, None, -1)
    bar = tqdm(total=args.dagger_iters + 1, desc="imitation", unit="iter", disable=not args.progress, leave=False)
    for it in range(args.dagger_iters + 1):
        if it > 0 and time.perf_counter() - t0 > args.time_budget_s:
            log(f"time budget {args.time_budget_s:.0f} s reached after {it} iterations")
            break
        beta = 1.0 if it == 0 else args.beta0 * args.beta_decay ** (it - 1)
        model.eval()
        fast = None if it == 0 else NumpyScorer(model)
        misses = [rollout(fast, lt, args, beta, rng, data,
                          env_seed=args.seed * 1_000_003 + it * 10_007 + j) for j, lt in enumerate(train_traces)]
        cand, ctx, mask, dist = (torch.as_tensor(a) for a in data.arrays())
        model.train()
        losses = []
        for _ in range(args.epochs):
            perm = torch.randperm(len(cand), generator=gen)
            for b in range(0, len(perm), args.batch_size):
                idx = perm[b:b + args.batch_size]
                loss = loss_fn(args.loss, model(cand[idx], ctx[idx], mask[idx]), mask[idx], dist[idx],
                               args.pair_weight == "logdist")
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
        model.eval()
        vgap, vrows = validation_gap(model, manifest, val_traces, args)
        row = {"iteration": it, "beta": beta, "decisions": len(data), "rollout_misses": int(np.sum(misses)),
               "loss": float(np.mean(losses[-max(1, len(losses) // args.epochs):])),
               "validation_gap_closed": vgap, "elapsed_s": round(time.perf_counter() - t0, 3)}
        history.append(row)
        score = -np.inf if vgap is None else vgap
        if score > best[0] or best[1] is None:
            best = (score, {k: v.detach().clone() for k, v in model.state_dict().items()}, it)
        bar.update(1)
        bar.set_postfix(decisions=len(data), loss=f"{row['loss']:.3f}",
                        val_gap=("-" if vgap is None else f"{vgap:.1f}%"))
        log(f"iter {it}: beta {beta:.3f}, {len(data)} decisions, rollout misses {row['rollout_misses']}, "
            f"loss {row['loss']:.4f}, validation gap closed "
            f"{'-' if vgap is None else f'{vgap:.1f}%'} ({row['elapsed_s']:.1f} s)")
    bar.close()
    model.load_state_dict(best[1])
    train_s = time.perf_counter() - t0
    vgap, vrows = validation_gap(model, manifest, val_traces, args)
    metrics = {"algo": "imitation", "seed": args.seed, "train_time_s": round(train_s, 2),
               "best_iteration": best[2], "decisions": len(data), "validation_gap_closed": vgap,
               "validation": vrows, "history": history,
               "traces_read": [f"{s}:{lab}" for s, lab in LEDGER[ledger_start:]],
               "parameters": int(sum(p.numel() for p in model.parameters()))}
    if out is not None:
        from kvgym.agents.agent import write_manifest
        from kvgym.files import write_json

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        # Through a buffer: torch names the archive after the file, so a temp file's name would
        # make equal weights give different bytes.
        buf = io.BytesIO()
        torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, buf)
        write_bytes(out / "model.pt", buf.getvalue())
        write_json(out / "config.json", {"algo": "imitation", "args": args.to_dict()})
        write_json(out / "metrics.json", metrics)
        write_manifest(out, manifest)
    return metrics


def _n_tiers(args: TaskArgs) -> int:
    from kvgym.sim.tiers import profile

    return len(profile(args.scenario_obj().profile).tiers)


