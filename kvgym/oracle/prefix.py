"""Bounds for serving mode (:mod:`kvgym.sim.serving`): what any policy could save on a request trace.

Both work on the **reference stream** of a trace: for each request in trace order, its cacheable
prompt blocks in chain order, then its output blocks with ids (``cache_partial_tail`` as in the
serving config). A reference is **counted** when it is a full prompt block (``j < P // B``):
only those can be prefix hits (the engine's widest usable limit, a lower tier's). This is
exactly the order in which the serving engine references tier 0 when ``timing=False``, and for
any timing when the trace lists no output blocks (admission is FIFO, so prompts are referenced
in trace order).

- :func:`compulsory` — **unlimited cache**. A request's prefix can only reuse blocks that
  some earlier request computed; with every block kept forever and every earlier request done,
  the prefix of request r is the longest run of its counted blocks seen before. Bounds every
  serving run of the trace (any tiers, capacities, policies, write policy, admission, timing,
  pinning): ``prefix hits (all tiers) <= compulsory.prefix_hits`` and
  ``prefill_tokens_computed >= compulsory.tokens_computed``. Reason: a block is resident
  anywhere only after a request computed it, earlier requests are admitted earlier (FIFO), and
  the sequential order lets every earlier request finish first. Tokens saved per request:
  ``min(k B, P - 1)`` (the last prompt token is always computed).
- :func:`prefix_min` — **capacity C**. ``upper_prefix_hits`` = the hits of Belady's MIN on the
  reference stream with capacity ``C`` (demand paging, forced insertion). For every serving run
  whose tiers hold ``C`` blocks in all (``C = sum`` of the capacities) on this stream, prefix hits
  (all tiers) ``<= upper_prefix_hits``. Reason: the union of the tiers is a demand-paging cache
  of at most C blocks on the stream (a referenced block not in any tier is placed in tier 0;
  stores and loads copy blocks already in it), MIN has the most hits of any such cache, and a
  prefix hit is a hit. ``achieved_prefix_hits`` = the prefix hits of **prefix-aware MIN**, an
  offline policy one tier of C blocks can run (``pin=False``): evict an *orphan* (a block
  whose parent is not resident: its next reference follows a miss of its parent, so it cannot be
  a prefix hit before the parent returns) with the farthest next reference, else the block with
  the farthest next reference (never = farthest; ties: the larger block id). So the best
  policy's prefix hits lie in ``[achieved, upper]``. Tested against brute force
  (``tests/test_serving_oracle.py``): on 100 tiny random traces prefix-aware MIN reached the
  optimum every time and plain MIN overcounted on some; its optimality is not proven.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from kvgym.errors import ConfigError
from kvgym.oracle.belady import belady
from kvgym.oracle.nextuse import next_use
from kvgym.traces.requests import RequestTrace


@dataclass(frozen=True)
class Stream:
    """The reference stream: ``block`` per reference, ``counted`` (can be a prefix hit),
    ``request`` and ``position`` (chain index) of each reference."""

    block: np.ndarray
    counted: np.ndarray
    request: np.ndarray
    position: np.ndarray


def reference_stream(trace: RequestTrace, *, cache_partial_tail: bool = False) -> Stream:
    B = trace.block_tokens
    blocks, counted, req, pos = [], [], [], []
    for r in range(len(trace)):
        P = int(trace.prompt_tokens[r])
        chain = trace.chain(r).tolist()
        n_c = len(chain) if (P % B == 0 or cache_partial_tail) else len(chain) - 1
        F = P // B
        for j in range(n_c):
            blocks.append(chain[j])
            counted.append(j < F)
            req.append(r)
            pos.append(j)
        for i, b in enumerate(trace.out_chain(r).tolist()):
            blocks.append(b)
            counted.append(False)
            req.append(r)
            pos.append(F + i)
    return Stream(np.asarray(blocks, np.int64), np.asarray(counted, bool), np.asarray(req, np.int64),
                  np.asarray(pos, np.int64))


@dataclass(frozen=True)
class CompulsoryBound:
    prefix_hits: int
    tokens_saved: int
    tokens_computed: int
    prompt_blocks: int


def compulsory(trace: RequestTrace) -> CompulsoryBound:
    """The unlimited-cache bound (see the module docstring)."""
    B = trace.block_tokens
    seen = np.zeros(trace.n_blocks, bool)
    hits = saved = 0
    for r in range(len(trace)):
        P = int(trace.prompt_tokens[r])
        chain = trace.chain(r)
        k = 0
        while k < P // B and seen[chain[k]]:
            k += 1
        hits += k
        saved += min(k * B, P - 1) if P > 0 else 0
        seen[chain] = True
        seen[trace.out_chain(r)] = True
    return CompulsoryBound(hits, saved, int(trace.prompt_tokens.sum()) - saved, int(trace.block_refs))


@dataclass(frozen=True)
class PrefixMinBound:
    capacity: int
    references: int
    counted: int
    upper_prefix_hits: int
    achieved_prefix_hits: int


def _prefix_hits(stream: Stream, hit: np.ndarray) -> int:
    """Prefix hits given per-reference residency: leading resident counted refs of each request."""
    total = 0
    run_ok = False
    last_r = -1
    for i in range(len(stream.block)):
        r = int(stream.request[i])
        if r != last_r:
            run_ok, last_r = True, r
        if not stream.counted[i]:
            continue
        run_ok = run_ok and bool(hit[i])
        total += run_ok
    return total


def prefix_min(trace: RequestTrace, capacity: int, *, cache_partial_tail: bool = False) -> PrefixMinBound:
    """Belady MIN and prefix-aware MIN on the reference stream with ``capacity`` blocks."""
    if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 1:
        raise ConfigError(f"prefix_min: capacity must be an int >= 1 (blocks), got {capacity!r}")
    s = reference_stream(trace, cache_partial_tail=cache_partial_tail)
    n = len(s.block)
    nb = trace.n_blocks
    if n == 0:
        return PrefixMinBound(int(capacity), 0, 0, 0, 0)
    m = belady(s.block, int(capacity), n_pages=nb)
    hits = n - m.misses
    upper = min(hits, int(s.counted.sum()))
    achieved = _prefix_hits(s, _prefix_aware_min(s.block, trace.block_table.parent, nb, int(capacity)))
    return PrefixMinBound(int(capacity), n, int(s.counted.sum()), int(upper), int(achieved))


def _prefix_aware_min(block: np.ndarray, parent: np.ndarray, n_blocks: int, cap: int) -> np.ndarray:
    """Per-reference residency under prefix-aware MIN (see the module docstring)."""
    n = len(block)
    nxt, _ = next_use(block, n_blocks)
    children: list[list[int]] = [[] for _ in range(n_blocks)]
    for b in range(n_blocks):
        if parent[b] >= 0:
            children[parent[b]].append(b)
    resident = np.zeros(n_blocks, bool)
    key = np.zeros(n_blocks, np.int64)  # next reference of each resident block (n = never)
    main: list[tuple[int, int]] = []     # (-next, -block): farthest first, larger id first
    orphans: list[tuple[int, int]] = []
    hit = np.zeros(n, bool)
    used = 0

    def orphan(b: int) -> bool:
        return parent[b] >= 0 and not resident[parent[b]]

    def pop(heap, want_orphan: bool, skip: int) -> int | None:
        kept = []
        found = None
        while heap:
            negk, negb = heapq.heappop(heap)
            b = -negb
            if not resident[b] or key[b] != -negk or (want_orphan and not orphan(b)):
                continue  # stale
            if b == skip:
                kept.append((negk, negb))
                continue
            found = b
            break
        for e in kept:
            heapq.heappush(heap, e)
        return found

    for i in range(n):
        b = int(block[i])
        k = int(nxt[i])
        if resident[b]:
            hit[i] = True
        else:
            if used == cap:
                v = pop(orphans, True, b)
                if v is None:
                    v = pop(main, False, b)
                resident[v] = False
                used -= 1
                for c in children[v]:
                    if resident[c]:
                        heapq.heappush(orphans, (-int(key[c]), -c))
            resident[b] = True
            used += 1
        key[b] = k
        heapq.heappush(main, (-k, -b))
        if orphan(b):
            heapq.heappush(orphans, (-k, -b))
    return hit
