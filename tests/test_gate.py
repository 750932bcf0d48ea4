"""The regression gate of ``hvbench compare``: its permutation test and false discovery
rate control, checked exactly on small cases and by simulation (A/A false alarms
across 50 metrics, and the power to see a true 5% change)."""

from __future__ import annotations

import numpy as np
import pytest

from hvbench.gate import GateRules, benjamini_hochberg, judge, permutation_p, smallest_p


def test_permutation_p_is_exact_for_few_samples() -> None:
    # 20 ways to split six values 3/3; only the observed split and its mirror are as
    # extreme as [1, 2, 3] against [4, 5, 6]
    assert permutation_p([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)
    assert permutation_p([4, 5, 6], [1, 2, 3]) == pytest.approx(0.1)
    assert permutation_p([1, 2, 3], [1, 2, 3]) == 1.0
    assert smallest_p(3, 3) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="positive"):
        permutation_p([0, 1], [1, 2])


def test_benjamini_hochberg_matches_the_hand_computation() -> None:
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.005]) == pytest.approx(
        [0.02, 0.04, 0.04, 0.02])
    assert benjamini_hochberg([0.5]) == [0.5]


def test_noise_thresholds_keep_small_or_tiny_changes_out() -> None:
    rng = np.random.default_rng(1)
    a = rng.lognormal(0, 0.005, 10)
    slower = judge([(a, a * 0.97, True, "iops")], GateRules())[0]
    assert slower.significant and not slower.regression and "noise threshold" in slower.why_not
    latency = judge([(a * 100, a * 112, False, "clat-p99")],
                    GateRules(min_absolute={"clat-p99": 50}))[0]
    assert latency.significant and not latency.regression and "absolute" in latency.why_not
    assert judge([(a * 100, a * 112, False, "clat-p99")], GateRules())[0].regression


def _comparison(rng: np.random.Generator, rules: GateRules, effect: float = 1.0,
                sigma: float = 0.03, n: int = 10, metrics: int = 50) -> list[bool]:
    """One A/B comparison of ``metrics`` metrics; the first changed by ``effect``."""
    pairs = [(rng.lognormal(0, sigma, n), rng.lognormal(0, sigma, n)
              * (effect if i == 0 else 1.0), True, f"m{i}") for i in range(metrics)]
    return [j.regression for j in judge(pairs, rules)]


@pytest.mark.slow  # 400 comparisons of 50 metrics each
def test_aa_false_alarms_across_50_metrics_stay_under_5_percent() -> None:
    rng = np.random.default_rng(42)
    runs = 400
    alarms = sum(any(_comparison(rng, GateRules())) for _ in range(runs))
    assert alarms / runs <= 0.05, alarms
    # the statistics alone (no noise threshold): any significant change at all, in
    # either direction, across 50 unchanged metrics. Benjamini-Hochberg holds this at
    # 5% in expectation (exactly 5% when nothing changed), so the observed rate may
    # exceed it by chance: allowed two standard errors of a 5% rate
    pure = GateRules(threshold=0)
    any_change = 0
    for _ in range(runs):
        pairs = [(rng.lognormal(0, 0.03, 10), rng.lognormal(0, 0.03, 10), True, f"m{i}")
                 for i in range(50)]
        any_change += any(j.significant for j in judge(pairs, pure))
    assert any_change / runs <= 0.05 + 2 * (0.05 * 0.95 / runs) ** 0.5, any_change


@pytest.mark.slow
def test_power_to_see_a_true_change_among_50_metrics() -> None:
    """Measured power, n=10 a side, 2% noise, one changed metric among 50: a true 8%
    slowdown is a regression nearly always; a true 5% change is significant in most
    comparisons (as a regression it sits on the 5% threshold)."""
    rng = np.random.default_rng(7)
    runs = 200
    regressions = sum(_comparison(rng, GateRules(), 0.92, 0.02)[0] for _ in range(runs))
    assert regressions / runs >= 0.95, regressions
    significant = 0
    for _ in range(runs):
        pairs = [(rng.lognormal(0, 0.02, 10), rng.lognormal(0, 0.02, 10)
                  * (0.95 if i == 0 else 1.0), True, f"m{i}") for i in range(50)]
        significant += judge(pairs, GateRules())[0].significant
    assert significant / runs >= 0.8, significant
