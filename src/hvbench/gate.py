"""The regression gate behind ``hvbench compare``: a permutation test per metric, the
false discovery rate held across all the metrics compared, and thresholds below
which a change is noise.

With dozens of metrics compared at once, some look significant by chance. Each
metric's change from run A to run B gets a permutation p-value (the log-ratio of the
geometric means against every relabelling of the pooled samples: exact when the
relabellings are few, else 10,000 random ones with a fixed seed); the p-values of
all metrics are then adjusted together with Benjamini-Hochberg, which keeps the
expected share of false alarms among the changes flagged at ``alpha``, and the
chance of any false alarm at ``alpha`` when nothing changed at all. A regression
must also be larger than the noise threshold (percent) and, where given, than an
absolute change of its metric.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: above this many relabellings the permutation distribution is sampled
EXACT_LIMIT = 20_000
ROUNDS = 10_000
SEED = 20261201


@functools.lru_cache(maxsize=64)
def _relabellings(n_a: int, n_b: int) -> np.ndarray:
    """One row per relabelling of n_a + n_b pooled values: 1 where a value goes to B.
    Every one when they are few (exact), else ROUNDS random ones (a fixed seed)."""
    size = n_a + n_b
    if math.comb(size, n_b) <= EXACT_LIMIT:
        rows = np.zeros((math.comb(size, n_b), size))
        for row, chosen in enumerate(itertools.combinations(range(size), n_b)):
            rows[row, list(chosen)] = 1.0
        return rows
    rng = np.random.default_rng(SEED)
    base = np.concatenate([np.zeros(n_a), np.ones(n_b)])
    return np.asarray(rng.permuted(np.tile(base, (ROUNDS, 1)), axis=1))


def permutation_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided permutation p-value of the change from ``a`` to ``b``: the statistic is
    the log of the ratio of geometric means, compared with its value under every
    relabelling of the pooled samples (exact when they are few)."""
    first, second = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if first.size == 0 or second.size == 0:
        raise ValueError("both sides need samples")
    if (first <= 0).any() or (second <= 0).any():
        raise ValueError("a permutation test of ratios needs positive values")
    logs = np.log(np.concatenate([first, second]))
    rows = _relabellings(first.size, second.size)
    into_b = rows @ logs
    stats = np.abs(into_b / second.size - (logs.sum() - into_b) / first.size)
    observed = abs(float(np.mean(logs[first.size:]) - np.mean(logs[:first.size])))
    extreme = np.sum(stats >= observed - 1e-12)  # ties within rounding count
    if math.comb(logs.size, second.size) <= EXACT_LIMIT:
        return float(extreme / rows.shape[0])
    return float((1 + extreme) / (rows.shape[0] + 1))


def smallest_p(n_a: int, n_b: int) -> float:
    """The smallest p-value a permutation test can give with these sample sizes (two
    sided): with few samples no change can be significant after adjustment."""
    return min(1.0, 2 / math.comb(n_a + n_b, n_a))


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Adjusted p-values (q-values): reject where q <= alpha to hold the FDR at alpha."""
    count = len(p_values)
    order = sorted(range(count), key=lambda i: p_values[i])
    adjusted = [1.0] * count
    running = 1.0
    for rank in range(count, 0, -1):
        index = order[rank - 1]
        running = min(running, p_values[index] * count / rank)
        adjusted[index] = min(1.0, running)
    return adjusted


@dataclass(frozen=True)
class GateRules:
    alpha: float = 0.05
    #: percent: a significant change smaller than this is noise
    threshold: float = 5.0
    #: metric -> the smallest absolute change (in its unit) that counts
    min_absolute: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Judged:
    p_value: float  # permutation
    q_value: float  # Benjamini-Hochberg over every metric compared
    significant: bool  # q <= alpha
    regression: bool  # significant, worse, beyond both thresholds
    improvement: bool
    why_not: str  # for a significant worsening that is not a regression, or no ratio

    def wording(self) -> str:
        """The verdict as compare and ab print it."""
        if self.regression:
            return "REGRESSION"
        if self.improvement:
            return "improvement"
        if self.why_not:
            return f"noise: {self.why_not}" if self.significant else self.why_not
        return "significant change" if self.significant else "no significant change"


def judge(pairs: Sequence[tuple[Sequence[float], Sequence[float], bool, str]],
          rules: GateRules) -> list[Judged]:
    """Each (A values, B values, higher_is_better, metric) pair judged together."""
    # a value of 0 (a probe's cost below what it resolves) has no ratio to test
    positive = [min(a) > 0 and min(b) > 0 for a, b, _higher, _metric in pairs]
    p_values = [permutation_p(a, b) if ok else 1.0
                for (a, b, _higher, _metric), ok in zip(pairs, positive, strict=True)]
    q_values = benjamini_hochberg(p_values)
    found = []
    for (a, b, higher, metric), ok, p, q in zip(pairs, positive, p_values, q_values,
                                               strict=True):
        if not ok:
            found.append(Judged(p, q, False, False, False,
                                "no ratio: a value of 0 or less was measured"))
            continue
        median_a, median_b = float(np.median(a)), float(np.median(b))
        change = (median_b / median_a - 1) * 100 * (1 if higher else -1)  # < 0: worse
        significant = q <= rules.alpha
        floor = rules.min_absolute.get(metric)
        why = ""
        if significant and change < 0:
            if -change <= rules.threshold:
                why = f"{-change:.1f}% is within the {rules.threshold:g}% noise threshold"
            elif floor is not None and abs(median_b - median_a) < floor:
                why = (f"the change of {abs(median_b - median_a):.4g} is below the "
                       f"absolute threshold {floor:g}")
        regression = significant and change < 0 and not why
        found.append(Judged(p, q, significant, regression,
                            significant and change > rules.threshold, why))
    return found
