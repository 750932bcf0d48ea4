"""Interference: how much each aggressor degrades the victim (disturb.py measures;
this reads a run).

For every condition ``P.with-A`` of an interference study and every metric of the
victim: the victim's values with A beside it against its solo values on P (its
neighbours booted and idle), as a ratio of medians with its interval and a rank test,
the same comparison the report makes against the baseline. Latency workloads carry
their tail (p99) as metrics of their own, so median and tail both show. ``kind`` is
the aggressor's category (cpu, memory, disk, network; "control" for ``none``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .stats import Comparison, MetricRow, has_ratio
from .workloads import CATALOGUE


@dataclass(frozen=True)
class Disturbance:
    platform: str  # where the victim ran solo
    condition: str  # the condition's platform name (P.with-A)
    aggressor: str  # its label: stress-ng-cpu, host-fio-randwrite, none...
    kind: str  # the aggressor's category, or "control"
    where: str  # guest | host
    workload: str
    metric: str
    unit: str
    comparison: Comparison  # with the aggressor against solo

    @property
    def degradation(self) -> float:
        """How much worse the victim did, in percent (negative: it did better)."""
        return -self.comparison.change


Compare = Callable[[tuple[float, ...], tuple[float, ...], bool], Comparison]


def interference(rows: Sequence[MetricRow], platforms: Sequence[Mapping[str, Any]],
                 compare: Compare) -> list[Disturbance]:
    """Every condition of the run's interference study against its solo platform."""
    found = []
    for spec in platforms:
        solo, aggressor = spec.get("shares"), spec.get("aggressor")
        if not solo or not aggressor:
            continue
        workload = str(aggressor["workload"])
        kind = "control" if workload == "none" else str(CATALOGUE[workload].category)
        for row in rows:
            with_it, alone = row.values.get(spec["name"]), row.values.get(solo)
            if not with_it or not alone or not has_ratio(alone):
                continue  # nothing to compare, or alone at 0: no ratio says anything
            label = str(spec["name"]).removeprefix(f"{solo}.with-")
            found.append(Disturbance(solo, spec["name"], label, kind,
                                     str(aggressor.get("where", "guest")), row.workload,
                                     row.metric, row.unit,
                                     compare(with_it, alone, row.higher_is_better)))
    return found

