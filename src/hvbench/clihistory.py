"""``hvbench trend``, ``compare`` and ``ab``: runs against runs, and the regression
gate (argument handling and output only)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click
from rich.table import Table

from .ab import AbRun, Decided, look_plan
from .analysis import analyse
from .campaign import from_toml
from .cliout import err, iso_date, out
from .cliout import store as _store
from .errors import UsageError
from .fleethistory import fleet_history
from .gate import GateRules
from .options import split
from .progress import QuietReporter, RichReporter
from .report import fleetview, term
from .runcompare import (
    Change,
    Shift,
    compare_runs,
    consolidation_shifts,
    interference_shifts,
    where_changes,
)
from .trend import trend


@click.command("trend")
@click.option("--host", required=True, metavar="HOST",
              help="The host (as written in its runs, or its short name).")
@click.option("--platform", required=True, help="The platform, e.g. native or qemu-kvm.")
@click.option("--workload", required=True, help="The workload.")
@click.option("--threshold", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Percent: a significant change no larger than this is noise.")
def trend_cmd(host: str, platform: str, workload: str, threshold: float) -> None:
    """A host's history: the workload on the platform across stored runs, oldest
    first, with change points (each run against the one before; a permutation test per
    pair, Benjamini-Hochberg across the whole history)."""
    for metric, points in trend(_store(), host, platform, workload,
                                GateRules(threshold=threshold)).items():
        first = points[0]
        table = Table(title=f"{workload} · {metric} ({first.unit}, "
                            f"{'higher' if first.higher_is_better else 'lower'} is better) "
                            f"on {platform} at {host}",
                      title_justify="left", header_style="bold")
        for column in ("run", "created (UTC)", "n", "median [95% CI]", "vs previous", "q",
                       "change point"):
            table.add_column(column)
        previous = None
        for point in points:
            s = point.summary
            change = (f"{(s.median / previous - 1) * 100:+.1f}%" if previous else "—")
            table.add_row(point.run_id, point.created[:19].replace("T", " "), str(s.n),
                          f"{term.number(s.median)} [{term.number(s.ci_low)}–"
                          f"{term.number(s.ci_high)}]", change,
                          f"{point.change.q_value:.3g}" if point.change else "—",
                          point.change_point)
            previous = s.median
        out.print(table)


def _gate_options(command: Callable[..., None]) -> Callable[..., None]:
    """The regression gate's options, shared by compare and ab."""
    for option in reversed([
        click.option("--threshold", type=click.FloatRange(min=0), default=5.0,
                     show_default=True,
                     help="Percent: a significant slowdown no larger than this is noise."),
        click.option("--min-abs", "min_abs", multiple=True, metavar="METRIC=VALUE",
                     help="A change of METRIC smaller than VALUE (its unit) is noise, e.g. "
                          "clat-p99=10."),
        click.option("--alpha", type=click.FloatRange(0.001, 0.5), default=0.05,
                     show_default=True,
                     help="False discovery rate held across all the metrics compared."),
    ]):
        command = option(command)
    return command


def _rules(alpha: float, threshold: float, min_abs: tuple[str, ...]) -> GateRules:
    floors = {}
    for item in min_abs:
        metric, _, value = item.partition("=")
        try:
            floors[metric] = float(value)
        except ValueError:
            raise UsageError(f"--min-abs {item!r}: expected METRIC=NUMBER") from None
    return GateRules(alpha, threshold, floors)


def _changes_table(title: str, changes: list[Change], verdicts: list[str],
                   looks: list[str] | None = None) -> Table:
    """One row per metric, readable at 100 columns: the series on two lines, B/A with
    its interval, the permutation p and its adjusted q, the verdict."""
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("platform · workload\nmetric (unit)")
    table.add_column("B/A [95% CI]", no_wrap=True)
    table.add_column("p / q", no_wrap=True)
    if looks is not None:
        table.add_column("decided", no_wrap=True)
    table.add_column("verdict", min_width=12)
    for index, (change, verdict) in enumerate(zip(changes, verdicts, strict=True)):
        c, j = change.comparison, change.judged
        style = "red" if j.regression else ("green" if j.improvement else "")
        table.add_row(f"{change.platform} · {change.workload}\n{change.metric} ({change.unit})",
                      f"{c.ratio:.3f}× [{c.ratio_low:.3f}–{c.ratio_high:.3f}]",
                      f"{j.p_value:.2g} / {j.q_value:.2g}",
                      *([looks[index]] if looks is not None else []),
                      f"[{style}]{verdict}[/{style}]" if style else verdict)
    return table


def _exit_on_regressions(count: int) -> None:
    if count:
        err.print(f"{count} significant regressions beyond the noise thresholds",
                  markup=False)
        sys.exit(1)


@click.command("fleet")
@click.option("--since", metavar="DATE", help="Only runs created on or after this date.")
@click.option("--workload", "workloads", multiple=True, help="Only these workloads.")
@click.option("--platform", "platforms", multiple=True,
              help="Only these platforms (e.g. native), comma-separated.")
@click.option("--detail", is_flag=True, help="Every host, not only the flagged ones.")
@click.option("--png", "png_path", type=click.Path(path_type=Path),
              help="Write the chart of hosts against their siblings.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def fleet_cmd(since: str | None, workloads: tuple[str, ...], platforms: tuple[str, ...],
              detail: bool, png_path: Path | None, as_json: bool) -> None:
    """The fleet's hosts against their hardware siblings, across the stored runs.

    Each host's latest result per platform, workload and metric (runs since DATE) is
    compared with the pooled results of the other hosts of its hardware class;
    flagged when significantly worse by more than 5% (Benjamini-Hochberg across
    every comparison). Exit 1 when a host is flagged."""
    found = fleet_history(_store(), iso_date(since), split(workloads), split(platforms))
    flagged = sorted({s.host for s in found.standings if s.flagged})
    if as_json:
        out.print_json(data={"runs": found.runs, "hosts": found.hosts, "flagged": flagged,
                             "sources": found.sources, "standings": [{
                                 "host": s.host, "platform": s.platform,
                                 "workload": s.workload, "metric": s.metric,
                                 "hardware": s.fingerprint, "siblings": s.siblings,
                                 "performance": s.comparison.performance,
                                 "performance_ci": list(s.comparison.performance_ci),
                                 "q": s.q, "flagged": s.flagged} for s in found.standings]})
    else:
        table = fleetview.table(found.standings, detail, found.sources)
        if table is None:
            out.print(f"{found.hosts} host{'s' * (found.hosts != 1)} in {found.runs} "
                      f"run{'s' * (found.runs != 1)}, but no hardware class has three hosts "
                      "with results: nothing to compare them with")
        else:
            out.print(table)
    if png_path is not None:
        from .report import charts  # matplotlib: only when a chart is asked for

        figure = charts.fleet_figure(found.standings)
        if figure is None:
            raise UsageError("--png: no hardware class has three hosts with results")
        charts.save(figure, png_path)
        out.print(f"chart written to {png_path}")
    if flagged:
        sys.exit(1)


@click.command("compare")
@click.argument("run_a", metavar="RUN_A")
@click.argument("run_b", metavar="RUN_B")
@_gate_options
@click.option("--platform", "platforms", multiple=True, help="Only these platforms.")
def compare_cmd(run_a: str, run_b: str, threshold: float, min_abs: tuple[str, ...],
                alpha: float, platforms: tuple[str, ...]) -> None:
    """What got faster or slower from RUN_A to RUN_B; exit 1 on a regression.

    Each metric gets a permutation test; the p-values of all metrics are adjusted
    together (Benjamini-Hochberg: q), so comparing many metrics does not raise false
    alarms; changes within the noise thresholds never count."""
    store = _store()
    a_id, b_id, changes, notes = compare_runs(
        store, run_a, run_b, _rules(alpha, threshold, min_abs), split(platforms) or None)
    out.print(_changes_table(f"{b_id} compared with {a_id}", changes,
                             [c.judged.wording() for c in changes]))
    before, after = analyse(store, a_id), analyse(store, b_id)
    moved = where_changes(before.where, after.where)
    if moved:
        where = Table(title="Where the time goes: A → B (medians per trial)",
                      title_justify="left", header_style="bold")
        for column in ("platform", "workload", "figure", "A", "B", "change"):
            where.add_column(column)
        for figure in moved:
            where.add_row(figure.platform, figure.workload, figure.figure, f"{figure.before:.4g}",
                          f"{figure.after:.4g}", f"{figure.change:+.1f}%")
        out.print(where)
    shifts = (consolidation_shifts(before.consolidation, after.consolidation)
              + interference_shifts(before.interference, after.interference))
    if shifts:
        out.print(_shifts_table(shifts))
    out.print(f"{len(changes)} metrics compared; permutation tests, false discovery rate "
              f"held at {alpha:g} across them (Benjamini-Hochberg q); noise: within "
              f"{threshold:g}%" + (f" or below {', '.join(min_abs)}" if min_abs else ""))
    for note in notes:
        err.print(f"warning: {note}", markup=False)
    _exit_on_regressions(sum(c.regression for c in changes))


def _shifts_table(shifts: list[Shift]) -> Table:
    """Many guests, A → B: efficiency and fairness by guest count, each aggressor's
    effect on the victim (ratio to solo), with the two runs' intervals."""
    table = Table(title="Many guests: A → B (ratios [95% CI]; the series under them are "
                        "in the table above)", title_justify="left", header_style="bold")
    for column in ("platform · workload · metric", "figure", "A", "B", "change"):
        table.add_column(column)

    def cell(value: float, interval: tuple[float, float] | None) -> str:
        return f"{value:.3g}" + (f" [{interval[0]:.3g}–{interval[1]:.3g}]" if interval else "")

    for shift in shifts:
        table.add_row(f"{shift.platform} · {shift.workload} · {shift.metric}", shift.figure,
                      cell(shift.before, shift.before_ci), cell(shift.after, shift.after_ci),
                      f"{shift.change:+.1f}%\n{shift.wording()}")
    return table


@click.command("ab")
@click.argument("a_file", metavar="A_CAMPAIGN", type=click.Path(path_type=Path))
@click.argument("b_file", metavar="B_CAMPAIGN", type=click.Path(path_type=Path))
@_gate_options
@click.option("--min-reps", type=click.IntRange(2, 10_000), default=5, show_default=True,
              help="Repetitions per side before the first look.")
@click.option("--max-reps", type=click.IntRange(2, 10_000), default=20, show_default=True,
              help="Repetitions per side at most (the last look).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def ab_cmd(a_file: Path, b_file: Path, threshold: float, min_abs: tuple[str, ...],
           alpha: float, min_reps: int, max_reps: int, quiet: bool) -> None:
    """Two configurations on one host, alternating A B B A ...; exit 1 on a regression.

    A_CAMPAIGN and B_CAMPAIGN are campaign files with the same workloads and host whose
    platforms of the same name differ in what is compared (a setting, a kernel, an
    image). Repetitions are added only while a metric's verdict is open: the gate of
    'hvbench compare' looks at scheduled counts, each look spending a share of alpha,
    so the repeated looks do not raise false alarms. Each side is stored as a run."""
    rules = _rules(alpha, threshold, min_abs)
    a, b = from_toml(a_file).check(), from_toml(b_file).check()
    store = _store(a.store)
    reporter = QuietReporter(err) if quiet else RichReporter(err)
    result = AbRun(store, reporter).run(a, b, rules, look_plan(min_reps, max_reps, alpha))
    decided: list[Decided] = result.gate.verdicts()
    out.print(_changes_table(
        f"B ({result.b_run}, {b_file.name}) against A ({result.a_run}, {a_file.name})",
        [d.change for d in decided], [d.verdict for d in decided],
        [f"look {d.look}, n={d.n}" if d.look else f"open, n={d.n}" for d in decided]))
    planned = result.gate.plan.looks
    out.print(f"{len(decided)} metric(s); {result.repetitions} repetitions a side in the "
              f"order A B B A ...; {result.looks} of {len(planned)} planned looks taken (at n="
              f"{', '.join(map(str, planned))}), alpha {alpha:g} shared among them "
              "(permutation tests, Benjamini-Hochberg across metrics at each look); noise: "
              f"within {threshold:g}%" + (f" or below {', '.join(min_abs)}" if min_abs else ""))
    if result.outcome.failed:
        err.print(f"{result.outcome.failed} of {result.outcome.trials} trials failed; see "
                  f"'hvbench export {result.a_run} --json' and {result.b_run}", markup=False)
    out.print(f"runs {result.a_run} (A) and {result.b_run} (B) stored in {store.where}")
    _exit_on_regressions(len(result.gate.regressions))
