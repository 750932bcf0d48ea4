"""The statistics, checked by simulation against known truths."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hvbench.stats import compare, geomean, median_ci, outliers, summarize

TRUE_MEDIAN = 100.0


def _lognormal(rng: np.random.Generator, n: int, median: float = TRUE_MEDIAN,
               sigma: float = 0.05) -> np.ndarray:
    return median * np.exp(rng.normal(0, sigma, n))


@pytest.mark.parametrize("n", [8, 15, 30])
def test_median_ci_covers_the_true_median_90_to_99_percent(n: int) -> None:
    rng = np.random.default_rng(n)
    covered = 0
    for _ in range(1000):
        low, high, level = median_ci(_lognormal(rng, n))
        assert level >= 0.95
        covered += low <= TRUE_MEDIAN <= high
    assert 900 <= covered <= 990, covered


def test_median_ci_on_skewed_data() -> None:
    # Exponential: median = ln 2 / rate; the interval must not assume symmetry.
    rng = np.random.default_rng(7)
    true_median = math.log(2)
    covered = sum(
        (lambda ci: ci[0] <= true_median <= ci[1])(median_ci(rng.exponential(1.0, 20)))
        for _ in range(1000)
    )
    assert 900 <= covered <= 990


def test_small_samples_report_their_real_level() -> None:
    low, high, level = median_ci([3.0, 1.0, 2.0])
    assert (low, high) == (1.0, 3.0)
    assert level == pytest.approx(0.75)


def test_even_count_median_is_the_mean_of_the_middle_two() -> None:
    assert summarize([1, 2, 3, 10]).median == 2.5


def test_false_positive_rate_is_about_five_percent() -> None:
    rng = np.random.default_rng(11)
    hits = 0
    trials = 1000
    for _ in range(trials):
        result = compare(_lognormal(rng, 10), _lognormal(rng, 10), higher_is_better=True)
        hits += result.significant
    assert 0.01 <= hits / trials <= 0.08, hits


def test_known_ratio_is_recovered_within_its_ci() -> None:
    rng = np.random.default_rng(3)
    inside = 0
    for _ in range(300):
        baseline = _lognormal(rng, 12)
        candidate = _lognormal(rng, 12, median=TRUE_MEDIAN * 0.8)
        result = compare(candidate, baseline, higher_is_better=True)
        inside += result.ratio_low <= 0.8 <= result.ratio_high
        assert result.significant
    assert inside / 300 >= 0.88, inside


def test_wording_is_direction_aware() -> None:
    rng = np.random.default_rng(5)
    baseline = _lognormal(rng, 20, sigma=0.01)
    slower_throughput = compare(baseline * 0.8, baseline, higher_is_better=True)
    assert slower_throughput.wording() == "25.0% slower"  # same work takes 25% longer
    longer_latency = compare(baseline * 1.25, baseline, higher_is_better=False)
    assert longer_latency.wording() == "25.0% slower"
    faster = compare(baseline * 1.041, baseline, higher_is_better=True)
    assert faster.wording() == "4.1% faster"
    assert compare(baseline * 0.135, baseline, True).wording() == "7.41× slower"
    assert compare(baseline * 3, baseline, True).wording() == "3.00× faster"
    same = compare(_lognormal(rng, 20), _lognormal(rng, 20), higher_is_better=True)
    if not same.significant:
        assert same.wording().startswith(("inconclusive: too noisy", "equivalent (within"))


def test_comparison_is_reproducible() -> None:
    a, b = [1.0, 1.2, 0.9, 1.1, 1.05], [2.0, 2.1, 1.9, 2.2, 2.05]
    assert compare(a, b, True) == compare(a, b, True)


def test_outliers_are_flagged_not_dropped() -> None:
    values = [10.0, 10.1, 9.9, 10.05, 9.95, 30.0]
    summary = summarize(values)
    assert summary.outliers == (5,)
    assert summary.n == 6
    assert outliers([5.0, 5.0, 5.0, 5.0, 5.0, 9.0]) == ()  # MAD of 0: nothing can be judged
    assert outliers([1.0, 1.0, 1.1, 0.9, 50.0]) == ()  # too few samples to judge


def test_geomean() -> None:
    assert geomean([2.0, 8.0]) == pytest.approx(4.0)
    assert math.isnan(geomean([]))


@given(st.lists(st.floats(min_value=1e-3, max_value=1e9), min_size=1, max_size=40))
def test_summary_invariants(values: list[float]) -> None:
    summary = summarize(values)
    assert summary.minimum <= summary.ci_low <= summary.median <= summary.ci_high
    assert summary.ci_high <= summary.maximum
    assert summary.n == len(values)


def test_too_few_samples_are_named_not_called_equal() -> None:
    result = compare([1.0, 1.1, 1.05], [2.0, 2.1, 2.05], higher_is_better=True)
    assert not result.significant  # p >= 0.1 is the best 3 vs 3 can do
    assert result.wording() == "inconclusive: too few samples (n=3; need 4)"
    bigger = compare([1.0, 1.1, 1.05, 0.98], [2.0, 2.1, 2.05, 1.97], higher_is_better=True)
    assert bigger.significant
    assert bigger.wording() == f"{(1 / bigger.ratio - 1) * 100:.1f}% slower"  # ~2x the time
