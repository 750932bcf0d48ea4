"""Charts with matplotlib: inline SVG for the HTML report, PNG files on request.

Drawn with the Agg/SVG backends only (no display). Colours are fixed per
platform position so every chart of a report uses the same key.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import font_manager
from matplotlib.figure import Figure

from ..analysis import Analysis
from ..consolidation import Density
from ..effects import FamilyEffects
from ..errors import UsageError
from ..interference import Disturbance
from ..siblings import Standing
from ..stats import MetricRow
from ..where import EXIT_KINDS, THREAD_LABELS, TimeSplit

PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3",
           "#8c8c8c"]
#: the family that draws CJK text (Debian's fonts-noto-cjk)
CJK_FONT = "Noto Sans CJK SC"


def colour(analysis: Analysis, platform: str) -> str:
    return PALETTE[analysis.platforms.index(platform) % len(PALETTE)]


def overview(analysis: Analysis) -> Figure | None:
    """Relative performance per workload and metric, with 95% CI error bars."""
    if not analysis.baseline:
        return None
    rows = [r for r in analysis.rows if r.comparisons]
    if not rows or not analysis.compared():
        return None
    against = "each host's baseline" if analysis.per_host else analysis.baseline
    return relative_figure(analysis, rows, f"relative performance vs {against} (> 1 is better)")


def relative_figure(analysis: Analysis, rows: list[MetricRow], xlabel: str) -> Figure:
    """Each row's relative performance per compared platform, with its interval."""
    others = [p for p in analysis.compared() if any(p in r.comparisons for r in rows)]
    figure, axes = plt.subplots(figsize=(9, 0.45 * len(rows) * len(others) + 1.4))
    labels = [f"{r.workload} · {r.metric}" for r in rows]
    height = 0.8 / len(others)
    for index, platform in enumerate(others):
        y = np.arange(len(rows)) + index * height
        values, low, high = [], [], []
        for row in rows:
            comparison = row.comparisons.get(platform)
            if comparison is None:
                values.append(np.nan)
                low.append(0.0)
                high.append(0.0)
                continue
            ci_low, ci_high = comparison.performance_ci
            values.append(comparison.performance)
            low.append(max(comparison.performance - ci_low, 0))
            high.append(max(ci_high - comparison.performance, 0))
        axes.barh(y, values, height=height, color=colour(analysis, platform), label=platform,
                  xerr=[low, high], capsize=3, error_kw={"elinewidth": 1})
    axes.axvline(1.0, color="black", linewidth=1)
    axes.set_yticks(np.arange(len(rows)) + height * (len(others) - 1) / 2, labels)
    axes.invert_yaxis()
    axes.set_xlabel(xlabel)
    axes.legend(loc="lower right", fontsize="small")
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return figure


@contextlib.contextmanager
def fonts_for_text() -> Iterator[None]:
    """Charts whose labels may be in any language: Noto CJK (fonts-noto-cjk) behind
    DejaVu for the glyphs DejaVu lacks. A font installed after matplotlib built its
    font cache is added by file, so no glyph is drawn as a box."""
    names = {entry.name for entry in font_manager.fontManager.ttflist}
    if CJK_FONT not in names:
        for path in sorted(Path("/usr/share/fonts").glob("**/NotoSansCJK-*.tt[cf]")):
            font_manager.fontManager.addfont(str(path))
    with matplotlib.rc_context({"font.family": ["DejaVu Sans", CJK_FONT]}):
        yield


def workload_figure(analysis: Analysis, workload: str) -> Figure:
    """Per metric: median bars with 95% CI error bars and every raw sample as a dot."""
    rows = [r for r in analysis.rows if r.workload == workload]
    figure, axes_list = plt.subplots(1, len(rows), figsize=(3.2 * len(rows) + 0.6, 3.2),
                                     squeeze=False)
    rng = np.random.default_rng(0)  # jitter only; fixed so charts are reproducible
    for axes, row in zip(axes_list[0], rows, strict=True):
        platforms = [p for p in analysis.platforms if p in row.summaries]
        for x, platform in enumerate(platforms):
            summary = row.summaries[platform]
            axes.bar(x, summary.median, color=colour(analysis, platform),
                     yerr=[[summary.median - summary.ci_low], [summary.ci_high - summary.median]],
                     capsize=4)
            points = np.asarray(row.values[platform])
            axes.scatter(x + rng.uniform(-0.18, 0.18, points.size), points, s=9,
                         color="black", alpha=0.6, zorder=3)
        axes.set_xticks(range(len(platforms)), platforms, rotation=20, fontsize="small")
        axes.set_title(f"{row.metric}\n({row.unit}, {'higher' if row.higher_is_better else 'lower'}"
                       " is better)", fontsize="small")
        axes.grid(axis="y", alpha=0.3)
    figure.suptitle(workload, fontsize="medium")
    figure.tight_layout()
    return figure


def effects_figure(family: FamilyEffects) -> Figure:
    """The main effect of every setting level over all workloads, with its 95% CI:
    bars right of 1 help, left of 1 hurt."""
    overall = family.scopes[0]
    effects = overall.main
    figure, axes = plt.subplots(figsize=(8, 0.4 * len(effects) + 1.2))
    positions = np.arange(len(effects))
    values = [e.estimate.value for e in effects]
    errors = [[v - e.estimate.low for v, e in zip(values, effects, strict=True)],
              [e.estimate.high - v for v, e in zip(values, effects, strict=True)]]
    colours = ["#55a868" if e.estimate.verdict == "better" else "#c44e52"
               if e.estimate.verdict == "worse" else "#8c8c8c" for e in effects]
    axes.barh(positions, [v - 1 for v in values], left=1, xerr=errors, color=colours,
              capsize=3)
    axes.axvline(1, color="black", linewidth=0.8)
    axes.set_yticks(positions, [f"{e.setting}={e.level}" for e in effects])
    axes.invert_yaxis()
    axes.set_xlabel(f"effect on performance relative to bare metal ({overall.name})")
    figure.tight_layout()
    return figure


def _stacked(axes: Any, splits: list[TimeSplit], parts: list[tuple[str, str]],
             value: Callable[[TimeSplit, str], float], xlabel: str) -> None:
    """One horizontal bar per platform and workload, stacked by ``parts`` (key, label)."""
    left = np.zeros(len(splits))
    for index, (key, label) in enumerate(parts):
        values = np.array([value(split, key) for split in splits])
        axes.barh(np.arange(len(splits)), values, left=left,
                  color=PALETTE[index % len(PALETTE)], label=label)
        left += values
    axes.set_yticks(np.arange(len(splits)), [f"{s.workload} · {s.platform}" for s in splits])
    axes.invert_yaxis()
    axes.set_xlabel(xlabel)
    axes.legend(loc="lower right", fontsize="small")
    axes.grid(axis="x", alpha=0.3)


def where_figure(analysis: Analysis) -> Figure | None:
    """Where the time goes: host CPU by thread kind for each platform and workload
    (stacked, in cores) and, where KVM counted them, exits by kind per unit of work."""
    cpu = [s for s in analysis.where if s.host_cores]
    exits = [s for s in analysis.where if any(k != "exits" and k in EXIT_KINDS
                                               for k in s.per_unit)]
    panels = [panel for panel in (cpu, exits) if panel]
    if not panels:
        return None
    figure, axes_list = plt.subplots(
        1, len(panels), figsize=(5.5 * len(panels), 0.4 * max(map(len, panels)) + 1.6),
        squeeze=False)
    axes_iter = iter(axes_list[0])
    if cpu:
        kinds = [k for k in (*THREAD_LABELS, "domain") if any(k in s.host_cores for s in cpu)]
        _stacked(next(axes_iter), cpu, [(k, THREAD_LABELS.get(k, k)) for k in kinds],
                 lambda split, key: split.host_cores.get(key, 0.0),
                 "host cores busy for the guest")
    if exits:
        kinds = [k for k in EXIT_KINDS[1:] if any(k in s.per_unit for s in exits)]
        _stacked(next(axes_iter), exits, [(k, k) for k in kinds],
                 lambda split, key: split.per_unit.get(key, 0.0),
                 "VM exits per unit of work, by kind")
    figure.tight_layout()
    return figure


def to_svg(figure: Figure) -> str:
    """Inline SVG without the XML prolog, DOCTYPE or metadata links."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None,
                                                   "Format": None, "Type": None})
    plt.close(figure)
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    return re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)


def fleet_figure(fleet: list[Standing]) -> Figure | None:
    """Each host's relative performance against its siblings per workload and metric,
    flagged hosts in red."""
    if not fleet:
        return None
    series = list(dict.fromkeys((s.platform, s.workload, s.metric) for s in fleet))
    plot, axes = plt.subplots(figsize=(9, 0.5 * len(series) + 1.4))
    for y, key in enumerate(series):
        for standing in (s for s in fleet if (s.platform, s.workload, s.metric) == key):
            comparison = standing.comparison
            low, high = comparison.performance_ci
            colour = PALETTE[3] if standing.flagged else PALETTE[7]
            axes.errorbar(comparison.performance, y, xerr=[[comparison.performance - low],
                                                           [high - comparison.performance]],
                          fmt="o", color=colour, capsize=3)
            if standing.flagged:
                axes.annotate(standing.host, (comparison.performance, y),
                              textcoords="offset points", xytext=(0, 7), ha="center",
                              fontsize="small", color=colour)
    axes.axvline(1.0, color="black", linewidth=1)
    axes.set_yticks(np.arange(len(series)), [f"{p} · {w} · {m}" for p, w, m in series])
    axes.invert_yaxis()
    axes.set_xlabel("each host against its hardware siblings (> 1 is better)")
    axes.grid(axis="x", alpha=0.3)
    plot.tight_layout()
    return plot


def consolidation_figure(densities: list[Density]) -> Figure | None:
    """Aggregate throughput and scaling efficiency against the number of guests, one
    line per platform family and metric."""
    if not densities:
        return None
    figure, (total, efficiency) = plt.subplots(1, 2, figsize=(10, 3.6))
    for index, density in enumerate(densities):
        colour = PALETTE[index % len(PALETTE)]
        label = f"{density.family} · {density.workload} · {density.metric}"
        points = sorted(density.points, key=lambda p: p.guests)
        total.plot([p.guests for p in points], [p.aggregate for p in points], "o-",
                   color=colour, label=label)
        judged = [p for p in points if p.efficiency is not None]
        efficiency.errorbar(
            [p.guests for p in judged], [p.efficiency.ratio for p in judged if p.efficiency],
            yerr=[[p.efficiency.ratio - p.efficiency.ratio_low for p in judged if p.efficiency],
                  [p.efficiency.ratio_high - p.efficiency.ratio for p in judged
                   if p.efficiency]], fmt="o-", color=colour, capsize=3)
    total.set_xlabel("guests")
    total.set_ylabel("aggregate throughput")
    total.legend(fontsize="small")
    efficiency.axhline(1.0, color="black", linewidth=1)
    efficiency.set_xlabel("guests")
    efficiency.set_ylabel("scaling efficiency (1: perfect)")
    for axes in (total, efficiency):
        axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def interference_figure(disturbances: list[Disturbance]) -> Figure | None:
    """A heat map of the victim's slow-down per platform and metric (rows) and
    aggressor (columns): coloured by its factor on a log scale (red: slower, green:
    faster), each cell with its ratio (with / solo) and verdict."""
    if not disturbances:
        return None
    rows = list(dict.fromkeys((d.platform, d.workload, d.metric) for d in disturbances))
    columns = list(dict.fromkeys(d.aggressor for d in disturbances))
    grid = np.full((len(rows), len(columns)), np.nan)
    words = {}
    for d in disturbances:
        at = rows.index((d.platform, d.workload, d.metric)), columns.index(d.aggressor)
        grid[at] = -np.log2(d.comparison.performance)  # 1: twice as slow
        words[at] = f"×{d.comparison.ratio:.2f}\n{d.comparison.wording().split(':')[0]}"
    figure, axes = plt.subplots(figsize=(1.9 * len(columns) + 4, 0.6 * len(rows) + 1.8))
    reach = max(1.0, float(np.nanmax(np.abs(grid))))
    image = axes.imshow(grid, cmap="RdYlGn_r", vmin=-reach, vmax=reach, aspect="auto")
    for (y, x), text in words.items():
        axes.text(x, y, text, ha="center", va="center", fontsize="small")
    axes.set_xticks(np.arange(len(columns)), columns, rotation=20, ha="right")
    axes.set_yticks(np.arange(len(rows)), [f"{p} · {w} · {m}" for p, w, m in rows])
    figure.colorbar(image, ax=axes, label="log2 of the victim's slow-down (1: twice as slow)")
    figure.tight_layout()
    return figure


def save(figure: Figure, path: Path) -> None:
    """Write a chart as PNG (a one-line error when the place cannot take it)."""
    try:
        figure.savefig(path, dpi=110)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(figure)


def write_pngs(analysis: Analysis, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, figure in (("overview", overview(analysis)),
                         ("where-the-time-goes", where_figure(analysis)),
                         ("hosts-vs-siblings", fleet_figure(analysis.fleet)),
                         ("consolidation", consolidation_figure(analysis.consolidation)),
                         ("interference", interference_figure(analysis.interference))):
        if figure is not None:
            save(figure, directory / f"{name}.png")
            written.append(directory / f"{name}.png")
    for workload in analysis.workloads():
        path = directory / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', workload)}.png"
        save(workload_figure(analysis, workload), path)
        written.append(path)
    return written
