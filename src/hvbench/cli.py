"""The ``hvbench`` command line: argument handling and output only, no logic."""

from __future__ import annotations

import csv
import json
import os
import select
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from . import __version__, leftovers
from . import doctor as doctor_mod
from .analysis import analyse
from .clihistory import ab_cmd, compare_cmd, fleet_cmd, trend_cmd
from .cliout import PipeBroken, err, iso_date, out
from .cliout import fail as _fail
from .cliout import store as _store
from .errors import HvbenchError, UsageError
from .options import RunOptions, campaign_from_options, split
from .platforms import PLATFORM_DESCRIPTIONS
from .progress import QuietReporter, RichReporter
from .report import formats, term
from .runner import Runner
from .store import Store
from .storecopy import copy_runs
from .storeurl import configured
from .workloads import CATALOGUE
from .workloads.suites import SUITE_DESCRIPTIONS, SUITES


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hvbench")
@click.option("--store", "store_target", metavar="PATH|URL",
              help="The result store: a SQLite file or postgresql://user@host/db (password "
                   "from ~/.pgpass or PGPASSWORD); default HVBENCH_STORE, else "
                   "$HVBENCH_HOME/results.sqlite.")
@click.pass_context
def cli(context: click.Context, store_target: str | None) -> None:
    """Measure what virtualization costs: the same workloads on bare metal and in guests."""
    context.obj = {"store": store_target}


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
@click.option("--reps", metavar="N|auto",
              help="Repetitions per workload, or 'auto': repeat until the 95% CI is tight.")
@click.option("--ci-target", type=click.FloatRange(0.01, 50), metavar="PERCENT",
              help="--reps auto: stop when the CI half-width is at most this % of the "
                   "median (default 2).")
@click.option("--max-reps", type=click.IntRange(2, 10_000),
              help="--reps auto: at most this many repetitions (default 30).")
@click.option("--max-time", type=click.FloatRange(min=1), metavar="SECONDS",
              help="--reps auto: time budget per workload (default 900).")
@click.option("--budget", metavar="DURATION",
              help="Time for the whole run (e.g. 10m): repetitions go on where verdicts are "
                   "still open, with repeated looks that keep the error rates valid.")
@click.option("--margin", type=click.FloatRange(0.1, 50), metavar="PERCENT",
              help="Within this % of the baseline counts as equivalent (default 2).")
@click.option("--seed", type=int, help="Seed of the interleaving order.")
@click.option("--timeout", type=click.FloatRange(min=1), help="Per-trial limit in seconds.")
@click.option("--matrix", "matrix", multiple=True, metavar="PLATFORM.SETTING=V1,V2",
              help="Run PLATFORM once per value of SETTING (repeat for a full factorial), "
                   "e.g. qemu-tcg.disk_bus=virtio-blk,nvme,ide.")
@click.option("--density", metavar="N1,N2,...",
              help="Run every guest platform as tiles of these many guests at once, e.g. "
                   "1,2,4 (consolidation: aggregate, scaling efficiency, fairness).")
@click.option("--param", "params", multiple=True, metavar="WORKLOAD.KEY=VALUE",
              help="Override a workload parameter.")
@click.option("--no-warmup", is_flag=True, help="Skip the discarded warm-up trial.")
@click.option("--fresh-guest", is_flag=True, help="Boot a new guest for every trial.")
@click.option("--resume", metavar="RUN", help="Continue an interrupted run.")
@click.option("--host", "hosts", multiple=True,
              metavar="local|ssh://[user@]host[:port]|lab:kvm|lab:xen",
              help="Where the platforms run (default: this machine; lab:kvm boots the "
                   "nested KVM lab when it is not running, and stops it afterwards). "
                   "Repeat it to run several hosts side by side.")
@click.option("--inventory", type=click.Path(path_type=Path), metavar="FILE",
              help="The hosts of an Ansible inventory (YAML or INI), side by side.")
@click.option("--limit", metavar="PATTERN",
              help="Only these inventory hosts: groups or host globs, ':' or ',' between, "
                   "'!' excludes, '&' intersects.")
@click.option("--forks", type=click.IntRange(1, 1000), metavar="N",
              help="Hosts measured at once, at most (default 10).")
@click.option("--lock-timeout", type=click.FloatRange(min=1), metavar="SECONDS",
              help="Wait at most this long for a remote host another hvbench measures on "
                   "(default: as long as it takes).")
@click.option("--identity", type=click.Path(path_type=Path),
              help="SSH private key for --host ssh://... (else ssh-agent or ~/.ssh keys).")
@click.option("--accept-new-host-key", is_flag=True,
              help="Trust an SSH host seen for the first time (a changed key is refused).")
@click.option("--hypervisors", is_flag=True,
              help="The study's comparison: native and qemu-tcg here, plus KVM and Xen (real "
                   "where this machine has them, else the nested labs, each against its own "
                   "lab-native baseline).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def run(campaign_file: Path | None, platforms: tuple[str, ...], suite: str | None,
        workloads: tuple[str, ...], reps: str | None, ci_target: float | None,
        max_reps: int | None, max_time: float | None, budget: str | None,
        margin: float | None, seed: int | None,
        timeout: float | None, matrix: tuple[str, ...], density: str | None,
        params: tuple[str, ...], no_warmup: bool, fresh_guest: bool,
        resume: str | None, hosts: tuple[str, ...], inventory: Path | None,
        limit: str | None, forks: int | None, lock_timeout: float | None,
        identity: Path | None,
        accept_new_host_key: bool, hypervisors: bool, quiet: bool) -> None:
    """Run a campaign: platforms x workloads x repetitions."""
    reporter = QuietReporter(err) if quiet else RichReporter(err)
    if resume:
        if campaign_file or platforms or suite or workloads:
            raise UsageError("--resume continues a stored run as it was planned; "
                             "give no campaign, platform or workload with it")
        store = _store()
        outcome = Runner(store, reporter).resume(resume)
    else:
        options = RunOptions(
            campaign_file=campaign_file, platforms=split(platforms) or None, suite=suite,
            workloads=split(workloads) or None, reps=reps, ci_target=ci_target,
            max_reps=max_reps, max_time=max_time, budget=budget, margin=margin, seed=seed,
            timeout=timeout, params=params, matrix=matrix, density=density,
            no_warmup=no_warmup,
            fresh_guest=fresh_guest, hosts=split(hosts) or None, inventory=inventory,
            limit=limit, forks=forks, lock_timeout=lock_timeout, identity=identity,
            accept_new_host_key=accept_new_host_key, hypervisors=hypervisors)
        campaign = campaign_from_options(options, reporter.message)
        store = _store(campaign.store)
        outcome = Runner(store, reporter).start(campaign)
    out.print(term.render(analyse(store, outcome.run_id)))
    if outcome.failed:
        err.print(f"{outcome.failed} of {outcome.trials} trials failed; see "
                  f"'hvbench export {outcome.run_id} --json' for reasons", markup=False)
    out.print(f"run {outcome.run_id} stored in {store.where}")
    sys.exit(1 if outcome.failed else 0)


@cli.group(invoke_without_command=False)
def lab() -> None:
    """Nested hypervisor hosts under QEMU TCG, for trying hvbench and testing drivers."""


@lab.command("kvm")
@click.option("--shell", is_flag=True, help="Open a shell on the lab host.")
def lab_kvm(shell: bool) -> None:
    """Boot the KVM lab (or find it running) and say how to use it."""
    _lab_up("kvm", shell)


@lab.command("xen")
@click.option("--shell", is_flag=True, help="Open a shell in the lab's dom0.")
def lab_xen(shell: bool) -> None:
    """Boot the Xen lab (Xen 4.17 and a dom0, or find it running)."""
    _lab_up("xen", shell)


def _lab_up(kind: str, shell: bool) -> None:
    from .hosts import lab as lab_mod
    from .workloads import payload

    state, _booted = lab_mod.ensure(kind, payload(None), err.print)  # it stays up
    argv = lab_mod.shell_argv(kind, state)
    if shell:
        sys.exit(subprocess.run(argv, check=False).returncode)
    out.print(f"lab {kind} is up (QEMU pid {state.pid}, SSH on 127.0.0.1:{state.port})",
              markup=False)
    out.print(f"  run:   hvbench run --host lab:{kind} --suite quick", markup=False)
    out.print(f"  shell: hvbench lab {kind} --shell   (or: {shlex.join(argv)})", markup=False)
    out.print("  stop:  hvbench lab stop", markup=False)


@lab.command("stop")
@click.argument("kind", required=False)
def lab_stop(kind: str | None) -> None:
    """Stop a lab (default: every lab)."""
    from .hosts import lab as lab_mod

    kinds = [kind] if kind else list(lab_mod.SPECS)
    for name in kinds:
        lab_mod.spec_for(name)
        stopped = lab_mod.stop(name)
        out.print(f"lab {name}: {'stopped' if stopped else 'was not running'}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--host", metavar="HOST", help="Only runs measured on this host (as written "
              "in the run, or its short name: an inventory name, host:port).")
@click.option("--since", metavar="DATE", help="Only runs created on or after this date "
              "(UTC; 2026-11-30 or 2026-11-30T14:00).")
def results(as_json: bool, host: str | None, since: str | None) -> None:
    """List stored runs (all, or a host's since a date)."""
    listing = _store().list_runs(host, iso_date(since))
    for item in listing:  # 'running' only while a live hvbench executes it
        item["status"] = leftovers.shown_status(item["id"], item["status"])
    if as_json:
        out.print_json(data=listing)
        return
    if not listing:
        out.print("no runs match" if host or since else
                  "no runs yet; start one with 'hvbench run --suite quick'")
        return
    table = Table(header_style="bold")
    pairs = any(item["ab"] for item in listing)
    for column in ("run", "created (UTC)", "status", "platforms", "workloads", "trials",
                   "failed", *(["ab"] if pairs else [])):
        table.add_column(column)
    for item in listing:
        workloads = ", ".join(item["workloads"][:4]) + (" …" if len(item["workloads"]) > 4
                                                         else "")
        ab = item["ab"]
        table.add_row(item["id"], item["created"][:19].replace("T", " "), item["status"],
                      ", ".join(item["platforms"]), workloads, str(item["trials"]),
                      str(item["failed"]),
                      *([f"{ab['side']} (other side: {ab['partner']})" if ab else ""]
                        if pairs else []))
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
                                                        "unit", "higher_is_better"],
                                    extrasaction="ignore")
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
@click.option("--baseline", metavar="PLATFORM|RUN:PLATFORM",
              help="Baseline platform of this run, or a platform of another run.")
@click.option("--html", "html_path", type=click.Path(path_type=Path),
              help="Write a self-contained HTML report.")
@click.option("--md", "md_path", type=click.Path(path_type=Path), help="Write Markdown.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), help="Write CSV.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write JSON.")
@click.option("--png", "png_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Write every chart as PNG into this directory.")
@click.option("--study", "study_path", type=click.Path(path_type=Path),
              help="Write the study document: FILE.html, or FILE.pdf (headless Chromium).")
@click.option("--lang", default="en", show_default=True, metavar="en|zh",
              help="Language of the HTML report and the study: en (English) or zh "
                   "(Simplified Chinese).")
@click.option("--detail", is_flag=True,
              help="Also the full table: medians, n, CV and each verdict in words.")
def report(run_id: str, baseline: str | None, html_path: Path | None, md_path: Path | None,
           csv_path: Path | None, json_path: Path | None, png_dir: Path | None,
           study_path: Path | None, lang: str, detail: bool) -> None:
    """Results with overhead against a baseline (RUN may be 'latest')."""
    from .report import charts, html, study  # matplotlib, Jinja2: only when a report is made
    from .report.i18n import language

    language(lang)  # an unknown language is refused before any work
    if study_path and study_path.suffix.lower() not in (".html", ".htm", ".pdf"):
        raise UsageError(f"--study {study_path}: name a .html or .pdf file")
    store = _store()
    analysis = analyse(store, store.resolve(run_id), baseline)
    out.print(term.render(analysis, detail))
    written: list[Path] = []
    try:
        if html_path:
            html.write(analysis, html_path, lang)
            written.append(html_path)
        if study_path:
            study.write(analysis, study_path, lang)
            written.append(study_path)
        for path, render in ((md_path, formats.markdown), (csv_path, formats.to_csv),
                             (json_path, formats.to_json)):
            if path:
                path.write_text(render(analysis), encoding="utf-8")
                written.append(path)
        if png_dir:
            written.extend(charts.write_pngs(analysis, png_dir))
    except OSError as exc:
        raise UsageError(f"cannot write {exc.filename}: {exc.strerror}") from None
    for path in written:
        out.print(f"wrote {path}")


@cli.group()
def image() -> None:
    """The guest appliance (kernel + initramfs)."""


@image.command("build")
@click.option("--kernel", type=click.Path(path_type=Path), help="A bzImage to boot.")
@click.option("--modules", type=click.Path(path_type=Path, file_okay=False),
              help="Its modules directory (default /lib/modules/VERSION).")
@click.option("--workload", "workloads", multiple=True,
              help="Only these workloads' tools (default: every installed tool).")
@click.option("--refresh-kernel", is_flag=True, help="Look for a newer Debian kernel.")
def image_build(kernel: Path | None, modules: Path | None, workloads: tuple[str, ...],
                refresh_kernel: bool) -> None:
    """Build (or find in the cache) the guest appliance and print where it is."""
    from .appliance import image as image_mod
    from .workloads import get_workload, payload

    names = split(workloads) or None
    for name in names or []:
        get_workload(name)
    with err.status("checking the guest image cache"):
        built = image_mod.build(kernel, modules, payload(names), progress=lambda text: err.print(
            text, markup=False), refresh_kernel=refresh_kernel)
    out.print(f"image {built.key}: kernel {built.kernel} "
              f"({'PVH vmlinux' if built.pvh else 'bzImage'}), initramfs {built.initramfs} "
              f"({built.manifest['boot_initramfs_bytes'] / 2**20:.0f} MiB compressed from "
              f"{built.manifest['initramfs_bytes'] / 2**20:.0f} MiB, "
              f"{built.manifest['kernel_origin']})")
    if built.manifest.get("missing_tools"):
        err.print("not on this host, so not in the image: "
                  + ", ".join(built.manifest["missing_tools"]), markup=False)


@cli.command()
@click.option("--clean", is_flag=True,
              help="Stop guests left running by a dead hvbench (labs stay: 'hvbench lab "
                   "stop').")
def doctor(clean: bool) -> None:
    """What this host can run: tools, QEMU, KVM, Xen, libvirt; and what a dead hvbench
    left behind."""
    table = Table(header_style="bold")
    table.add_column("component")
    table.add_column("status")
    table.add_column("detail")
    for check in doctor_mod.checks():
        table.add_row(check.component, "[green]ok[/green]" if check.ok else "[red]no[/red]",
                      check.detail)
    out.print(table)
    for leftover in leftovers.find():
        if leftover.intended:
            out.print(f"running: {leftover.what}; stop it with '{leftover.stop}'",
                      markup=False)
        elif clean:
            leftovers.stop(leftover)
            out.print(f"stopped: {leftover.what}", markup=False)
        else:
            out.print(f"left over: {leftover.what}; stop it with '{leftover.stop}' or "
                      "'hvbench doctor --clean'", markup=False)
    for item in _store().list_runs():
        if leftovers.shown_status(item["id"], item["status"]) != item["status"]:
            out.print(f"cut off: run {item['id']} stopped without a word (hvbench was "
                      f"killed); continue it with 'hvbench run --resume {item['id']}'",
                      markup=False)


def _terminate(signum: int, _frame: Any) -> None:
    """SIGTERM/SIGHUP behave like Ctrl-C: stop cleanly, keep results."""
    raise KeyboardInterrupt


def _stdout_gone() -> bool:
    """True when our standard output is a pipe whose reader has gone away."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):
        return True


@cli.group("store")
def store_group() -> None:
    """The result store: where it is, writes waiting in its spool, copying history."""


@store_group.command("info")
def store_info() -> None:
    """Where the store is, its schema version, its runs, and writes waiting."""
    store = _store()
    waiting = store.spool.waiting() if store.spool is not None else 0
    out.print(f"store: {store.where}\nschema version: {store.version()}\n"
              f"runs: {len(store.list_runs())}\n"
              f"writes waiting in the spool: {waiting}"
              + (f" ({store.spool.path})" if waiting and store.spool else ""))


@store_group.command("flush")
def store_flush() -> None:
    """Write what the spool kept while the database server was away."""
    store = _store()
    written = store.flush()
    out.print(f"{written} writes from the spool written to {store.where}")


@store_group.command("copy")
@click.argument("source", metavar="SOURCE")
@click.argument("target", metavar="TARGET")
def store_copy(source: str, target: str) -> None:
    """Copy every run of SOURCE that TARGET does not have (paths or database URLs),
    e.g. hvbench store copy ~/.local/share/hvbench/results.sqlite postgresql://db/hv."""
    if "://" not in source and not Path(source).is_file():
        raise UsageError(f"store copy: {source} is not a store file (give the SQLite file, "
                         "e.g. ~/.local/share/hvbench/results.sqlite, or a database URL)")
    origin, destination = Store(configured(source)), Store(configured(target))
    done = copy_runs(origin, destination)
    out.print(f"copied {done.runs} runs ({done.trials} trials, {done.samples} samples) from "
              f"{origin.where} to {destination.where}; {done.skipped} already there")


for command in (trend_cmd, compare_cmd, ab_cmd, fleet_cmd):
    cli.add_command(command)


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
        context = exc.ctx if isinstance(exc, click.UsageError) else None
        command = f"hvbench {context.info_name} --help" if context is not None and \
            context.info_name != "hvbench" else "hvbench --help"
        _fail(f"{exc.format_message()} (see '{command}')", 2)
    except HvbenchError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except (BrokenPipeError, PipeBroken) as exc:
        if _stdout_gone():  # whoever read our output stopped (hvbench report | head)
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (no second error at exit)
            sys.exit(0)
        _fail(f"internal error: a connection broke: {exc} (this is a bug; "
              "HVBENCH_DEBUG=1 shows the traceback)", 1)
    except Exception as exc:
        if os.environ.get("HVBENCH_DEBUG"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (this is a bug; "
              "HVBENCH_DEBUG=1 shows the traceback)", 1)


if __name__ == "__main__":
    main()
