"""The safety gate: follow the learned agent, or a heuristic, by tracked regret (LeCaR/ARC-style).

At every eviction decision three *experts* name a victim: the learned agent, ``lru`` (slot 0:
candidates are sorted by last use) and a fallback heuristic (``fallback``, attached to the env
as a policy, so its state follows the actual run, as a :class:`~kvgym.envs.agents.PolicyAgent`'s
does). The gate executes one of them and, for every other expert whose victim ``u`` differs
from the executed victim ``v``, records the comparison. It is settled by whichever of the two
pages is accessed first (read from the episode's accesses as they happen, never ahead):

- ``v`` first: the executed choice cost a miss the expert would have saved: the expert's
  *estimated misses* drop by one relative to the executed expert's;
- ``u`` first: the expert's choice would have cost that miss: its estimate rises by one.

The estimates decay by ``decay`` per settled comparison (recent behaviour counts, as LeCaR's
weights do). The gate starts with LRU and hands the decisions to another expert only when that
expert's estimate is ahead of the current one's by more than ``margin`` plus ``margin_share`` of
the decisions so far (each makes room for one miss): hysteresis both ways, so the agent takes
over where the evidence says it saves misses, and is dropped again (for LRU or the fallback,
whichever is ahead) where it costs more than about that share.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from kvgym.errors import ConfigError
from kvgym.params import need_num

EXPERTS = ("agent", "lru", "fallback")


class GateArgs:
    """The gate's settings (saved in ``agent.json`` under ``gate``)."""

    KEYS = ("fallback", "decay", "margin", "margin_share")

    def __init__(self, fallback: str = "arc", decay: float = 0.995, margin: float = 4.0, margin_share: float = 0.02):
        from kvgym.sim.policy import make_policy

        make_policy(fallback)  # an unknown name is a ConfigError naming the valid ones
        self.fallback = fallback
        self.decay = need_num("gate", "decay", decay, 0.0, 1.0, lo_open=True)
        self.margin = need_num("gate", "margin", margin, 0.0)
        self.margin_share = need_num("gate", "margin_share", margin_share, 0.0)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.KEYS}

    @classmethod
    def from_dict(cls, d: dict, where: str = "gate") -> GateArgs:
        if not isinstance(d, dict) or set(d) - set(cls.KEYS):
            raise ConfigError(f"{where}: expected an object with keys among {', '.join(cls.KEYS)}, got {d!r:.120}")
        return cls(**d)


class Regret:
    """The estimates behind a gate: each expert's estimated misses relative to the others (decayed
    by ``decay`` per settled pair), the decayed count of settled pairs, and the leader, which moves
    to the expert ahead of it by more than ``margin + margin_share * weight``."""

    def __init__(self, args: GateArgs, experts: int, start: int):
        self.args = args
        self.est = np.zeros(experts)
        self.weight = 0.0
        self.leader = start

    def settle(self, executed: int, other: int, executed_first: bool) -> None:
        """A pair settled: ``executed``'s victim was evicted, ``other``'s was not; ``executed_first``:
        the executed victim came back first (the other expert would have saved that miss)."""
        delta = -1.0 if executed_first else 1.0
        d = self.args.decay
        self.est *= d
        self.weight = self.weight * d + 1.0
        self.est[other] += delta / 2.0
        self.est[executed] -= delta / 2.0

    def lead(self) -> int:
        """The leader for the next decision. The margin is on the scale of the estimates: decayed,
        they weigh at most ``1 / (1 - decay)`` recent pairs, so it grows with that decayed count,
        not with all decisions so far."""
        best = int(np.argmin(self.est))
        if self.est[self.leader] - self.est[best] > self.args.margin + self.args.margin_share * self.weight:
            self.leader = best
        return self.leader


class GatedAgent:
    """Wraps an agent (``attach``/``reset``/``act``) with the safety gate of the module docstring."""

    privileged = False

    def __init__(self, agent, args: GateArgs | None = None, name: str | None = None):
        self.agent = agent
        self.args = args or GateArgs()
        self.name = name or f"{getattr(agent, 'name', 'agent')}+gate"
        self.kind = getattr(agent, "kind", "agent")
        self.env = None
        self.followed = np.zeros(len(EXPERTS), np.int64)  # decisions executed per expert (last episode)

    def __getattr__(self, name):
        # Everything else (k, manifest, model, ...) is the wrapped agent's.
        if name == "agent":
            raise AttributeError(name)
        return getattr(self.agent, name)

    def attach(self, env) -> None:
        from kvgym.sim.policy import make_policy

        self.env = env.unwrapped
        if hasattr(self.agent, "attach"):
            self.agent.attach(env)
        fb = self.args.fallback
        self.env.attach_policy(lambda: make_policy(fb))

    def reset(self) -> None:
        if callable(getattr(self.agent, "reset", None)):
            self.agent.reset()
        self._sim = None

    def _start(self, u) -> None:
        self._sim = u._sim
        self._page = u.episode_accesses()[1]
        self._seen = 0  # accesses already scanned for settlements
        self.regret = Regret(self.args, len(EXPERTS), 1)  # LRU until an expert is ahead of it by the margin
        self.pending: dict[int, list] = defaultdict(list)  # page -> open comparisons it settles
        self.open = np.zeros(len(u.episode_context()[1]), np.int32)  # open comparisons per page
        self.followed[:] = 0

    def _settle(self, u) -> None:
        pos = u.position
        if pos <= self._seen or not self.pending:
            self._seen = max(self._seen, pos)
            return
        chunk = self._page[self._seen:pos]
        self._seen = pos
        hit = chunk[self.open[chunk] > 0]
        if not len(hit):
            return
        for p in hit:  # in access order; a page's comparisons are settled by its first access
            for c in self.pending.pop(int(p), ()):
                if c[3]:
                    continue  # settled by the other page already
                c[3] = True
                v, u_e, e, x = c[0], c[1], c[2], c[4]
                self.open[v] -= 1
                self.open[u_e] -= 1
                self.regret.settle(x, e, int(p) == v)

    def act(self, obs, info) -> int:
        from kvgym.envs.agents import choose

        u = self.env
        a = int(choose(self.agent, obs, info, u))
        if u.phase != "evict":
            return a
        if getattr(self, "_sim", None) is not u._sim:
            self._start(u)
        self._settle(u)
        pages = u.candidate_pages()
        slots = [a, 0, 0]
        fb = u.policy_choice()
        hit = np.flatnonzero(pages == fb)
        if hit.size:
            slots[2] = int(hit[0])
        x = self.regret.lead()
        v = int(pages[slots[x]])
        for e in range(len(EXPERTS)):
            ue = int(pages[slots[e]])
            if e != x and ue != v:
                c = [v, ue, e, False, x]
                self.pending[v].append(c)
                self.pending[ue].append(c)
                self.open[v] += 1
                self.open[ue] += 1
        self.followed[x] += 1
        return slots[x]

    def predict(self, obs, state=None, episode_start=None, deterministic: bool = True, action_masks=None):
        return np.int64(self.act(obs, {"action_mask": obs["action_mask"] if action_masks is None else action_masks})), state
