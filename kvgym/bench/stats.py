"""Confidence intervals and the "is this difference real" rule, shared by the leaderboard, the plots
and the HTML report (one definition).

A comparison is made over *cells*, keyed ``(stratum, seed)``: a stratum is a trace source of a
scenario (or a (scenario, source) pair for an overall figure), a cell one seed of it. Values are
paired by cell, so a policy is compared with LRU (or another policy) on the same traces. The
estimate is the mean over strata of each stratum's mean over seeds (every source counts equally);
its uncertainty comes from the **seeds only**: the spread of the seeds around their stratum's mean,
pooled over strata (a stratified, fixed-effects estimate: the scenario's sources are given, not
sampled). The 95% interval is Student t with ``sum(seeds per stratum - 1)`` degrees of freedom.

A difference is **real** when that interval excludes 0 *and* its mean is beyond a stated tolerance;
anything else is a tie. With one seed per stratum there is no spread to measure: the tolerance
alone decides (and no interval is shown).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

LEVEL = 0.95
#: Time differences below 0.1% (relative) are ties, whatever the interval says: the simulator's
#: cost model is not that precise.
TIME_TOLERANCE = 0.001
#: Miss-count differences below 0.1% (relative) are ties.
MISS_TOLERANCE = 0.001


@dataclass(frozen=True)
class Interval:
    """A stratified mean with its two-sided ``LEVEL`` interval; ``dof`` 0 means no interval."""

    mean: float
    lo: float
    hi: float
    dof: int

    def real(self, tolerance: float) -> bool:
        """The mean is beyond ``tolerance`` and the interval (if any) excludes 0."""
        return abs(self.mean) > tolerance and (self.dof == 0 or self.lo > 0 or self.hi < 0)


def stratified(values: dict) -> Interval | None:
    """Interval of the mean over strata of per-stratum means (``values``: stratum -> list of floats)."""
    groups = [[float(x) for x in xs if x is not None and math.isfinite(x)] for xs in values.values()]
    groups = [g for g in groups if g]
    if not groups:
        return None
    means = [sum(g) / len(g) for g in groups]
    mean = sum(means) / len(means)
    dof = sum(len(g) - 1 for g in groups)
    if dof == 0:
        return Interval(mean, mean, mean, 0)
    from scipy.stats import t

    pooled = sum((x - m) ** 2 for g, m in zip(groups, means) for x in g) / dof
    se = math.sqrt(pooled * sum(1 / len(g) for g in groups)) / len(groups)
    half = float(t.ppf(0.5 + LEVEL / 2, dof)) * se
    return Interval(mean, mean - half, mean + half, dof)


def log_ratios(a: dict, b: dict, field: str, plus: float = 0.0) -> Interval | None:
    """Interval of ``log((a + plus) / (b + plus))`` of ``field`` over the cells ``a`` and ``b`` share.

    ``a``, ``b``: ``(stratum, seed) -> record``. Exponentiate for a ratio. ``plus`` keeps counts
    that may be zero comparable (misses: 1).
    """
    by: dict = {}
    for cell, ra in a.items():
        rb = b.get(cell)
        if rb is None:
            continue
        x, y = ra[field] + plus, rb[field] + plus
        if x > 0 and y > 0:
            by.setdefault(cell[0], []).append(math.log(x / y))
    return stratified(by)


def time_interval(a: dict, b: dict) -> Interval | None:
    return log_ratios(a, b, "total_time_us")


def miss_interval(a: dict, b: dict) -> Interval | None:
    # One added to both counts: a cell with no misses stays comparable.
    return log_ratios(a, b, "misses", plus=1.0)


def time_differs(iv: Interval | None) -> bool:
    return iv is not None and iv.real(math.log1p(TIME_TOLERANCE))


def misses_differ(iv: Interval | None) -> bool:
    return iv is not None and iv.real(math.log1p(MISS_TOLERANCE))
