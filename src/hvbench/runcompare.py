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
from .stats import Comparison, compare, group
from .store import Store


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
    judged = judge([(series_a[k].values, series_b[k].values, series_a[k].higher_is_better,
                     k[2]) for k in common], rules)
    changes = [Change(key[0], key[1], key[2], series_a[key].unit,
                      compare(series_b[key].values, series_a[key].values,
                              series_a[key].higher_is_better), verdict)
               for key, verdict in zip(common, judged, strict=True)]
    fewest = min(min(len(series_a[k].values), len(series_b[k].values)) for k in common)
    floor = smallest_p(fewest, fewest)
    if floor * len(common) > rules.alpha:
        notes.append(f"with {fewest} samples a side the smallest permutation p-value is "
                     f"{floor:.3g}: across {len(common)} metrics compared, the false "
                     f"discovery rate control at {rules.alpha:g} may not let the smallest "
                     "changes through; more repetitions give the gate more power")
    return a_id, b_id, changes, notes
