"""A fleet's hosts against their hardware siblings: in a run over several hosts, each
host's result for a platform and metric against the pooled results of the other
hosts of the same hardware class (hardware_class), so the host that is slower than
its identical siblings stands out.

Each host is compared with its siblings' pooled samples (the ratio interval and the
Mann-Whitney test of stats.compare); the p-values of every host, workload and metric
are adjusted together (Benjamini-Hochberg), so a fleet of many hosts and metrics does
not flag one by chance. A host is flagged when it is significantly worse after that
adjustment and by more than the threshold. A group needs three hosts (one and at
least two siblings): with two, neither can be called the odd one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .gate import benjamini_hochberg
from .hosts.spec import recorded_host
from .stats import Comparison, MetricRow, compare, has_ratio

#: a host flagged must be this much worse than its siblings (a fraction)
THRESHOLD = 0.05
ALPHA = 0.05
MIN_GROUP = 3


@dataclass(frozen=True)
class Standing:
    """One host's series against its siblings'."""

    workload: str
    metric: str
    platform: str  # the platform's name without @HOST
    host: str  # its tag (the part after @)
    fingerprint: str  # the hardware class the host shares with its siblings
    siblings: int
    comparison: Comparison  # the host against its siblings' pooled samples
    q: float  # its p-value adjusted across the whole fleet

    @property
    def flagged(self) -> bool:
        return (self.q <= ALPHA and self.comparison.performance_ci[1] < 1
                and self.comparison.performance < 1 - THRESHOLD)


def hardware_class(info: Mapping[str, Any]) -> str | None:
    """What identical servers share (CPU model and count, memory size to the nearest
    few GiB, vendor and product name), unlike the per-server fingerprint."""
    if not info.get("cpu_model"):
        return None
    dmi = info.get("dmi") or {}
    gib = (info.get("memory_bytes") or 0) / 2**30
    memory = round(gib / 4) * 4 if gib >= 16 else round(gib)  # kernels reserve differently
    return " / ".join(str(part) for part in (
        info["cpu_model"], f"{info.get('cpu_logical')} CPUs", f"{memory} GiB",
        dmi.get("sys_vendor"), dmi.get("product_name")) if part)


def classes_of(campaign: Mapping[str, Any], host_info: Mapping[str, Any]) -> dict[str, str]:
    """A stored run's platform names -> the hardware class of the host each ran on."""
    per_host = host_info.get("hosts") or {host_info.get("host", "local"): host_info}
    found = {}
    for spec in campaign.get("platforms", []):
        hardware = hardware_class(per_host.get(recorded_host(campaign, spec), {}))
        if hardware:
            found[spec["name"]] = hardware
    return found


def standings(rows: Sequence[MetricRow], fingerprint: Mapping[str, str]) -> list[Standing]:
    """Every host of every sibling group, worst first ([] when no group has three).
    ``rows`` name each host's series PLATFORM@HOST; ``fingerprint`` gives each such
    name its host's hardware class (classes_of)."""
    pending: list[tuple[MetricRow, str, str, str, int, Comparison]] = []
    for row in rows:
        groups: dict[tuple[str, str], list[str]] = {}
        for platform in row.values:
            base, at, _ = platform.rpartition("@")
            if at and platform in fingerprint:
                groups.setdefault((base, fingerprint[platform]), []).append(platform)
        for (base, print_), members in groups.items():
            if len(members) < MIN_GROUP:
                continue
            for platform in members:
                pooled = [v for other in members if other != platform
                          for v in row.values[other]]
                if not has_ratio(pooled):  # its siblings measured 0: no ratio to them
                    continue
                comparison = compare(row.values[platform], pooled, row.higher_is_better)
                pending.append((row, base, platform.rpartition("@")[2], print_,
                                len(members) - 1, comparison))
    q_values = benjamini_hochberg([c.p_value for *_, c in pending]) if pending else []
    found = [Standing(row.workload, row.metric, base, host, print_, siblings, comparison, q)
             for (row, base, host, print_, siblings, comparison), q in zip(pending, q_values,
                                                                             strict=True)]
    return sorted(found, key=lambda s: (not s.flagged, s.comparison.performance))
