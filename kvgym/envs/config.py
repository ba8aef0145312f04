"""Configuration of the environments: decision knobs (:class:`EnvConfig`) and data splits (:class:`Splits`).

Both are frozen, JSON-serialisable dataclasses validated in ``__post_init__`` (one place), so a
bad value fails at ``gym.make`` with a :class:`~kvgym.errors.ConfigError` naming the field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from itertools import pairwise

from kvgym.errors import ConfigError
from kvgym.params import need_bool, need_choice, need_int, need_num

REWARDS = ("stall", "misses", "bytes")
SPLIT_NAMES = ("train", "validation", "test")


class NoDecisionError(ConfigError):
    """The episode's trace never needs a decision (e.g. it fits in tier 0).

    The finished run's metrics are still available from ``env.unwrapped.metrics()``.
    """


def check_window(window, n: int, rows: str) -> tuple[int, int]:
    """A ``reset(options={"window": (start, stop)})`` value as ints with ``0 <= start < stop <= n``
    (``rows``: what the bounds count, for the error message)."""
    import numpy as np

    ok = (isinstance(window, (tuple, list)) and len(window) == 2
          and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in window))
    if not ok or not 0 <= window[0] < window[1] <= n:
        raise ConfigError(f"reset: option 'window'={window!r} invalid: (start, stop) {rows} with "
                          f"0 <= start < stop <= {n}")
    return int(window[0]), int(window[1])


def check_slots_and_reward(owner: str, cfg, rewards) -> None:
    """The fields every env config shares: ``k`` candidate slots in [2, 4096], ``sample`` of them
    drawn at random (default ``k // 4``, set here on the frozen ``cfg``), ``reward`` one of
    ``rewards``, ``reward_scale`` > 0."""
    need_int(owner, "k", cfg.k, 2, 4096)
    if cfg.sample is None:
        object.__setattr__(cfg, "sample", cfg.k // 4)
    need_int(owner, "sample", cfg.sample, 0, cfg.k - 1)
    need_choice(owner, "reward", cfg.reward, rewards)
    need_num(owner, "reward_scale", cfg.reward_scale, 0.0, lo_open=True)


@dataclass(frozen=True)
class EnvConfig:
    """How decisions are presented and scored.

    Attributes:
        k: candidate slots per decision (``Discrete(k)``, ``candidates`` is ``Box(k, F)``).
        sample: of the ``k`` slots, how many are a seeded random sample of the tier-0 residents
            outside the LRU tail when more than ``k`` are eligible; the other ``k - sample``
            are the LRU tail (oldest last use). All eligible residents are shown when they fit.
            ``None`` (default) means ``k // 4``.
        reward: ``stall`` (minus the stall µs accrued since the last decision, from the scenario's
            cost model), ``misses`` (minus the tier-0 misses since the last decision) or ``bytes``
            (minus the bytes moved over all links since the last decision).
        reward_scale: the reward is multiplied by this (e.g. 1e-3 turns µs into ms).
        prefetch_decisions: ``True`` for EvictPrefetch-v0: after every decode step with at least
            one demand fetch the agent also picks up to ``max_prefetch`` pages to bring up.
        diagnostics: also compute, per eviction decision, whether Belady's victim (farthest next
            use) is among the presented candidates (reads the episode's future; off by default).
        regret_horizon: steps after a tier-0 eviction within which a re-reference counts as regret.
        history: decisions kept for ``render`` (text log and the image's timeline).
    """

    k: int = 32
    sample: int | None = None
    reward: str = "stall"
    reward_scale: float = 1.0
    prefetch_decisions: bool = False
    diagnostics: bool = False
    regret_horizon: int = 32
    history: int = 128

    def __post_init__(self) -> None:
        w = "env config"
        check_slots_and_reward(w, self, REWARDS)
        need_bool(w, "prefetch_decisions", self.prefetch_decisions)
        need_bool(w, "diagnostics", self.diagnostics)
        need_int(w, "regret_horizon", self.regret_horizon, 0)
        need_int(w, "history", self.history, 1, 100_000)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EnvConfig:
        known = {f.name for f in fields(cls)}
        if unknown := set(d) - known:
            raise ConfigError(f"env config: unknown keys {sorted(unknown)}; valid: {', '.join(sorted(known))}")
        return cls(**d)


@dataclass(frozen=True)
class Splits:
    """Disjoint seed ranges of a workload generator for training, validation and test.

    Each field is a half-open range ``(start, stop)`` of generator seeds. An env configured
    with ``split="train"`` draws its episodes' traces only from train seeds, so an agent can be
    validated and tested on traces it never saw. Trace *files* are split with
    :func:`split_files`.
    """

    train: tuple = (0, 1000)
    validation: tuple = (1000, 1100)
    test: tuple = (1100, 1200)

    def __post_init__(self) -> None:
        spans = []
        for name in SPLIT_NAMES:
            v = getattr(self, name)
            ok = (isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
                  and 0 <= v[0] < v[1])
            if not ok:
                raise ConfigError(f"splits: {name}={v!r} invalid: a pair (start, stop) of ints with 0 <= start < stop")
            object.__setattr__(self, name, (int(v[0]), int(v[1])))
            spans.append((v[0], v[1], name))
        spans.sort()
        for (a0, a1, an), (b0, b1, bn) in pairwise(spans):
            if b0 < a1:
                raise ConfigError(f"splits: {an} {(a0, a1)} and {bn} {(b0, b1)} overlap; splits must be disjoint")

    def seeds(self, split: str) -> range:
        """The seeds of ``split`` (``train``, ``validation`` or ``test``)."""
        if split not in SPLIT_NAMES:
            raise ConfigError(f"unknown split {split!r}; valid: {', '.join(SPLIT_NAMES)}")
        a, b = getattr(self, split)
        return range(a, b)

    def split_of(self, seed: int) -> str | None:
        """Which split ``seed`` belongs to (``None`` if none)."""
        for name in SPLIT_NAMES:
            a, b = getattr(self, name)
            if a <= seed < b:
                return name
        return None

    def to_dict(self) -> dict:
        return {name: list(getattr(self, name)) for name in SPLIT_NAMES}

    @classmethod
    def from_dict(cls, d: dict) -> Splits:
        if unknown := set(d) - set(SPLIT_NAMES):
            raise ConfigError(f"splits: unknown keys {sorted(unknown)}; valid: {', '.join(SPLIT_NAMES)}")
        return cls(**{k: tuple(v) for k, v in d.items()})


def split_files(paths, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> dict[str, list[str]]:
    """Assign trace files to train / validation / test, deterministically.

    The files are sorted by name, shuffled with ``seed`` and cut by ``fractions`` (three
    numbers summing to 1); every split but train may be empty when there are few files.
    """
    import numpy as np

    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-9:
        raise ConfigError(f"split_files: fractions={fractions!r} must be three numbers >= 0 summing to 1")
    names = sorted(str(p) for p in paths)
    if not names:
        raise ConfigError("split_files: no trace files given")
    order = np.random.Generator(np.random.PCG64(seed)).permutation(len(names))
    n_val = round(fr[1] * len(names))
    n_test = round(fr[2] * len(names))
    n_train = max(1, len(names) - n_val - n_test) if fr[0] > 0 else 0
    picked = [names[i] for i in order]
    return {"train": picked[:n_train], "validation": picked[n_train:n_train + n_val],
            "test": picked[n_train + n_val:n_train + n_val + n_test]}
