"""Which setting matters: main effects and interactions of a matrix's settings.

A matrix run measures every combination of some settings (matrix.py). For each
family of variants and each scope (a category, or all workloads), a variant's
performance relative to its bare-metal baseline is the geometric mean over the
scope's workloads of each workload's mean over its metrics of
``log(geometric mean of the variant / of the baseline)`` (inverted for
lower-is-better metrics). For a full factorial:

- the **main effect** of ``setting = level`` is the mean of that log performance over
  the variants with that level, minus the mean over all variants: ``x1.12`` means
  "12% better than the matrix's average";
- the **interaction** of two levels is what the two together add beyond the sum of
  their main effects.

Intervals come from a bootstrap that resamples every series (and the baseline)
within itself; an interval that contains 1 is "no significant difference". The
ranking orders variants by the same performance, with the same intervals. Checked
by simulation against known effects in ``tests/test_effects.py``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .stats import MetricRow

RESAMPLES = 400
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    value: float  # a ratio: 1 is no effect, or the baseline's performance
    low: float
    high: float

    @property
    def verdict(self) -> str:
        if self.low > 1:
            return "better"
        if self.high < 1:
            return "worse"
        return "no significant difference"


@dataclass(frozen=True)
class Effect:
    setting: str
    level: str
    estimate: Estimate
    #: for an interaction: the other setting and its level
    with_setting: str | None = None
    with_level: str | None = None


@dataclass(frozen=True)
class Scope:
    """One category (or "overall") of one family."""

    name: str
    ranking: list[tuple[str, Estimate]]  # variants, best first (relative performance)
    main: list[Effect]
    interactions: list[Effect]


@dataclass(frozen=True)
class FamilyEffects:
    family: str  # the platform the matrix was given on
    settings: list[str]
    factorial: bool  # every combination measured: effects are meaningful
    scopes: list[Scope]  # "overall" first


def _level_text(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def family_effects(family: str, levels: Mapping[str, Mapping[str, object]],
                   rows: Sequence[MetricRow], baseline_of: Mapping[str, str],
                   seed: int = 1, resamples: int = RESAMPLES) -> FamilyEffects | None:
    """Effects for one family (``levels``: variant -> its matrix settings' values);
    None when no workload has both the variants and their baseline."""
    variants = list(levels)
    settings = list(next(iter(levels.values())))
    rng = np.random.default_rng(seed)
    # (resamples + 1, variants) log performance per workload; row 0 is the estimate
    base = {baseline_of.get(v) for v in variants}
    if len(base) != 1 or None in base:  # variants on several hosts: no common baseline
        return None
    reference = str(next(iter(base)))
    per_workload: dict[str, list[np.ndarray]] = {}
    category_of: dict[str, str] = {}
    for row in rows:
        if reference not in row.values or any(v not in row.values for v in variants):
            continue
        if any(x <= 0 for name in (*variants, reference) for x in row.values[name]):
            continue
        base_means = _boot_log_means(row.values[reference], rng, resamples)
        columns = [(_boot_log_means(row.values[v], rng, resamples) - base_means)
                   * (1 if row.higher_is_better else -1) for v in variants]
        per_workload.setdefault(row.workload, []).append(np.stack(columns, axis=1))
        category_of[row.workload] = row.category
    if not per_workload:
        return None
    workload_logs = {w: np.mean(parts, axis=0) for w, parts in per_workload.items()}
    scopes = {"overall": list(workload_logs.values())}
    for workload, logs in workload_logs.items():
        scopes.setdefault(category_of[workload], []).append(logs)
    factorial = _is_factorial(levels, settings)
    found = [_scope(name, np.mean(parts, axis=0), variants, levels, settings, factorial)
             for name, parts in sorted(scopes.items(), key=lambda kv: kv[0] != "overall")]
    return FamilyEffects(family, settings, factorial, found)


def _boot_log_means(values: Sequence[float], rng: np.random.Generator, resamples: int
                    ) -> np.ndarray:
    logs = np.log(np.asarray(values, dtype=float))
    picks = rng.integers(0, len(logs), size=(resamples, len(logs)))
    return np.concatenate([[logs.mean()], logs[picks].mean(axis=1)])


def _is_factorial(levels: Mapping[str, Mapping[str, object]], settings: list[str]) -> bool:
    seen = {tuple(_level_text(v[s]) for s in settings) for v in levels.values()}
    values = [sorted({_level_text(v[s]) for v in levels.values()}) for s in settings]
    return len(seen) == math.prod(len(v) for v in values) == len(levels)


def _estimate(samples: np.ndarray) -> Estimate:
    """Row 0 is the estimate, the rest its bootstrap replicates (log scale)."""
    tail = (1 - LEVEL) / 2
    low, high = np.quantile(samples[1:], [tail, 1 - tail])
    return Estimate(math.exp(samples[0]), math.exp(low), math.exp(high))


def _scope(name: str, logs: np.ndarray, variants: list[str],
           levels: Mapping[str, Mapping[str, object]], settings: list[str],
           factorial: bool) -> Scope:
    ranking = sorted(((v, _estimate(logs[:, i])) for i, v in enumerate(variants)),
                     key=lambda item: -item[1].value)
    main: list[Effect] = []
    interactions: list[Effect] = []
    if factorial:
        grand = logs.mean(axis=1)
        means: dict[tuple[str, str], np.ndarray] = {}
        for setting in settings:
            for level in dict.fromkeys(_level_text(levels[v][setting]) for v in variants):
                chosen = [i for i, v in enumerate(variants)
                          if _level_text(levels[v][setting]) == level]
                means[setting, level] = logs[:, chosen].mean(axis=1)
                main.append(Effect(setting, level, _estimate(means[setting, level] - grand)))
        for first, second in itertools.combinations(settings, 2):
            for (s1, l1), (s2, l2) in itertools.product(
                    [k for k in means if k[0] == first], [k for k in means if k[0] == second]):
                both = [i for i, v in enumerate(variants)
                        if _level_text(levels[v][s1]) == l1
                        and _level_text(levels[v][s2]) == l2]
                cell = logs[:, both].mean(axis=1)
                extra = cell - means[s1, l1] - means[s2, l2] + grand
                interactions.append(Effect(s1, l1, _estimate(extra), s2, l2))
    return Scope(name, ranking, main, interactions)
