"""MaskablePPO on the batched vector env, warm-started from imitation, with scaled rewards; one script.

sb3-contrib's ``MaskablePPO`` (PPO that never samples an invalid action) with a policy built for
candidate sets:

- **policy**: :class:`CandidatePolicy`, whose actor is :class:`kvgym.agents.model.CandidateScorer`
  (the network the imitation agent trains, so an imitation agent's weights start it:
  ``init_from``) and whose critic reads the set summary.
- **envs**: the training cases of the task's families, grouped by scenario (a sub-env keeps one
  scenario; its episodes cycle through that scenario's cases), each group a batched
  :class:`kvgym.envs.vector.EvictVectorEnv` behind SB3's VecEnv (:func:`~kvgym.agents.vec_env.sb3_vec_env`),
  the groups joined in one :class:`Groups` VecEnv, the agent's own observation
  (:mod:`kvgym.agents.features`) computed by :class:`AgentObs` for every sub-env.
- **reward**: ``misses`` (minus tier-0 misses since the previous decision), divided by a running
  estimate of the discounted return's std (``VecNormalize``, rewards only): scaled rewards.
- **critic first**: for ``critic_warmup`` decisions only the critic learns (the warm-started actor
  is frozen), so the first advantages come from a critic that has seen the task; a random
  critic's advantages otherwise pull the imitation policy away (measured: 46% -> 10% validation
  in the previous version).
- **selection**: every ``eval_freq`` decisions the actor, as shipped (with its safety gate), is
  scored on the validation cases (:func:`kvgym.agents.evaluation.selection_score`); the best
  weights are kept, the warm start included, so fine-tuning never ends below its start on
  validation.

Everything runs inside ``LEDGER.development()``. ``kvgym train ppo --config FILE.json`` runs it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.policies import MaskableMultiInputActorCriticPolicy
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecNormalize
from torch import nn

from kvgym.agents.common import is_int, is_num, need
from kvgym.agents.evaluation import pct
from kvgym.agents.model import CandidateScorer, ScorerConfig
from kvgym.agents.task import TaskArgs


@dataclass(frozen=True)
class PPOArgs(TaskArgs):
    """Arguments of :func:`train` (JSON-serialisable; ``kvgym train ppo --set key=value``).

    Attributes (beyond :class:`~kvgym.agents.task.TaskArgs`; PPO's are SB3's, same names):
        seed: seeds torch, SB3 and the envs.
        hidden: scorer width (must match ``init_from``'s).
        init_from: an imitation agent folder (or ``zoo:NAME``) whose scorer starts the actor
            ("" = a random start).
        total_timesteps: decisions to train on (all sub-envs together).
        max_groups: at most this many scenario groups (sub-envs), the ones with most cases.
        n_steps: decisions per sub-env per rollout.
        batch_size, n_epochs, learning_rate, gamma, gae_lambda, clip_range, ent_coef, vf_coef,
            max_grad_norm, target_kl: PPO's hyperparameters.
        critic_warmup: first decisions during which only the critic learns.
        eval_freq: decisions (all sub-envs together) between validation runs.
        gate_fallback: the fallback heuristic of the saved agent's safety gate ("" = no gate).
        time_budget_s: stop training after this much wall time (s).
        progress: show the tqdm progress bar.
    """

    seed: int = 0
    hidden: int = 64
    init_from: str = ""
    total_timesteps: int = 100_000
    max_groups: int = 16
    n_steps: int = 128
    batch_size: int = 512
    n_epochs: int = 4
    learning_rate: float = 5e-5
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.1
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float = 0.02
    critic_warmup: int = 8_000
    eval_freq: int = 20_000
    gate_fallback: str = "arc"
    time_budget_s: float = 540.0
    progress: bool = True

    def validate(self) -> None:
        super().validate()
        o = type(self).__name__
        for f, lo in (("seed", 0), ("hidden", 4), ("total_timesteps", 1), ("max_groups", 1), ("n_steps", 2),
                      ("batch_size", 2), ("n_epochs", 1), ("eval_freq", 1), ("critic_warmup", 0)):
            v = getattr(self, f)
            need(o, f, v, is_int(v) and v >= lo, f"an int >= {lo}")
        for f in ("learning_rate", "clip_range", "max_grad_norm", "time_budget_s", "target_kl"):
            v = getattr(self, f)
            need(o, f, v, is_num(v) and v > 0, "a number > 0")
        for f in ("gamma", "gae_lambda"):
            v = getattr(self, f)
            need(o, f, v, is_num(v) and 0 <= v <= 1, "a number in [0, 1]")
        for f in ("ent_coef", "vf_coef"):
            v = getattr(self, f)
            need(o, f, v, is_num(v) and v >= 0, "a number >= 0")
        need(o, "progress", self.progress, isinstance(self.progress, bool), "true or false")
        for f in ("init_from", "gate_fallback"):
            need(o, f, getattr(self, f), isinstance(getattr(self, f), str), "a string ('' = none)")
        if self.gate_fallback:
            from kvgym.agents.gate import GateArgs

            GateArgs(fallback=self.gate_fallback)


def obs_space(k: int, f: int, g: int) -> spaces.Dict:
    """The policy's observation space: ``k`` candidate rows of ``f`` features, ``g`` context values, a mask."""
    return spaces.Dict({"candidates": spaces.Box(-np.inf, np.inf, (k, f), np.float32),
                        "context": spaces.Box(-np.inf, np.inf, (g,), np.float32), "action_mask": spaces.MultiBinary(k)})


# -- envs -----------------------------------------------------------------------------------
class Groups(VecEnv):
    """Several SB3 VecEnvs side by side as one (their sub-envs in order)."""

    def __init__(self, venvs):
        self.venvs = list(venvs)
        self.sizes = [v.num_envs for v in self.venvs]
        v0 = self.venvs[0]
        super().__init__(sum(self.sizes), v0.observation_space, v0.action_space)

    def _split(self, x):
        out, i = [], 0
        for n in self.sizes:
            out.append(x[i:i + n])
            i += n
        return out

    def reset(self):
        obs = [v.reset() for v in self.venvs]
        return {k: np.concatenate([o[k] for o in obs]) for k in obs[0]}

    def step_async(self, actions):
        for v, a in zip(self.venvs, self._split(np.asarray(actions))):
            v.step_async(a)

    def step_wait(self):
        res = [v.step_wait() for v in self.venvs]
        obs = {k: np.concatenate([r[0][k] for r in res]) for k in res[0][0]}
        return obs, np.concatenate([r[1] for r in res]), np.concatenate([r[2] for r in res]), \
            [i for r in res for i in r[3]]

    def sub_envs(self) -> list:
        """The :class:`~kvgym.envs.evict.EvictEnv` behind each sub-env, in order."""
        return [e for v in self.venvs for e in v.inner.envs]

    def close(self):
        for v in self.venvs:
            v.close()

    def get_attr(self, attr_name, indices=None):
        envs = self.sub_envs()
        return [getattr(envs[i], attr_name) for i in self._get_indices(indices)]

    def set_attr(self, attr_name, value, indices=None):
        envs = self.sub_envs()
        for i in self._get_indices(indices):
            setattr(envs[i], attr_name, value)

    def env_method(self, method_name, *args, indices=None, **kwargs):
        masks = np.concatenate([np.stack(v.env_method(method_name, *args, **kwargs)) for v in self.venvs])
        return [masks[i] for i in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False for _ in self._get_indices(indices)]


class AgentObs(VecEnvWrapper):
    """The agent's own observation (:class:`kvgym.agents.features.FeatureTracker`) for every sub-env."""

    def __init__(self, venv: Groups):
        from kvgym.agents.features import N_CONTEXT, N_FEATURES, FeatureTracker

        k = int(venv.action_space.n)
        super().__init__(venv, observation_space=obs_space(k, N_FEATURES, N_CONTEXT))
        self.trackers = [FeatureTracker() for _ in range(venv.num_envs)]
        self.envs = venv.sub_envs()

    def _convert(self, obs: dict) -> dict:
        outs = [t.observe(e, {key: obs[key][i] for key in obs}) for i, (t, e) in enumerate(zip(self.trackers, self.envs))]
        return {key: np.stack([o[key] for o in outs]) for key in outs[0]}

    def reset(self):
        return self._convert(self.venv.reset())

    def step_wait(self):
        obs, rew, done, infos = self.venv.step_wait()
        for info in infos:
            if "terminal_observation" in info:  # the episode is over: zero rows, like the env's own
                t = info["terminal_observation"]
                k = len(t["action_mask"])
                info["terminal_observation"] = {key: np.zeros(self.observation_space[key].shape, np.float32)
                                                for key in ("candidates", "context")} | {
                    "action_mask": np.zeros(k, np.int8)}
        return self._convert(obs), rew, done, infos

    def action_masks(self) -> np.ndarray:
        return np.stack(self.venv.env_method("action_masks"))


def make_venv(args: PPOArgs, cases) -> AgentObs:
    """One batched vector env per scenario group of ``cases`` (the ``max_groups`` largest), joined."""
    from kvgym.agents.vec_env import sb3_vec_env
    from kvgym.envs.vector import EvictVectorEnv

    groups: dict[str, list] = {}
    for c in cases:
        groups.setdefault(f"{c.base_scenario}|{c.capacity}", []).append(c)
    keys = sorted(groups, key=lambda k: (-len(groups[k]), k))[: args.max_groups]
    venvs = []
    for i, key in enumerate(sorted(keys)):
        cs = groups[key]
        v = sb3_vec_env(EvictVectorEnv(1, scenario=cs[0].scenario, trace=[c.trace for c in cs], reward="misses",
                                       **args.env_kwargs()))
        v.seed(args.seed * 1000 + i)
        venvs.append(v)
    return AgentObs(Groups(venvs))


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
class Selection(BaseCallback):
    """Every ``eval_freq`` decisions: the actor's validation score; keeps the best weights; time budget."""

    def __init__(self, args: PPOArgs, cases, manifest: dict, log=print, t0: float | None = None):
        super().__init__()
        self.args, self.cases, self.manifest, self.log = args, cases, manifest, log
        self.best = (-np.inf, None, 0)
        self.history: list[dict] = []
        self.t0 = time.perf_counter() if t0 is None else t0
        self.next_eval = args.eval_freq
        self.stopped_by_budget = False
        self.bar = None

    def score(self):
        """The actor as shipped (with its gate when it has one) on the validation cases."""
        from kvgym.agents.agent import ImitationAgent
        from kvgym.agents.evaluation import by_family, score_cases, selection_score

        scorer = self.model.policy.features_extractor.scorer
        agent = ImitationAgent(scorer, self.manifest)
        if self.manifest.get("gate"):
            from kvgym.agents.gate import GateArgs, GatedAgent

            agent = GatedAgent(agent, GateArgs.from_dict(self.manifest["gate"]))
        rows = score_cases(agent, self.cases, self.args.env_kwargs())
        scorer.train(self.model.policy.training)
        return selection_score(rows), by_family(rows), rows

    def validate(self) -> None:
        vs, fams, _ = self.score()
        row = {"timesteps": int(self.model.num_timesteps), "validation_score": vs,
               "families": fams, "elapsed_s": round(time.perf_counter() - self.t0, 3)}
        self.history.append(row)
        score = -np.inf if vs is None else vs
        if score > self.best[0] or self.best[1] is None:
            state = {k: v.detach().clone() for k, v in self.model.policy.state_dict().items()}
            self.best = (score, state, int(self.model.num_timesteps))
        by = " ".join(f"{f}:{pct(d['pooled_gap_closed'])}" for f, d in fams.items())
        self.log(f"{self.model.num_timesteps} steps: validation score {pct(vs)} "
                 f"(pooled by family: {by}) ({row['elapsed_s']:.0f} s)")

    def _on_step(self) -> bool:
        if self.bar is not None:
            self.bar.update(self.model.num_timesteps - self.bar.n)
        if self.model.num_timesteps >= self.next_eval:
            self.next_eval += self.args.eval_freq
            self.validate()
        if time.perf_counter() - self.t0 > self.args.time_budget_s:
            self.stopped_by_budget = True
            return False
        return True


# -- saving without pickles -----------------------------------------------------------------
POLICY_FILE = "policy.pt"
POLICY_KEYS = ("k", "n_features", "n_context", "hidden")


def policy_config(policy) -> dict:
    """What :func:`build_policy` needs to rebuild ``policy``'s network: slots, feature and context
    widths, scorer width (the observation space is :func:`obs_space`)."""
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
    obs = obs_space(k, f, g)
    policy = CandidatePolicy(obs, spaces.Discrete(k), lambda _: 0.0, features_extractor_kwargs={"hidden": h})
    return policy.eval()


def policy_bytes(policy) -> bytes:
    """The policy's state dict as ``torch.save`` bytes (tensors only; read back with weights_only)."""
    import io

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu().clone() for k, v in policy.state_dict().items()}, buf)
    return buf.getvalue()


def manifest_for(args: PPOArgs, model=None) -> dict:
    from kvgym.agents.features import CONTEXT, FEATURES
    from kvgym.envs.observation import FEATURES as ENV_FEATURES

    m = {"kind": "ppo", "model": POLICY_FILE, "features": list(ENV_FEATURES), "agent_features": list(FEATURES),
         "agent_context": list(CONTEXT), "env": args.env_kwargs(), "k": args.k, "task": args.task_dict()}
    if model is not None:
        m["policy"] = policy_config(model.policy)
    if args.gate_fallback:
        from kvgym.agents.gate import GateArgs

        m["gate"] = GateArgs(fallback=args.gate_fallback).to_dict()
    return m


def train(args: PPOArgs, out: str | Path | None = None, log=print) -> dict:
    """Train per ``args`` (inside ``LEDGER.development()``); with ``out``, write the agent folder."""
    from kvgym.agents.benchmark import LEDGER

    with LEDGER.development():
        return _train(args, out, log)


def _set_actor_trainable(model, on: bool) -> None:
    for p in model.policy.features_extractor.scorer.parameters():
        p.requires_grad_(on)


def _train(args: PPOArgs, out, log) -> dict:
    from tqdm import tqdm

    from kvgym.agents.benchmark import LEDGER
    from kvgym.agents.common import seed_everything

    t0 = time.perf_counter()
    seed_everything(args.seed)
    ledger_start = len(LEDGER.reads)
    train_cases = args.cases("train")
    val_cases = args.cases("validation")
    venv = VecNormalize(make_venv(args, train_cases), norm_obs=False, norm_reward=True, gamma=args.gamma)
    model = MaskablePPO(
        CandidatePolicy, venv, learning_rate=args.learning_rate, n_steps=args.n_steps, batch_size=args.batch_size,
        n_epochs=args.n_epochs, gamma=args.gamma, gae_lambda=args.gae_lambda, clip_range=args.clip_range,
        ent_coef=args.ent_coef, vf_coef=args.vf_coef, max_grad_norm=args.max_grad_norm, target_kl=args.target_kl,
        policy_kwargs={"features_extractor_kwargs": {"hidden": args.hidden}}, seed=args.seed, device="cpu",
        verbose=0)
    if args.init_from:
        _warm_start(model, args)
    manifest = manifest_for(args, model)
    sel = Selection(args, val_cases, manifest, log, t0)
    sel.init_callback(model)
    if args.init_from:  # the warm start competes too
        sel.validate()
    sel.bar = tqdm(total=args.total_timesteps, desc="ppo", unit="step", disable=not args.progress, leave=False)
    warm = min(args.critic_warmup, args.total_timesteps) if args.init_from else 0
    if warm:
        _set_actor_trainable(model, False)
        model.learn(total_timesteps=warm, callback=sel, progress_bar=False)
        _set_actor_trainable(model, True)
    if not sel.stopped_by_budget and args.total_timesteps > warm:
        model.learn(total_timesteps=args.total_timesteps - warm, callback=sel, progress_bar=False,
                    reset_num_timesteps=not warm)
    sel.bar.close()
    sel.validate()  # the final weights compete too
    model.policy.load_state_dict(sel.best[1])
    train_s = time.perf_counter() - t0
    metrics = {"algo": "ppo", "seed": args.seed, "train_time_s": round(train_s, 2), "timesteps": int(model.num_timesteps),
               "best_timesteps": sel.best[2], "stopped_by_time_budget": sel.stopped_by_budget,
               "validation_score": sel.best[0] if np.isfinite(sel.best[0]) else None, "history": sel.history,
               "sub_envs": venv.num_envs, "init_from": args.init_from,
               "traces_read": LEDGER.since(ledger_start),
               "parameters": int(sum(p.numel() for p in model.policy.parameters()))}
    venv.close()
    if out is not None:
        from kvgym.agents.imitation import save_agent

        save_agent(out, manifest, policy_bytes(model.policy), args, metrics)
    return metrics


def _warm_start(model, args: PPOArgs) -> None:
    from kvgym.agents.agent import ImitationAgent, load_agent
    from kvgym.errors import ConfigError

    src = load_agent(args.init_from, gate=False)
    if not isinstance(src, ImitationAgent) or not src.manifest.get("agent_features"):
        raise ConfigError(f"PPOArgs: init_from={args.init_from!r} is not an imitation agent of this version")
    try:
        model.policy.features_extractor.scorer.load_state_dict(src.model.state_dict())
    except RuntimeError as e:
        raise ConfigError(f"PPOArgs: init_from={args.init_from!r}: scorer shapes differ ({e})") from None
