"""A host's history: one platform's workload across the stored runs that measured it,
with change points where a run differs from the one before.

Consecutive runs are compared as ``hvbench compare`` compares two runs (gate.judge:
a permutation test per pair, Benjamini-Hochberg across every pair and metric of the
series, a noise threshold), so a long history does not show changes by chance.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .errors import UsageError
from .gate import GateRules, Judged, judge
from .hosts.spec import HostSpec
from .stats import Summary, summarize
from .store import Store


@dataclass(frozen=True)
class Point:
    run_id: str
    created: str
    platform: str  # as named in that run (PLATFORM or PLATFORM@HOST)
    unit: str
    higher_is_better: bool
    summary: Summary
    values: tuple[float, ...]
    change: Judged | None = None  # against the previous point

    @property
    def change_point(self) -> str:
        """'▼ worse' / '▲ better' where the series changes here, else ''."""
        if self.change is None:
            return ""
        if self.change.regression:
            return "▼ worse"
        return "▲ better" if self.change.improvement else ""


def _tag(host: str) -> str:
    try:
        return HostSpec.parse(host).tag
    except UsageError:
        return host


def trend(store: Store, host: str, platform: str, workload: str,
          rules: GateRules | None = None) -> dict[str, list[Point]]:
    """metric -> the series of runs on ``host``, oldest first, change points judged."""
    names = {platform, f"{platform}@{_tag(host)}", f"{platform}@{host}"}
    series: dict[str, list[Point]] = {}
    for run in store.list_runs(host=host):
        found: dict[tuple[str, str], list[float]] = {}
        units: dict[str, tuple[str, bool]] = {}
        for sample in store.samples(run["id"]):
            if sample.workload == workload and sample.platform in names:
                found.setdefault((sample.platform, sample.metric), []).append(sample.value)
                units[sample.metric] = (sample.unit, sample.higher_is_better)
        for (name, metric), values in found.items():
            unit, higher = units[metric]
            series.setdefault(metric, []).append(Point(
                run["id"], str(run["created"]), name, unit, higher, summarize(values),
                tuple(values)))
    if not series:
        raise UsageError(f"no stored run measured {workload} on {platform} on host {host} "
                         "(see 'hvbench results --host HOST')")
    pairs = [(metric, index) for metric, points in series.items()
             for index in range(1, len(points))
             if all(v > 0 for p in points[index - 1:index + 1] for v in p.values)]
    judged = judge([(series[m][i - 1].values, series[m][i].values,
                     series[m][i].higher_is_better, m) for m, i in pairs],
                   rules or GateRules()) if pairs else []
    for (metric, index), verdict in zip(pairs, judged, strict=True):
        series[metric][index] = replace(series[metric][index], change=verdict)
    return series
