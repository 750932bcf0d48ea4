"""Consolidation: how a platform's aggregate throughput grows with the number of guests
on one host, and how fairly they share it (tiles.py measures; this reads a run).

For each platform family run at several guest counts (``density = [1, 2, 4]``, or
``guests`` in a matrix) and each throughput metric: the aggregate at N guests (the
``-sum`` samples of a tile; one guest's own value at N = 1), the **scaling
efficiency** — the aggregate against N times the one-guest result, with its interval
(1: perfect scaling; 1/2: N guests on half as many cores as they need) — and
**fairness**, Jain's index over the guests' shares (1: equal shares). And the host's
view of each guest of a tile (``guest_shares``): the host cores its threads kept busy
and the steal its own kernel counted, so an unfair share can be explained.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .stats import Comparison, MetricRow, compare, has_ratio
from .where import host_cores_of


@dataclass(frozen=True)
class DensityPoint:
    platform: str
    guests: int
    aggregate: float  # median of the aggregate (sum over the guests)
    efficiency: Comparison | None  # aggregate / (guests x one guest); None without N=1
    fairness: float | None  # median Jain's index (1.0 for one guest)


@dataclass(frozen=True)
class Density:
    family: str
    workload: str
    metric: str
    unit: str
    points: list[DensityPoint]

    def efficiency_at(self, guests: int) -> Comparison | None:
        return next((p.efficiency for p in self.points if p.guests == guests), None)


def consolidation(rows: Sequence[MetricRow], platforms: Sequence[Mapping[str, Any]]
                  ) -> list[Density]:
    """Every tiled family's throughput metrics against guest count."""
    guests = {p["name"]: int((p.get("settings") or {}).get("guests", 1)) for p in platforms}
    families: dict[str, list[str]] = {}
    for spec in platforms:  # a run over several hosts: each host's tiles apart
        family = spec.get("family") or spec["name"]
        host = spec["name"].rpartition("@")[2] if "@" in spec["name"] else ""
        families.setdefault(f"{family}@{host}" if host else family, []).append(spec["name"])
    tiled = {family: sorted(names, key=lambda n: guests[n])
             for family, names in families.items() if any(guests[n] > 1 for n in names)}
    by_key = {(row.workload, row.metric): row for row in rows}
    found = []
    for row in rows:
        if not row.metric.endswith("-sum"):
            continue
        single = by_key.get((row.workload, row.metric.removesuffix("-sum")))
        fairness = by_key.get((row.workload, "fairness"))
        if single is None:
            continue
        for family, names in tiled.items():
            one = next((n for n in names if guests[n] == 1 and n in single.values), None)
            points = []
            for name in names:
                count = guests[name]
                totals = (row.values.get(name) if count > 1 else single.values.get(name))
                if not totals:
                    continue
                efficiency = None
                if one is not None and has_ratio(single.values[one]):
                    efficiency = compare(totals, [count * v for v in single.values[one]],
                                         row.higher_is_better)
                shares = fairness.values.get(name) if fairness is not None else None
                points.append(DensityPoint(
                    name, count, statistics.median(totals), efficiency,
                    statistics.median(shares) if shares else (1.0 if count == 1 else None)))
            if len(points) > 1 or any(p.guests > 1 for p in points):
                found.append(Density(family, row.workload, single.metric, row.unit, points))
    return found


@dataclass(frozen=True)
class GuestShare:
    """One guest of a tile as the host saw it (medians over the series' trials)."""

    platform: str
    workload: str
    guest: str  # "guest 1"...
    trials: int
    host_cores: float | None  # host cores its threads (or its domain) kept busy
    steal: float | None  # share of its vCPUs' time spent waiting for a host CPU


def guest_shares(trials: Sequence[Mapping[str, Any]]) -> list[GuestShare]:
    """Per tile platform, workload and guest: the collectors' figures of each guest
    (``tile.accounting`` of the measured trials)."""
    series: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for trial in trials:
        tile = (trial.get("metadata") or {}).get("tile") or {}
        if trial.get("status") != "ok" or trial.get("warmup") or not tile.get("accounting"):
            continue
        for guest, accounting in tile["accounting"].items():
            series.setdefault((trial["platform"], trial["workload"], guest), []).append(
                accounting or {})
    found = []
    for (platform, workload, guest), figures in series.items():
        cores = [c for c in map(host_cores_of, figures) if c is not None]
        steal = [float(f["kernel"]["steal_share"]) for f in figures
                 if "steal_share" in (f.get("kernel") or {})]
        found.append(GuestShare(platform, workload, guest, len(figures),
                                statistics.median(cores) if cores else None,
                                statistics.median(steal) if steal else None))
    return sorted(found, key=lambda g: (g.platform, g.workload, int(g.guest.split()[-1])))
