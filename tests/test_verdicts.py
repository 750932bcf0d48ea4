"""Verdicts under repeated looks, checked by simulation: the false-positive rate stays at
most alpha, reported intervals cover the true ratio at least 1 - alpha of the time, and
equivalence (TOST) is declared at the margin's edge at most at its nominal rate."""

from __future__ import annotations

import numpy as np
import pytest

from hvbench.stats import compare
from hvbench.verdicts import LookPlan, ratio_interval, reachable, samples_needed

PLAN = LookPlan.budgeted(30)  # what a budgeted run with the default max_reps uses


def _sample(rng: np.random.Generator, n: int, ratio: float = 1.0, sigma: float = 0.05
            ) -> np.ndarray:
    return 100.0 * ratio * rng.lognormal(0.0, sigma, n)


def _sequential(rng: np.random.Generator, ratio: float, margin: float = 0.02,
                sigma: float = 0.05):
    """One series run as a budgeted run does: look at each scheduled count, stop at
    the first look that decides; the comparison it stopped with (or the last)."""
    candidate = _sample(rng, PLAN.n_max, ratio, sigma)
    baseline = _sample(rng, PLAN.n_max, 1.0, sigma)
    result = None
    for look, n in enumerate(PLAN.looks, start=1):
        result = compare(candidate[:n], baseline[:n], True, alpha=PLAN.alpha_at(look),
                         margin=margin, looks=look)
        if result.verdict.decided:
            return result
    return result


@pytest.mark.parametrize("plan", [PLAN, LookPlan.geometric(6, 30), LookPlan.fixed(3)])
def test_look_plan_spends_exactly_alpha(plan: LookPlan) -> None:
    assert sum(plan.alpha_at(k) for k in range(1, len(plan.looks) + 1)) == \
        pytest.approx(0.05)
    assert all(plan.alpha_at(k) > 0 for k in range(1, len(plan.looks) + 1))


def test_budgeted_plan_looks_early_and_every_look_can_conclude() -> None:
    assert PLAN.looks[0] == 5 and PLAN.looks[-1] == 30
    assert PLAN.look_at(4) == 0 and PLAN.look_at(5) == 1 and PLAN.look_at(30) == len(PLAN.looks)
    assert all(reachable(n, n, PLAN.alpha_at(k)) for k, n in enumerate(PLAN.looks, start=1))
    assert samples_needed(0.05) == 4 and not reachable(3, 3, 0.05)


@pytest.mark.slow  # 1,500 simulated runs: in make test, not in test-fast's loop
def test_false_positive_rate_under_repeated_looks_is_at_most_alpha() -> None:
    rng = np.random.default_rng(20261201)
    runs = 1500
    false = sum(_sequential(rng, 1.0).significant for _ in range(runs))
    assert false / runs <= 0.05, false


@pytest.mark.slow  # 2,400 simulated runs
def test_reported_interval_covers_the_true_ratio() -> None:
    rng = np.random.default_rng(7)
    runs = 800
    for ratio in (0.9, 1.0, 1.3):
        covered = 0
        for _ in range(runs):
            result = _sequential(rng, ratio)
            covered += result.ratio_low <= ratio <= result.ratio_high
        assert covered / runs >= 0.95, (ratio, covered)


def test_equivalence_at_the_margin_edge_is_rare() -> None:
    """TOST error: a true difference exactly at the margin is called equivalent at most at
    the nominal rate (alpha / 2 per side), under repeated looks too."""
    rng = np.random.default_rng(3)
    runs = 800
    for ratio in (1.02, 1 / 1.02):
        wrong = sum(_sequential(rng, ratio, sigma=0.01).verdict.kind == "equivalent"
                    for _ in range(runs))
        assert wrong / runs <= 0.025, (ratio, wrong)


def test_equivalence_and_effects_are_reached() -> None:
    """The method is not only safe but useful: quiet equal series end equivalent, a real
    20% slowdown ends slower, both within the plan."""
    rng = np.random.default_rng(5)
    kinds = [_sequential(rng, 1.0, sigma=0.005).verdict.kind for _ in range(50)]
    assert kinds.count("equivalent") >= 45, kinds
    kinds = [_sequential(rng, 1 / 1.2).verdict.kind for _ in range(50)]
    assert kinds.count("slower") == 50


def test_interval_is_exact_for_a_pure_factor() -> None:
    baseline = [1.0, 1.1, 1.05, 0.97, 1.02, 0.99]
    found = ratio_interval([2 * b for b in baseline], baseline, 0.05)
    assert found is not None
    estimate, low, high = found
    assert estimate == 2.0 and low < 2.0 < high
    assert ratio_interval([1.0, 2.0], [1.0, 2.0], 0.05) is None  # 2 a side cannot reach 95%


def test_verdict_words() -> None:
    quiet = [100.0 + i * 0.01 for i in range(10)]
    assert compare(quiet, quiet, True).wording() == "equivalent (within ±2%)"
    noisy = [50.0, 150.0, 80.0, 120.0, 100.0, 70.0, 130.0, 90.0]
    assert compare(noisy, noisy[::-1], True).wording().startswith("inconclusive: too noisy")
