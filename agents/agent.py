"""Saved learned agents: the folder layout, the agent objects, and :func:`load_agent`.

A trained agent is a folder (what ``kvgym train`` writes)::

    agent.json     manifest: format, kind (imitation | ppo), model file, env features, k, task
    model.pt       imitation: the scorer's state_dict (tensors only), read with weights_only=True
    model.zip      ppo: the sb3-contrib MaskablePPO file (a zip of pickles and tensors)
    config.json    the training arguments
    metrics.json   training progress, seed, training time
    heldout.json   held-out (test split) results, written after training

:func:`load_agent` takes the folder, its ``agent.json`` or its model file, **local paths
only** (see :func:`kvgym.agents.common.local_path`). The returned object acts through the env
like any agent of the harness (:mod:`kvgym.envs.agents`): ``attach(env)``, ``reset()``,
``act(obs, info) -> int``; it also has SB3's ``predict(obs, action_masks=...)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kvgym.agents.common import local_path
from kvgym.errors import ConfigError

FORMAT = "kvgym-agent/1"
MANIFEST = "agent.json"
KINDS = ("imitation", "ppo")


class _Base:
    kind = "agent"
    privileged = False

    def __init__(self, manifest: dict, name: str = "agent"):
        self.manifest = manifest
        self.name = name
        self.env = None
        self.history = None
        if manifest.get("history_features"):
            from kvgym.agents.features import HISTORY_FEATURES, HistoryTracker

            if list(manifest["history_features"]) != list(HISTORY_FEATURES):
                raise ConfigError(f"agent {name!r}: history features {manifest['history_features']} differ from "
                                  f"this version's {list(HISTORY_FEATURES)}")
            self.history = HistoryTracker()

    def attach(self, env) -> None:
        """Check that the env presents the features this agent was trained on."""
        u = env.unwrapped
        want = list(self.manifest.get("features", []))
        have = list(getattr(u, "feature_names", want))
        if want and have != want:
            raise ConfigError(f"agent {self.name!r} was trained on features {want}, the env shows {have}")
        self.env = u

    def reset(self) -> None:
        pass

    def _obs(self, obs):
        if self.history is None:
            return obs
        if self.env is None:
            raise ConfigError(f"agent {self.name!r} reads the episode's past accesses: call attach(env) first")
        return self.history.augment(self.env, obs)

    def act(self, obs, info=None) -> int:
        mask = obs["action_mask"] if info is None or "action_mask" not in info else info["action_mask"]
        return int(self._act(self._obs(obs), np.asarray(mask).astype(bool)))

    def predict(self, obs, state=None, episode_start=None, deterministic: bool = True, action_masks=None):
        """SB3-style: ``(action, state)``; ``action_masks`` defaults to ``obs["action_mask"]``."""
        mask = obs["action_mask"] if action_masks is None else action_masks
        return np.int64(self._act(self._obs(obs), np.asarray(mask).astype(bool))), state


class ImitationAgent(_Base):
    """The Belady-imitation scorer: evicts the valid candidate with the highest score."""

    kind = "imitation"

    def __init__(self, model, manifest: dict, name: str = "imitation"):
        from kvgym.agents.model import NumpyScorer

        super().__init__(manifest, name)
        self.model = model.eval()
        self.fast = NumpyScorer(self.model)  # acting runs the same forward in numpy (fast per call)

    def _act(self, obs, mask) -> int:
        return int(np.argmax(self.fast(obs["candidates"], obs["context"], mask)))


class PPOAgent(_Base):
    """A MaskablePPO model, deterministic, with the env's action mask."""

    kind = "ppo"

    def __init__(self, model, manifest: dict, name: str = "ppo"):
        super().__init__(manifest, name)
        self.model = model
        self.k = int(model.action_space.n)

    def attach(self, env) -> None:
        super().attach(env)
        k = int(env.unwrapped.action_space.n)
        if k != self.k:
            raise ConfigError(f"agent {self.name!r} (MaskablePPO) was trained with k={self.k}; the env has k={k} "
                              f"(evaluate it with k={self.k})")

    def _act(self, obs, mask) -> int:
        a, _ = self.model.predict(obs, deterministic=True, action_masks=mask)
        return int(np.asarray(a).reshape(-1)[0])


def write_manifest(folder, manifest: dict) -> Path:
    from kvgym.files import write_json

    return write_json(Path(folder) / MANIFEST, {"format": FORMAT, **manifest})


#: ``zoo:NAME`` names the agent folder ``NAME`` of the model zoo (relative to the current folder).
ZOO_PREFIX, ZOO_DIR = "zoo:", "artifacts/agents"


def read_manifest(path) -> tuple[Path, dict]:
    """``(folder, manifest)`` of a saved agent given its folder, manifest or model file
    (or ``zoo:NAME`` for ``artifacts/agents/NAME``)."""
    text = str(path)
    if text.startswith(ZOO_PREFIX):
        name = text[len(ZOO_PREFIX):]
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ConfigError(f"agent {text!r}: expected zoo:NAME with NAME a folder of {ZOO_DIR}")
        path = Path(ZOO_DIR) / name
    p = local_path(path)
    if p.is_dir():
        folder = p
    elif p.name == MANIFEST or p.suffix in (".pt", ".zip"):
        folder = p.parent
    else:
        raise ConfigError(f"agent {str(path)!r}: expected an agent folder, its {MANIFEST} or its model file")
    mp = folder / MANIFEST
    if not mp.is_file():
        raise ConfigError(f"agent {str(path)!r}: {mp} not found (not a folder written by 'kvgym train')")
    try:
        m = json.loads(mp.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{mp}: invalid JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ConfigError(f"{mp}: format {m.get('format') if isinstance(m, dict) else None!r}, expected {FORMAT!r}")
    if m.get("kind") not in KINDS:
        raise ConfigError(f"{mp}: kind {m.get('kind')!r}; valid: {', '.join(KINDS)}")
    if not isinstance(m.get("model"), str) or "/" in m["model"] or "\\" in m["model"]:
        raise ConfigError(f"{mp}: 'model' must be a file name inside the agent folder, got {m.get('model')!r}")
    return folder, m


def load_agent(path):
    """Load a saved agent (folder, ``agent.json``, model file or ``zoo:NAME``; local paths only).

    The imitation model is read with ``torch.load(..., weights_only=True)`` (tensors only);
    a PPO model goes through ``MaskablePPO.load``, which unpickles: load only files you trust.
    """
    folder, m = read_manifest(path)
    model_path = folder / m["model"]
    if not model_path.is_file():
        raise ConfigError(f"agent {str(path)!r}: model file {model_path} not found")
    name = folder.name
    if m["kind"] == "imitation":
        import torch

        from kvgym.agents.model import CandidateScorer, ScorerConfig

        try:
            cfg = ScorerConfig(**m["scorer"])
        except (KeyError, TypeError) as e:
            raise ConfigError(f"{folder / MANIFEST}: bad 'scorer' entry ({e})") from None
        model = CandidateScorer(cfg)
        try:
            state = torch.load(model_path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as e:  # noqa: BLE001 - any unpickling / shape error is a bad file
            raise ConfigError(f"{model_path}: not a scorer state_dict matching {m['scorer']} ({e})") from None
        return ImitationAgent(model, m, name)
    import torch
    from sb3_contrib import MaskablePPO

    import kvgym.agents.ppo  # noqa: F401  (the custom policy classes the file refers to)

    # One decision per call on a tiny network: extra threads only add synchronisation (and, on a
    # shared machine, can make each call 10-100x slower).
    torch.set_num_threads(1)
    try:
        model = MaskablePPO.load(str(model_path), device="cpu")
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"{model_path}: cannot load the MaskablePPO model ({e})") from None
    return PPOAgent(model, m, name)
