"""``hvbench fleet``: the hosts of a fleet against their hardware siblings, across the
runs in the store (siblings.py compares them within one run).

A fleet is rarely measured in one run: hosts are benchmarked as they are installed,
upgraded or repaired, one or a few at a time, into one shared store. Here every
stored run since a date contributes its hosts' results; for each host, platform,
workload and metric the **latest** run that measured it counts (an older result
describes the host as it was), and each host is compared with the other hosts of
its hardware class exactly as within a run (pooled siblings, Benjamini-Hochberg
across all comparisons, flagged when significantly worse by more than 5%).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import UsageError
from .hosts.spec import HostSpec, recorded_host
from .siblings import Standing, classes_of, standings
from .stats import MetricRow, group, summarize
from .store import Store
from .workloads import get_workload


@dataclass(frozen=True)
class FleetHistory:
    standings: list[Standing]
    #: host -> the run its latest results come from (the newest, when several)
    sources: dict[str, str]
    runs: int  # runs read
    hosts: int  # hosts with results


@dataclass
class _Latest:
    run_id: str
    unit: str
    higher_is_better: bool
    values: tuple[float, ...]


def fleet_history(store: Store, since: str | None = None,
                  workloads: Sequence[str] = (), platforms: Sequence[str] = ()
                  ) -> FleetHistory:
    """Every host's latest result per platform, workload and metric (complete runs
    created at or after ``since``), against its hardware siblings'."""
    listing = [r for r in store.list_runs(since=since) if r["status"] == "complete"]
    latest: dict[tuple[str, str, str], _Latest] = {}  # (PLATFORM@HOST, workload, metric)
    classes: dict[str, str] = {}
    sources: dict[str, str] = {}
    for item in listing:  # oldest first: a newer run replaces what an older one said
        run = store.run(item["id"])
        names = {}
        for spec in run.campaign.get("platforms", []):
            base = spec["name"].rpartition("@")[0] or spec["name"]
            if platforms and base not in platforms:
                continue
            host = _tag(recorded_host(run.campaign, spec))
            names[spec["name"]] = f"{base}@{host}"
        if not names:
            continue
        hardware = classes_of(run.campaign, run.host)
        for series in group(store.samples(run.id)):
            key = names.get(series.platform)
            if key is None or (workloads and series.workload not in workloads):
                continue
            latest[(key, series.workload, series.metric)] = _Latest(
                run.id, series.unit, series.higher_is_better, series.values)
            if series.platform in hardware:
                classes[key] = hardware[series.platform]
            sources[key.rpartition("@")[2]] = run.id
    if not latest:
        raise UsageError("no complete run in the store matches"
                         + (f" since {since}" if since else "")
                         + ": nothing to compare (see 'hvbench results')")
    rows: dict[tuple[str, str], dict[str, _Latest]] = {}
    for (key, workload, metric), found in latest.items():
        rows.setdefault((workload, metric), {})[key] = found
    metric_rows = []
    for (workload, metric), members in rows.items():
        first = next(iter(members.values()))
        metric_rows.append(MetricRow(
            workload, _category(workload), metric, first.unit,
            first.higher_is_better, {k: summarize(v.values) for k, v in members.items()},
            {k: v.values for k, v in members.items()}, {}))
    return FleetHistory(standings(metric_rows, classes), sources, len(listing),
                        len({key.rpartition("@")[2] for key, *_ in latest}))


def _category(workload: str) -> str:
    try:
        return str(get_workload(workload).category)
    except UsageError:  # a workload this hvbench no longer has
        return "other"


def _tag(host: str) -> str:
    """A host's short name (its inventory name, host:port) as platform names use it."""
    try:
        return HostSpec.parse(host).tag
    except UsageError:  # recorded by an older hvbench in another form
        return host
