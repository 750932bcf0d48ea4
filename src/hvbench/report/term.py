"""Terminal tables in the shape of the classic studies (rich)."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..analysis import Analysis
from ..stats import Comparison, Summary


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
    if not comparison.significant:
        return Text(text, style="dim")
    return Text(text, style="green" if comparison.change > 0 else "red")


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


def render(analysis: Analysis) -> RenderableType:
    parts: list[RenderableType] = [results_table(analysis)]
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
