"""``hvbench compare RUN_A RUN_B``: what got faster or slower between two runs.

Each platform present in both runs is compared metric by metric (B against A),
with the same statistics as the baseline comparison. A significant change for
the worse larger than the threshold is a regression: the command exits 1, so it
can gate a pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError
from .stats import Comparison, compare, group
from .store import Store


@dataclass(frozen=True)
class Change:
    platform: str
    workload: str
    metric: str
    unit: str
    comparison: Comparison
    regression: bool


def compare_runs(store: Store, run_a: str, run_b: str, threshold: float = 5.0,
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
    changes = []
    for key in common:
        first, second = series_a[key], series_b[key]
        result = compare(second.values, first.values, first.higher_is_better)
        regression = result.significant and result.change < -threshold
        changes.append(Change(key[0], key[1], key[2], first.unit, result, regression))
    return a_id, b_id, changes, notes
