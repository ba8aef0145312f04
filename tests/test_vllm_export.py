"""`kvgym export vllm`: the exported module runs inside vLLM's real CPUOffloadingManager and
decides exactly as the same kvgym policy in kvgym's reference engine on the same stream."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import missing

from kvgym.integrations.vllm_compat import VllmMissing, require_vllm

try:
    require_vllm()
except VllmMissing as e:
    missing("vllm", str(e))  # a skip naming the extra, or a failure where make test installed it

from kvgym.baselines.common import cache_setup
from kvgym.cli import main
from kvgym.integrations.vllm_replay import BlockRequests, replay_vllm
from kvgym.sim.engine import Engine
from kvgym.sim.policy import make_policy
from kvgym.traces.format import PageTable, Trace

CAP = 12
PORTS = [("arc", {}), ("clock", {"bits": 2}), ("cost_aware", {}), ("fifo", {}), ("heavy_hitter", {}),
         ("lfu", {}), ("lru", {}), ("predictive", {}), ("regret_aware", {"regret_horizon": 4}),
         ("s3fifo", {"small_size_ratio": 0.25}), ("sieve", {}), ("windowed_recency", {"window_size": 8})]


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    d = tmp_path_factory.mktemp("exported")
    sys.path.insert(0, str(d))
    yield d
    sys.path.remove(str(d))


def stream() -> BlockRequests:
    """160 requests: prompts extend one of 8 shared prefixes (chained ids, as vLLM's hashes are)."""
    rng = np.random.default_rng(7)
    out = []
    for r in range(160):
        root = int(rng.zipf(1.5)) % 8
        n = int(rng.integers(1, 8))
        fresh = int(rng.integers(0, 3))
        out.append([root * 100 + i for i in range(n)] + [10_000 + 10 * r + i for i in range(fresh)])
    return BlockRequests.from_lists(out, block_tokens=16)


def kvgym_direct(name: str, params: dict, req: BlockRequests, log: list):
    """The kvgym policy in kvgym's reference engine on one cache of CAP blocks, each request being
    the steps vLLM gives its policy: the loaded prefix, then the blocks its store offers."""
    loaded = {r: len(b) for r, ev, b in log if ev == "load"}
    ids: dict[int, int] = {}
    steps, pages = [], []
    s = 0
    for r in range(len(req)):
        blocks = req.request(r).tolist()
        h = loaded.get(r, 0)
        for part in (blocks[:h], blocks[h:]):
            if part:
                steps += [s] * len(part)
                pages += [ids.setdefault(b, len(ids)) for b in part]
                s += 1
    table = PageTable.uniform(len(ids), 1)
    pol = make_policy(name, **params)
    victims, orig = [], pol.on_evict

    def on_evict(p, t, step):
        if t == 0:
            victims.append(p)
        if orig is not None:
            orig(p, t, step)
    pol.on_evict = on_evict
    m = Engine(cache_setup(table, CAP), pol).run(Trace(np.array(steps), np.array(pages), table))
    block_of = {v: k for k, v in ids.items()}
    return m, [block_of[p] for p in victims]


@pytest.mark.parametrize("name,params", PORTS, ids=[p[0] for p in PORTS])
def test_exported_policy_in_vllm_equals_kvgym(name, params, modules, capsys):
    mod = f"kvg_export_{name}"
    spec = f"{name}({','.join(f'{k}={v}' for k, v in params.items())})" if params else name
    args = ["export", "vllm", spec, "-o", str(modules / f"{mod}.py"),
            "--history", "100000"]
    assert main(args) == 0
    cls = "Kvgym" + "".join(p.capitalize() for p in name.split("_"))
    assert f"class {cls}" in capsys.readouterr().out
    req = stream()
    log = []
    c = replay_vllm(req, CAP, cls, cache_policy_module_path=mod, log=log)
    m, victims = kvgym_direct(name, params, req, log)
    assert c.evictions > 100 and c.hits > 50 and c.failed_stores == 0
    assert victims == [b for _, ev, bs in log if ev == "evict" for b in bs]  # same victims, same order
    assert (m.misses, m.evictions[0], m.hits) == (c.stores, c.evictions, c.blocks - c.stores)


def test_export_bad_input_one_line(modules, capsys):
    out = str(modules / "kvg_bad.py")
    for args, msg in [
        (["nope"], "unknown policy 'nope'; valid: arc, belady"),
        (["clock(bits=0)"], "clock: bits=0 is out of range; valid: 1 <= bits <= 16"),
        (["clock(bitz=2)"], "policy 'clock': unknown parameters ['bitz']"),
        (["belady"], "policy 'belady' is an oracle"),
        (["h2o"], "policy 'h2o' cannot run as a vLLM cache policy"),
    ]:
        assert main(["export", "vllm", *args, "-o", out]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], err
    assert main(["export", "vllm", "lru", "-o", str(modules / "my-policy.py")]) == 2
    assert "must be NAME.py with NAME a Python identifier" in capsys.readouterr().err
    assert not (modules / "kvg_bad.py").exists() and not (modules / "my-policy.py").exists()


def test_exported_module_without_the_class_is_one_line(modules):
    from kvgym.errors import ConfigError
    from kvgym.integrations.vllm_export import export_vllm

    export_vllm("fifo", {}, modules / "kvg_fifo_only.py")
    with pytest.raises(ConfigError, match=r"does not define a CachePolicy class 'KvgymLru' \(it defines: KvgymFifo\)$"):
        replay_vllm(stream(), CAP, "KvgymLru", cache_policy_module_path="kvg_fifo_only")


def test_pinned_chunks_are_never_victims(modules):
    """A store still in flight (ref_cnt -1) is not evictable: with B pending and A stored, the
    kvgym LRU would evict B (older) but must take A."""
    from vllm.v1.kv_offload.base import ReqContext

    from kvgym.integrations.vllm_export import export_vllm
    from kvgym.integrations.vllm_replay import block_key, make_manager

    export_vllm("lru", {}, modules / "kvg_pin_lru.py")
    mgr = make_manager(2, "KvgymLru", cache_policy_module_path="kvg_pin_lru")
    a, b, c = (block_key(x) for x in (1, 2, 3))
    r0, r1, r2 = (ReqContext(req_id=str(i)) for i in range(3))
    for r in (r0, r1, r2):
        mgr.on_new_request(r)
    assert mgr.prepare_store([b], r0).keys_to_store == [b]  # B stays pending
    assert mgr.prepare_store([a], r1).keys_to_store == [a]
    mgr.complete_store([a], r1)
    out = mgr.prepare_store([c], r2)
    assert out.evicted_keys == [a] and out.keys_to_store == [c]
    mgr.complete_store([b], r0)
    mgr.complete_store([c], r2)
    assert mgr.prepare_store([a], r1).evicted_keys == [b]  # B is now the LRU and evictable
