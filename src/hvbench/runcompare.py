"""``hvbench compare RUN_A RUN_B``: what got faster or slower between two runs.

Each platform present in both runs is compared metric by metric (B against A): the
ratio with its interval as in the baseline comparison, and the gate's verdict
(``gate.py``): a permutation p-value per metric, adjusted across every metric
compared (Benjamini-Hochberg), and noise thresholds. A regression makes the command
exit 1, so it can gate a pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError
from .gate import GateRules, Judged, judge, smallest_p
from .stats import Comparison, Series, compare, group
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
    changes = compare_series([(series_a[k], series_b[k]) for k in common], rules)
    fewest = min(min(len(series_a[k].values), len(series_b[k].values)) for k in common)
    floor = smallest_p(fewest, fewest)
    if floor * len(common) > rules.alpha:
        notes.append(f"with {fewest} samples a side the smallest permutation p-value is "
                     f"{floor:.3g}: across {len(common)} metrics compared, the false "
                     f"discovery rate control at {rules.alpha:g} may not let the smallest "
                     "changes through; more repetitions give the gate more power")
    return a_id, b_id, changes, notes


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
