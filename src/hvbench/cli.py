"""The ``hvbench`` command line: argument handling and output only, no logic."""

from __future__ import annotations

import csv
import json
import signal
import sys
import tomllib
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from . import __version__
from . import campaign as campaign_mod
from . import doctor as doctor_mod
from .errors import HvbenchError, UsageError
from .paths import database_path
from .platforms import PLATFORM_DESCRIPTIONS
from .progress import QuietReporter, RichReporter
from .report.term import results_table
from .runner import Runner
from .store import Store
from .workloads import CATALOGUE
from .workloads.suites import SUITE_DESCRIPTIONS, SUITES


def _console(stderr: bool = False) -> Console:
    """A terminal gets its own width; pipes and files get wide, unwrapped tables."""
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        console = Console(stderr=stderr, highlight=False, width=160)
    return console


out = _console()
err = _console(stderr=True)


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"hvbench: error: {message}", markup=False, soft_wrap=True)
    sys.exit(code)


def _store() -> Store:
    return Store(database_path())


def _split(values: tuple[str, ...]) -> list[str]:
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _parse_params(values: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """--param WORKLOAD.KEY=VALUE; VALUE is read as a TOML scalar, else as a string."""
    params: dict[str, dict[str, Any]] = {}
    for item in values:
        target, sep, raw = item.partition("=")
        workload, dot, key = target.partition(".")
        if not sep or not dot or not workload or not key:
            raise UsageError(f"--param {item!r} is not WORKLOAD.KEY=VALUE "
                             "(e.g. --param fio-randread.size=128M)")
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        params.setdefault(workload, {})[key] = value
    return params


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hvbench")
def cli() -> None:
    """Measure what virtualization costs: the same workloads on bare metal and in guests."""


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(as_json: bool) -> None:
    """Workloads, suites and platforms."""
    if as_json:
        out.print_json(data={
            "workloads": [w.describe() for w in CATALOGUE.values()],
            "suites": {name: [e.workload for e in entries] for name, entries in SUITES.items()},
            "platforms": PLATFORM_DESCRIPTIONS,
        })
        return
    table = Table(title="Workloads", title_justify="left", header_style="bold")
    for column in ("name", "category", "metrics", "needs (Debian package)", "description"):
        table.add_column(column)
    for workload in CATALOGUE.values():
        table.add_row(workload.name, str(workload.category),
                      ", ".join(m.name for m in workload.metrics),
                      ", ".join(f"{t.binary} ({t.package})" for t in workload.tools),
                      workload.description)
    out.print(table)
    suites = Table(title="Suites", title_justify="left", header_style="bold")
    suites.add_column("name")
    suites.add_column("workloads")
    suites.add_column("about")
    for name, entries in SUITES.items():
        suites.add_row(name, ", ".join(e.workload for e in entries), SUITE_DESCRIPTIONS[name])
    out.print(suites)
    platforms = Table(title="Platforms", title_justify="left", header_style="bold")
    platforms.add_column("name")
    platforms.add_column("about")
    for name, about in PLATFORM_DESCRIPTIONS.items():
        platforms.add_row(name, about)
    out.print(platforms)


@cli.command()
@click.argument("campaign_file", required=False, type=click.Path(path_type=Path))
@click.option("--platform", "platforms", multiple=True, help="Platforms, comma-separated.")
@click.option("--suite", help="A named suite: quick, standard, classic.")
@click.option("--workload", "workloads", multiple=True, help="Workloads, comma-separated.")
@click.option("--reps", type=click.IntRange(1, 10_000), help="Repetitions per workload.")
@click.option("--seed", type=int, help="Seed of the interleaving order.")
@click.option("--timeout", type=click.FloatRange(min=1), help="Per-trial limit in seconds.")
@click.option("--param", "params", multiple=True, metavar="WORKLOAD.KEY=VALUE",
              help="Override a workload parameter.")
@click.option("--no-warmup", is_flag=True, help="Skip the discarded warm-up trial.")
@click.option("--resume", metavar="RUN", help="Continue an interrupted run.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def run(campaign_file: Path | None, platforms: tuple[str, ...], suite: str | None,
        workloads: tuple[str, ...], reps: int | None, seed: int | None,
        timeout: float | None, params: tuple[str, ...], no_warmup: bool,
        resume: str | None, quiet: bool) -> None:
    """Run a campaign: platforms x workloads x repetitions."""
    reporter = QuietReporter(err) if quiet else RichReporter(err)
    store = _store()
    runner = Runner(store, reporter)
    if resume:
        if campaign_file or platforms or suite or workloads:
            raise UsageError("--resume continues a stored run as it was planned; "
                             "give no campaign, platform or workload with it")
        outcome = runner.resume(resume)
    else:
        data: dict[str, Any] = {}
        source = "command line"
        if campaign_file:
            loaded = campaign_mod.from_toml(campaign_file)
            data = loaded.model_dump(mode="json")
            source = str(campaign_file)
        if platforms:
            data["platforms"] = _split(platforms)
        data.setdefault("platforms", ["native"])
        if suite or workloads:
            data["workloads"] = _split(workloads)
            if suite:
                data["suite"] = suite
        if "workloads" not in data:
            raise UsageError("nothing to run: give --suite NAME, --workload NAME or a "
                             "campaign file (see 'hvbench list')")
        for key, value in (("reps", reps), ("seed", seed), ("timeout", timeout)):
            if value is not None:
                data[key] = value
        if no_warmup:
            data["warmup"] = False
        overrides = _parse_params(params)
        chosen = campaign_mod.from_mapping(data, source)
        names = {w.name for w in chosen.workloads}
        for workload in overrides:
            if workload not in names:
                raise UsageError(f"--param names workload {workload!r}, which is not in this "
                                 f"run ({', '.join(sorted(names))})")
        if overrides:
            data = chosen.model_dump(mode="json")
            for entry in data["workloads"]:
                entry["params"] = {**entry["params"], **overrides.get(entry["name"], {})}
            chosen = campaign_mod.from_mapping(data, source)
        outcome = runner.start(chosen)
    record = store.run(outcome.run_id)
    names = [p["name"] for p in record.campaign["platforms"]]
    out.print(results_table(store.samples(outcome.run_id), names,
                            title=f"Results of run {outcome.run_id}"))
    if outcome.failed:
        err.print(f"{outcome.failed} of {outcome.trials} trials failed; see "
                  f"'hvbench export {outcome.run_id} --json' for reasons", markup=False)
    out.print(f"run {outcome.run_id} stored in {store.where}")
    sys.exit(1 if outcome.failed else 0)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def results(as_json: bool) -> None:
    """List stored runs."""
    listing = _store().list_runs()
    if as_json:
        out.print_json(data=listing)
        return
    if not listing:
        out.print("no runs yet; start one with 'hvbench run --suite quick'")
        return
    table = Table(header_style="bold")
    for column in ("run", "created (UTC)", "status", "platforms", "workloads", "trials",
                   "failed"):
        table.add_column(column)
    for item in listing:
        workloads = ", ".join(item["workloads"][:4]) + (" …" if len(item["workloads"]) > 4
                                                         else "")
        table.add_row(item["id"], item["created"][:19].replace("T", " "), item["status"],
                      ", ".join(item["platforms"]), workloads, str(item["trials"]),
                      str(item["failed"]))
    out.print(table)


@cli.command()
@click.argument("run_id", metavar="RUN")
@click.option("--json", "fmt", flag_value="json", help="JSON: run, platforms, trials, samples.")
@click.option("--csv", "fmt", flag_value="csv", help="CSV: one row per sample.")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write to a file.")
def export(run_id: str, fmt: str | None, output: Path | None) -> None:
    """Export a run's raw samples (RUN may be 'latest')."""
    if fmt is None:
        raise UsageError("choose a format: --json or --csv")
    store = _store()
    resolved = store.resolve(run_id)
    stream = output.open("w", newline="") if output else sys.stdout
    try:
        if fmt == "csv":
            writer = csv.DictWriter(stream, fieldnames=["run", "platform", "workload",
                                                        "repetition", "metric", "value",
                                                        "unit", "higher_is_better"])
            writer.writeheader()
            writer.writerows(store.iter_export(resolved))
        else:
            record = store.run(resolved)
            json.dump({"run": record.__dict__, "platforms": store.platform_info(resolved),
                       "trials": store.trials(resolved),
                       "samples": list(store.iter_export(resolved))},
                      stream, indent=1, default=str)
            stream.write("\n")
    finally:
        if output:
            stream.close()


@cli.command()
@click.argument("run_id", metavar="RUN", default="latest")
def report(run_id: str) -> None:
    """Show a run's results as a table (RUN may be 'latest')."""
    store = _store()
    resolved = store.resolve(run_id)
    record = store.run(resolved)
    names = [p["name"] for p in record.campaign["platforms"]]
    out.print(results_table(store.samples(resolved), names,
                            title=f"Results of run {resolved} ({record.status})"))


@cli.command()
def doctor() -> None:
    """What this host can run: tools, QEMU, KVM, Xen, libvirt."""
    table = Table(header_style="bold")
    table.add_column("component")
    table.add_column("status")
    table.add_column("detail")
    for check in doctor_mod.checks():
        table.add_row(check.component, "[green]ok[/green]" if check.ok else "[red]no[/red]",
                      check.detail)
    out.print(table)


def _terminate(signum: int, _frame: Any) -> None:
    """SIGTERM/SIGHUP behave like Ctrl-C: stop cleanly, keep results."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        cli.main(args=argv, prog_name="hvbench", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.exceptions.Abort:
        _fail("interrupted", 130)
    except click.ClickException as exc:
        command = f"hvbench {exc.ctx.info_name} --help" if getattr(exc, "ctx", None) and \
            exc.ctx.info_name != "hvbench" else "hvbench --help"
        _fail(f"{exc.format_message()} (see '{command}')", 2)
    except HvbenchError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":
    main()
