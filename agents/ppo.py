"""MaskablePPO on ``kvgym/Evict-v0``, one readable script.

sb3-contrib's ``MaskablePPO`` (PPO that never samples an invalid action: the env's
``action_masks()`` zeroes their probability) with a policy built for candidate sets:

- **policy**: :class:`CandidatePolicy`, whose actor is :class:`kvgym.agents.model.CandidateScorer`
  (the same network the imitation agent trains: each candidate scored from its own features,
  its LRU rank, the set's summary and the context, so slots are interchangeable) and whose critic
  reads the set summary. A flat MLP over the ``K x F`` matrix would have to learn the same
  scoring rule once per slot.
- **observations**: the env's, plus the history features (:mod:`kvgym.agents.features`) when
  ``history`` is on (the :class:`HistoryObs` wrapper appends them to the candidate rows).
- **reward**: ``misses`` (minus tier-0 misses since the previous decision): the quantity the gap
  closed is measured on.
- **data**: ``n_envs`` copies of the env in an SB3 ``DummyVecEnv`` (one process: the machine's
  cores are shared), each episode one whole training trace drawn at random from the task's
  ``train`` split; ``MaskableEvalCallback`` runs every validation trace once every
  ``eval_freq`` steps (mean episode reward), then :class:`GapCallback` scores the current
  policy's fraction of the LRU-to-Belady gap closed on them; the best-scoring weights are kept.
- optional TensorBoard logs (``tensorboard_log``), optional warm start of the scorer from an
  imitation agent (``init_from``).

Run it with ``kvgym train ppo --config FILE.json``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.callbacks import MaskableEvalCallback
from sb3_contrib.common.maskable.policies import MaskableMultiInputActorCriticPolicy
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import DummyVecEnv
from torch import nn

from kvgym.agents.common import is_int, is_num, need
from kvgym.agents.model import CandidateScorer, ScorerConfig
from kvgym.agents.task import LEDGER, TaskArgs


@dataclass(frozen=True)
class PPOArgs(TaskArgs):
    """Arguments of :func:`train` (JSON-serialisable; ``kvgym train ppo --set key=value``).

    Attributes (beyond :class:`~kvgym.agents.task.TaskArgs`; PPO's are SB3's, same names):
        seed: seeds torch, SB3 and the envs.
        hidden: scorer width.
        history: append the history features to the env's.
        total_timesteps: decisions to train on (all envs together).
        n_envs: env copies in the ``DummyVecEnv``.
        n_steps: decisions per env per rollout.
        batch_size, n_epochs, learning_rate, gamma, gae_lambda, clip_range, ent_coef, vf_coef,
            max_grad_norm: PPO's hyperparameters.
        eval_freq: decisions (all envs together) between validation runs.
        init_from: an imitation agent folder whose scorer initialises the actor ("" = none).
        tensorboard_log: folder for TensorBoard logs ("" = none).
        time_budget_s: stop training after this much wall time (s).
        progress: show the tqdm progress bar.
    """

    seed: int = 0
    hidden: int = 64
    history: bool = True
    total_timesteps: int = 100_000
    n_envs: int = 4
    n_steps: int = 256
    batch_size: int = 256
    n_epochs: int = 4
    learning_rate: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    eval_freq: int = 20_000
    init_from: str = ""
    tensorboard_log: str = ""
    time_budget_s: float = 1200.0
    progress: bool = True

    def validate(self) -> None:
        super().validate()
        o = type(self).__name__
        for f, lo in (("seed", 0), ("hidden", 4), ("total_timesteps", 1), ("n_envs", 1), ("n_steps", 2),
                      ("batch_size", 2), ("n_epochs", 1), ("eval_freq", 1)):
            v = getattr(self, f)
            need(o, f, v, is_int(v) and v >= lo, f"an int >= {lo}")
        for f in ("learning_rate", "clip_range", "max_grad_norm", "time_budget_s"):
            v = getattr(self, f)
            need(o, f, v, is_num(v) and v > 0, "a number > 0")
        for f in ("gamma", "gae_lambda"):
            v = getattr(self, f)
            need(o, f, v, is_num(v) and 0 <= v <= 1, "a number in [0, 1]")
        for f in ("ent_coef", "vf_coef"):
            v = getattr(self, f)
            need(o, f, v, is_num(v) and v >= 0, "a number >= 0")
        for f in ("history", "progress"):
            need(o, f, getattr(self, f), isinstance(getattr(self, f), bool), "true or false")
        for f in ("init_from", "tensorboard_log"):
            need(o, f, getattr(self, f), isinstance(getattr(self, f), str), "a string ('' = none)")


# -- env ------------------------------------------------------------------------------------
class HistoryObs(gym.ObservationWrapper):
    """Appends the history features to the candidate rows (``candidates``: ``(K, F + 3)``; zero rows
    in the terminal observation)."""

    def __init__(self, env):
        super().__init__(env)
        from kvgym.agents.features import HISTORY_FEATURES, HistoryTracker

        self.tracker = HistoryTracker()
        self.n_extra = len(HISTORY_FEATURES)
        k, f = env.observation_space["candidates"].shape
        self.observation_space = spaces.Dict({
            "candidates": spaces.Box(0.0, 1.0, (k, f + len(HISTORY_FEATURES)), np.float32),
            "context": env.observation_space["context"], "action_mask": env.observation_space["action_mask"]})

    def observation(self, obs):
        if self.env.unwrapped.phase == "done":  # terminal observation: zero history rows
            c = np.asarray(obs["candidates"], np.float32)
            return {**obs, "candidates": np.concatenate([c, np.zeros((c.shape[0], self.n_extra), np.float32)], 1)}
        return self.tracker.augment(self.env, obs)

    def action_masks(self) -> np.ndarray:
        return self.env.unwrapped.action_masks()


class CycleTraces(gym.Wrapper):
    """Each reset takes the next trace of a fixed list (validation: every trace once per pass)."""

    def __init__(self, env, traces):
        super().__init__(env)
        self.traces, self.i = list(traces), 0

    def reset(self, *, seed=None, options=None):
        opts = dict(options or {})
        opts["trace"] = self.traces[self.i % len(self.traces)]
        self.i += 1
        return self.env.reset(seed=seed, options=opts)

    def action_masks(self) -> np.ndarray:
        return self.env.unwrapped.action_masks()


def make_env(args: PPOArgs, traces, cycle: bool = False):
    """``kvgym/Evict-v0`` on ``traces`` (a random one per episode, or in turn with ``cycle``)."""
    env = gym.make("kvgym/Evict-v0", trace=list(traces), reward="misses", disable_env_checker=True,
                   **args.env_kwargs())
    if cycle:
        env = CycleTraces(env, traces)
    env = Monitor(env)
    return HistoryObs(env) if args.history else env


# -- policy ---------------------------------------------------------------------------------
class CandidateExtractor(BaseFeaturesExtractor):
    """Scores every slot with a :class:`CandidateScorer`; outputs ``[scores (K), set summary (2H)]``."""

    def __init__(self, observation_space: spaces.Dict, hidden: int = 64):
        k, f = observation_space["candidates"].shape
        g = observation_space["context"].shape[0]
        super().__init__(observation_space, features_dim=k + 2 * hidden)
        self.k = k
        self.scorer = CandidateScorer(ScorerConfig(f, g, hidden))

    def forward(self, obs) -> torch.Tensor:
        mask = obs["action_mask"] > 0.5
        h, pooled = self.scorer.embed(obs["candidates"], obs["context"], mask)
        k = h.shape[1]
        s = self.scorer.rho(torch.cat([h, pooled.unsqueeze(1).expand(-1, k, -1)], -1)).squeeze(-1)
        return torch.cat([s, pooled], 1)


class _Scores(nn.Module):
    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, x):
        return x[:, : self.k]


class _Value(nn.Module):
    def __init__(self, k: int, width: int):
        super().__init__()
        self.k = k
        self.net = nn.Sequential(nn.Linear(width, 64), nn.Tanh(), nn.Linear(64, 1))

    def forward(self, x):
        return self.net(x[:, self.k:])


class CandidatePolicy(MaskableMultiInputActorCriticPolicy):
    """Actor logits = the scorer's per-slot scores; critic = a small MLP on the set summary."""

    def __init__(self, *a, **kw):
        kw.setdefault("net_arch", {"pi": [], "vf": []})  # identity: the extractor does the work
        kw.setdefault("features_extractor_class", CandidateExtractor)
        kw.setdefault("ortho_init", False)
        super().__init__(*a, **kw)

    def _build(self, lr_schedule) -> None:
        self._build_mlp_extractor()
        k = int(self.action_space.n)
        self.action_net = _Scores(k)
        self.value_net = _Value(k, self.features_dim - k)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)


# -- callbacks ------------------------------------------------------------------------------
class GapCallback(BaseCallback):
    """After each validation run: the policy's gap closed on the validation traces; keeps the best."""

    def __init__(self, args: PPOArgs, traces, manifest: dict, log=print):
        super().__init__()
        self.args, self.traces, self.manifest, self.log = args, traces, manifest, log
        self.best = (-np.inf, None, 0)
        self.history: list[dict] = []
        self.t0 = time.perf_counter()

    def score(self):
        from kvgym.agents.agent import PPOAgent
        from kvgym.agents.evaluation import score_agent

        rows = [score_agent(PPOAgent(self.model, self.manifest), self.args, lt) for lt in self.traces]
        gaps = [r["gap_closed"] for r in rows if r["gap_closed"] is not None]
        return (float(np.mean(gaps)) if gaps else None), rows

    def _on_step(self) -> bool:
        return self.validate(float(self.parent.last_mean_reward))

    def validate(self, mean_reward: float | None) -> bool:
        gap, _ = self.score()
        row = {"timesteps": int(self.model.num_timesteps), "validation_mean_reward": mean_reward,
               "validation_gap_closed": gap, "elapsed_s": round(time.perf_counter() - self.t0, 3)}
        self.history.append(row)
        self.logger.record("eval/gap_closed", -1.0 if gap is None else gap)
        score = -np.inf if gap is None else gap
        if score > self.best[0] or self.best[1] is None:
            state = {k: v.detach().clone() for k, v in self.model.policy.state_dict().items()}
            self.best = (score, state, int(self.model.num_timesteps))
        rew = "-" if mean_reward is None else f"{mean_reward:.1f}"
        self.log(f"{self.model.num_timesteps} steps: validation reward {rew}, "
                 f"gap closed {'-' if gap is None else f'{gap:.1f}%'} ({row['elapsed_s']:.1f} s)")
        return True


class ProgressCallback(BaseCallback):
    """tqdm bar over decisions, with the training reward and the last validation gap; time budget."""

    def __init__(self, total: int, budget_s: float, gap_cb: GapCallback, enabled: bool = True):
        super().__init__()
        self.total, self.budget_s, self.gap_cb, self.enabled = total, budget_s, gap_cb, enabled
        self.t0 = time.perf_counter()
        self.stopped_by_budget = False

    def _on_training_start(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, desc="ppo", unit="step", disable=not self.enabled, leave=False)

    def _on_step(self) -> bool:
        self.bar.update(self.num_timesteps - self.bar.n)
        if self.n_calls % 50 == 0:
            buf = self.model.ep_info_buffer
            rew = float(np.mean([e["r"] for e in buf])) if buf else float("nan")
            last = self.gap_cb.history[-1]["validation_gap_closed"] if self.gap_cb.history else None
            self.bar.set_postfix(reward=f"{rew:.1f}", val_gap="-" if last is None else f"{last:.1f}%")
        if time.perf_counter() - self.t0 > self.budget_s:
            self.stopped_by_budget = True
            return False
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


def manifest_for(args: PPOArgs, model=None) -> dict:
    from kvgym.agents.features import HISTORY_FEATURES
    from kvgym.envs.observation import FEATURES

    m = {"kind": "ppo", "model": POLICY_FILE, "features": list(FEATURES),
         "history_features": list(HISTORY_FEATURES) if args.history else [], "k": args.k, "task": args.task_dict()}
    if model is not None:
        m["policy"] = policy_config(model.policy)
    return m


# -- saving without pickles -----------------------------------------------------------------
POLICY_FILE = "policy.pt"
POLICY_KEYS = ("k", "n_features", "n_context", "hidden")


def policy_config(policy) -> dict:
    """What :func:`build_policy` needs to rebuild ``policy``'s network: slots, feature and context
    widths, scorer width (the observation space is ``Box(0, 1)`` candidates and context plus a
    ``MultiBinary(k)`` mask, as the env and :class:`HistoryObs` present it)."""
    k, f = policy.observation_space["candidates"].shape
    return {"k": int(k), "n_features": int(f), "n_context": int(policy.observation_space["context"].shape[0]),
            "hidden": int(policy.features_extractor.scorer.cfg.hidden)}


def build_policy(cfg, where="agent.json") -> CandidatePolicy:
    """A fresh :class:`CandidatePolicy` with the architecture ``cfg`` (:func:`policy_config`)."""
    from kvgym.errors import ConfigError
    from kvgym.params import need_int

    if not isinstance(cfg, dict) or set(cfg) != set(POLICY_KEYS):
        raise ConfigError(f"{where}: 'policy' must be an object with keys {', '.join(POLICY_KEYS)}, got {cfg!r:.120}")
    k, f, g, h = (need_int(f"{where}: policy", key, cfg[key], 1, 1 << 16) for key in POLICY_KEYS)
    obs = spaces.Dict({"candidates": spaces.Box(0.0, 1.0, (k, f), np.float32),
                       "context": spaces.Box(0.0, 1.0, (g,), np.float32), "action_mask": spaces.MultiBinary(k)})
    policy = CandidatePolicy(obs, spaces.Discrete(k), lambda _: 0.0, features_extractor_kwargs={"hidden": h})
    return policy.eval()


def policy_bytes(policy) -> bytes:
    """The policy's state dict as ``torch.save`` bytes (tensors only; read back with weights_only)."""
    import io

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu().clone() for k, v in policy.state_dict().items()}, buf)
    return buf.getvalue()


def train(args: PPOArgs, out: str | Path | None = None, log=print) -> dict:
    """Train per ``args``; with ``out``, write the agent folder (see :mod:`kvgym.agents.agent`)."""
    from kvgym.agents.common import seed_everything
    from kvgym.files import write_bytes

    t0 = time.perf_counter()
    seed_everything(args.seed)
    ledger_start = len(LEDGER)
    train_traces = [lt.trace for lt in args.traces("train")]
    val = args.traces("validation")
    venv = DummyVecEnv([lambda: make_env(args, train_traces) for _ in range(args.n_envs)])
    venv.seed(args.seed)
    eval_env = DummyVecEnv([lambda: make_env(args, [lt.trace for lt in val], cycle=True)])
    model = MaskablePPO(
        CandidatePolicy, venv, learning_rate=args.learning_rate, n_steps=args.n_steps, batch_size=args.batch_size,
        n_epochs=args.n_epochs, gamma=args.gamma, gae_lambda=args.gae_lambda, clip_range=args.clip_range,
        ent_coef=args.ent_coef, vf_coef=args.vf_coef, max_grad_norm=args.max_grad_norm,
        policy_kwargs={"features_extractor_kwargs": {"hidden": args.hidden}},
        tensorboard_log=args.tensorboard_log or None, seed=args.seed, device="cpu", verbose=0)
    if args.init_from:
        _warm_start(model, args)
    manifest = manifest_for(args, model)
    gap_cb = GapCallback(args, val, manifest, log)
    eval_cb = MaskableEvalCallback(eval_env, n_eval_episodes=len(val), eval_freq=max(1, args.eval_freq // args.n_envs),
                                   deterministic=True, callback_after_eval=gap_cb, verbose=0, warn=False)
    prog = ProgressCallback(args.total_timesteps, args.time_budget_s - (time.perf_counter() - t0), gap_cb,
                            args.progress)
    if args.init_from:  # the warm start competes too, so fine-tuning never ends below it on validation
        gap_cb.init_callback(model)
        gap_cb.validate(None)
    model.learn(total_timesteps=args.total_timesteps, callback=[eval_cb, prog], progress_bar=False)
    # A last validation at the end, so the final weights compete with the earlier ones.
    gap_cb.validate(None)
    model.policy.load_state_dict(gap_cb.best[1])
    train_s = time.perf_counter() - t0
    vgap, vrows = gap_cb.score()
    metrics = {"algo": "ppo", "seed": args.seed, "train_time_s": round(train_s, 2), "timesteps": int(model.num_timesteps),
               "best_timesteps": gap_cb.best[2], "stopped_by_time_budget": prog.stopped_by_budget,
               "validation_gap_closed": vgap, "validation": vrows, "history": gap_cb.history,
               "traces_read": [f"{s}:{lab}" for s, lab in LEDGER[ledger_start:]],
               "parameters": int(sum(p.numel() for p in model.policy.parameters()))}
    if out is not None:
        from kvgym.agents.agent import write_manifest
        from kvgym.files import write_json

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_bytes(out / POLICY_FILE, policy_bytes(model.policy))
        write_json(out / "config.json", {"algo": "ppo", "args": args.to_dict()})
        write_json(out / "metrics.json", metrics)
        write_manifest(out, manifest)
    venv.close()
    eval_env.close()
    return metrics


def _warm_start(model, args: PPOArgs) -> None:
    from kvgym.agents.agent import ImitationAgent, load_agent
    from kvgym.errors import ConfigError

    src = load_agent(args.init_from)
    if not isinstance(src, ImitationAgent):
        raise ConfigError(f"PPOArgs: init_from={args.init_from!r} is not an imitation agent")
    if bool(src.manifest.get("history_features")) != args.history:
        raise ConfigError(f"PPOArgs: init_from={args.init_from!r} has history={not args.history}, this run {args.history}")
    try:
        model.policy.features_extractor.scorer.load_state_dict(src.model.state_dict())
    except RuntimeError as e:
        raise ConfigError(f"PPOArgs: init_from={args.init_from!r}: scorer shapes differ ({e})") from None
