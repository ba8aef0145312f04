"""The two cost models: ``serial`` (kv-hierarchy-lab parity) and ``overlap`` (a decode clock).

Both receive the same calls from the engine: ``begin_step``, ``hit``, ``transfer``,
``begin_prefetch`` and ``end_step``, and write stall/compute/total time into the metrics.

``serial``: every charge is added to one accumulator in the order it happens. A tier-0 hit
costs ``tier0.read_latency_us + decode_us``; a transfer of page X from A to B costs
``copy_us(X) + decode_us(X)`` where ``copy_us`` is the link's time for a copy on an idle link
(:meth:`kvgym.sim.tiers.Link.time_us`; α-β links: ``(A.read + B.write) + bytes / min(A.bw, B.bw)``,
this association, for bit-exact parity). No overlap, no queueing. ``total_time_us`` = the
accumulator = ``stall_us``.

``overlap``: a clock ``now`` (µs) at the start of each step. Every link (tier i > 0) is a FIFO
server with ``channels`` servers; a transfer issued at time ``t`` on link L starts at
``max(t, free[L][c])`` on the channel c that frees first (the first such channel on ties) and
takes the link's copy time, as a copy *queued* behind another when ``free[L][c] > t`` (the link is
still busy at issue time) and on an idle link otherwise. Demand promotions and their demotions are
issued at the step's start; the step waits for the last demand promotion (stall). Prefetches (and
the demotions they cause) are issued when compute begins (``now + stall``) and overlap it; a
prefetched page is resident (its space reserved) at once but readable only when its transfer
ends: demanded earlier, the step stalls until then and the prefetch counts as late. Step time =
stall + compute, compute = ``max(distinct_layers * layer_floor_us, distinct_fp16_bytes /
attention_bytes_per_us) + dequantization`` where the dequantization of every access of the step
(repeats included) is summed sequentially in access order. Demotions occupy links (and so delay
later transfers) but never stall a step by themselves.

Floats: the compiled engine repeats each of these operations in this order, so the two engines'
times are equal to the last bit.
"""

from __future__ import annotations

import numpy as np

from kvgym.sim.metrics import Metrics
from kvgym.sim.scenario import Setup


def step_compute_us(setup: Setup, pages: np.ndarray) -> float:
    """Compute time of one ``overlap`` decode step that reads ``pages`` (access order, repeats kept)."""
    uniq = np.unique(pages)
    c = setup.compute
    dec = float(np.cumsum(setup.decode_us[pages])[-1]) if len(pages) else 0.0  # sequential sum
    return max(len(np.unique(setup.pages.layer[uniq])) * c.layer_floor_us,
               float(setup.pages.fp16_bytes[uniq].sum()) / c.attention_bytes_per_us) + dec


class SerialCost:
    def __init__(self, setup: Setup, m: Metrics):
        self.m = m
        self.size = setup.page_bytes
        self.decode = setup.decode_us
        self.link = setup.link
        self.hit_base = setup.tiers[0].read_latency_us
        self.total = 0.0

    def begin_step(self, step: int, pages: np.ndarray) -> None:
        pass

    def hit(self, page: int) -> None:
        self.total += self.hit_base + self.decode[page]

    def transfer(self, src: int, dst: int, page: int, kind: str) -> None:
        self.total += self.link(src, dst).time_us(int(self.size[page])) + self.decode[page]

    def begin_prefetch(self) -> None:
        pass

    def forget(self, page: int) -> None:
        pass

    def end_step(self) -> None:
        self.m.stall_us = self.m.total_time_us = self.total


class OverlapCost:
    def __init__(self, setup: Setup, m: Metrics):
        self.m = m
        self.setup = setup
        self.size = setup.page_bytes
        self.link = setup.link
        self.free = [np.zeros(tier.channels) for tier in setup.tiers]
        self.ready_at: dict[int, float] = {}
        self.now = 0.0

    def begin_step(self, step: int, pages: np.ndarray) -> None:
        self.t0 = self.issue = self.ready = self.now
        self.step_compute = step_compute_us(self.setup, pages)

    def hit(self, page: int) -> bool:
        """Account a tier-0 hit; True if the page was still in flight (a late prefetch)."""
        r = self.ready_at.pop(page, None)
        if r is None:
            return False
        self.ready = max(self.ready, r)
        return r > self.t0

    def transfer(self, src: int, dst: int, page: int, kind: str) -> None:
        free = self.free[max(src, dst)]
        ch = int(np.argmin(free))
        queued = bool(free[ch] > self.issue)
        start = max(self.issue, free[ch])
        fin = start + self.link(src, dst).time_us(int(self.size[page]), queued)
        free[ch] = fin
        if kind == "demand":
            self.ready = max(self.ready, fin)
        elif kind == "prefetch":
            self.ready_at[page] = fin

    def begin_prefetch(self) -> None:
        self.issue = self.ready

    def forget(self, page: int) -> None:
        """A page left tier 0: an in-flight prefetch of it no longer matters."""
        self.ready_at.pop(page, None)

    def end_step(self) -> None:
        stall = self.ready - self.t0
        self.m.stall_us += stall
        self.m.compute_us += self.step_compute
        self.now = self.t0 + stall + self.step_compute
        self.m.total_time_us = self.now


COST_MODELS = {"serial": SerialCost, "overlap": OverlapCost}
