"""``kvgym/Evict-v0`` and ``kvgym/EvictPrefetch-v0``: KV-cache eviction (and prefetch) as decisions."""

from __future__ import annotations

import operator
from collections import deque
from typing import ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from kvgym.envs.config import EnvConfig, NoDecisionError, Splits, check_window
from kvgym.envs.episode import DONE, EVICT, Episode
from kvgym.envs.observation import FEATURES, N_FEATURES, context_names, n_context
from kvgym.envs.render import Snapshot, render_ansi, render_rgb
from kvgym.envs.sources import TraceSource
from kvgym.errors import ConfigError, KvgymError
from kvgym.sim.catalog import default_scenario, resolve_scenario
from kvgym.sim.metrics import Metrics
from kvgym.sim.scenario import Scenario
from kvgym.traces.format import PageTable, Trace

DEFAULT_WORKLOAD = "topk_drift"
#: kvgym's one default scenario (:mod:`kvgym.sim.catalog`).
DEFAULT_SCENARIO = default_scenario()
OPTION_KEYS = ("trace", "window")
__all__ = ["DEFAULT_SCENARIO", "DEFAULT_WORKLOAD", "EvictEnv", "EvictPrefetchEnv", "NoDecisionError"]


class EvictEnv(gym.Env):
    """Choose which KV page leaves GPU memory (tier 0) each time room is needed.

    ## Description

    A trace of KV-page accesses (decode steps of an LLM, each touching pages = (sequence, layer,
    token block)) is replayed through a simulated memory hierarchy: tier 0 (HBM) and lower tiers
    (an HBM pool, host RAM, disk; the scenario's tier profile). All pages of a decode step are
    needed in tier 0 at once and are pinned for the step. Whenever a page must enter a full
    tier 0, the agent picks the victim among the presented candidates; the victim is demoted
    to tier 1 (lower tiers evict in arrival order and may cascade). Everything else, hits, fetches,
    the cost clock, fast-forwards until the next decision inside the compiled engine. Semantics are
    those of :mod:`kvgym.sim.engine` (the specification); a policy run through the env as an agent
    gives exactly the engine's metrics.

    ``kvgym/EvictPrefetch-v0`` (``prefetch_decisions=True``) adds prefetch decisions: after
    every decode step with at least one demand fetch, up to ``scenario.max_prefetch`` times,
    the agent picks a page to bring up into tier 0 ahead of need, or none.

    ## Action space

    ``Discrete(k)``: the slot of the chosen candidate. Eviction decisions: slot ``i`` evicts
    candidate ``i``. Prefetch decisions: slot 0 means *no prefetch* (ends this step's
    prefetch phase), slot ``i >= 1`` prefetches candidate row ``i``. Only slots whose
    ``action_mask`` is 1 are valid; anything else raises ``ValueError`` naming the action and the
    mask. ``action_masks()`` returns the mask as bool (for sb3-contrib's ``MaskablePPO``).

    ## Observation space

    ``Dict(candidates=Box(0, 1, (k, F), float32), context=Box(0, 1, (G,), float32),
    action_mask=MultiBinary(k))``, ``F = 11`` features per candidate (rows beyond the
    candidates, and row 0 in a prefetch decision, are zero), ``G = 2 * tiers + 5``. Feature and
    context definitions and their normalisation are in :mod:`kvgym.envs.observation`
    (``FEATURES``): recency, frequency, accumulated attention weight, size under the scenario's
    quantization, the tier the page would fall to (or comes from) and the cost of bringing it
    back, layer, time since it entered tier 0, re-references soon after an eviction (regret),
    time since its last eviction, and whether it is an unused prefetch; context: occupancy of
    every tier, backlog of every link, progress, pressure (bytes the current step pins / tier-0
    capacity), miss rate, eligible share, phase, and whether the eviction makes room for a
    prefetch.

    **Candidates.** If at most ``k`` unpinned tier-0 residents are eligible, all are shown;
    else the ``k - sample`` least recently used plus ``sample`` drawn at random (seeded by
    ``reset``) from the rest. Candidates are sorted least recently used first, so slot 0 is
    ``lru``'s choice. With ``diagnostics=True``, ``info["belady_in_candidates"]`` says whether a
    page with the farthest next use (Belady's victim) was among them.

    ## Rewards

    By name (``reward``), times ``reward_scale``, for what happened between the previous
    decision and this one: ``stall`` = minus the µs decode steps waited for data (the
    scenario's cost model; under ``overlap`` step time = compute + stall), ``misses`` = minus
    tier-0 misses, ``bytes`` = minus bytes moved over all links. ``info`` always carries the
    three components (``stall_us``, ``misses``, ``bytes_moved``). Costs accrued before the
    first decision belong to no action.

    ## Starting state

    Empty tiers at the start of the episode's trace (or window); ``reset`` fast-forwards to
    the first decision. ``reset(seed=..., options={"trace": ..., "window": (start, stop)})``:
    ``trace`` is a :class:`~kvgym.traces.format.Trace`, a Parquet path, a workload name (seed
    drawn from the env's split) or a list of these; ``window`` selects access rows
    ``[start, stop)``. Without options the env's own ``trace`` (or its workload, seeds drawn
    from ``split`` of ``splits``; with ``episode_rows``, a random window) is used.

    ## Episode end

    Terminated when the whole trace has been replayed; truncated when a window shorter than
    the trace has. The last step's ``info["metrics"]`` is the episode's
    :class:`~kvgym.sim.metrics.Metrics`; ``env.unwrapped.metrics()`` gives it at any time.

    ## Arguments

    ``scenario`` (Scenario, dict or harness scenario name; default: ``h200-measured``,
    ``overlap``, fp16, tier 0 = 13% of the page table), ``trace``, ``workload``
    (default ``topk_drift``), ``workload_params``, ``split``, ``splits`` (:class:`Splits`
    or dict), ``episode_rows``, ``prefetcher`` (a registered prefetcher name, Evict-v0 with a
    prefetching scenario), ``render_mode`` (``ansi`` or ``rgb_array``), and the
    :class:`~kvgym.envs.config.EnvConfig` fields ``k``, ``sample``, ``reward``, ``reward_scale``,
    ``diagnostics``, ``regret_horizon``, ``history``.

    ## Version history

    * v0: initial version (eviction decisions; EvictPrefetch adds prefetch decisions).
    """

    metadata: ClassVar[dict] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}
    _prefetch_decisions = False

    def __init__(self, scenario=None, trace=None, *, workload: str = DEFAULT_WORKLOAD,
                 workload_params: dict | None = None, split: str = "train", splits=None,
                 episode_rows: int | None = None, prefetcher: str | None = None, render_mode: str | None = None,
                 k: int = 32, sample: int | None = None, reward: str = "stall", reward_scale: float = 1.0,
                 diagnostics: bool = False, regret_horizon: int = 32, history: int = 128):
        self.cfg = EnvConfig(k=k, sample=sample, reward=reward, reward_scale=reward_scale,
                             prefetch_decisions=self._prefetch_decisions, diagnostics=diagnostics,
                             regret_horizon=regret_horizon, history=history)
        scn = resolve_scenario(scenario)
        if self._prefetch_decisions:
            if not scn.prefetch:
                scn = scn.with_(prefetch=True)  # the agent is the prefetcher
            if scn.max_prefetch < 1:
                raise ConfigError(f"EvictPrefetch-v0: scenario {scn.name!r} has max_prefetch=0")
        self.scenario = scn
        n_t = _n_tiers(scn)
        if n_t < 2:
            raise ConfigError(f"scenario {scn.name!r}: the env needs at least 2 tiers (profile {scn.profile!r})")
        if scn.backing_tier % n_t == 0:
            raise ConfigError(f"scenario {scn.name!r}: backing_tier must not be tier 0 in the env")
        if prefetcher is not None and not isinstance(prefetcher, str):
            raise ConfigError(f"prefetcher must be a registered prefetcher name, got {type(prefetcher).__name__}")
        if prefetcher is not None and self._prefetch_decisions:
            raise ConfigError("EvictPrefetch-v0: the agent makes the prefetch decisions; do not pass a prefetcher")
        if prefetcher is not None:
            from kvgym.sim.policy import prefetcher_names

            if prefetcher not in prefetcher_names():
                raise ConfigError(f"unknown prefetcher {prefetcher!r}; valid: {', '.join(prefetcher_names())}")
        self.prefetcher_name = prefetcher
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(f"render_mode={render_mode!r}; valid: {', '.join(self.metadata['render_modes'])}")
        self.render_mode = render_mode
        if episode_rows is not None and (not isinstance(episode_rows, int) or isinstance(episode_rows, bool)
                                         or episode_rows < 1):
            raise ConfigError(f"episode_rows={episode_rows!r} invalid: an int >= 1 or None")
        self.episode_rows = episode_rows
        sp = splits if isinstance(splits, Splits) else Splits.from_dict(splits) if splits is not None else Splits()
        self.source = TraceSource(trace, workload, workload_params, split, sp)
        k = self.cfg.k
        self.n_tiers = n_t
        self.observation_space = spaces.Dict({
            "candidates": spaces.Box(0.0, 1.0, (k, N_FEATURES), np.float32),
            "context": spaces.Box(0.0, 1.0, (n_context(n_t),), np.float32),
            "action_mask": spaces.MultiBinary(k),
        })
        self.action_space = spaces.Discrete(k)
        self.feature_names = FEATURES
        self._k = k
        self._reward_index = ("stall", "misses", "bytes").index(self.cfg.reward)
        self._reward_scale = float(self.cfg.reward_scale)
        self._diag = self.cfg.diagnostics
        self.context_names = context_names(n_t)
        self._sim = None
        self._done = True
        self._policy_factory = None
        self.policy = None
        self._setups: dict = {}
        self._history: deque = deque(maxlen=self.cfg.history)
        self.belady_stats = [0, 0]  # [decisions checked, Belady's victim shown]
        self._buffers = None  # observation arrays to write into (set by the vector env)

    # -- agents that act through a policy ----------------------------------------------------
    def attach_policy(self, factory) -> None:
        """Keep ``factory()``'s policy up to date in the next episodes (it sees every event).

        Used by :class:`kvgym.envs.agents.PolicyAgent`, which then asks :meth:`policy_choice`;
        ``None`` detaches. The policy object (``self.policy``) is built at each ``reset``.
        """
        self._policy_factory = factory

    def policy_choice(self) -> int:
        """The attached policy's victim for the pending eviction decision (a page id)."""
        if self._sim is None or self._done or self.policy is None:
            raise ConfigError("policy_choice: no attached policy or no pending decision")
        return self._sim.policy_choice()

    # -- gymnasium API --------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        opts = dict(options or {})
        if unknown := sorted(set(opts) - set(OPTION_KEYS)):
            raise ConfigError(f"reset: unknown option key(s) {unknown}; valid: {', '.join(OPTION_KEYS)}")
        self._sim = None
        self._done = True
        drawn = self.source.draw(opts.get("trace"), self.np_random)
        trace = drawn.trace
        start, stop = self._window(trace, opts.get("window"))
        setup = self._setup(trace, drawn.label)
        step, page = trace.step[start:stop], trace.page[start:stop]
        weight = None if trace.weight is None else trace.weight[start:stop]
        try:
            setup.check_steps(step, page, f"trace {drawn.label}")
        except KvgymError as e:
            raise ConfigError(f"trace {drawn.label} does not fit scenario {self.scenario.name!r}: {e}") from None
        ep_seed = int(self.np_random.integers(1 << 62))
        self.policy = None
        pre = None
        if self.prefetcher_name is not None and self.scenario.prefetch:
            from kvgym.sim.policy import make_prefetcher

            pre = make_prefetcher(self.prefetcher_name)
        self.policy = self._policy_factory() if self._policy_factory is not None else None
        sim = Episode(setup, step, page, weight, k=self.cfg.k, sample=self.cfg.sample, seed=ep_seed,
                      regret_horizon=self.cfg.regret_horizon, diagnostics=self.cfg.diagnostics,
                      prefetch_decisions=self._prefetch_decisions, policy=self.policy, prefetcher=pre,
                      buffers=self._buffers)
        self._sim = sim
        self.trace_label = drawn.label
        self.window = (start, stop)
        self._truncates = (start, stop) != (0, len(trace))
        self._history.clear()
        self.decisions = 0
        self.belady_stats = [0, 0]
        status = sim.start()
        self._totals = sim.totals()
        self._acc = self._accesses()
        if status == DONE:
            raise NoDecisionError(
                f"trace {drawn.label} rows [{start}, {stop}) never needs a tier-0 eviction under scenario "
                f"{self.scenario.name!r} (tier 0 holds {setup.tiers[0].capacity_bytes} bytes); use a smaller "
                f"tier 0 or a longer trace")
        self._done = False
        info = self._info()
        info.update(trace=drawn.label, window=(start, stop))
        return self._obs(), info

    def step(self, action):
        if self._done:
            raise ResetNeeded("kvgym env: call reset() before step() (and again after the episode ended)")
        sim = self._sim
        try:
            a = operator.index(action)
        except TypeError:
            a = self._coerce_action(action)
        if not 0 <= a < self._k or not sim.mask[a]:
            self._invalid_action(a)
        if self.render_mode is not None:
            self._record(sim, a)
        status = sim.act(a)
        self.decisions += 1
        tot = sim.totals()  # [stall µs, misses, bytes moved] after this decision
        t0 = self._totals
        self._totals = tot
        d_stall, d_miss, d_bytes = tot[0] - t0[0], int(tot[1] - t0[1]), int(tot[2] - t0[2])
        reward = -(d_stall, d_miss, d_bytes)[self._reward_index] * self._reward_scale
        if self.render_mode is not None:
            self._record_outcome(d_miss)
        if status == DONE:
            self._done = True
            info = {"action_mask": np.zeros(self._k, np.int8), "stall_us": d_stall, "misses": d_miss,
                    "bytes_moved": d_bytes, "phase": "done", "metrics": sim.metrics()}
            return self._terminal_obs(), reward, not self._truncates, self._truncates, info
        mask = sim.mask.copy()
        obs = {"candidates": sim.obs_c.copy(), "context": sim.obs_g.copy(), "action_mask": mask}
        info = {"action_mask": mask, "stall_us": d_stall, "misses": d_miss, "bytes_moved": d_bytes,
                "phase": "evict" if status == EVICT else "prefetch"}
        if self._diag:
            self._diagnose(info)
        return obs, reward, False, False, info

    def _coerce_action(self, action) -> int:
        if isinstance(action, np.ndarray) and action.size == 1 and np.issubdtype(action.dtype, np.integer):
            return int(action.reshape(()))
        raise ValueError(f"action {action!r} is not an integer in [0, {self._k})")

    def _invalid_action(self, a: int):
        mask = self._sim.mask
        raise ValueError(f"action {a} is invalid for this {self.phase} decision: action_mask={mask.tolist()} "
                         f"(valid actions: {np.flatnonzero(mask).tolist()})")

    def _record(self, sim, a: int) -> None:
        phase = sim.status
        page = int(sim.sel[a]) if phase == EVICT else (int(sim.sel[a - 1]) if a > 0 else -1)
        self._pending_rec = [self.decisions, sim.step, "evict" if phase == EVICT else "prefetch", page, 0, 0]

    def _record_outcome(self, d_miss: int) -> None:
        acc = self._accesses()
        rec = self._pending_rec
        rec[4], rec[5] = (acc - self._acc) - d_miss, d_miss
        self._acc = acc
        self._history.append(tuple(rec))

    def action_masks(self) -> np.ndarray:
        """Valid actions of the pending decision, as bool (all False when no decision is pending)."""
        if self._sim is None or self._done:
            return np.zeros(self.cfg.k, bool)
        return self._sim.mask.astype(bool)

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='ansi' or 'rgb_array'")
            return None
        snap = self._snapshot()
        return render_ansi(snap) if self.render_mode == "ansi" else render_rgb(snap)

    def close(self):
        self._sim = None
        self._done = True

    # -- reads ------------------------------------------------------------------------------
    def metrics(self) -> Metrics:
        """Metrics of the current episode so far (final once it has ended)."""
        if self._sim is None:
            raise ResetNeeded("kvgym env: no episode yet; call reset()")
        return self._sim.metrics()

    @property
    def phase(self) -> str:
        """``evict``, ``prefetch`` or ``done``."""
        if self._sim is None or self._done:
            return "done"
        return "evict" if self._sim.status == EVICT else "prefetch"

    def episode_accesses(self) -> tuple[np.ndarray, np.ndarray]:
        """``(step, page)`` of the current episode's accesses (its window), as read-only views."""
        if self._sim is None:
            raise ResetNeeded("kvgym env: call reset() first")
        sim = self._sim
        step, page = sim.step_arr.view(), sim.page_arr.view()
        step.flags.writeable = page.flags.writeable = False
        return step, page

    def episode_context(self) -> tuple[np.ndarray | None, PageTable]:
        """``(weight, pages)``: the attention weight of each access of the current episode (its window;
        read-only; ``None`` when the trace has none) and the episode's page table."""
        if self._sim is None:
            raise ResetNeeded("kvgym env: call reset() first")
        w = self._sim.weight
        if w is not None:
            w = w.view()
            w.flags.writeable = False
        return w, self._sim.setup.pages

    @property
    def position(self) -> int:
        """Episode row (within the window) of the access being processed: the one waiting for room."""
        if self._sim is None:
            raise ResetNeeded("kvgym env: call reset() first")
        return self._sim.pos

    @property
    def sim_step(self) -> int:
        """Decode step of the pending decision."""
        if self._sim is None:
            raise ResetNeeded("kvgym env: call reset() first")
        return self._sim.step

    def candidate_pages(self) -> np.ndarray:
        """Page id behind each action slot (-1: empty slot, or *no prefetch*)."""
        out = np.full(self.cfg.k, -1, np.int64)
        if self._sim is not None and not self._done:
            n = self._sim.n_sel
            off = 0 if self._sim.status == EVICT else 1
            out[off:off + n] = self._sim.sel[:n]
        return out

    def eligible_pages(self) -> np.ndarray:
        """Every page that could be evicted now (eviction phase), whether shown or not."""
        if self._sim is None or self._done or self._sim.status != EVICT:
            return np.zeros(0, np.int64)
        return self._sim.eligible()

    # -- helpers ------------------------------------------------------------------------------
    def _setup(self, trace: Trace, label: str):
        key = id(trace)  # an 'auto:F' capacity depends on the trace's accesses, not only its pages
        hit = self._setups.get(key)
        if hit is not None and hit[0] is trace:
            return hit[1]
        try:
            setup = self.scenario.build(trace.pages, [(trace.step, trace.page)])
        except KvgymError as e:
            raise ConfigError(f"trace {label} does not fit scenario {self.scenario.name!r}: {e}") from None
        if len(self._setups) >= 4:
            self._setups.clear()
        self._setups[key] = (trace, setup)
        return setup

    def _window(self, trace: Trace, window) -> tuple[int, int]:
        n = len(trace)
        if window is None:
            if self.episode_rows is None or self.episode_rows >= n:
                return 0, n
            start = int(self.np_random.integers(0, n - self.episode_rows + 1))
            # Start on a step boundary so the first step is whole.
            b = trace.step_bounds()
            start = int(b[min(np.searchsorted(b, start), len(b) - 1)])
            stop = min(n, start + self.episode_rows)
            return (start, stop) if stop > start else (0, n)
        return check_window(window, n, "access rows")

    def _obs(self) -> dict:
        sim = self._sim
        return {"candidates": sim.obs_c.copy(), "context": sim.obs_g.copy(), "action_mask": sim.mask.copy()}

    def _terminal_obs(self) -> dict:
        k = self.cfg.k
        return {"candidates": np.zeros((k, N_FEATURES), np.float32),
                "context": np.zeros(n_context(self.n_tiers), np.float32), "action_mask": np.zeros(k, np.int8)}

    def _info(self) -> dict:
        info = {"action_mask": self._sim.mask.copy(), "stall_us": 0.0, "misses": 0, "bytes_moved": 0,
                "phase": self.phase}
        if self._diag:
            self._diagnose(info)
        return info

    def _diagnose(self, info: dict) -> None:
        if self._sim.status == EVICT:
            shown = self._sim.belady_covered() == 1
            self.belady_stats[0] += 1
            self.belady_stats[1] += shown
            info["belady_in_candidates"] = shown

    def _accesses(self) -> int:
        return self._sim.accesses

    def _snapshot(self) -> Snapshot:
        sim = self._sim
        if sim is None:
            raise ResetNeeded("kvgym env: call reset() before render()")
        setup = sim.setup
        m = sim.metrics()
        spec = getattr(self, "spec", None)
        title = f"kvgym {spec.id if spec is not None else type(self).__name__} | {self.trace_label}"
        return Snapshot(title=title, tier_names=[t.name for t in setup.tiers], used=sim.used(),
                        caps=[t.capacity_bytes for t in setup.tiers],
                        footprint=int(setup.page_bytes.sum()), step=sim.step, pos=sim.pos,
                        n_acc=self.window[1] - self.window[0], decisions=self.decisions, hits=m.hits,
                        misses=m.misses, stall_us=m.stall_us, bytes_moved=m.bytes_moved, history=list(self._history))


class EvictPrefetchEnv(EvictEnv):
    __doc__ = EvictEnv.__doc__
    _prefetch_decisions = True


def _n_tiers(scn: Scenario) -> int:
    from kvgym.sim.tiers import profile

    return len(profile(scn.profile).tiers)
