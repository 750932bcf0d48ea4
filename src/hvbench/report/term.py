"""Terminal tables of a run's results (rich)."""

from __future__ import annotations

from rich.table import Table

from ..stats import Series, group, summarize
from ..store import SampleRow


def _format(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.1:
        return f"{value:.3f}"
    return f"{value:.4g}"


def results_table(rows: list[SampleRow], platforms: list[str], title: str) -> Table:
    """Workload x metric rows, one column per platform: median, CV and n."""
    series = group(rows)
    by_key: dict[tuple[str, str], dict[str, Series]] = {}
    for item in series:
        by_key.setdefault((item.workload, item.metric), {})[item.platform] = item
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("workload")
    table.add_column("metric")
    table.add_column("unit")
    table.add_column("better", justify="center")
    for platform in platforms:
        table.add_column(f"{platform}\nmedian (CV, n)", justify="right")
    for (workload, metric), per_platform in by_key.items():
        first = next(iter(per_platform.values()))
        cells = []
        for platform in platforms:
            item = per_platform.get(platform)
            if item is None:
                cells.append("—")
                continue
            summary = summarize(item.values)
            cells.append(f"{_format(summary.median)} ({summary.cv * 100:.1f}%, {summary.n})")
        table.add_row(workload, metric, first.unit,
                      "higher" if first.higher_is_better else "lower", *cells)
    return table
