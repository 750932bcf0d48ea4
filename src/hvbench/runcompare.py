"""``hvbench compare RUN_A RUN_B``: what got faster or slower between two runs.

Each platform present in both runs is compared metric by metric (B against A): the
ratio with its interval as in the baseline comparison, and the gate's verdict
(``gate.py``): a permutation p-value per metric, adjusted across every metric
compared (Benjamini-Hochberg), and noise thresholds. A regression makes the command
exit 1, so it can gate a pipeline. Figures derived from several series (where the time
goes, scaling efficiency and fairness, an aggressor's effect) are set side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

from .consolidation import Density
from .errors import UsageError
from .gate import GateRules, Judged, judge, smallest_p
from .interference import Disturbance
from .stats import Comparison, Series, compare, group, has_ratio
from .store import Store
from .where import TimeSplit


@dataclass(frozen=True)
class Change:
    platform: str
    workload: str
    metric: str
    unit: str
    comparison: Comparison
    judged: Judged

    @property
    def regression(self) -> bool:
        return self.judged.regression


def compare_runs(store: Store, run_a: str, run_b: str, rules: GateRules | None = None,
                 platforms: list[str] | None = None) -> tuple[str, str, list[Change], list[str]]:
    a_id, b_id = store.resolve(run_a), store.resolve(run_b)
    a, b = store.run(a_id), store.run(b_id)
    notes = []
    if a.fingerprint != b.fingerprint:
        notes.append(f"the runs were measured on different hardware (fingerprints "
                     f"{a.fingerprint} and {b.fingerprint})")
    series_a = {(s.platform, s.workload, s.metric): s for s in group(store.samples(a_id))}
    series_b = {(s.platform, s.workload, s.metric): s for s in group(store.samples(b_id))}
    common = [key for key in series_a if key in series_b]
    if platforms:
        unknown = set(platforms) - {k[0] for k in common}
        if unknown:
            raise UsageError(f"platform {', '.join(sorted(unknown))} is not in both runs")
        common = [k for k in common if k[0] in platforms]
    if not common:
        raise UsageError(f"runs {a_id} and {b_id} share no platform, workload and metric")
    rules = rules or GateRules()
    pairs, left_out = with_ratio([(series_a[k], series_b[k]) for k in common])
    notes.extend(left_out)
    changes = compare_series(pairs, rules)
    fewest = min(min(len(series_a[k].values), len(series_b[k].values)) for k in common)
    floor = smallest_p(fewest, fewest)
    if floor * len(common) > rules.alpha:
        notes.append(f"with {fewest} samples a side the smallest permutation p-value is "
                     f"{floor:.3g}: across {len(common)} metrics compared, the false "
                     f"discovery rate control at {rules.alpha:g} may not let the smallest "
                     "changes through; more repetitions give the gate more power")
    return a_id, b_id, changes, notes


def with_ratio(pairs: list[tuple[Series, Series]]
               ) -> tuple[list[tuple[Series, Series]], list[str]]:
    """The (A, B) pairs whose A has a ratio to give (stats.has_ratio), and a note for
    each left out: B against an A median of 0 says nothing."""
    kept, notes = [], []
    for a, b in pairs:
        if has_ratio(a.values):
            kept.append((a, b))
        else:
            notes.append(f"{a.platform} · {a.workload}/{a.metric}: the median in the first "
                         "run is 0 (below what it resolves): not compared")
    return kept, notes


def compare_series(pairs: list[tuple[Series, Series]], rules: GateRules) -> list[Change]:
    """Each (A, B) pair of the same metric judged together: B's ratio to A with its
    interval, and the gate's verdict with the p-values adjusted across all pairs."""
    judged = judge([(a.values, b.values, a.higher_is_better, a.metric) for a, b in pairs],
                   rules)
    return [Change(a.platform, a.workload, a.metric, a.unit,
                   compare(b.values, a.values, a.higher_is_better), verdict)
            for (a, b), verdict in zip(pairs, judged, strict=True)]


@dataclass(frozen=True)
class WhereChange:
    """How one figure of 'where the time goes' moved from run A to run B."""

    platform: str
    workload: str
    figure: str  # e.g. "host CPU per I/O (µs)"
    before: float
    after: float

    @property
    def change(self) -> float:
        """Percent, signed as measured (not as better or worse)."""
        return (self.after / self.before - 1) * 100 if self.before else float("inf")


def where_changes(before: list[TimeSplit], after: list[TimeSplit]) -> list[WhereChange]:
    """The per-unit figures, efficiency and host CPU of every platform and workload
    that both runs measured (medians per trial, as in each run's report)."""
    earlier = {(s.platform, s.workload): s for s in before}
    found = []
    for split in after:
        other = earlier.get((split.platform, split.workload))
        if other is None:
            continue
        unit = split.work_unit or "unit"
        pairs = [(f"host cores ({', '.join(sorted(split.host_cores))})",
                  sum(other.host_cores.values()), sum(split.host_cores.values()))]
        pairs += [(f"{'host CPU µs' if k == 'host_cpu_us' else k} per {unit}",
                   other.per_unit[k], v) for k, v in split.per_unit.items()
                  if k in other.per_unit]
        if split.efficiency and other.efficiency:
            pairs.append((f"{unit}/s per host core", other.efficiency, split.efficiency))
        found += [WhereChange(split.platform, split.workload, name, a, b)
                  for name, a, b in pairs if a or b]
    return found


@dataclass(frozen=True)
class Shift:
    """A figure derived from several series of a run — a scaling efficiency, a
    fairness, an aggressor's effect on the victim — in run A and in run B.

    The series under it are compared by the gate like any other; a derived figure is
    a ratio of their medians, so here the two runs' 95% intervals are set side by
    side: apart, the figure moved (non-overlapping 95% intervals are a stricter test
    than p < 0.05); overlapping, no change is shown."""

    platform: str
    workload: str
    metric: str
    figure: str  # "efficiency at 4 guests", "fairness at 4 guests", "beside stress-ng-cpu"
    before: float
    after: float
    before_ci: tuple[float, float] | None = None  # None: no interval (or n too small)
    after_ci: tuple[float, float] | None = None
    #: why there is no verdict when an interval is missing
    without: str = "no interval: too few samples"

    @property
    def change(self) -> float:
        """Percent, signed as measured."""
        return (self.after / self.before - 1) * 100 if self.before else float("inf")

    @property
    def apart(self) -> bool | None:
        """Whether the two intervals are disjoint (None without both)."""
        if self.before_ci is None or self.after_ci is None:
            return None
        return self.after_ci[0] > self.before_ci[1] or self.after_ci[1] < self.before_ci[0]

    def wording(self) -> str:
        return {True: "moved (intervals apart)", False: "no change shown (intervals "
                "overlap)", None: self.without}[self.apart]


def _interval(comparison: Comparison | None) -> tuple[float, float] | None:
    if comparison is None or not comparison.reachable:
        return None
    return comparison.ratio_low, comparison.ratio_high


def consolidation_shifts(before: list[Density], after: list[Density]) -> list[Shift]:
    """Efficiency and fairness at every guest count both runs measured."""
    earlier = {(d.family, d.workload, d.metric, p.guests): p
               for d in before for p in d.points}
    found = []
    for density in after:
        for point in density.points:
            other = earlier.get((density.family, density.workload, density.metric,
                                 point.guests))
            if other is None or point.guests == 1:
                continue
            key = (density.family, density.workload, density.metric)
            if other.efficiency is not None and point.efficiency is not None:
                found.append(Shift(*key, f"efficiency at {point.guests} guests",
                                   other.efficiency.ratio, point.efficiency.ratio,
                                   _interval(other.efficiency), _interval(point.efficiency)))
            if other.fairness is not None and point.fairness is not None:
                found.append(Shift(*key, f"fairness at {point.guests} guests",
                                   other.fairness, point.fairness,
                                   without="a median index: no interval"))
    return found


def interference_shifts(before: list[Disturbance], after: list[Disturbance]) -> list[Shift]:
    """Each aggressor's effect on the victim (its ratio to solo) in both runs."""
    earlier = {(d.platform, d.aggressor, d.workload, d.metric): d for d in before}
    found = []
    for now in after:
        then = earlier.get((now.platform, now.aggressor, now.workload, now.metric))
        if then is not None:
            found.append(Shift(now.platform, now.workload, now.metric,
                               f"beside {now.aggressor}", then.comparison.ratio,
                               now.comparison.ratio, _interval(then.comparison),
                               _interval(now.comparison)))
    return found
