"""From stored samples to what a report says: summaries, overheads, scores, warnings.

Every renderer (terminal, HTML, Markdown, CSV, JSON) works from one ``Analysis``,
so they can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from . import integrity, sysinfo
from .consolidation import Density, GuestShare, consolidation, guest_shares
from .effects import FamilyEffects, family_effects
from .errors import UsageError
from .interference import Disturbance, interference
from .scores import Score, platform_scores
from .siblings import Standing, classes_of, standings
from .stats import Comparison, MetricRow, Summary, compare, group, has_ratio, summarize
from .store import RunRecord, SampleRow, Store
from .verdicts import DEFAULT_MARGIN, LookPlan
from .where import TimeSplit, time_splits, work_metric
from .workloads import CATALOGUE

MIN_CONFIDENT_N = 6  # below this no order-statistic interval reaches 95%

#: hvprobe operation -> the workloads whose overhead it helps explain
EXPLAINS: dict[str, tuple[str, ...]] = {
    "syscall": ("stress-ng-syscall", "sysbench-threads", "fio-randread", "fio-randwrite"),
    "page_fault": ("stress-ng-pagefault", "sysbench-memory"),
    "mmap_munmap": ("stress-ng-pagefault",),
    "context_switch": ("stress-ng-switch", "sysbench-threads", "sockperf-pingpong"),
    "futex_wake": ("sysbench-threads", "stress-ng-switch"),
    "clock_gettime": ("sockperf-pingpong",),
    "cpuid": ("boot",),
    "mem_copy": ("sysbench-memory", "stress-ng-matrix"),
    "mem_latency_65536k": ("sysbench-memory", "stress-ng-pagefault"),
}


@dataclass(frozen=True)
class Why:
    """One micro-operation's cost against the baseline, beside what it explains."""

    platform: str
    operation: str
    comparison: Comparison
    explains: list[tuple[str, str, Comparison]]  # (workload, metric, its comparison)


#: kvmprobe exit -> the workloads whose guests make that kind of exit most
EXIT_EXPLAINS: dict[str, tuple[str, ...]] = {
    "pio": ("boot",),
    "mmio": ("fio-randread", "fio-randwrite", "fio-seqread", "fio-seqwrite", "iperf3-tcp",
             "sockperf-pingpong"),
    "ioeventfd": ("fio-randread", "fio-randwrite", "fio-seqread", "fio-seqwrite",
                  "iperf3-tcp", "sockperf-pingpong"),
    "hlt": ("sockperf-pingpong", "stress-ng-switch"),
    "cpuid": ("boot",),
    "pic": ("sockperf-pingpong",),
}
EXIT_HANDLED_BY = {"pio": "userspace (VMM)", "mmio": "userspace (VMM)",
                   "hlt": "userspace (VMM)", "cpuid": "kernel (KVM)",
                   "ioeventfd": "kernel (KVM, eventfd)", "pic": "kernel (in-kernel PIC)"}


@dataclass(frozen=True)
class ExitCost:
    """What one kind of VM exit costs on a host's /dev/kvm (kvmprobe), beside the
    workload overheads in this run that such exits help explain."""

    platform: str
    exit: str
    cpl: int
    handled_by: str
    summary: Summary  # ns per exit
    explains: list[tuple[str, str, str, Comparison]]  # (platform, workload, metric, cmp)


@dataclass
class Analysis:
    run: RunRecord
    platforms: list[str]  # columns, baseline first
    baseline: str | None  # column name of the baseline
    baseline_source: str | None  # "this run" or "RUN:PLATFORM"
    rows: list[MetricRow]
    category_scores: dict[str, dict[str, float]]  # platform -> category -> geomean
    overall: dict[str, float]
    warnings: list[str]
    platform_info: dict[str, dict[str, Any]]
    failures: list[dict[str, Any]] = field(default_factory=list)
    why: list[Why] = field(default_factory=list)
    exit_costs: list[ExitCost] = field(default_factory=list)
    #: platform -> its baseline; a run on several hosts compares each platform
    #: with the baseline of its own host (native@H or lab-native@H)
    baseline_of: dict[str, str] = field(default_factory=dict)
    #: platform -> category (and "overall") -> score with its interval
    scores: dict[str, dict[str, Score]] = field(default_factory=dict)
    #: per matrix: its variants ranked and its settings' effects (effects.py)
    effects: list[FamilyEffects] = field(default_factory=list)
    #: per platform and workload: what the collectors saw (where.py)
    where: list[TimeSplit] = field(default_factory=list)
    #: a fleet's hosts against their hardware siblings (runs over three or more
    #: identical hosts; siblings.py)
    fleet: list[Standing] = field(default_factory=list)
    #: tiled platforms: aggregate, scaling efficiency and fairness by guest count
    consolidation: list[Density] = field(default_factory=list)
    #: an interference study: each aggressor's effect on the victim against solo
    interference: list[Disturbance] = field(default_factory=list)
    #: each guest of each tile as the host saw it (host cores, steal)
    guest_shares: list[GuestShare] = field(default_factory=list)

    def compared(self) -> list[str]:
        """Platforms shown against a baseline, in column order."""
        return [p for p in self.platforms if p in self.baseline_of]

    def baseline_for(self, platform: str) -> str:
        return self.baseline_of.get(platform, self.baseline or "")

    def is_baseline(self, platform: str) -> bool:
        return platform == self.baseline or platform in self.baseline_of.values()

    @property
    def per_host(self) -> bool:
        return len(set(self.baseline_of.values())) > 1

    def workloads(self) -> list[str]:
        seen: dict[str, None] = {}
        for row in self.rows:
            seen.setdefault(row.workload, None)
        return list(seen)


def _category(workload: str) -> str:
    spec = CATALOGUE.get(workload)
    return str(spec.category) if spec else "other"


def _baseline_rows(store: Store, run: RunRecord, baseline: str | None,
                   platforms: list[str]) -> tuple[str | None, str | None, list[SampleRow],
                                                  list[str]]:
    """Resolve --baseline: a platform of this run, or RUN:PLATFORM from another run."""
    notes: list[str] = []
    if baseline is None:
        chosen = run.campaign.get("baseline") or next(
            (p for p in ("native", "lab-native") if p in platforms), None)
        if chosen and ":" in chosen:
            baseline = chosen
        elif chosen in platforms:
            return chosen, "this run", [], notes
        else:
            return None, None, [], notes
    if ":" not in baseline:
        if baseline not in platforms:
            raise UsageError(f"baseline {baseline!r} is not a platform of run {run.id} "
                             f"({', '.join(platforms)}); use RUN:PLATFORM for another run")
        return baseline, "this run", [], notes
    other_run, _, other_platform = baseline.rpartition(":")
    other_id = store.resolve(other_run)
    other = store.run(other_id)
    rows = [r for r in store.samples(other_id) if r.platform == other_platform]
    if not rows:
        raise UsageError(f"run {other_id} has no samples for platform {other_platform!r}")
    if other.fingerprint != run.fingerprint:
        notes.append(f"the baseline run {other_id} was measured on different hardware "
                     f"(fingerprint {other.fingerprint} vs {run.fingerprint}): ratios "
                     "compare machines, not only platforms")
    label = f"{other_platform}@{other_id}"
    return label, f"{other_id}:{other_platform}", [
        SampleRow(r.trial_id, r.seq, label, r.workload, r.repetition, r.metric, r.value,
                  r.unit, r.higher_is_better, r.metadata) for r in rows], notes


def analyse(store: Store, run_id: str, baseline: str | None = None,
            verdicts_only: bool = False) -> Analysis:
    """The run's analysis; ``verdicts_only`` (the stopping rule, at every look) leaves
    out what only a report needs: matrix effects (a bootstrap) and the time split."""
    run = store.run(run_id)
    platforms = [p["name"] for p in run.campaign["platforms"]]
    label, source, extra_rows, notes = _baseline_rows(store, run, baseline, platforms)
    rows = store.samples(run_id) + extra_rows
    baseline_of = {p: label for p in platforms if label and p != label}
    if baseline is None and not run.campaign.get("baseline"):
        per_host = _host_baselines(platforms)
        if len(set(per_host.values())) > 1:
            baseline_of = per_host
            label = next(iter(per_host.values()))
            source = "this run, per host"
    columns = ([label] if label else []) + [p for p in platforms if p != label]
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for series in group(rows):
        entry = by_key.setdefault((series.workload, series.metric), {
            "unit": series.unit, "higher": series.higher_is_better, "values": {}})
        entry["values"][series.platform] = series.values
    metric_rows = []
    margin = float(run.campaign.get("margin") or DEFAULT_MARGIN)
    for (workload, metric), entry in by_key.items():
        values: dict[str, tuple[float, ...]] = entry["values"]
        summaries = {p: summarize(v) for p, v in values.items()}
        comparisons = {}
        for platform, series_values in values.items():
            reference = baseline_of.get(platform)
            if reference not in values:
                continue
            if not has_ratio(values[reference]):  # a probe's cost below what it
                notes.append(f"{workload}/{metric}: the median on {reference} is 0 (below "
                             f"what it resolves): {platform} is not compared with it")
                continue  # resolves: a ratio to 0 says nothing
            comparisons[platform] = compare_at_look(
                series_values, values[reference], entry["higher"], run.campaign, margin)
        metric_rows.append(MetricRow(workload, _category(workload), metric, entry["unit"],
                                     entry["higher"], summaries, values, comparisons))
    scores = _scores(metric_rows, columns, label, set(baseline_of.values()))
    category_scores = {p: {c: s.value for c, s in found.items() if c != "overall"}
                       for p, found in scores.items()}
    overall = {p: found["overall"].value for p, found in scores.items() if "overall" in found}
    info = store.platform_info(run_id)
    trials = store.trials(run_id)
    failures = [t for t in trials if t["status"] not in ("ok", "skipped")]
    return Analysis(run, columns, label, source, metric_rows, category_scores, overall,
                    notes + _warnings(run, info, metric_rows, failures)
                    + integrity.implausible(metric_rows, baseline_of)
                    + integrity.clock_warnings(trials), info, failures,
                    _why(metric_rows), _exit_costs(metric_rows), baseline_of, scores,
                    [] if verdicts_only else _matrix_effects(run, metric_rows, baseline_of),
                    [] if verdicts_only else time_splits(trials, {
                        r.trial_id: r.value for r in rows
                        if r.metric == work_metric(r.workload)}),
                    [] if verdicts_only else standings(metric_rows,
                                                      classes_of(run.campaign, run.host)),
                    [] if verdicts_only else consolidation(metric_rows,
                                                           run.campaign["platforms"]),
                    interference(metric_rows, run.campaign["platforms"],
                                 lambda a, b, higher: compare_at_look(
                                     a, b, higher, run.campaign, margin)),
                    [] if verdicts_only else guest_shares(trials))


def _matrix_effects(run: RunRecord, rows: list[MetricRow], baseline_of: dict[str, str]
                    ) -> list[FamilyEffects]:
    """For each matrix of the campaign: its variants ranked, and its settings' effects."""
    families: dict[str, dict[str, dict[str, Any]]] = {}
    for spec in run.campaign["platforms"]:
        if spec.get("family") and spec.get("levels"):
            families.setdefault(spec["family"], {})[spec["name"]] = spec["levels"]
    found = [family_effects(name, levels, rows, baseline_of, seed=int(run.campaign.get(
        "seed", 1))) for name, levels in families.items()]
    return [f for f in found if f is not None]


def compare_at_look(candidate: tuple[float, ...], baseline: tuple[float, ...], higher: bool,
                    campaign: dict[str, Any], margin: float) -> Comparison:
    """The comparison at the last look the campaign's plan allows (verdicts.LookPlan): a
    budgeted run uses the first n_k samples of each side at the level look k spent, so
    its verdicts and intervals stay valid however many looks were taken."""
    plan = LookPlan.of_campaign(campaign, max(len(candidate), len(baseline)))
    look, n = plan.compare_at(len(candidate), len(baseline))
    result = compare(candidate[:n], baseline[:n], higher, alpha=plan.alpha_at(max(look, 1)),
                     margin=margin, looks=look)
    if look == 0:  # not at the first look yet: nothing may be concluded
        return replace(result, reachable=False, needed=plan.looks[0])
    return result


def _host_baselines(platforms: list[str]) -> dict[str, str]:
    """PLATFORM@HOST names: each platform's baseline is native@HOST or lab-native@HOST."""
    found = {}
    for platform in platforms:
        _name, at, host = platform.rpartition("@")
        if not at:
            continue
        for candidate in (f"native@{host}", f"lab-native@{host}"):
            if candidate in platforms and candidate != platform:
                found[platform] = candidate
                break
    return {p: b for p, b in found.items() if p not in found.values()}


def _exit_costs(rows: list[MetricRow]) -> list[ExitCost]:
    """kvmprobe's exit costs, each beside the guest workloads its exits slow down."""
    found = []
    for row in rows:
        if row.workload != "kvm-exits" or "_cpl" not in row.metric:
            continue
        kind, _, cpl = row.metric.rpartition("_cpl")
        explains = [(platform, other.workload, other.metric, comparison)
                    for other in rows if other.workload in EXIT_EXPLAINS.get(kind, ())
                    for platform, comparison in other.comparisons.items()]
        for platform, summary in row.summaries.items():
            found.append(ExitCost(platform, kind, int(cpl), EXIT_HANDLED_BY.get(kind, "?"),
                                  summary, explains))
    return found


def _why(rows: list[MetricRow]) -> list[Why]:
    """hvprobe's operation costs next to the workload overheads they explain."""
    probes = {row.metric: row for row in rows if row.workload == "hvprobe"}
    found = []
    for operation, workloads in EXPLAINS.items():
        probe = probes.get(operation)
        if probe is None:
            continue
        for platform, comparison in probe.comparisons.items():
            explains = [(row.workload, row.metric, row.comparisons[platform])
                        for row in rows if row.workload in workloads
                        and platform in row.comparisons]
            found.append(Why(platform, operation, comparison, explains))
    return found


def _scores(rows: list[MetricRow], columns: list[str], baseline: str | None,
            baselines: set[str] | None = None) -> dict[str, dict[str, Score]]:
    """Each compared platform's scores by category and overall (see scores.py)."""
    if baseline is None:
        return {}
    found: dict[str, dict[str, Score]] = {}
    for platform in columns:
        if platform == baseline or platform in (baselines or ()):
            continue
        per_workload: dict[str, list[Comparison]] = {}
        category_of: dict[str, str] = {}
        for row in rows:
            if platform in row.comparisons:
                per_workload.setdefault(row.workload, []).append(row.comparisons[platform])
                category_of[row.workload] = row.category
        if per_workload:  # else nothing comparable (e.g. the kvmprobe platform)
            found[platform] = platform_scores(per_workload, category_of)
    return found


def _warnings(run: RunRecord, info: dict[str, dict[str, Any]], rows: list[MetricRow],
              failures: list[dict[str, Any]]) -> list[str]:
    found: list[str] = []
    nested: dict[str, list[str]] = {}  # one line for all the platforms of a lab
    for text in sysinfo.warnings(run.host):
        found.append(f"host: {text}")
    for platform, details in info.items():
        system = details.get("system", {})
        for text in sysinfo.warnings(system):
            line = f"{platform}: {text}"
            if f"host: {text}" not in found:
                found.append(line)
        machine = details.get("machine", {})
        found.extend(f"{platform}: {text}" for text in machine.get("artifact_errors", []))
        if machine.get("accelerator") == "tcg":
            found.append(f"{platform}: QEMU used TCG (software emulation), not KVM: its "
                         "timings show that the pipeline works, not hypervisor performance")
        if machine.get("nested"):
            nested.setdefault(str(machine["nested"]), []).append(platform)
    found.extend(f"{', '.join(names)}: {text}" for text, names in nested.items())
    small = sorted({len(v) for row in rows for v in row.values.values()
                    if len(v) < MIN_CONFIDENT_N})
    if small:
        found.append(f"some series have only {', '.join(map(str, small))} samples: their "
                     f"confidence intervals are below 95% (use --reps {MIN_CONFIDENT_N} "
                     "or --reps auto)")
    flagged = sum(len(s.outliers) for row in rows for s in row.summaries.values())
    if flagged:
        found.append(f"{flagged} samples are flagged as outliers (modified z-score > 3.5); "
                     "they are kept in every statistic")
    noisy = [f"{row.workload}/{row.metric}@{p}" for row in rows
             for p, s in row.summaries.items() if s.cv > 0.10]
    if noisy:
        found.append(f"high variation (CV > 10%) in {len(noisy)} series, e.g. "
                     f"{', '.join(noisy[:3])}")
    measured_failures = [f for f in failures if not f["warmup"]]
    if measured_failures:
        found.append(f"{len(measured_failures)} trials failed; their reasons are listed "
                     "in the report and in 'hvbench export RUN --json'")
    return found

