"""What both serving engines derive before a run and summarize after it: one definition each.

The specification engine (:mod:`kvgym.sim.serving.engine`) and the compiled one
(:mod:`kvgym.sim.serving.compiled`) resolve a config against a trace the same way
(:func:`prepare`: tiers, capacities in blocks, load links, block bytes, the compute model, the
timing-free settings, session keys, each tier's page table and setup as its policy sees it), reject
the same impossible requests (:func:`check_fit`), build the same policy objects from names
(:func:`serving_policies`) and turn per-request times into the same metrics (:func:`summarize`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from kvgym.errors import SimulationError
from kvgym.sim.metrics import ServingMetrics, nearest_rank, sequential_mean
from kvgym.sim.policy import Admission, Policy, make_admission, make_policy
from kvgym.sim.scenario import Scenario, Setup
from kvgym.sim.serving.config import Resolved, ServingConfig
from kvgym.sim.tiers import Link, make_link, profile
from kvgym.traces.format import PageTable
from kvgym.traces.quant import quantization
from kvgym.traces.requests import RequestTrace

UNBOUNDED = int(np.iinfo(np.int64).max)


@dataclass(frozen=True)
class Prepared:
    """A config resolved against a trace (units: blocks, tokens, bytes, µs).

    ``caps``: blocks per tier (:data:`UNBOUNDED` for none); ``links[s]``: the load link tier s ->
    tier 0 (the profile's measured curve for that pair, else α-β); ``arrival``: the trace's arrivals,
    zeros without timing (the clock never moves); ``max_running`` / ``budget``: 1 and unbounded
    without timing (each request runs alone, in trace order); ``session_key``: per request, its
    session id or ``-(r + 2)``; ``setups[t]``: tier t's hierarchy as its policy sees it (sizes in
    blocks, page table of the blocks).
    """

    res: Resolved
    caps: tuple[int, ...]
    links: dict[int, Link]
    arrival: np.ndarray
    max_running: int
    budget: int
    session_key: np.ndarray
    pages: PageTable
    setups: tuple[Setup, ...]

    @property
    def n_tiers(self) -> int:
        return len(self.caps)


def prepare(trace: RequestTrace, config: ServingConfig) -> Prepared:
    res = config.resolve(trace.n_blocks, trace.block_tokens)
    T = len(res.tiers)
    caps = tuple(c if c is not None else UNBOUNDED for c in res.capacities)
    curves = profile(config.profile).curves
    links = {s: make_link(res.tiers, curves, s, 0) for s in range(1, T)}
    nr = len(trace)
    arrival = trace.arrival_us if config.timing else np.zeros(nr, np.float64)
    session_key = np.where(trace.session >= 0, trace.session, -(np.arange(nr, dtype=np.int64) + 2))
    pages = block_pages(trace, res)
    setups = tuple(_tier_setup(config, res, t, pages) for t in range(T))
    return Prepared(res, caps, links, arrival, config.max_running if config.timing else 1,
                    config.token_budget if config.timing else UNBOUNDED, session_key, pages, setups)


def block_pages(trace: RequestTrace, res: Resolved) -> PageTable:
    """The blocks as a page table: seq = first request using the block, token span in its chain."""
    bt = trace.block_table
    n = trace.n_blocks
    first_req = np.full(n, len(trace), np.int64)
    if len(trace.blocks):
        rows = np.repeat(np.arange(len(trace), dtype=np.int64), np.diff(trace.offsets))
        np.minimum.at(first_req, trace.blocks, rows)
    if len(trace.out_blocks):
        rows = np.repeat(np.arange(len(trace), dtype=np.int64), np.diff(trace.out_offsets))
        np.minimum.at(first_req, trace.out_blocks, rows)
    start = bt.position * trace.block_tokens
    fp16 = trace.block_tokens * res.geometry.kv_bytes_per_token()
    return PageTable(seq=first_req.astype(np.int32), layer=np.zeros(n, np.int32), token_start=start,
                     token_end=start + bt.tokens, fp16_bytes=np.full(n, fp16, np.int64))


def _tier_setup(cfg: ServingConfig, res: Resolved, t: int, pages: PageTable) -> Setup:
    n = len(pages)
    scen = Scenario(name=cfg.name, profile=cfg.profile, quantization=cfg.quantization)
    # Policies count in blocks: every block is one unit and a tier holds its capacity in blocks.
    tiers = tuple(replace(tier, capacity_bytes=cap) for tier, cap in zip(res.tiers[t:], res.capacities[t:]))
    return Setup(scen, tiers, profile(cfg.profile).compute, quantization(cfg.quantization),
                 np.ones(n, np.int64), np.zeros(n, np.float64), pages)


def check_fit(trace: RequestTrace, config: ServingConfig, cap0: int) -> None:
    """With pinning, a request whose whole sequence cannot fit in tier 0 alone is an error."""
    if not config.pin or cap0 == UNBOUNDED:
        return
    B = trace.block_tokens
    P, O = trace.prompt_tokens, trace.output_tokens
    total = np.where(O > 0, -(-(P + O - 1) // B), -(-P // B))
    if (bad := np.flatnonzero(total > cap0)).size:
        r = int(bad[0])
        raise SimulationError(f"request {r} needs {int(total[r])} blocks in tier 0 at once (prompt {int(P[r])}, "
                              f"output {int(O[r])} tokens, {B}-token blocks), more than tier 0 holds "
                              f"({cap0} blocks)")


def check_policies(policies: list[Policy], T: int) -> None:
    if len(policies) != T or len({id(p) for p in policies}) != T:
        raise SimulationError(f"serving needs {T} distinct policy objects (one per tier), got {len(policies)}")


def serving_policies(config: ServingConfig, policy, lower, admission, policy_params: dict | None,
                     lower_params: dict | None, admission_params: dict | None) -> tuple[list[Policy], Admission]:
    """The policy objects of :func:`~kvgym.sim.serving.simulate_serving`'s arguments."""
    T = len(config.tiers)
    lows = list(lower) if isinstance(lower, (list, tuple)) else [lower] * (T - 1)
    if len(lows) != T - 1:
        raise SimulationError(f"lower: {len(lows)} policies given for {T - 1} lower tiers")
    if any(isinstance(x, Policy) for x in lows) and not isinstance(lower, (list, tuple)) and T > 2:
        raise SimulationError("lower: give one policy object per lower tier (a list), not one shared object")
    pols = [_policy(policy, policy_params)] + [_policy(x, lower_params) for x in lows]
    adm = admission if isinstance(admission, Admission) else make_admission(admission, **(admission_params or {}))
    return pols, adm


def _policy(spec, params: dict | None) -> Policy:
    if isinstance(spec, Policy):
        return spec
    return make_policy(spec, **(params or {}))


def summarize(m: ServingMetrics, trace: RequestTrace, arrival: np.ndarray, admit_us: np.ndarray,
              first_us: np.ndarray, finish_us: np.ndarray, peak_blocks: list[int], block_bytes: int) -> None:
    """Fill ``m``'s derived fields from the run's per-request times (see :class:`ServingMetrics`)."""
    m.misses = m.accesses - m.hits
    m.peak_bytes = [p * block_bytes for p in peak_blocks]
    ttft = (first_us - arrival).tolist()
    queue = (admit_us - arrival).tolist()
    O = trace.output_tokens
    tpot = [(finish_us[r] - first_us[r]) / (int(O[r]) - 1) for r in range(len(trace)) if O[r] >= 2]
    m.ttft_mean_us = sequential_mean(ttft)
    m.ttft_p50_us, m.ttft_p90_us, m.ttft_p99_us = (nearest_rank(ttft, p) for p in (50, 90, 99))
    m.tpot_mean_us = sequential_mean(tpot)
    m.queue_mean_us = sequential_mean(queue)
    m.queue_p90_us = nearest_rank(queue, 90)
    if len(trace):
        m.makespan_us = float(finish_us.max()) - float(arrival[0])
        m.requests_per_s = m.requests / (m.makespan_us * 1e-6) if m.makespan_us > 0 else 0.0
