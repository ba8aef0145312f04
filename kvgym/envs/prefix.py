"""``kvgym/PrefixCache-v0``: serving-mode prefix caching (:mod:`kvgym.sim.serving`) as decisions."""

from __future__ import annotations

import operator
import weakref
from collections import OrderedDict
from typing import ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from kvgym.envs.config import NoDecisionError, Splits, check_window
from kvgym.envs.prefix_config import PrefixEnvConfig, deep_merge
from kvgym.envs.prefix_episode import (
    ADMIT,
    DONE,
    EVICT,
    FEATURES,
    N_FEATURES,
    PrefixEpisode,
    context_names,
    n_context,
)
from kvgym.errors import ConfigError, KvgymError
from kvgym.sim.policy import make_admission, make_policy

OPTION_KEYS = ("trace", "window")


class PrefixCacheEnv(gym.Env):
    """Choose which prefix blocks a serving system keeps in GPU memory (and host memory), and which
    newly computed blocks it writes through to host memory.

    ## Description

    A request trace (arrivals, prompts as chains of 512-token prefix blocks, output lengths) is
    served by the serving engine of :mod:`kvgym.sim.serving` (its docstring states every rule):
    continuous batching on one GPU, a prefix cache in HBM (tier 0) over host RAM (tier 1, and more
    tiers if configured); a request's longest cached prefix is loaded, the rest of its prompt is
    recomputed. Whenever a tier the agent controls (``evict_tiers``) needs room, the agent picks
    the victim; with ``admit`` on, it also decides for each block offered to tier 1 by a
    write-through store whether to store it. Everything else fast-forwards.

    ## Action space

    ``Discrete(k)``, one decision per step; the decision's kind is in ``info["phase"]`` and in the
    context (``kind``). **Eviction**: slot ``i`` evicts the block shown in row ``i``. **Admission**:
    slot 0 stores the offered block (row 0), slot 1 skips it. Only slots whose ``action_mask`` is 1
    are valid (a masked action raises ``ValueError``); ``action_masks()`` gives the mask as bool for
    sb3-contrib's ``MaskablePPO``. Both kinds share one ``Discrete(k)`` so that any SB3 algorithm
    with masks handles them: SB3 has no Dict or Tuple action spaces, and a ``MultiDiscrete`` would
    ask for both kinds at every step although only one is pending.

    **Valid victims** (``victims``). ``leaves`` (default): the evictable blocks of the tier (not
    pinned by a running request, not in the store batch being placed) that no other resident
    block of that tier continues (no resident child in the chain trie), so evicting one keeps the
    tier prefix-closed (SGLang's radix cache evicts only leaves; vLLM's free queue evicts chain
    tails first). If no evictable block is a leaf (possible in a lower tier), every evictable block
    is valid. ``any``: every evictable block (the engine's own candidate set).

    ## Observation space

    ``Dict(candidates=Box(0, 1, (k, 10), float32), context=Box(0, 1, (T + 6,), float32),
    action_mask=MultiBinary(k))``, ``T`` = tiers. Eviction: one row per shown candidate, least
    recently used first (slot 0 is ``lru``'s choice among the valid blocks, ``radix_lru``'s under
    ``leaves``); if more than ``k`` are valid, the ``k - sample`` least recently used plus
    ``sample`` drawn uniformly from the others (seeded by ``reset``). Admission: row 0 describes
    the offered block as tier 1 sees it. Other rows are zero. ``squash(x, τ) = x / (x + τ)``;
    ``C`` = the tier's capacity in blocks (the trace's blocks if unbounded); "events" count the
    tier's block accesses and insertions (the clock ``lru`` keeps):

    ====  ==============  ====================================================================
     #    feature         definition (in the decision's tier)
    ====  ==============  ====================================================================
     0    recency         squash(events since its last access or insertion, C); 1 if never
     1    frequency       squash(its accesses in this tier, 4) (tier 0: prompt and output block
                          references; a lower tier: loads and store offers)
     2    references      squash(its tier-0 references, 4)
     3    position        squash(chain position, 16)
     4    tokens          its tokens / block_tokens
     5    children        squash(its resident children in this tier, 1): 0 for a leaf
     6    copy_below      1 if a lower tier holds a copy (evicting it drops nothing)
     7    refetch_cost    squash(µs to get it back into tier 0, 10,000): a load from the fastest
                          lower tier holding it, else recomputing it at its chain position
                          (``ServingContext.refetch_us``)
     8    age             squash(events since it entered this tier, C); 1 if never
     9    evicted_ago     squash(events since its last eviction from this tier, C); 1 if never
    ====  ==============  ====================================================================

    Context: occupancy of every tier (resident blocks / capacity; 0 unbounded), kind (0 eviction,
    1 admission), tier (decision tier / (T - 1)), progress (requests whose admission has started /
    requests), evictable (eviction: candidates / residents of the tier), valid (valid / (valid +
    k)), batch_left (admission: squash(blocks left in the offer, this one included, 8)).

    ## Rewards

    By name (``reward``), times ``reward_scale``:

    - ``prefill_us`` (default): minus the prefill time of the requests *booked* at this step: for
      each, the µs of an iteration that computes exactly the prompt tokens it recomputed
      (``BatchCompute.iteration_us`` of ``prefill_terms``: FLOPs of the linear layers and of
      attention over the prefix, roofline with the weights read).
    - ``prefill_tokens``: minus the prompt tokens those requests recomputed (their prompt minus
      their usable cached prefix, at least one token each).
    - ``ttft_us`` / ``ttft_p90_us``: 0 at every step but the episode's last, whose reward is minus
      the episode's mean / 90th-percentile time to first token (µs, :class:`ServingMetrics`).
      Terminal: a request's TTFT depends on queueing and on every request in the batch, which no
      single decision owns.

    A request is booked at the first step after its admission has ended (known once the next
    request's admission starts, or the episode ends): its prefix was looked up when it was admitted,
    so the decisions before it are what made it hit or miss. Requests booked while ``reset`` runs
    to the first decision count for no action (``reset``'s ``info`` reports them); over an episode,
    those plus the rewards add up to minus the metrics' ``prefill_tokens_computed`` (tested).
    ``info`` always carries ``prefill_us``, ``prefill_tokens`` and ``requests`` (booked at this step).

    ## Starting state and episodes

    Empty tiers at the first request of the episode's trace (or window); ``reset`` runs to the
    first decision. ``reset(seed=..., options={"trace": ..., "window": (start, stop)})``: another
    trace (as the ``trace`` config key) and/or a window of requests. Terminated at the end of the
    whole trace, truncated at the end of a shorter window. The last step's ``info["metrics"]`` is
    the episode's :class:`~kvgym.sim.metrics.ServingMetrics` (``env.unwrapped.metrics()``). A
    trace that needs no decision raises :class:`~kvgym.envs.config.NoDecisionError` at ``reset``.

    ## Arguments

    ``gym.make(id, config=None, render_mode=None, **overrides)``: the configuration is
    :meth:`default_config` deep-merged with ``config`` and then with the keyword arguments
    (:class:`~kvgym.envs.prefix_config.PrefixEnvConfig` lists every key). A preset's settings
    come as ``config``; change them with keyword arguments (``k=8``,
    ``serving={"capacities": [32, 128]}``), which merge into it.

    ## Version history

    * v0: initial version.
    """

    metadata: ClassVar[dict] = {"render_modes": ["ansi"], "render_fps": 4}

    @classmethod
    def default_config(cls) -> dict:
        """The default configuration (a dict of :class:`PrefixEnvConfig` keys)."""
        return PrefixEnvConfig.default()

    @classmethod
    def preset_line(cls, kwargs: dict) -> str:
        """One line on what a registration's ``kwargs`` configure (``kvgym list envs``)."""
        cfg = PrefixEnvConfig.from_dict(deep_merge(cls.default_config(), kwargs.get("config", {})))
        s = cfg.serving_config()
        kinds = " and ".join([f"tier-{'/'.join(map(str, cfg.evict_tiers))} eviction"] * bool(cfg.evict_tiers)
                             + ["admission"] * cfg.admit)
        src = cfg.trace if isinstance(cfg.trace, str) else cfg.workload
        caps = "/".join("unbounded" if c is None else str(c) for c in s.capacities)
        return (f"{kinds} decisions ({cls.__name__}): requests {src}, {s.profile} {'+'.join(s.tiers)} "
                f"{caps} blocks, {s.write_policy}")

    def __init__(self, config: dict | None = None, render_mode: str | None = None, **overrides):
        merged = deep_merge(deep_merge(self.default_config(), config or {}), overrides)
        self.cfg = PrefixEnvConfig.from_dict(merged)
        #: The configuration in force (HighwayEnv's ``env.config``).
        self.config = self.cfg.to_dict()
        self.serving = self.cfg.serving_config()
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(f"render_mode={render_mode!r}; valid: {', '.join(self.metadata['render_modes'])}")
        self.render_mode = render_mode
        sp = self.cfg.splits
        self.splits = Splits.from_dict(sp) if isinstance(sp, dict) else (sp if isinstance(sp, Splits) else Splits())
        self._seeds = self.splits.seeds(self.cfg.split)
        self.n_tiers = T = len(self.serving.tiers)
        k = self.cfg.k
        self.observation_space = spaces.Dict({
            "candidates": spaces.Box(0.0, 1.0, (k, N_FEATURES), np.float32),
            "context": spaces.Box(0.0, 1.0, (n_context(T),), np.float32),
            "action_mask": spaces.MultiBinary(k),
        })
        self.action_space = spaces.Discrete(k)
        self.feature_names = FEATURES
        self.context_names = context_names(T)
        self._traces: OrderedDict = OrderedDict()
        self._ep: PrefixEpisode | None = None
        self._done = True
        self._policy_factory = None
        self._finalizer = None
        self.decisions = 0
        self._last, self._last_action = (0, 0, 0.0), None

    # -- agents that act through a policy ----------------------------------------------------------
    def attach_policy(self, factory) -> None:
        """From the next ``reset`` on, give every tier the agent decides a ``factory()`` policy that
        sees every event (``PolicyAgent`` then plays :meth:`policy_choice`); ``None`` detaches."""
        self._policy_factory = factory

    @property
    def policy(self):
        """The episode's attached policy object (of the first tier the agent decides; the admission
        policy when it decides admission only); ``None`` before ``reset`` or with none attached."""
        ep = self._ep
        if ep is None:
            return None
        if self.cfg.evict_tiers:
            return ep.views[self.cfg.evict_tiers[0]].inner
        return ep.adm.inner if self._policy_factory is not None else None

    def policy_choice(self):
        """The attached policy's victim (a block id) for a pending eviction, or the configured
        admission policy's answer (True: store) for a pending admission."""
        if self._ep is None or self._done:
            raise ConfigError("policy_choice: no pending decision")
        return self._ep.policy_choice()

    # -- gymnasium API -------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        opts = dict(options or {})
        if unknown := sorted(set(opts) - set(OPTION_KEYS)):
            raise ConfigError(f"reset: unknown option key(s) {unknown}; valid: {', '.join(OPTION_KEYS)}")
        self._close_episode()
        trace, label = self._draw(opts.get("trace"))
        start, stop = self._window(len(trace), opts.get("window"))
        if (start, stop) != (0, len(trace)):
            from kvgym.traces.requests import slice_requests

            trace = slice_requests(trace, start, stop)
        self.trace_label, self.window = label, (start, stop)
        self._truncates = (start, stop) != (0, self._n_full)
        cfg = self.cfg
        inner = []
        for t in range(self.n_tiers):
            if t in cfg.evict_tiers:
                inner.append(self._policy_factory() if self._policy_factory is not None else None)
            else:
                name, params = cfg.spec("policy" if t == 0 else "lower")
                inner.append(make_policy(name, **params))
        adm_name, adm_params = cfg.spec("admission")
        rng = np.random.Generator(np.random.PCG64(int(self.np_random.integers(1 << 62))))
        ep = PrefixEpisode(trace, self.serving, inner=inner, admission=make_admission(adm_name, **adm_params),
                           evict_tiers=cfg.evict_tiers, admit=cfg.admit, victims=cfg.victims, k=cfg.k,
                           sample=cfg.sample, rng=rng)
        self._ep = ep
        self._finalizer = weakref.finalize(self, ep.close)
        self.decisions = 0
        self._last, self._last_action = (0, 0, 0.0), None
        try:
            status = ep.start()
        except KvgymError as e:
            raise ConfigError(f"trace {label} does not fit serving config {self.serving.name!r}: "
                              f"{str(e).splitlines()[0]}") from None
        pre = ep.take_prefill()  # booked before the first decision: for no action, reported by reset
        if status == DONE:
            raise NoDecisionError(f"trace {label} requests [{start}, {stop}) need no decision under serving config "
                                  f"{self.serving.name!r} (nothing to evict or admit); use smaller tiers or a "
                                  f"longer trace")
        self._done = False
        info = self._info(*pre)
        info.update(trace=label, window=(start, stop))
        return self._obs(), info

    def step(self, action):
        if self._done:
            raise ResetNeeded("kvgym env: call reset() before step() (and again after the episode ended)")
        ep = self._ep
        try:
            a = operator.index(action)
        except TypeError:
            if not (isinstance(action, np.ndarray) and action.size == 1 and np.issubdtype(action.dtype, np.integer)):
                raise ValueError(f"action {action!r} is not an integer in [0, {self.cfg.k})") from None
            a = int(action.reshape(()))
        if not 0 <= a < self.cfg.k or not ep.mask[a]:
            raise ValueError(f"action {a} is invalid for this {ep.status} decision: action_mask={ep.mask.tolist()} "
                             f"(valid actions: {np.flatnonzero(ep.mask).tolist()})")
        self._last_action = (ep.status, int(ep.shown[a]) if ep.status == EVICT else int(ep.shown[0]), a)
        status = ep.act(a)
        self.decisions += 1
        n_req, tokens, us = ep.take_prefill()
        self._last = (n_req, tokens, us)
        info = self._info(n_req, tokens, us)
        if status == DONE:
            self._done = True
            m = ep.metrics
            info.update(metrics=m, action_mask=np.zeros(self.cfg.k, np.int8), phase=DONE)
            reward = self._reward(tokens, us, m)
            return self._terminal_obs(), reward, not self._truncates, self._truncates, info
        return self._obs(), self._reward(tokens, us, None), False, False, info

    def _reward(self, tokens: int, us: float, metrics) -> float:
        r = self.cfg.reward
        if r == "prefill_us":
            v = -us
        elif r == "prefill_tokens":
            v = -float(tokens)
        else:
            v = 0.0 if metrics is None else -(metrics.ttft_mean_us if r == "ttft_us" else metrics.ttft_p90_us)
        return float(v * self.cfg.reward_scale)

    def action_masks(self) -> np.ndarray:
        """Valid actions of the pending decision, as bool (all False when none is pending)."""
        if self._ep is None or self._done:
            return np.zeros(self.cfg.k, bool)
        return self._ep.mask.astype(bool)

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='ansi'")
            return None
        return self._ansi()

    def close(self):
        self._close_episode()
        self._done = True

    # -- reads ------------------------------------------------------------------------------------------
    def metrics(self):
        """The episode's :class:`~kvgym.sim.metrics.ServingMetrics` once it has ended."""
        if self._ep is None:
            raise ResetNeeded("kvgym env: no episode yet; call reset()")
        if self._ep.metrics is None:
            raise ConfigError("metrics: the episode has not ended (serving metrics are final only at the end)")
        return self._ep.metrics

    @property
    def phase(self) -> str:
        """``evict``, ``admit`` or ``done``."""
        return DONE if self._ep is None or self._done else self._ep.status

    @property
    def decision_tier(self) -> int:
        """The tier the pending decision is about (-1 when none is pending)."""
        return -1 if self._ep is None or self._done else self._ep.tier

    @property
    def request(self) -> int:
        """Index, in the episode's trace, of the request whose placement needed the room the pending
        decision makes (its admission, its decode growth or its store: ``ServingContext.req``); -1
        when no decision is pending."""
        if self._ep is None or self._done:
            return -1
        return int(self._ep.views[self._ep.tier].ctx.req)

    def candidate_pages(self) -> np.ndarray:
        """The block behind each action slot (-1: empty slot; admission: the offered block in slot 0)."""
        out = np.full(self.cfg.k, -1, np.int64)
        if self._ep is not None and not self._done:
            out[:len(self._ep.shown)] = self._ep.shown
        return out

    # -- helpers -------------------------------------------------------------------------------------
    def _close_episode(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # closes the episode's thread, once
            self._finalizer = None
        self._ep = None
        self._done = True

    def _draw(self, spec):
        from kvgym.traces.requests import RequestTrace
        from kvgym.workloads.request_sources import request_trace, source_kind

        cfg = self.cfg
        if spec is None:
            spec = cfg.trace if cfg.trace is not None else cfg.workload
        if isinstance(spec, (list, tuple)):
            if not spec:
                raise ConfigError("trace: an empty list of traces")
            spec = spec[int(self.np_random.integers(len(spec)))]
        kind = source_kind(spec)
        if kind == "trace":
            tr = spec
            gen = tr.meta.get("generator")
            label = f"{gen}#{tr.meta.get('seed')}" if gen else "requests"
        else:
            seed = int(self._seeds[int(self.np_random.integers(len(self._seeds)))]) if kind == "workload" else None
            params = cfg.workload_params if kind == "workload" and spec == cfg.workload else {}
            key = (str(spec), seed)
            if key not in self._traces:
                self._traces[key] = request_trace(spec, seed or 0, params)
                while len(self._traces) > 4:
                    self._traces.popitem(last=False)
            self._traces.move_to_end(key)
            tr = self._traces[key]
            label = f"{spec}#{seed}" if seed is not None else str(spec)
        if not isinstance(tr, RequestTrace) or len(tr) == 0:
            raise ConfigError(f"trace {label}: no requests")
        self._n_full = len(tr)
        return tr, label

    def _window(self, n: int, window) -> tuple[int, int]:
        L = self.cfg.episode_requests
        if window is None:
            if L is None or L >= n:
                return 0, n
            start = int(self.np_random.integers(0, n - L + 1))
            return start, start + L
        return check_window(window, n, "requests")

    def _obs(self) -> dict:
        ep = self._ep
        return {"candidates": ep.obs_c.copy(), "context": ep.obs_g.copy(), "action_mask": ep.mask.copy()}

    def _terminal_obs(self) -> dict:
        k = self.cfg.k
        return {"candidates": np.zeros((k, N_FEATURES), np.float32),
                "context": np.zeros(n_context(self.n_tiers), np.float32), "action_mask": np.zeros(k, np.int8)}

    def _info(self, n_req: int, tokens: int, us: float) -> dict:
        ep = self._ep
        return {"action_mask": ep.mask.copy(), "phase": ep.status, "tier": ep.tier, "requests": n_req,
                "prefill_tokens": tokens, "prefill_us": us}

    def _ansi(self) -> str:
        ep = self._ep
        if ep is None:
            raise ResetNeeded("kvgym env: call reset() before render()")
        spec = getattr(self, "spec", None)
        head = (f"kvgym {spec.id if spec is not None else type(self).__name__} | {self.trace_label} | "
                f"requests {self.window[0]}..{self.window[1]} | decisions {self.decisions}")
        lines = [head]
        for t, v in enumerate(ep.views):
            cap = v.cap
            share = v.n_resident / cap if cap else 0.0
            bar = "#" * round(30 * share)
            lines.append(f"  tier {t} {self.serving.tiers[t]:<6} [{bar:<30}] {v.n_resident} / "
                         f"{cap if cap else 'unbounded'} blocks")
        lines.append(f"  requests admitted {ep.begun} of {ep.n_req}; booked {ep.booked}")
        n_req, tokens, us = self._last
        lines.append(f"  last step: {n_req} requests booked, {tokens} prompt tokens recomputed, {us / 1e3:.3f} ms prefill")
        if self._last_action is not None:
            kind, block, a = self._last_action
            lines.append(f"  last action: {kind} slot {a} (block {block})")
        lines.append(f"  pending: {self.phase}" + (f" in tier {ep.tier}" if self.phase in (EVICT, ADMIT) else ""))
        return "\n".join(lines) + "\n"


__all__ = ["PrefixCacheEnv"]
