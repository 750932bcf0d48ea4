"""Scores: geometric means of baseline-normalised performance, with confidence intervals.

VMmark-style: a workload's score is the geometric mean of its metrics' relative
performance; a category's, of its workloads'; overall, of all workloads. The interval
comes from each comparison's own interval by the delta method on log scale: a
workload's metrics are treated as fully correlated (their standard errors averaged,
which never understates), workloads as independent of each other.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import NormalDist

from .stats import CONFIDENCE, Comparison

_Z = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)


@dataclass(frozen=True)
class Score:
    value: float
    low: float  # 0 / inf when some comparison under it could not reach its level
    high: float

    @property
    def known(self) -> bool:
        return self.low > 0 and math.isfinite(self.high)

    @property
    def spread(self) -> float:
        """Half the interval's width on log scale, as a fraction: '0.912 ±2%'."""
        return math.sqrt(self.high / self.low) - 1 if self.known else math.inf


def _log_se(comparison: Comparison) -> float:
    """The standard error of log(relative performance) its interval implies."""
    if not comparison.reachable:
        return math.inf
    low, high = comparison.performance_ci
    z = NormalDist().inv_cdf(1 - comparison.alpha / 2)
    return (math.log(high) - math.log(low)) / (2 * z) if low > 0 else math.inf


def _mean_log(parts: Iterable[tuple[float, float]], correlated: bool) -> tuple[float, float]:
    items = list(parts)
    mean = sum(m for m, _ in items) / len(items)
    ses = [se for _, se in items]
    if any(math.isinf(se) for se in ses):
        return mean, math.inf
    se = (sum(ses) / len(ses)) if correlated else math.sqrt(sum(s * s for s in ses)) / len(ses)
    return mean, se


def _score(mean: float, se: float) -> Score:
    if math.isinf(se):
        return Score(math.exp(mean), 0.0, math.inf)
    return Score(math.exp(mean), math.exp(mean - _Z * se), math.exp(mean + _Z * se))


def platform_scores(comparisons: dict[str, list[Comparison]], category_of: dict[str, str]
                    ) -> dict[str, Score]:
    """Scores by category, and "overall", from each workload's comparisons of one
    platform (workload -> its metrics' comparisons)."""
    workloads = {w: _mean_log(((math.log(c.performance), _log_se(c)) for c in found
                               if c.performance > 0), correlated=True)
                 for w, found in comparisons.items() if any(c.performance > 0 for c in found)}
    by_category: dict[str, list[tuple[float, float]]] = {}
    for workload, part in workloads.items():
        by_category.setdefault(category_of[workload], []).append(part)
    found = {c: _score(*_mean_log(parts, correlated=False))
             for c, parts in sorted(by_category.items())}
    if workloads:
        found["overall"] = _score(*_mean_log(workloads.values(), correlated=False))
    return found
