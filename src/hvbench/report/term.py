"""Terminal report (rich): the answer first, then one compact table per host, readable
at 100 columns; medians, n and CV in the full results table behind ``--detail``.

Nothing is ever cut: names are short (a platform's host is its table's title, not part
of its column), cells hold at most two lines, and tables fold rather than truncate.
"""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..analysis import Analysis
from ..effects import Estimate
from ..scores import Score
from ..stats import Comparison, MetricRow, Summary
from ..where import THREAD_LABELS
from . import fleetview

VERDICT_STYLE = {"slower": "red", "faster": "green", "equivalent": "cyan",
                 "inconclusive": "dim"}


def number(value: float) -> str:
    """Compact, human-readable: 3,514 / 44.2 / 0.071."""
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.1:
        return f"{value:.3f}"
    return f"{value:.3g}"


def summary_cell(summary: Summary) -> str:
    return f"{number(summary.median)} (n={summary.n}, CV {summary.cv * 100:.1f}%)"


def comparison_cell(comparison: Comparison) -> Text:
    low, high = comparison.performance_ci
    text = f"{comparison.performance:.3f}× [{low:.3f}–{high:.3f}] {comparison.wording()}"
    return Text(text, style=VERDICT_STYLE[comparison.verdict.kind])


def compact_cell(comparison: Comparison) -> Text:
    """Two lines: relative performance and verdict mark, then the interval."""
    verdict = comparison.verdict
    low, high = comparison.performance_ci
    interval = f"[{_short(low)}–{_short(high)}]" if comparison.reachable else "[n too small]"
    return Text(f"{comparison.performance:.3f} {verdict.mark}\n{interval}",
                style=VERDICT_STYLE[verdict.kind])


def _short(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def score_cell(score: Score | None) -> str:
    """Two lines: the score, then its interval's half-width ("±?" when unknown)."""
    if score is None:
        return "—"
    spread = f"±{score.spread * 100:.0f}%" if score.known else "±?"
    return f"{score.value:.3f}\n{spread}"


def _host_of(analysis: Analysis, platform: str) -> str:
    """Where a platform ran: its @HOST suffix, else the run's host."""
    _name, at, host = platform.rpartition("@")
    return host if at else str(analysis.run.campaign.get("host") or "local")


def _short_name(platform: str) -> str:
    return platform.rpartition("@")[0] or platform


def answer_table(analysis: Analysis) -> RenderableType | None:
    """Per platform: the overall and per-category scores with their intervals, and how
    many series are slower, equivalent, faster or inconclusive."""
    if not analysis.scores:
        return None
    categories = sorted({c for found in analysis.scores.values() for c in found
                         if c != "overall"})
    names = _unique_short_names(list(analysis.scores))
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)
    table.add_column("platform", no_wrap=True,
                     min_width=max(len(n) for n in names.values()))
    for column in ("overall", *categories):  # a score's two lines are at most 7 wide
        table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
    for mark in ("▼", "=", "▲", "?"):
        table.add_column(mark, justify="right", no_wrap=True)
    for platform, found in analysis.scores.items():
        counts = {kind: 0 for kind in VERDICT_STYLE}
        for row in analysis.rows:
            if platform in row.comparisons:
                counts[row.comparisons[platform].verdict.kind] += 1
        table.add_row(names[platform], score_cell(found.get("overall")),
                      *(score_cell(found.get(c)) for c in categories),
                      *(str(counts[k]) for k in
                        ("slower", "equivalent", "faster", "inconclusive")))
    baselines = ", ".join(dict.fromkeys(analysis.baseline_for(p) for p in analysis.scores))
    heading = Text("The answer: performance relative to the baseline "
                   f"({baselines}): geometric means with their 95% CI; ▼ = ▲ ?: how many "
                   "series are slower, equivalent, faster, inconclusive", style="bold")
    return Group(heading, table)


def _unique_short_names(platforms: list[str]) -> dict[str, str]:
    """Platform names without their @HOST where that leaves them unambiguous."""
    short = [_short_name(p) for p in platforms]
    return {p: s if short.count(s) == 1 else p for p, s in zip(platforms, short, strict=True)}


def host_tables(analysis: Analysis) -> list[RenderableType]:
    """One table per host: its platforms (columns) against that host's baseline, under a
    heading that wraps at the console's width, not the narrow table's."""
    groups: dict[str, list[str]] = {}
    for platform in analysis.compared():
        groups.setdefault(analysis.baseline_for(platform), []).append(platform)
    tables: list[RenderableType] = []
    for baseline, platforms in groups.items():
        host = _host_of(analysis, platforms[0])
        names = ", ".join(_short_name(p) for p in platforms)
        tables.append(Text(f"On {host}: {names} vs {_short_name(baseline)} (baseline), "
                           "relative performance (> 1 is better)", style="italic"))
        table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("workload\nmetric", overflow="fold")
        for platform in platforms:
            table.add_column(_short_name(platform), no_wrap=True, justify="left")
        for row in analysis.rows:
            cells = [row.comparisons.get(p) for p in platforms]
            if not any(cells):
                continue
            table.add_row(_row_label(row), *(compact_cell(c) if c else Text("—")
                                             for c in cells))
        tables.append(table)
    return tables


def _row_label(row: MetricRow) -> str:
    return f"{row.workload}\n{row.metric} ({'↑' if row.higher_is_better else '↓'})"


def legend(analysis: Analysis) -> Text:
    margins = {c.margin for row in analysis.rows for c in row.comparisons.values()}
    looks = max((c.looks for row in analysis.rows for c in row.comparisons.values()),
                default=1)
    margin = f"±{min(margins) * 100:g}%" if margins else "the margin"
    text = (f"▼ slower  ▲ faster (significant)  = equivalent within {margin}  "
            "? inconclusive (--detail says why); [95% CI]; ↑/↓: higher/lower is better")
    if looks > 1:
        text += f"; up to {looks} looks at the data, error rates kept valid by alpha spending"
    return Text(text, style="dim")


def results_table(analysis: Analysis) -> Table:
    table = Table(title=f"Run {analysis.run.id} ({analysis.run.status})", title_justify="left",
                  header_style="bold", caption=_caption(analysis), caption_justify="left")
    for column in ("workload", "metric", "unit", "better"):
        table.add_column(column)
    for platform in analysis.platforms:
        suffix = " (baseline)" if analysis.is_baseline(platform) else ""
        table.add_column(f"{platform}{suffix}\nmedian", justify="right")
    others = analysis.compared()
    for platform in others:
        table.add_column(f"{platform} vs {analysis.baseline_for(platform)}\nrelative "
                         "performance [95% CI]", justify="left")
    for row in analysis.rows:
        cells: list[RenderableType] = [row.workload, row.metric, row.unit,
                                       "higher" if row.higher_is_better else "lower"]
        for platform in analysis.platforms:
            summary = row.summaries.get(platform)
            cells.append(summary_cell(summary) if summary else "—")
        for platform in others:
            comparison = row.comparisons.get(platform)
            cells.append(comparison_cell(comparison) if comparison else "—")
        table.add_row(*cells)
    return table


def _caption(analysis: Analysis) -> str | None:
    if not analysis.baseline or len(analysis.platforms) < 2:
        return None
    return ("relative performance > 1 is better than the baseline; 'slower by X%' means "
            "the same work takes X% longer")


def scores_table(analysis: Analysis) -> Table | None:
    if not analysis.category_scores:
        return None
    categories = sorted({c for scores in analysis.category_scores.values() for c in scores})
    against = "each host's baseline" if analysis.per_host else analysis.baseline
    table = Table(title=f"Scores vs {against} (geometric means of relative "
                        "performance; 1.000 = baseline)", title_justify="left",
                  header_style="bold")
    table.add_column("platform")
    for category in categories:
        table.add_column(category, justify="right")
    table.add_column("overall", justify="right")
    for platform, scores in analysis.category_scores.items():
        table.add_row(platform, *(f"{scores[c]:.3f}" if c in scores else "—"
                                  for c in categories),
                      f"{analysis.overall[platform]:.3f}")
    return table


def render(analysis: Analysis, detail: bool = False) -> RenderableType:
    """The answer, per-host tables and a legend; ``detail`` adds the full results table
    (medians, n, CV, verdicts in words) and the score table."""
    parts: list[RenderableType] = []
    answer = answer_table(analysis)
    if answer is not None:
        parts.append(answer)
    tables = host_tables(analysis)
    parts.extend(tables)
    if tables:
        parts.append(legend(analysis))
    if detail or not tables:
        parts.append(results_table(analysis))
        scores = scores_table(analysis)
        if scores is not None:
            parts.append(scores)
    if analysis.why:
        why = Table(title="Why: what single operations cost (hvprobe) beside the workloads "
                          "they explain", title_justify="left", header_style="bold")
        for column in ("platform", "operation", "relative cost [95% CI]", "explains"):
            why.add_column(column)
        for item in analysis.why:
            low, high = item.comparison.performance_ci
            explained = "; ".join(f"{w}/{m}: {c.wording()}" for w, m, c in item.explains)
            why.add_row(item.platform, item.operation,
                        f"{item.comparison.performance:.3f}× [{low:.3f}–{high:.3f}] "
                        f"{item.comparison.wording()}", explained or "—")
        parts.append(why)
    if analysis.exit_costs:
        costs = Table(title="Why: what a VM exit costs (kvmprobe on /dev/kvm) beside the "
                            "workloads whose guests make such exits", title_justify="left",
                      header_style="bold")
        for column in ("platform", "exit", "CPL", "handled by", "ns per exit (median [CI])",
                       "explains"):
            costs.add_column(column)
        for cost in analysis.exit_costs:
            summary = cost.summary
            explained = "; ".join(f"{p} {w}/{m}: {c.wording()}" for p, w, m, c in cost.explains)
            costs.add_row(cost.platform, cost.exit, str(cost.cpl), cost.handled_by,
                          f"{summary.median:,.0f} [{summary.ci_low:,.0f}–{summary.ci_high:,.0f}]",
                          explained or "—")
        parts.append(costs)
    parts.extend(effects_tables(analysis))
    if analysis.consolidation:
        parts.append(consolidation_table(analysis))
    if analysis.guest_shares:
        parts.append(guest_shares_table(analysis))
    if analysis.interference:
        parts.append(interference_table(analysis))
    fleet = fleetview.table(analysis.fleet, detail)
    if fleet is not None:
        parts.append(fleet)
    where = where_table(analysis)
    if where is not None:
        parts.append(where)
    if analysis.failures:
        failed = Table(title="Failed trials", title_justify="left", header_style="bold")
        for column in ("platform", "workload", "repetition", "status", "reason"):
            failed.add_column(column)
        for trial in analysis.failures:
            failed.add_row(trial["platform"], trial["workload"],
                           "warm-up" if trial["warmup"] else str(trial["repetition"] + 1),
                           trial["status"], Text(trial["reason"] or ""))
        parts.append(failed)
    if analysis.warnings:
        parts.append(Text("Warnings:", style="bold yellow"))
        parts.extend(Text(f"  • {w}", style="yellow") for w in analysis.warnings)
    return Group(*parts)


def consolidation_table(analysis: Analysis) -> Table:
    """Aggregate throughput, scaling efficiency and fairness against guest count."""
    table = Table(title="Consolidation: N guests at once against N × one guest "
                        "(efficiency 1: perfect scaling; fairness 1: equal shares)",
                  title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
    for column in ("platform", "guests", "workload · metric", "aggregate",
                   "efficiency [95% CI]", "fairness"):
        table.add_column(column)
    for density in analysis.consolidation:
        for point in density.points:
            e = point.efficiency
            table.add_row(density.family, str(point.guests),
                          f"{density.workload} · {density.metric}",
                          f"{point.aggregate:,.4g} {density.unit}",
                          "—" if e is None else
                          f"{e.ratio:.2f} [{e.ratio_low:.2f}–{e.ratio_high:.2f}]"
                          if e.reachable else f"{e.ratio:.2f} [n too small]",
                          f"{point.fairness:.3f}" if point.fairness is not None else "—")
    return table


def guest_shares_table(analysis: Analysis) -> Table:
    """Each guest of a tile as the host saw it: host cores and steal (medians)."""
    table = Table(title="Each guest of a tile as the host saw it (medians per trial; steal: "
                        "time its vCPUs waited for a host CPU)", title_justify="left",
                  header_style="bold", box=box.SIMPLE_HEAD)
    for column in ("platform", "workload", "guest", "host cores", "steal"):
        table.add_column(column)
    for g in analysis.guest_shares:
        table.add_row(g.platform, g.workload, g.guest,
                      f"{g.host_cores:.2f}" if g.host_cores is not None else "—",
                      f"{g.steal * 100:.1f}%" if g.steal is not None else "—")
    return table


def interference_table(analysis: Analysis) -> Table:
    """The victim with each aggressor beside it against solo: one row per platform and
    metric, one column per aggressor."""
    aggressors = list(dict.fromkeys(d.aggressor for d in analysis.interference))
    kinds = {d.aggressor: d.kind for d in analysis.interference}
    table = Table(title="Interference: the victim with each aggressor beside it against "
                        "solo (ratio of medians [95% CI], verdict)",
                  title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
    table.add_column("platform · workload · metric")
    for aggressor in aggressors:
        table.add_column(f"{aggressor}\n({kinds[aggressor]})")
    cells: dict[tuple[str, str, str], dict[str, str]] = {}
    for d in analysis.interference:
        c = d.comparison
        interval = f"[{c.ratio_low:.2f}–{c.ratio_high:.2f}]" if c.reachable else ""
        cells.setdefault((d.platform, d.workload, d.metric), {})[d.aggressor] = \
            f"×{c.ratio:.2f} {interval}\n{c.wording().split(':')[0]}"  # why: in JSON, HTML
    for (platform, workload, metric), row in cells.items():
        table.add_row(f"{platform} · {workload} · {metric}",
                      *(Text(row.get(a, "—")) for a in aggressors))
    return table


def _ratio(estimate: Estimate) -> str:
    return f"{estimate.value:.3f} [{estimate.low:.3f}–{estimate.high:.3f}]"


def effects_tables(analysis: Analysis) -> list[RenderableType]:
    """Per matrix: the variants ranked overall and per category, the main effect of
    each setting's levels, and the interactions that are significant."""
    found: list[RenderableType] = []
    for family in analysis.effects:
        table = Table(title=f"Which setting matters: matrix of {family.family} over "
                            f"{', '.join(family.settings)} (relative performance, 95% CI)",
                      title_justify="left", header_style="bold")
        for column in ("scope", "best variant", "effect of each setting level"):
            table.add_column(column)
        for scope in family.scopes:
            best, estimate = scope.ranking[0]
            effects = "\n".join(f"{e.setting}={e.level}: ×{_ratio(e.estimate)} "
                                 f"{e.estimate.verdict}" for e in scope.main)
            strong = [e for e in scope.interactions if e.estimate.verdict != "no "
                      "significant difference"]
            effects += "".join(f"\n{e.setting}={e.level} with {e.with_setting}="
                               f"{e.with_level}: ×{_ratio(e.estimate)} (interaction)"
                               for e in strong)
            table.add_row(scope.name, f"{best}\n{_ratio(estimate)}",
                          effects or "not a full factorial: ranking only")
        found.append(table)
    return found


def where_table(analysis: Analysis) -> Table | None:
    """Where the time goes: host CPU by thread kind, steal and interrupts (medians)."""
    if not analysis.where:
        return None
    table = Table(title="Where the time goes (medians per trial; cores: 1.0 = one host "
                        "core busy)", title_justify="left", header_style="bold")
    for column in ("platform", "workload", "host CPU by thread", "steal", "interrupts/s",
                   "per unit of work"):
        table.add_column(column)
    for split in analysis.where:
        cores = ", ".join(f"{THREAD_LABELS.get(k, k)} {v:.2f}" for k, v in
                          sorted(split.host_cores.items(), key=lambda kv: -kv[1]) if v >= 0.01)
        steal = split.kernel.get("steal_share")
        interrupts = split.kernel.get("intr_per_s")
        table.add_row(split.platform, split.workload, cores or "—",
                      f"{steal * 100:.1f}%" if steal is not None else "—",
                      f"{interrupts:,.0f}" if interrupts is not None else "—",
                      "; ".join(split.unit_words()) or "—")
    return table
