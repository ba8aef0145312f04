"""The one gap-closed definition (kvgym.oracle.gap): edge rule and both aggregates, hand-worked."""

from __future__ import annotations

import pytest

from kvgym.oracle.gap import gap_closed, has_gap, mean_gap_closed, pooled_gap_closed


def test_per_trace_and_the_edge_rule():
    assert gap_closed(5, 10, 0) == 50.0
    assert gap_closed(15, 10, 0) == -50.0           # worse than LRU
    assert gap_closed(0, 10, 2) == 125.0            # a non-optimal "oracle" can be beaten
    assert gap_closed(12, 10, 10) is None           # LRU already matches the oracle
    assert gap_closed(9, 10, 11) is None            # LRU beats the oracle: no gap either
    assert has_gap(10, 9) and not has_gap(10, 10) and not has_gap(10, 11)


def test_mean_and_pooled_differ_as_defined():
    # Trace A: gap 100 misses, policy wins 50 back (50%); trace B: gap 10, policy wins 10 (100%);
    # trace C has no gap and counts in neither.
    rows = [(950, 1000, 900), (90, 100, 90), (7, 5, 5)]
    assert mean_gap_closed(rows) == pytest.approx(75.0)          # (50 + 100) / 2
    assert pooled_gap_closed(rows) == pytest.approx(100 * 60 / 110)
    assert mean_gap_closed([(7, 5, 5)]) is None and pooled_gap_closed([]) is None
