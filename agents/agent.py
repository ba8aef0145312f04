"""Saved learned agents: the folder layout, the agent objects, and :func:`load_agent`.

A trained agent is a folder (what ``kvgym train`` writes)::

    agent.json     manifest: format, kind (imitation | ppo), model file, env features, k, task
    model.pt       imitation: the scorer's state_dict (tensors only), read with weights_only=True
    policy.pt      ppo: the MaskablePPO policy's state_dict (tensors only, weights_only=True); the
                   network is rebuilt from agent.json's ``policy`` entry (k, features, context, width)
    model.zip      legacy ppo: an SB3 file (pickles), loaded only with trust_pickle and its sha256
                   recorded in agent.json; ``kvgym train convert`` turns it into policy.pt
    config.json    the training arguments
    metrics.json   training progress, seed, training time
    heldout.json   held-out (test split) results, written after training

:func:`load_agent` takes the folder, its ``agent.json`` or its model file (**local paths
only**, see :func:`kvgym.agents.common.local_path`), or ``zoo:NAME`` (a folder of this project's
``artifacts/agents``, never of the current folder). The returned object acts through the env
like any agent of the harness (:mod:`kvgym.envs.agents`): ``attach(env)``, ``reset()``,
``act(obs, info) -> int``; it also has SB3's ``predict(obs, action_masks=...)``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from kvgym.agents.common import local_path
from kvgym.errors import ConfigError
from kvgym.files import read_json

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
        self.tracker = None
        feats = manifest.get("agent_features")
        if feats:
            from kvgym.agents.features import FEATURES, FeatureTracker

            if list(feats) != list(FEATURES):
                raise ConfigError(f"agent {name!r}: trained on features {feats}, this version computes "
                                  f"{list(FEATURES)}; retrain it")
            self.tracker = FeatureTracker()

    def attach(self, env) -> None:
        """Check that the env presents the features this agent reads."""
        u = env.unwrapped
        have = list(getattr(u, "feature_names", []))
        if self.tracker is not None:
            from kvgym.agents.features import ENV_FEATURES

            missing = [f for f in ENV_FEATURES if f not in have]
            if missing:
                raise ConfigError(f"agent {self.name!r} reads the env features {missing}, which the env lacks")
        else:
            want = list(self.manifest.get("features", []))
            if want and have != want:
                raise ConfigError(f"agent {self.name!r} was trained on features {want}, the env shows {have}")
        self.env = u

    def reset(self) -> None:
        pass

    def _obs(self, obs):
        if self.tracker is None:
            return obs
        if self.env is None:
            raise ConfigError(f"agent {self.name!r} reads the episode's past accesses: call attach(env) first")
        return self.tracker.observe(self.env, obs)

    def act(self, obs, info=None) -> int:
        mask = obs["action_mask"] if info is None or "action_mask" not in info else info["action_mask"]
        return int(self._act(self._obs(obs), np.asarray(mask).astype(bool)))

    def predict(self, obs, state=None, episode_start=None, deterministic: bool = True, action_masks=None):
        """SB3-style: ``(action, state)``; ``action_masks`` defaults to ``obs["action_mask"]``."""
        mask = obs["action_mask"] if action_masks is None else action_masks
        return np.int64(self._act(self._obs(obs), np.asarray(mask).astype(bool))), state


class ImitationAgent(_Base):
    """A candidate scorer (imitation, or PPO's actor): evicts the valid candidate with the highest score."""

    kind = "imitation"

    def __init__(self, model, manifest: dict, name: str = "imitation"):
        from kvgym.agents.model import NumpyScorer

        super().__init__(manifest, name)
        self.kind = manifest.get("kind", "imitation")
        self.model = model.eval()
        self.fast = NumpyScorer(self.model)  # acting runs the same forward in numpy (fast per call)

    def _act(self, obs, mask) -> int:
        return int(np.argmax(self.fast(obs["candidates"], obs["context"], mask)))


class PPOAgent(_Base):
    """A MaskablePPO policy (or a model holding one), deterministic, with the env's action mask."""

    kind = "ppo"

    def __init__(self, model, manifest: dict, name: str = "ppo"):
        super().__init__(manifest, name)
        self.model = getattr(model, "policy", model)
        self.k = int(self.model.action_space.n)

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


#: ``zoo:NAME`` names the agent folder ``NAME`` of the project's model zoo (``artifacts/agents`` of
#: this checkout, whatever the current folder is).
ZOO_PREFIX = "zoo:"
ZOO_DIR = Path(__file__).resolve().parents[1] / "artifacts" / "agents"


def agent_folder(path) -> Path:
    """The resolved folder of a saved agent given its folder, manifest, model file or ``zoo:NAME``
    (a ConfigError for URLs, missing paths and zoo names outside the zoo)."""
    text = str(path)
    if text.startswith(ZOO_PREFIX):
        name = text[len(ZOO_PREFIX):]
        zoo = ZOO_DIR.resolve()
        folder = (zoo / name).resolve() if name else zoo
        if not name or "/" in name or "\\" in name or name in (".", "..") or folder.parent != zoo:
            raise ConfigError(f"agent {text!r}: expected zoo:NAME with NAME a folder of the project's zoo {zoo}")
        if not folder.is_dir():
            have = sorted(p.name for p in zoo.iterdir() if p.is_dir()) if zoo.is_dir() else []
            raise ConfigError(f"agent {text!r}: no agent {name!r} in the zoo {zoo}; valid: {', '.join(have) or 'none'}")
        return folder
    p = local_path(path).resolve()
    if p.is_dir():
        return p
    if p.name == MANIFEST or p.suffix in (".pt", ".zip"):
        return p.parent
    raise ConfigError(f"agent {text!r}: expected an agent folder, its {MANIFEST} or its model file")


def read_manifest(path) -> tuple[Path, dict]:
    """``(folder, manifest)`` of a saved agent (see :func:`agent_folder`)."""
    folder = agent_folder(path)
    mp = folder / MANIFEST
    if not mp.is_file():
        raise ConfigError(f"agent {str(path)!r}: {mp} not found (not a folder written by 'kvgym train')")
    m = read_json(mp, "agent manifest")
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ConfigError(f"{mp}: format {m.get('format') if isinstance(m, dict) else None!r}, expected {FORMAT!r}")
    if m.get("kind") not in KINDS:
        raise ConfigError(f"{mp}: kind {m.get('kind')!r}; valid: {', '.join(KINDS)}")
    if not isinstance(m.get("model"), str) or "/" in m["model"] or "\\" in m["model"] or m["model"] in ("", ".", ".."):
        raise ConfigError(f"{mp}: 'model' must be a file name inside the agent folder, got {m.get('model')!r}")
    return folder, m


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_state_dict(path: Path, what: str) -> dict:
    """Tensors from a ``torch.save``d state dict, read with ``weights_only=True`` (no code runs)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling error is a bad file
        raise ConfigError(f"{path}: not a {what} state dict ({str(e).splitlines()[0][:160]})") from None
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: not a {what} state dict (a {type(state).__name__})")
    return state


def _load_sb3_zip(model_path: Path, m: dict, trust_pickle: bool):
    """A MaskablePPO ``.zip`` (pickles): only with ``trust_pickle`` and the recorded sha256 matching."""
    mp = model_path.parent / MANIFEST
    if not trust_pickle:
        raise ConfigError(f"{model_path}: an SB3 .zip file is a pickle and can run code when loaded; load it only "
                          f"if you trust where it came from, with --trust-pickle (trust_pickle=True), or convert "
                          f"it once with 'kvgym train convert {model_path.parent} --trust-pickle --sha256 HEX'")
    want = m.get("sha256")
    if not isinstance(want, str) or len(want) != 64:
        raise ConfigError(f"{mp}: no 'sha256' of {model_path.name} recorded; a pickle is loaded only when its "
                          "digest is recorded in agent.json")
    got = sha256_of(model_path)
    if got != want:
        raise ConfigError(f"{model_path}: sha256 {got} differs from the {want} recorded in {mp}; not loading it")
    import torch
    from sb3_contrib import MaskablePPO

    import kvgym.agents.ppo  # noqa: F401  (the custom policy classes the file refers to)

    torch.set_num_threads(1)
    try:
        return MaskablePPO.load(str(model_path), device="cpu").policy
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"{model_path}: cannot load the MaskablePPO model ({str(e).splitlines()[0][:160]})") from None


def load_agent(path, trust_pickle: bool = False, gate: bool = True):
    """Load a saved agent (folder, ``agent.json``, model file or ``zoo:NAME``; local paths only).

    Models are tensors only, read with ``torch.load(..., weights_only=True)``: the imitation
    scorer's state dict, or the PPO policy's state dict, rebuilt from the ``policy`` entry of
    ``agent.json``. A legacy SB3 ``.zip`` (a pickle) is loaded only with ``trust_pickle=True`` and
    its sha256 recorded in ``agent.json`` (checked first). An agent whose manifest has a ``gate``
    entry comes wrapped in its safety gate (:mod:`kvgym.agents.gate`) unless ``gate=False``.
    """
    folder, m = read_manifest(path)
    agent = _load(folder, m, path, trust_pickle)
    if gate and m.get("gate"):
        from kvgym.agents.gate import GateArgs, GatedAgent

        return GatedAgent(agent, GateArgs.from_dict(m["gate"], f"{folder / MANIFEST}: gate"), folder.name)
    return agent


def _load(folder: Path, m: dict, path, trust_pickle: bool):
    if m.get("history_features"):  # before any model file is opened
        raise ConfigError(f"agent {folder.name!r} was trained on the retired history features "
                          f"{m['history_features']}; retrain it (kvgym train)")
    model_path = folder / m["model"]
    if not model_path.is_file():
        raise ConfigError(f"agent {str(path)!r}: model file {model_path} not found")
    name = folder.name
    if m["kind"] == "imitation":
        from kvgym.agents.model import CandidateScorer, ScorerConfig

        try:
            cfg = ScorerConfig(**m["scorer"])
        except (KeyError, TypeError) as e:
            raise ConfigError(f"{folder / MANIFEST}: bad 'scorer' entry ({e})") from None
        model = CandidateScorer(cfg)
        try:
            model.load_state_dict(read_state_dict(model_path, "scorer"))
        except RuntimeError as e:
            raise ConfigError(f"{model_path}: not a scorer state_dict matching {m['scorer']} ({e})") from None
        return ImitationAgent(model, m, name)
    import torch

    # One decision per call on a tiny network: extra threads only add synchronisation (and, on a
    # shared machine, can make each call 10-100x slower).
    torch.set_num_threads(1)
    if model_path.suffix == ".zip":
        return PPOAgent(_load_sb3_zip(model_path, m, trust_pickle), m, name)
    from kvgym.agents.ppo import build_policy

    policy = build_policy(m.get("policy"), folder / MANIFEST)
    try:
        policy.load_state_dict(read_state_dict(model_path, "PPO policy"))
    except RuntimeError as e:
        raise ConfigError(f"{model_path}: not a PPO policy state_dict matching {m.get('policy')} "
                          f"({str(e).splitlines()[0][:160]})") from None
    if m.get("agent_features"):  # deterministic PPO = argmax of the actor's scores: act with the scorer alone
        return ImitationAgent(policy.features_extractor.scorer, m, name)
    return PPOAgent(policy, m, name)


def convert_sb3(path, trust_pickle: bool = False, sha256: str | None = None) -> Path:
    """Turn a legacy PPO agent folder (SB3 ``model.zip``, a pickle) into tensors plus config.

    Loads the zip under the rules of :func:`load_agent` (``trust_pickle`` and a sha256: the one
    in ``agent.json``, or ``sha256`` when the manifest has none), writes ``policy.pt`` (the
    policy's state dict) and the manifest's ``policy`` entry, checks that the rebuilt policy's
    tensors equal the loaded ones, then removes the zip. Returns the new model file.
    """
    import torch

    from kvgym.agents.ppo import POLICY_FILE, build_policy, policy_bytes, policy_config
    from kvgym.files import write_bytes

    folder, m = read_manifest(path)
    zip_path = folder / m["model"]
    if m["kind"] != "ppo" or zip_path.suffix != ".zip":
        raise ConfigError(f"agent {str(path)!r}: nothing to convert (kind {m['kind']!r}, model {m['model']!r})")
    if sha256 is not None:
        if m.get("sha256") not in (None, sha256):
            raise ConfigError(f"--sha256 {sha256} differs from the {m['sha256']} recorded in {folder / MANIFEST}")
        m = {**m, "sha256": sha256}
    policy = _load_sb3_zip(zip_path, m, trust_pickle)
    cfg = policy_config(policy)
    write_bytes(folder / POLICY_FILE, policy_bytes(policy))
    rebuilt = build_policy(cfg)
    rebuilt.load_state_dict(read_state_dict(folder / POLICY_FILE, "PPO policy"))
    a, b = policy.state_dict(), rebuilt.state_dict()
    if set(a) != set(b) or not all(torch.equal(a[k].cpu(), b[k]) for k in a):
        (folder / POLICY_FILE).unlink(missing_ok=True)
        raise ConfigError(f"{zip_path}: the rebuilt policy differs from the loaded one; not converted")
    manifest = {k: v for k, v in m.items() if k not in ("format", "sha256")}
    write_manifest(folder, {**manifest, "model": POLICY_FILE, "policy": cfg})
    zip_path.unlink()
    return folder / POLICY_FILE
