""""Adding a policy" (docs/policies.md): one module in the baselines package, registered by
name, is all a new policy needs to run in the engine by name. The test writes such a module
(an MRU policy with a parameter) into a temporary folder on the package's path, imports it the
way ``kvgym.baselines`` imports its own modules, and runs it."""

from __future__ import annotations

import importlib
import sys
import textwrap

import pytest

import kvgym.baselines
from kvgym.baselines.common import cache_setup
from kvgym.errors import ConfigError
from kvgym.sim import policy as registry
from kvgym.sim.engine import Engine, simulate
from kvgym.sim.policy import make_policy, policy_names
from kvgym.sim.scenario import Scenario
from kvgym.traces.format import Trace

TOY = textwrap.dedent('''
    """``toy_mru``: most recently used goes first.

    Rule: score = -(step of the latest access); lowest evicted. Source: the classic MRU.
    Parameters: ``offset`` (int >= 0, default 0): added to every score (no effect on the order).
    """

    import numpy as np

    from kvgym.baselines.common import int_param
    from kvgym.sim.policy import Policy, register_policy


    @register_policy("toy_mru")
    class ToyMRU(Policy):
        def __init__(self, offset: int = 0):
            self.offset = int_param("toy_mru", "offset", offset, 0)

        def bind(self, ctx):
            super().bind(ctx)
            self.last = np.full(ctx.n_pages, -1, np.int64)

        def on_access(self, page, tier, step):
            self.last[page] = step

        def scores(self, cands, step):
            return self.offset - self.last[cands]
''')


@pytest.fixture
def toy_module(tmp_path, monkeypatch):
    (tmp_path / "toy_mru.py").write_text(TOY)
    monkeypatch.setattr(kvgym.baselines, "__path__", [*kvgym.baselines.__path__, str(tmp_path)])
    monkeypatch.setattr(registry, "_POLICIES", dict(registry._POLICIES))  # undone after the test
    monkeypatch.delitem(sys.modules, "kvgym.baselines.toy_mru", raising=False)
    importlib.import_module("kvgym.baselines.toy_mru")
    yield
    sys.modules.pop("kvgym.baselines.toy_mru", None)


def test_a_new_policy_module_runs_by_name(toy_module):
    assert "toy_mru" in policy_names()
    pages = [0, 1, 2, 0, 3, 0, 1]
    trace = Trace.from_pages(pages, fp16_bytes=1)
    m = Engine(cache_setup(trace.pages, 3), make_policy("toy_mru", offset=5)).run(trace)
    # MRU: 3 evicts 0 (just used), 0 then evicts 3, 1 hits: misses 0 1 2 3 0 = 5.
    assert (m.misses, m.hits) == (5, 2)
    # By name through the convenience runner and in a 4-tier parity-style scenario.
    scen = Scenario(name="t", profile="seed-toy", capacities=(3 * 4096, 8192, 8192, None), cost_model="serial")
    m2 = simulate(Trace.from_pages(pages), scen, "toy_mru")
    assert m2.misses == 5
    with pytest.raises(ConfigError, match="offset"):
        make_policy("toy_mru", offset=-1)


def test_the_registry_is_restored():
    assert "toy_mru" not in policy_names()
