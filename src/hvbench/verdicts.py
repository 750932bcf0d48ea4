"""Verdicts that stay valid under repeated looks: a look schedule with alpha spending,
a distribution-free confidence interval for a ratio, and the four verdicts.

Method (each property checked by simulation in tests/test_verdicts.py):
- A budgeted run looks at its data at scheduled sample counts n_1 < n_2 < ... <= n_max
  (``LookPlan``). Look k may spend alpha_k = alpha * (t_k^rho - t_{k-1}^rho), t_k =
  n_k / n_max (a power spending function, Kim & DeMets; rho = 1/2 spends early, where a
  budgeted run needs its answers), so the alphas of all looks add up to alpha.
  By the union bound, the chance that *any* look's interval misses the true ratio is
  at most alpha: a series may stop at whichever look decides it, and its reported
  interval keeps at least 1 - alpha coverage ("repeated confidence intervals",
  Jennison & Turnbull). A fixed-repetition run is one look with all of alpha.
- The interval for candidate/baseline is the Hodges-Lehmann interval of the shift of
  log values, inverted from the exact Mann-Whitney null distribution: exact coverage
  when the two sides differ by a factor, whatever the distribution.
- Verdicts: *slower/faster* when the interval excludes 1 (and the Mann-Whitney test
  agrees at the look's level); *equivalent* when it lies inside +/- margin (two one-sided
  tests at the same level, TOST); otherwise *inconclusive*, with the reason: too few
  samples for the look's level to be reachable at all, or too noisy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

ALPHA = 0.05
#: a budgeted run's first look: 5 samples a side reach the first look's level
FIRST_LOOK = 5
#: the power of the spending function: alpha * t^SPENDING_POWER spent by information t
SPENDING_POWER = 0.5
#: relative performance within +/- this counts as equivalent (2%)
DEFAULT_MARGIN = 0.02


@dataclass(frozen=True)
class LookPlan:
    """When a budgeted run looks at each series, and what alpha each look may spend."""

    looks: tuple[int, ...]  # sample counts per side at which a look is taken
    alpha: float = ALPHA
    power: float = 1.0  # of the spending function (1: linear)

    @classmethod
    def fixed(cls, n: int, alpha: float = ALPHA) -> LookPlan:
        """One look at the end: a run with a fixed repetition count."""
        return cls((max(1, n),), alpha)

    @classmethod
    def geometric(cls, first: int, n_max: int, growth: float = 1.4,
                  alpha: float = ALPHA, power: float = 1.0) -> LookPlan:
        """Looks at first, first*growth, ... up to n_max (always a look at n_max)."""
        looks = [first]
        while looks[-1] < n_max:
            looks.append(min(n_max, max(looks[-1] + 1, math.ceil(looks[-1] * growth))))
        return cls(tuple(looks), alpha, power)

    @classmethod
    def budgeted(cls, max_reps: int) -> LookPlan:
        """A budgeted run's looks: from the first count that can conclude at its level
        (5 a side) up to max_reps, spending alpha early."""
        return cls.geometric(min(FIRST_LOOK, max_reps), max_reps, power=SPENDING_POWER)

    @classmethod
    def of_campaign(cls, campaign: dict[str, Any], n: int) -> LookPlan:
        """The plan a stored campaign ran with (n: the samples a fixed run has)."""
        if campaign.get("budget"):
            return cls.budgeted(int(campaign.get("max_reps", 30)))
        return cls.fixed(n)

    def compare_at(self, n_candidate: int, n_baseline: int) -> tuple[int, int]:
        """(look number, samples to use per side) for series of these sizes: the last
        look both have reached; (0, n) before the first."""
        look = self.look_at(min(n_candidate, n_baseline))
        if len(self.looks) == 1:  # one look at the end: every sample counts
            return 1, max(n_candidate, n_baseline)
        return look, self.looks[look - 1] if look else min(n_candidate, n_baseline)

    @property
    def n_max(self) -> int:
        return self.looks[-1]

    def look_at(self, n: int) -> int:
        """How many looks a series with n samples has had (0: not yet at the first)."""
        return sum(1 for look in self.looks if look <= n)

    def alpha_at(self, look: int) -> float:
        """The alpha look number ``look`` (1-based) may spend."""
        previous = self.looks[look - 2] if look > 1 else 0
        spent = (self.looks[look - 1] / self.n_max) ** self.power
        before = (previous / self.n_max) ** self.power
        return self.alpha * (spent - before)


@lru_cache(maxsize=256)
def _u_null_cdf(m: int, n: int) -> np.ndarray:
    """P(U <= u) for u = 0..m*n under the null, exact (no ties), by the counting
    recurrence f(u; m, n) = f(u - n; m - 1, n) + f(u; m, n - 1)."""
    # counts[j][u] for the current m and every n' <= n, built up over m
    counts = [np.zeros(1, dtype=float) + 1.0 for _ in range(n + 1)]  # m = 0: U = 0 only
    for mm in range(1, m + 1):
        new = [np.ones(1, dtype=float)]  # n' = 0: U = 0 only
        for nn in range(1, n + 1):
            size = mm * nn + 1
            row = np.zeros(size)
            left = counts[nn]  # f(.; mm - 1, nn), shifted by nn
            row[nn:nn + left.size] += left
            below = new[nn - 1]  # f(.; mm, nn - 1)
            row[:below.size] += below
            new.append(row)
        counts = new
    dist = counts[n]
    return np.cumsum(dist) / dist.sum()


def _critical_rank(m: int, n: int, alpha: float) -> int:
    """The largest K with P(U <= K - 1) <= alpha / 2 (0 when none: too few samples)."""
    if m * n == 0:
        return 0
    if m <= 40 and n <= 40:
        cdf = _u_null_cdf(m, n)
        return int(np.searchsorted(cdf, alpha / 2, side="right"))
    from scipy import stats as sps

    mean, sd = m * n / 2, math.sqrt(m * n * (m + n + 1) / 12)
    return max(0, math.floor(mean + sps.norm.ppf(alpha / 2) * sd + 0.5))


def reachable(m: int, n: int, alpha: float) -> bool:
    """Whether an interval at level 1 - alpha exists for these sample counts."""
    return _critical_rank(m, n, alpha) >= 1


def ratio_interval(candidate: Sequence[float] | np.ndarray,
                   baseline: Sequence[float] | np.ndarray, alpha: float
                   ) -> tuple[float, float, float] | None:
    """(estimate, low, high) of candidate/baseline: the Hodges-Lehmann estimate (the
    median of all pairwise ratios) and its exact 1 - alpha interval; None when the
    sample counts cannot reach that level. Values must be positive."""
    a = np.log(np.asarray(candidate, dtype=float))
    b = np.log(np.asarray(baseline, dtype=float))
    differences = np.sort(np.subtract.outer(a, b).ravel())
    estimate = float(np.exp(np.median(differences)))
    k = _critical_rank(a.size, b.size, alpha)
    if k < 1:
        return None
    return (estimate, float(np.exp(differences[k - 1])),
            float(np.exp(differences[differences.size - k])))


@dataclass(frozen=True)
class Verdict:
    """One of: slower, faster, equivalent, inconclusive (with why)."""

    kind: str  # "slower" | "faster" | "equivalent" | "inconclusive"
    reason: str = ""  # for inconclusive: "too few samples ..." or "too noisy ..."

    @property
    def decided(self) -> bool:
        return self.kind != "inconclusive"

    @property
    def mark(self) -> str:
        """One character for compact tables (see the legend)."""
        return {"slower": "▼", "faster": "▲", "equivalent": "=", "inconclusive": "?"}[self.kind]


def decide(performance_low: float, performance_high: float, significant: bool,
           margin: float, reachable_level: bool, n: int, needed: int) -> Verdict:
    """The verdict for a relative-performance interval (> 1: better than the baseline)."""
    if not reachable_level:
        return Verdict("inconclusive", f"too few samples (n={n}; need {needed})")
    if significant and performance_high < 1:
        return Verdict("slower")
    if significant and performance_low > 1:
        return Verdict("faster")
    if 1 / (1 + margin) <= performance_low and performance_high <= 1 + margin:
        return Verdict("equivalent")
    return Verdict("inconclusive", "too noisy: the interval spans 1 and leaves "
                   f"±{margin * 100:g}%")


def samples_needed(alpha: float, limit: int = 200) -> int:
    """The smallest n per side at which an interval at level 1 - alpha exists."""
    for n in range(2, limit):
        if reachable(n, n, alpha):
            return n
    return limit
