"""The vLLM-free core of KvgymCachePolicy: kvgym's engine order over an open key space, and which
policies port (no vLLM needed)."""

from __future__ import annotations

import numpy as np
import pytest

from kvgym.baselines.common import cache_setup
from kvgym.errors import ConfigError
from kvgym.integrations.vllm_driver import PolicyDriver, PortError, check_portable
from kvgym.sim.engine import Engine
from kvgym.sim.policy import make_policy, policy_names
from kvgym.traces.format import PageTable, Trace

REFUSED = {
    "belady": "is an oracle: it reads the future of the trace",
    "belady_size": "is an oracle: it reads the future of the trace",
    "cost_aware_tiered": "reads kvgym's tier hierarchy and its transfer costs (ctx.refetch_cost_us)",
    "h2o": "reads the page table (sequence, layer, token span of decode pages) (ctx.pages)",
    "streaming_llm": "reads the page table (sequence, layer, token span of decode pages) (ctx.pages)",
}
PORTABLE = [p for p in policy_names() if p not in REFUSED]


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_policies_get_one_line(name):
    with pytest.raises(PortError) as e:
        check_portable(name)
    msg = str(e.value)
    assert "\n" not in msg and f"policy {name!r}" in msg and REFUSED[name] in msg


def test_every_other_baseline_ports():
    assert PORTABLE == ["arc", "clock", "cost_aware", "fifo", "heavy_hitter", "lfu", "lru", "mru", "predictive",
                        "regret_aware", "s3fifo", "sieve", "windowed_recency"]
    for name in PORTABLE:
        check_portable(name)


def test_bad_name_and_parameter_are_one_line():
    with pytest.raises(ConfigError, match=r"^unknown policy 'nope'; valid: arc, belady"):
        check_portable("nope")
    with pytest.raises(ConfigError, match=r"^policy 'clock': unknown parameters \['bitz'\]"):
        check_portable("clock", {"bitz": 2})
    with pytest.raises(ConfigError, match=r"^clock: bits=0 is out of range; valid: 1 <= bits <= 16$"):
        check_portable("clock", {"bits": 0})


def _drive(d: PolicyDriver, stream) -> list:
    victims = []
    for k in stream:
        d.new_step()
        if k in d.resident:
            d.hit(k)
        else:
            victims += d.miss(k)
    return victims


def _engine_victims(name: str, stream: np.ndarray, cap: int, params=None) -> list:
    pages = PageTable.uniform(int(stream.max()) + 1, 1)
    pol = make_policy(name, **(params or {}))
    victims, orig = [], pol.on_evict

    def on_evict(p, t, s):  # record tier-0 victims, then the policy's own hook
        if t == 0:
            victims.append(p)
        if orig is not None:
            orig(p, t, s)
    pol.on_evict = on_evict
    Engine(cache_setup(pages, cap), pol).run(Trace(np.arange(len(stream)), stream, pages))
    return victims


@pytest.mark.parametrize("name", PORTABLE)
def test_driver_is_kvgym_engine_on_a_block_stream(name):
    """One access per step, no recycling: the driver's victims are the reference engine's, in order."""
    stream = (np.random.default_rng(3).zipf(1.3, 1500) % 50).astype(np.int64)
    d = PolicyDriver(name, None, 10, history=1000)
    got = _drive(d, stream.tolist())
    want = _engine_victims(name, stream, 10)
    assert len(want) > 500 and got == want


def test_recycled_ids_forget_history_and_arrays_grow():
    # heavy_hitter keeps lifetime counts: key 0 is hot, then evicted and forgotten once
    # `history` (here 1) other evictions pass; it then comes back with a count of 1.
    d = PolicyDriver("heavy_hitter", None, 2, history=1)
    assert d.ctx.n_pages == 4
    _drive(d, [0, 0, 0, 1, 2, 3])  # 0 (3 accesses) stays; 1 then 2 are evicted
    assert list(d.resident) == [0, 3] and list(d.gone) == [1, 2]
    _drive(d, [4])  # a new key: the oldest gone key (1) is forgotten, its id reused
    assert 1 not in d.ids and d.ids[4] == 1  # key 1 had id 1
    assert d.policy.freq[d.ids[4]] == 1 and d.ctx.freq[d.ids[4]] == 1
    for k in range(5, 40):
        _drive(d, [k])
    assert d.ctx.n_pages == 4 and len(d.ids) <= 4  # recycling keeps the arrays at capacity + history + 1


def test_ids_held_by_the_policy_are_not_recycled():
    # ARC keeps evicted ids as ghosts; recycling skips them and the arrays grow instead.
    d = PolicyDriver("arc", None, 2, history=0)
    _drive(d, [k for k in range(7) for _ in (0, 1)])  # each key twice: hits move pages to T2
    ghosts = set(d.policy.b2)
    assert ghosts == {3, 4} and all(d.keys[g] == g for g in ghosts)  # ids 3, 4 are keys 3, 4
    assert d.ctx.n_pages == 6 and d.policy.size.shape == (6,)  # grew past capacity + history + 1 = 3
