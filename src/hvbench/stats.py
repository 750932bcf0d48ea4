"""Statistics over raw samples: summaries, confidence intervals, overhead ratios.

Choices, each checked by simulation in tests/test_stats.py:
- Median of an even count is the mean of the two middle values (numpy).
- The 95% CI of a median is distribution-free: the pair of order statistics whose
  binomial coverage is at least 95% (below 6 samples no pair reaches 95%; the
  widest one, min..max, is used and its real level reported).
- A ratio candidate/baseline is the median of all pairwise ratios (Hodges-Lehmann on
  log values) with its exact distribution-free interval; significance needs both the
  interval to exclude 1.0 and a two-sided Mann-Whitney U test at the same level; a
  ratio inside the equivalence margin is "equivalent"; anything else is
  "inconclusive", with the reason (verdicts.py, which also keeps repeated looks valid).
- Outliers are flagged (never dropped) by the modified z-score on the median
  absolute deviation: |0.6745 (x - median) / MAD| > 3.5 (Iglewicz and Hoaglin),
  from 6 samples on.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .store import SampleRow
from .verdicts import ALPHA, DEFAULT_MARGIN, Verdict, decide, ratio_interval, samples_needed

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    median: float
    stdev: float
    cv: float  # coefficient of variation: stdev / mean (0 when n < 2)
    minimum: float
    maximum: float
    ci_low: float
    ci_high: float
    ci_level: float  # the real coverage of [ci_low, ci_high] (>= 0.95 from n = 6)
    outliers: tuple[int, ...]  # indexes of flagged samples

    @property
    def ci_halfwidth_relative(self) -> float:
        """Half the CI width as a fraction of the median (the --reps auto criterion)."""
        if self.median == 0:
            return math.inf
        return (self.ci_high - self.ci_low) / 2 / abs(self.median)


def median_ci(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE
              ) -> tuple[float, float, float]:
    """Order-statistic CI of the median: (low, high, achieved coverage)."""
    from scipy import stats as sps  # imported when needed: it costs ~1 s at start-up

    data = np.sort(np.asarray(values, dtype=float))
    n = data.size
    if n == 1:
        return float(data[0]), float(data[0]), 0.0
    # Coverage of [x_(k), x_(n-k+1)] (1-based) is P(k <= B < n-k+1), B ~ Binomial(n, 1/2).
    best_k, best_cover = 1, 1 - 2 * sps.binom.cdf(0, n, 0.5)
    for k in range(1, n // 2 + 1):
        cover = sps.binom.cdf(n - k, n, 0.5) - sps.binom.cdf(k - 1, n, 0.5)
        if cover >= confidence:
            best_k, best_cover = k, cover
        else:
            break
    return float(data[best_k - 1]), float(data[n - best_k]), float(best_cover)


def outliers(values: Sequence[float] | np.ndarray, threshold: float = 3.5) -> tuple[int, ...]:
    data = np.asarray(values, dtype=float)
    if data.size < 6:  # too few to tell an outlier from the spread
        return ()
    median = np.median(data)
    mad = np.median(np.abs(data - median))
    if mad == 0:
        return ()
    scores = 0.6745 * (data - median) / mad
    return tuple(int(i) for i in np.flatnonzero(np.abs(scores) > threshold))


def summarize(values: Iterable[float]) -> Summary:
    data = np.asarray(list(values), dtype=float)
    if data.size == 0:
        raise ValueError("no values to summarize")
    mean = float(np.mean(data))
    stdev = float(np.std(data, ddof=1)) if data.size > 1 else 0.0
    low, high, level = median_ci(data)
    return Summary(
        n=int(data.size), mean=mean, median=float(np.median(data)), stdev=stdev,
        cv=stdev / mean if mean else 0.0, minimum=float(np.min(data)),
        maximum=float(np.max(data)), ci_low=low, ci_high=high, ci_level=level,
        outliers=outliers(data),
    )


@dataclass(frozen=True)
class Comparison:
    """A platform (or run) against a baseline for one metric, at one look."""

    ratio: float  # candidate / baseline: the median of all pairwise ratios
    ratio_low: float
    ratio_high: float
    p_value: float
    higher_is_better: bool
    n_candidate: int = 0
    n_baseline: int = 0
    alpha: float = ALPHA  # what this look spent: the interval is at level 1 - alpha
    margin: float = DEFAULT_MARGIN
    looks: int = 1  # looks taken at the data (1 for a fixed repetition count)
    reachable: bool = True  # the sample counts can reach level 1 - alpha at all
    needed: int = 0  # samples per side that would make the level reachable

    @property
    def performance(self) -> float:
        """Relative performance: > 1 means better than the baseline."""
        return self.ratio if self.higher_is_better else 1 / self.ratio

    @property
    def performance_ci(self) -> tuple[float, float]:
        if self.higher_is_better:
            return self.ratio_low, self.ratio_high
        return 1 / self.ratio_high, 1 / self.ratio_low

    @property
    def significant(self) -> bool:
        return self.reachable and not (self.ratio_low <= 1.0 <= self.ratio_high) \
            and self.p_value < self.alpha

    @property
    def verdict(self) -> Verdict:
        low, high = self.performance_ci
        return decide(low, high, self.significant, self.margin, self.reachable,
                      min(self.n_candidate, self.n_baseline), self.needed)

    @property
    def change(self) -> float:
        """Signed change in percent: negative = slower/worse (see ``wording``)."""
        performance = self.performance
        return (performance - 1) * 100 if performance >= 1 else -(1 / performance - 1) * 100

    def wording(self) -> str:
        """'12.3% slower', '4.1% faster', 'equivalent (within ±2%)' or
        'inconclusive: too noisy ...' / 'inconclusive: too few samples (n=3; need 4)'.

        Slower by X% means the same work takes X% longer (or X% more latency);
        faster by X% means X% more throughput (or X% less time). Beyond a factor of
        two the factor is given instead: '7.40× slower'.
        """
        verdict = self.verdict
        if verdict.kind == "equivalent":
            return f"equivalent (within ±{self.margin * 100:g}%)"
        if verdict.kind == "inconclusive":
            return f"inconclusive: {verdict.reason}"
        performance = self.performance
        if performance <= 0.5:  # "640% slower" reads worse than "7.40× slower"
            return f"{1 / performance:.2f}× slower"
        if performance >= 2:
            return f"{performance:.2f}× faster"
        change = self.change
        return f"{abs(change):.1f}% {'faster' if change > 0 else 'slower'}"


class NoRatio(ValueError):
    """The baseline's median is 0 (a probe's cost below what it resolves): a ratio to
    it says nothing, so that metric is not compared (callers say so or leave it out)."""


def has_ratio(baseline: Sequence[float]) -> bool:
    """Whether ``compare`` can put a candidate against this baseline."""
    return bool(len(baseline)) and float(np.median(np.asarray(baseline, dtype=float))) != 0


def compare(candidate: Sequence[float], baseline: Sequence[float], higher_is_better: bool,
            alpha: float = ALPHA, margin: float = DEFAULT_MARGIN, looks: int = 1
            ) -> Comparison:
    """Candidate against baseline at one look that may spend ``alpha``: the ratio with
    its exact interval (see verdicts.py) and a two-sided Mann-Whitney U p-value."""
    a = np.asarray(candidate, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError("both sides need samples")
    if np.median(b) == 0:
        raise NoRatio("the baseline median is zero: no ratio")
    def result(ratio: float, low: float, high: float, p_value: float, reachable: bool
               ) -> Comparison:
        return Comparison(ratio, low, high, p_value, higher_is_better, int(a.size),
                          int(b.size), alpha, margin, looks, reachable,
                          samples_needed(alpha))

    found = ratio_interval(a, b, alpha) if (a > 0).all() and (b > 0).all() else None
    if found is None:  # too few samples for this level, or values that are not positive
        ratio = float(np.median(a) / np.median(b))
        return result(ratio, ratio, ratio, 1.0, reachable=False)
    ratio, low, high = found
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        p_value = 1.0 if ratio == 1.0 else 0.0
    else:
        from scipy import stats as sps

        p_value = float(sps.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    return result(ratio, low, high, p_value, reachable=True)


def geomean(values: Iterable[float]) -> float:
    data = np.asarray([v for v in values if v > 0 and math.isfinite(v)], dtype=float)
    if data.size == 0:
        return math.nan
    return float(np.exp(np.mean(np.log(data))))


@dataclass(frozen=True)
class Series:
    """All samples of one metric of one workload on one platform."""

    platform: str
    workload: str
    metric: str
    unit: str
    higher_is_better: bool
    values: tuple[float, ...]


def group(rows: Iterable[SampleRow]) -> list[Series]:
    """Group sample rows into series, keeping first-seen order."""
    buckets: dict[tuple[str, str, str], list[SampleRow]] = defaultdict(list)
    for row in rows:
        buckets[(row.workload, row.metric, row.platform)].append(row)
    return [
        Series(platform, workload, metric, items[0].unit, items[0].higher_is_better,
               tuple(r.value for r in items))
        for (workload, metric, platform), items in buckets.items()
    ]


@dataclass(frozen=True)
class MetricRow:
    """One workload's metric across a run's platforms: raw values, summaries and each
    platform's comparison with its baseline."""

    workload: str
    category: str
    metric: str
    unit: str
    higher_is_better: bool
    summaries: dict[str, Summary]
    values: dict[str, tuple[float, ...]]
    comparisons: dict[str, Comparison]  # platform -> against the baseline
