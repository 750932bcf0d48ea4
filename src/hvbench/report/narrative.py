"""The sentences a study says about its numbers, in the report's language.

Every sentence states only what the analysis supports: a difference is called slower
or faster only when its confidence interval excludes 1, equivalent only when the
interval lies inside the margin, and otherwise "not significant" or "no conclusion"
with the reason. Two platforms are called apart only when their intervals do not
overlap (a conservative test). Numbers are the analysis's own, formatted by the
language (see i18n.py); the tests read them back from the PDF.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..analysis import Analysis
from ..scores import Score
from ..stats import Comparison
from ..verdicts import DEFAULT_MARGIN
from ..where import TimeSplit
from .i18n import Language

#: the order results are told in
CATEGORY_ORDER = ("cpu", "memory", "disk", "network", "micro", "app", "other")
#: decimals of scores and their intervals in sentences and tables
SCORE_DIGITS = 3


def N_(message: str) -> str:
    """Marks a message for the catalogues where it is translated later."""
    return message


CATEGORY_NAMES = {
    "cpu": N_("CPU"), "memory": N_("memory"), "disk": N_("disk"), "network": N_("network"),
    "micro": N_("micro-operations (VM exit level)"), "app": N_("application"),
    "other": N_("other"), "overall": N_("all workloads"),
}
#: why each category matters for virtualization: the mechanism it exercises
CATEGORY_MECHANISMS = {
    "cpu": N_("User-mode instructions run directly on the processor in guest mode under "
              "hardware virtualization; only privileged operations leave it (a VM exit). "
              "CPU-bound work should therefore run close to bare metal, unless the guest "
              "is emulated instruction by instruction (QEMU's TCG) or waits for a "
              "physical CPU (steal time)."),
    "memory": N_("A guest's memory accesses are translated twice: guest virtual to guest "
                 "physical by the guest's page tables, then to host physical by nested "
                 "paging (Intel EPT, AMD NPT) or by shadow page tables. TLB misses and page "
                 "faults cost more; hugepages and PV page tables change how much."),
    "disk": N_("An emulated disk controller traps every register access to the device "
               "model in userspace (QEMU). Paravirtual disks (virtio, Xen's blkfront) "
               "queue requests in rings shared with the host and notify it once per "
               "batch, so they cost far fewer exits per I/O."),
    "network": N_("Each packet crosses the guest's driver, a notification to the host and "
                  "the host's backend (QEMU, vhost-net in the kernel, or Xen's netback in "
                  "dom0). Latency shows the cost of each crossing; throughput shows how "
                  "well they are batched."),
    "micro": N_("Micro-operations measure one mechanism at a time: a system call, a page "
                "fault, a context switch, a time read, CPUID (which always exits). They "
                "explain the larger workloads' overheads."),
    "app": N_("Applications mix computation, memory and I/O as real programs do; their "
              "overhead is the sum of the mechanisms above in their proportions."),
    "other": N_("Workloads outside the standard categories."),
}

#: in one line, why a category's workloads matter when choosing a hypervisor
CATEGORY_STAKES = {
    "cpu": N_("shows whether guest code runs at native speed (it should, under "
              "hardware virtualization)"),
    "memory": N_("shows the cost of nested paging and TLB misses"),
    "disk": N_("shows the I/O path: emulated device, paravirtual ring or host backend"),
    "network": N_("shows the cost of each notification and of the host's network "
                  "backend"),
    "micro": N_("measures single operations that exit to the hypervisor or depend on it"),
    "app": N_("shows what a real program pays for all of the above"),
    "other": N_("outside the standard categories"),
}


@dataclass(frozen=True)
class Counts:
    """How a platform's series in one category came out."""

    slower: int = 0
    faster: int = 0
    equivalent: int = 0
    inconclusive: int = 0

    @property
    def total(self) -> int:
        return self.slower + self.faster + self.equivalent + self.inconclusive


def category_name(t: Language, category: str) -> str:
    return t._(CATEGORY_NAMES.get(category, category))


def categories(analysis: Analysis) -> list[str]:
    """The run's categories in the study's order."""
    found = {row.category for row in analysis.rows}
    return [c for c in CATEGORY_ORDER if c in found] + sorted(found - set(CATEGORY_ORDER))


def comparisons(analysis: Analysis, platform: str, category: str | None) -> list[Comparison]:
    """A platform's comparisons in one category (None: all)."""
    return [row.comparisons[platform] for row in analysis.rows
            if platform in row.comparisons and (category is None or row.category == category)]


def counts(analysis: Analysis, platform: str, category: str | None) -> Counts:
    tally = Counter(c.verdict.kind for c in comparisons(analysis, platform, category))
    return Counts(tally["slower"], tally["faster"], tally["equivalent"], tally["inconclusive"])


def margin_of(analysis: Analysis) -> float:
    """The run's equivalence margin (as a fraction)."""
    margins = {c.margin for row in analysis.rows for c in row.comparisons.values()}
    return margins.pop() if len(margins) == 1 else DEFAULT_MARGIN


def score_text(t: Language, score: Score) -> str:
    return t.fixed(score.value, SCORE_DIGITS)


def change_text(t: Language, performance: float) -> str:
    """'12.3%' for a change below a factor of two, else the factor ('3.40×')."""
    worse = performance < 1
    factor = 1 / performance if worse else performance
    if factor >= 2:
        return t.fixed(factor, 2) + "×"
    return t.percent((factor - 1) * 100)


def verdict_text(t: Language, comparison: Comparison) -> str:
    """One comparison's verdict in words: '12.3% slower', '2.10× faster', 'equivalent
    (within ±2%)', 'inconclusive: too few samples (n=3; need 4)' (as wording() says it
    in English)."""
    verdict = comparison.verdict
    margin = t.percent(comparison.margin * 100, 0)
    if verdict.kind == "equivalent":
        return t._("equivalent (within ±{margin})").format(margin=margin)
    if verdict.kind == "inconclusive":
        if not comparison.reachable:
            return t._("inconclusive: too few samples (n={n}; need {needed})").format(
                n=t.integer(min(comparison.n_candidate, comparison.n_baseline)),
                needed=t.integer(comparison.needed))
        return t._("inconclusive: too noisy (the interval spans 1 and leaves ±{margin})"
                   ).format(margin=margin)
    return performance_words(t, comparison.performance)


def performance_words(t: Language, performance: float) -> str:
    """'12.3% slower' or '2.10× faster' for a relative performance (> 1: better)."""
    change = change_text(t, performance)
    if performance < 1:
        return t._("{change} slower").format(change=change)
    return t._("{change} faster").format(change=change)


def overall_clause(t: Language, performance: float, baseline: str, workloads: int) -> str:
    """'12.3% slower than native, geometric mean over 6 workloads'."""
    values = {"change": change_text(t, performance), "baseline": baseline,
              "count": t.integer(workloads)}
    if performance < 1:
        return t._("{change} slower than {baseline}, geometric mean over {count} "
                   "workloads").format(**values)
    return t._("{change} faster than {baseline}, geometric mean over {count} "
               "workloads").format(**values)


def score_sentence(t: Language, analysis: Analysis, platform: str, category: str) -> str:
    """What a platform's score in a category (or "overall") supports."""
    score = analysis.scores[platform][category]
    values = {"platform": platform, "baseline": analysis.baseline_for(platform),
              "category": category_name(t, category), "score": score_text(t, score)}
    margin = margin_of(analysis)
    if not score.known:
        return t._("On the {category} workloads, {platform} scores {score} against "
                   "{baseline}, but some of its series have too few samples for a confidence "
                   "interval, so this run draws no conclusion there.").format(**values)
    values |= {"low": t.fixed(score.low, SCORE_DIGITS), "high": t.fixed(score.high, SCORE_DIGITS),
               "margin": t.percent(margin * 100, 0)}
    if score.high < 1:
        return t._("On the {category} workloads, {platform} is {change} slower than "
                   "{baseline} (score {score}, 95% CI {low} to {high}).").format(
            change=change_text(t, score.value), **values)
    if score.low > 1:
        return t._("On the {category} workloads, {platform} is {change} faster than "
                   "{baseline} (score {score}, 95% CI {low} to {high}).").format(
            change=change_text(t, score.value), **values)
    if 1 / (1 + margin) <= score.low and score.high <= 1 + margin:
        return t._("On the {category} workloads, {platform} is equivalent to {baseline} "
                   "within ±{margin} (score {score}, 95% CI {low} to {high}).").format(**values)
    return t._("On the {category} workloads, the difference between {platform} and "
               "{baseline} is not significant (score {score}, 95% CI {low} to {high} "
               "includes 1).").format(**values)


def counts_sentence(t: Language, analysis: Analysis, platform: str,
                    category: str | None) -> str:
    tally = counts(analysis, platform, category)
    return t._("Its {total} series: {slower} significantly slower, {faster} "
               "significantly faster, {equivalent} equivalent within ±{margin}, "
               "{inconclusive} inconclusive.").format(
        total=t.integer(tally.total), slower=t.integer(tally.slower),
        faster=t.integer(tally.faster), equivalent=t.integer(tally.equivalent),
        inconclusive=t.integer(tally.inconclusive),
        margin=t.percent(margin_of(analysis) * 100, 0))


def _overlap(a: Score, b: Score) -> bool:
    return a.low <= b.high and b.low <= a.high


def pair_sentences(t: Language, analysis: Analysis, category: str) -> list[str]:
    """Platforms measured against the same baseline, told apart only when their
    intervals do not overlap."""
    found = []
    scored = [p for p in analysis.compared() if category in analysis.scores.get(p, {})]
    for index, first in enumerate(scored):
        for second in scored[index + 1:]:
            if analysis.baseline_for(first) != analysis.baseline_for(second):
                continue
            a, b = analysis.scores[first][category], analysis.scores[second][category]
            if not (a.known and b.known):
                continue
            if _overlap(a, b):
                found.append(t._("The intervals of {first} and {second} overlap: this run "
                                 "does not tell them apart on these workloads.").format(
                    first=first, second=second))
            else:
                ahead, behind = (first, second) if a.value > b.value else (second, first)
                found.append(t._("{ahead} does better than {behind} on these workloads "
                                 "(their intervals do not overlap).").format(
                    ahead=ahead, behind=behind))
    return found


def category_paragraph(t: Language, analysis: Analysis, category: str) -> list[str]:
    """The narrative of one results section."""
    sentences = []
    for platform in analysis.compared():
        if category in analysis.scores.get(platform, {}):
            sentences.append(score_sentence(t, analysis, platform, category))
            sentences.append(counts_sentence(t, analysis, platform, category))
    sentences += pair_sentences(t, analysis, category)
    if not sentences:
        sentences.append(t._("No platform was compared with a baseline on these workloads."))
    return sentences


def where_sentence(t: Language, split: TimeSplit) -> str | None:
    """The hypervisor's work per unit of the workload's work, where it was counted."""
    unit = split.work_unit
    if not unit:
        return None
    exits, cpu = split.per_unit.get("exits"), split.per_unit.get("host_cpu_us")
    values = {"platform": split.platform, "workload": split.workload, "unit": unit}
    if exits is not None and cpu is not None:
        return t._("In {platform}'s {workload} trials, each {unit} cost {exits} VM exits "
                   "and {cpu} µs of host CPU.").format(
            exits=t.number(exits, 2), cpu=t.number(cpu, 1), **values)
    if cpu is not None:
        return t._("In {platform}'s {workload} trials, each {unit} cost {cpu} µs of "
                   "host CPU.").format(cpu=t.number(cpu, 1), **values)
    return None


def threats(t: Language, analysis: Analysis) -> list[str]:
    """The run's threats to validity, as sentences."""
    found = []
    machines = {p: i.get("machine", {}) for p, i in analysis.platform_info.items()}
    tcg = [p for p, m in machines.items() if m.get("accelerator") == "tcg" and not m.get("nested")]
    if tcg:
        found.append(t._("{platforms} ran under QEMU's TCG emulation, not hardware "
                         "virtualization: their numbers show that the method works, not a "
                         "hypervisor's performance.").format(platforms=", ".join(tcg)))
    nested = [p for p, m in machines.items() if m.get("nested")]
    if nested:
        found.append(t._("{platforms} ran inside a lab nested under QEMU TCG: they compare "
                         "the lab's host with its guests and prove real code paths, not real "
                         "hypervisor performance.").format(platforms=", ".join(nested)))
    series = [len(v) for row in analysis.rows for v in row.values.values()]
    few = sum(1 for n in series if n < 5)
    if few:
        found.append(t._("{count} of {total} series have fewer than 5 samples: their "
                         "intervals are wide or cannot be computed.").format(
            count=t.integer(few), total=t.integer(len(series))))
    noisy = sum(1 for row in analysis.rows for s in row.summaries.values() if s.cv > 0.10)
    if noisy:
        found.append(t._("{count} series varied by more than 10% (coefficient of "
                         "variation): the host was noisy or the workload is.").format(
            count=t.integer(noisy)))
    failed = [f for f in analysis.failures if not f.get("warmup")]
    if failed:
        found.append(t._("{count} trials failed; their reasons are listed in the "
                         "appendix.").format(count=t.integer(len(failed))))
    if not found:
        found.append(t._("No threat to validity was recorded for this run."))
    return found
