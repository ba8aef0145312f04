"""Admission policies for write-through stores into tier 1 (serving mode).

- ``always``: every offered block not already in the tier is stored (vLLM's offloading default,
  SGLang HiCache ``write_through``).
- ``threshold``: vLLM's ``store_threshold`` (``CPUOffloadingManager``, vLLM 0.33.0): every store
  offer counts each offered key (present or not) in a bounded tracker; a block is stored once
  its count reaches ``store_threshold``. The tracker (an ordered dict, oldest first) holds at most
  ``max_tracker_size`` keys: keys of the offer already tracked move to the newest end and count
  +1 (and are protected); each new key gets count 1, evicting the oldest unprotected key when the
  tracker is full, or is not tracked at all when every tracked key is protected. With
  ``store_threshold < 2`` nothing is tracked and everything is admitted. SGLang's
  ``write_through_selective`` (store after N hits) is the same rule on an unbounded counter.
- ``tinylfu``: Dynamo KVBM's frequency tracker (``TinyLFUSketch`` in ``ai-dynamo/dynamo``
  ``lib/kvbm``): a 4-bit count-min sketch with 4 rows counting every tier-0 reference of a
  block; a block is stored when its estimate reaches ``min_count`` (Dynamo's disk filter:
  frequency >= 2). Sketch: ``max(1, capacity // 4)``
  64-bit words of 16 four-bit counters; row i of key k uses ``h = splitmix64(4 k + i)``, word
  ``h mod words``, counter ``h & 15``; an increment adds 1 to each of the 4 counters below 15 and,
  if any moved, counts one sample; at ``10 * capacity`` samples every counter is halved and the
  sample count becomes ``(samples >> 1) - (odd counters >> 2)`` (saturating at 0). The estimate
  is the least of the 4 counters. ``capacity`` defaults to tier 1's capacity in blocks (the
  trace's distinct blocks when unbounded). Dynamo hashes with xxh3 and custom secrets; the
  splitmix64 hash is kvgym's, so collisions (and only they) differ.
- ``presence_lfu``: Dynamo KVBM's ``PresenceAndLFUFilter``: stored when absent from the tier and
  the TinyLFU estimate is greater than ``min_lfu_count`` (Dynamo's default 8).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from kvgym.baselines.common import int_param
from kvgym.sim.policy import Admission, register_admission

_M64 = (1 << 64) - 1
_RESET_MASK = 0x7777_7777_7777_7777
_ONE_MASK = 0x1111_1111_1111_1111


def splitmix64(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


class TinyLFUSketch:
    """Dynamo KVBM's TinyLFU count-min sketch (see the module docstring)."""

    def __init__(self, capacity: int):
        self.table = [0] * max(1, capacity // 4)
        self.samples = 0
        self.sample_size = min(capacity * 10, (1 << 32) - 1)

    def _slots(self, key: int):
        for i in range(4):
            h = splitmix64(4 * key + i)
            yield h % len(self.table), (h & 15) * 4

    def increment(self, key: int) -> None:
        added = False
        for w, off in self._slots(key):
            if (self.table[w] >> off) & 0xF != 0xF:
                self.table[w] += 1 << off
                added = True
        if added:
            self.samples += 1
            if self.samples >= self.sample_size:
                odd = sum((e & _ONE_MASK).bit_count() for e in self.table)
                self.table = [(e >> 1) & _RESET_MASK for e in self.table]
                self.samples = max((self.samples >> 1) - (odd >> 2), 0)

    def estimate(self, key: int) -> int:
        return min((self.table[w] >> off) & 0xF for w, off in self._slots(key))


@register_admission("always")
class Always(Admission):
    compiled = "always"

    def admit(self, blocks: np.ndarray) -> np.ndarray:
        return np.ones(len(blocks), bool)

    def compiled_args(self):
        return 0, 0, 0, 0, 0


@register_admission("threshold")
class StoreThreshold(Admission):
    compiled = "threshold"

    def __init__(self, store_threshold: int = 2, max_tracker_size: int = 64_000):
        self.store_threshold = int_param("threshold", "store_threshold", store_threshold, 1)
        self.max_tracker_size = int_param("threshold", "max_tracker_size", max_tracker_size, 1)
        self.counts: OrderedDict[int, int] | None = OrderedDict() if self.store_threshold >= 2 else None

    def on_offer(self, blocks: np.ndarray) -> None:
        counts = self.counts
        if counts is None:
            return
        keys = blocks.tolist()
        protected = set()
        for k in keys:
            if k in counts:
                counts.move_to_end(k)
                counts[k] += 1
                protected.add(k)
        unprotected = len(counts) - len(protected)
        for k in keys:
            if k in counts:
                continue
            if len(counts) >= self.max_tracker_size:
                if unprotected == 0:
                    continue
                counts.popitem(last=False)
                unprotected -= 1
            counts[k] = 1

    def admit(self, blocks: np.ndarray) -> np.ndarray:
        if self.counts is None:
            return np.ones(len(blocks), bool)
        return np.fromiter((self.counts.get(b, 0) >= self.store_threshold for b in blocks.tolist()), bool, len(blocks))

    def compiled_args(self):
        # A tracker that already holds counts keeps them in Python (callbacks).
        return None if self.counts else (self.store_threshold, self.max_tracker_size, 0, 0, 0)


class _SketchAdmission(Admission):
    """Counts every tier-0 reference in a :class:`TinyLFUSketch`; admits on its estimate."""

    strict = False  # admit when the estimate is > the threshold (True) or >= it (False)

    def __init__(self, threshold: int, capacity: int):
        self.threshold = threshold
        self.capacity = int_param(self.name, "capacity", capacity, 0)

    def bind(self, ctx) -> None:
        super().bind(ctx)
        cap = self.capacity
        if cap == 0:
            tier = ctx.tiers[0].capacity_bytes  # serving views count in blocks
            cap = int(tier) if tier is not None else ctx.n_pages
        self.sketch = TinyLFUSketch(max(cap, 1))

    def on_reference(self, block: int) -> None:
        self.sketch.increment(int(block))

    def admit(self, blocks: np.ndarray) -> np.ndarray:
        est = np.fromiter((self.sketch.estimate(b) for b in blocks.tolist()), np.int64, len(blocks))
        return est > self.threshold if self.strict else est >= self.threshold

    def compiled_args(self):
        sk = self.sketch  # sized by bind (the admission's own rule)
        return self.threshold, 0, len(sk.table), sk.sample_size, int(self.strict)


@register_admission("tinylfu")
class TinyLFU(_SketchAdmission):
    compiled = "sketch"

    def __init__(self, min_count: int = 2, capacity: int = 0):
        super().__init__(int_param("tinylfu", "min_count", min_count, 0), capacity)


@register_admission("presence_lfu")
class PresenceLFU(_SketchAdmission):
    compiled = "sketch"
    strict = True

    def __init__(self, min_lfu_count: int = 8, capacity: int = 0):
        super().__init__(int_param("presence_lfu", "min_lfu_count", min_lfu_count, 0), capacity)
