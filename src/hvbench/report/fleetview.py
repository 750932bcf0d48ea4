"""The fleet's hosts against their hardware siblings, as a terminal table (the chart is
charts.fleet_figure; the method is siblings.py)."""

from __future__ import annotations

from collections import Counter

from rich import box
from rich.table import Table

from ..siblings import ALPHA, THRESHOLD, Standing


def table(fleet: list[Standing], detail: bool = False,
          sources: dict[str, str] | None = None) -> Table | None:
    """Flagged hosts first; every host with ``detail``; a count of the rest otherwise.
    ``sources``: the run each host's results come from (a fleet across runs)."""
    if not fleet:
        return None
    flagged = [s for s in fleet if s.flagged]
    shown = fleet if detail else flagged
    groups = Counter((s.platform, s.fingerprint) for s in fleet)
    hosts = len({(s.host, s.fingerprint) for s in fleet})
    title = (f"Hosts against their hardware siblings: {len({s.host for s in flagged})} of "
             f"{hosts} hosts flagged (worse than the siblings' pooled results by more than "
             f"{THRESHOLD * 100:g}%, q ≤ {ALPHA:g} across {len(fleet)} "
             f"comparisons in {len(groups)} groups)")
    found = Table(title=title, title_justify="left", header_style="bold",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("host", "platform", "workload · metric", "vs siblings [95% CI]", "q", ""):
        found.add_column(column)
    for standing in shown:
        comparison = standing.comparison
        low, high = comparison.performance_ci
        host = standing.host + (f"\n(run {sources[standing.host]})"
                                if sources and standing.host in sources else "")
        found.add_row(host, standing.platform,
                      f"{standing.workload} · {standing.metric}",
                      f"{comparison.performance:.3f} [{low:.3f}–{high:.3f}]",
                      f"{standing.q:.3g}", "▼ slower" if standing.flagged else "")
    if not shown:
        found.add_row("—", "", "no host stands out from its siblings", "", "", "")
    return found
