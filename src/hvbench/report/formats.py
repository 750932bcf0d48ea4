"""Markdown, CSV and JSON renderings of an Analysis."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from typing import Any

from ..analysis import Analysis
from ..stats import Comparison
from .term import number


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def markdown(analysis: Analysis) -> str:
    others = analysis.compared() if analysis.baseline \
        else []
    header = ["workload", "metric", "unit", "better",
              *(f"{p} median [95% CI]" for p in analysis.platforms),
              *(f"{p} vs {analysis.baseline_for(p)}" for p in others)]
    lines = [f"# hvbench run {analysis.run.id}", ""]
    if analysis.baseline:
        lines += [f"Baseline: **{_md_escape(analysis.baseline)}** ({analysis.baseline_source})."
                  " Relative performance > 1 is better.", ""]
        for platform, score in analysis.overall.items():
            lines.append(f"- **{_md_escape(platform)}**: overall {score:.3f}× "
                         + ", ".join(f"{c} {s:.3f}×" for c, s in
                                     analysis.category_scores[platform].items()))
        lines.append("")
    table = []
    for row in analysis.rows:
        cells = [row.workload, row.metric, row.unit,
                 "higher" if row.higher_is_better else "lower"]
        for platform in analysis.platforms:
            s = row.summaries.get(platform)
            cells.append(f"{number(s.median)} [{number(s.ci_low)}–{number(s.ci_high)}] "
                         f"(n={s.n})" if s else "—")
        for platform in others:
            c = row.comparisons.get(platform)
            cells.append(f"{c.performance:.3f}× [{c.performance_ci[0]:.3f}–"
                         f"{c.performance_ci[1]:.3f}] {c.wording()}" if c else "—")
        table.append(cells)
    lines += _table(header, table) + _many_guests(analysis)
    if analysis.warnings:
        lines += ["", "## Warnings", ""] + [f"- {_md_escape(w)}" for w in analysis.warnings]
    return "\n".join(lines) + "\n"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(map(_md_escape, header)) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(map(_md_escape, row)) + " |" for row in rows)]


def _interval(comparison: Comparison | None, digits: int) -> str:
    if comparison is None:
        return "—"
    if not comparison.reachable:
        return f"{comparison.ratio:.{digits}f} [n too small]"
    return (f"{comparison.ratio:.{digits}f} [{comparison.ratio_low:.{digits}f}–"
            f"{comparison.ratio_high:.{digits}f}]")


def _section(heading: str | None, intro: str, header: list[str], rows: list[list[str]]
             ) -> list[str]:
    return (["", f"## {heading}"] if heading else []) + ["", intro, ""] + _table(header, rows)


def _many_guests(analysis: Analysis) -> list[str]:
    """The Consolidation and Interference sections, when the run has them."""
    lines: list[str] = []
    if analysis.consolidation:
        lines += _section(
            "Consolidation", "N guests at once against N × one guest (efficiency 1: perfect "
            "scaling; fairness: Jain's index, 1 = equal shares).",
            ["platform", "guests", "workload", "metric", "aggregate", "efficiency [95% CI]",
             "fairness"],
            [[d.family, str(p.guests), d.workload, d.metric, f"{number(p.aggregate)} {d.unit}",
              _interval(p.efficiency, 2), "—" if p.fairness is None else f"{p.fairness:.3f}"]
             for d in analysis.consolidation for p in d.points])
    if analysis.guest_shares:
        lines += _section(
            None, "Each guest of a tile as the host saw it (medians per trial; steal: time "
            "its vCPUs waited for a host CPU).", ["platform", "workload", "guest", "host cores",
                                                  "steal"],
            [[g.platform, g.workload, g.guest,
              "—" if g.host_cores is None else f"{g.host_cores:.2f}",
              "—" if g.steal is None else f"{g.steal * 100:.1f}%"] for g in analysis.guest_shares])
    if analysis.interference:
        lines += _section(
            "Interference", "The victim with each aggressor beside it against solo (its "
            "neighbours idle): ratio of medians [95% CI] and verdict.",
            ["platform", "aggressor", "kind", "workload", "metric", "with / solo [95% CI]",
             "verdict"],
            [[d.platform, d.aggressor, d.kind, d.workload, d.metric, _interval(d.comparison, 3),
              d.comparison.wording()] for d in analysis.interference])
    return lines


def records(analysis: Analysis) -> list[dict[str, Any]]:
    """One flat record per workload, metric and platform."""
    found = []
    for row in analysis.rows:
        for platform, s in row.summaries.items():
            c = row.comparisons.get(platform)
            found.append({
                "workload": row.workload, "category": row.category, "metric": row.metric,
                "unit": row.unit, "higher_is_better": row.higher_is_better,
                "platform": platform, "baseline": analysis.is_baseline(platform),
                "n": s.n, "median": s.median, "ci_low": s.ci_low, "ci_high": s.ci_high,
                "ci_level": s.ci_level, "mean": s.mean, "stdev": s.stdev, "cv": s.cv,
                "min": s.minimum, "max": s.maximum, "outliers": len(s.outliers),
                "ratio": c.ratio if c else None,
                "relative_performance": c.performance if c else None,
                "relative_performance_ci_low": c.performance_ci[0] if c else None,
                "relative_performance_ci_high": c.performance_ci[1] if c else None,
                "p_value": c.p_value if c else None,
                "significant": c.significant if c else None,
                "verdict": c.wording() if c else None,
            })
    return found


def to_csv(analysis: Analysis) -> str:
    rows = records(analysis)
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def to_json(analysis: Analysis) -> str:
    return json.dumps({
        "run": analysis.run.id, "status": analysis.run.status,
        "baseline": analysis.baseline, "baseline_source": analysis.baseline_source,
        "overall": analysis.overall, "category_scores": analysis.category_scores,
        "warnings": analysis.warnings, "results": records(analysis),
        "failures": [{k: t[k] for k in ("platform", "workload", "repetition", "warmup",
                                        "status", "reason")} for t in analysis.failures],
        "host": analysis.run.host, "platforms": analysis.platform_info,
        "effects": [dataclasses.asdict(family) for family in analysis.effects],
        "where": [{**dataclasses.asdict(split), "reading": split.reading()}
                  for split in analysis.where],
        "consolidation": [{
            "family": d.family, "workload": d.workload, "metric": d.metric, "unit": d.unit,
            "points": [{"platform": p.platform, "guests": p.guests, "aggregate": p.aggregate,
                        "efficiency": None if p.efficiency is None else {
                            "ratio": p.efficiency.ratio, "low": p.efficiency.ratio_low,
                            "high": p.efficiency.ratio_high},
                        "fairness": p.fairness} for p in d.points]}
            for d in analysis.consolidation],
        "guest_shares": [dataclasses.asdict(g) for g in analysis.guest_shares],
        "interference": [{
            "platform": d.platform, "condition": d.condition, "aggressor": d.aggressor,
            "kind": d.kind, "where": d.where, "workload": d.workload, "metric": d.metric,
            "unit": d.unit, "ratio": d.comparison.ratio, "low": d.comparison.ratio_low,
            "high": d.comparison.ratio_high, "p_value": d.comparison.p_value,
            "significant": d.comparison.significant, "degradation_pct": d.degradation,
            "verdict": d.comparison.wording()} for d in analysis.interference],
    }, indent=1, default=str) + "\n"
