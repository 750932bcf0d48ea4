"""``hvbench run`` options -> a validated Campaign (the CLI only collects them).

Options override a campaign file's values; platforms left unnamed are chosen for the
host (``--hypervisors``: KVM and Xen where this machine has them, else the labs) only
once everything else is valid, since finding out whether KVM works takes a while.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import campaign as campaign_mod
from . import inventory as inventory_mod
from . import matrix as matrix_mod
from .campaign import Campaign
from .errors import UsageError

#: platforms a run on one other host gets when none are named
HOST_DEFAULTS = {"lab:kvm": ["lab-native", "qemu-kvm"],
                 "lab:xen": ["lab-native", "xen-pv", "xen-pvh"]}


@dataclass(frozen=True)
class RunOptions:
    campaign_file: Path | None = None
    platforms: list[str] | None = None
    suite: str | None = None
    workloads: list[str] | None = None
    reps: str | None = None
    ci_target: float | None = None  # percent
    max_reps: int | None = None
    max_time: float | None = None
    budget: str | None = None
    margin: float | None = None  # percent
    seed: int | None = None
    timeout: float | None = None
    params: tuple[str, ...] = ()
    matrix: tuple[str, ...] = ()  # PLATFORM.SETTING=V1,V2
    density: str | None = None  # "1,2,4"
    no_warmup: bool = False
    fresh_guest: bool = False
    hosts: list[str] | None = None
    inventory: Path | None = None
    limit: str | None = None
    forks: int | None = None
    lock_timeout: float | None = None
    identity: Path | None = None
    accept_new_host_key: bool = False
    hypervisors: bool = False


def split(values: tuple[str, ...]) -> list[str]:
    """Repeated and comma-separated option values as one list."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def parse_params(values: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """--param WORKLOAD.KEY=VALUE; VALUE is read as a TOML scalar, else as a string."""
    params: dict[str, dict[str, Any]] = {}
    for item in values:
        target, sep, raw = item.partition("=")
        workload, dot, key = target.partition(".")
        if not sep or not dot or not workload or not key:
            raise UsageError(f"--param {item!r} is not WORKLOAD.KEY=VALUE "
                             "(e.g. --param fio-randread.size=128M)")
        params.setdefault(workload, {})[key] = matrix_mod.toml_value(raw)
    return params


def parse_reps(value: str) -> int | str:
    if value == "auto":
        return value
    if value.isdigit() and 1 <= int(value) <= 10_000:
        return int(value)
    raise UsageError(f"--reps {value!r}: give a number from 1 to 10000 or 'auto'")


def _settings(options: RunOptions) -> dict[str, Any]:
    """The campaign's fields from the file and the options (options win)."""
    data: dict[str, Any] = {}
    if options.campaign_file:
        data = campaign_mod.from_toml(options.campaign_file).model_dump(mode="json")
    if options.platforms:
        data["platforms"] = options.platforms
    if options.suite or options.workloads:
        data["workloads"] = options.workloads or []
        if options.suite:
            data["suite"] = options.suite
    if "workloads" not in data:
        raise UsageError("nothing to run: give --suite NAME, --workload NAME or a "
                         "campaign file (see 'hvbench list')")
    if options.reps is not None:
        data["reps"] = parse_reps(options.reps)
    if options.ci_target is not None:
        data["ci_target"] = options.ci_target / 100
    if options.max_reps is not None:
        data["max_reps"] = options.max_reps
        data["min_reps"] = min(data.get("min_reps", 6), options.max_reps)
    if options.max_time is not None:
        data["max_seconds"] = options.max_time
    if options.budget is not None:
        if options.reps is not None:
            raise UsageError("--budget decides the repetitions itself: give no --reps "
                             "with it (--max-reps caps them)")
        try:
            data["budget"] = campaign_mod.parse_duration(options.budget)
        except ValueError as exc:
            raise UsageError(f"--budget: {exc}") from None
    if options.margin is not None:
        data["margin"] = options.margin / 100
    for key, value in (("seed", options.seed), ("timeout", options.timeout)):
        if value is not None:
            data[key] = value
    if options.matrix:
        _add_matrix(data, options.matrix)
    if options.density is not None:
        try:
            data["density"] = [int(n) for n in options.density.split(",")]
        except ValueError:
            raise UsageError(f"--density {options.density!r}: guest counts, e.g. 1,2,4"
                             ) from None
    if options.no_warmup:
        data["warmup"] = False
    if options.fresh_guest:
        data["fresh_guest"] = True
    if options.hosts and options.inventory:
        raise UsageError("give --host or --inventory, not both")
    if options.limit and not options.inventory:
        raise UsageError("--limit chooses hosts of an --inventory: give the inventory")
    if options.hosts:
        data["host"] = options.hosts[0] if len(options.hosts) == 1 else options.hosts
    if options.inventory:
        hosts, host_settings = inventory_mod.hosts_for_run(options.inventory, options.limit)
        data["host"] = hosts[0] if len(hosts) == 1 else hosts
        data["host_settings"] = {**data.get("host_settings", {}), **host_settings}
    for key, value in (("forks", options.forks), ("lock_timeout", options.lock_timeout)):
        if value is not None:
            data[key] = value
    if options.identity:
        data["ssh_identity"] = str(options.identity)
    if options.accept_new_host_key:
        data["accept_new_host_key"] = True
    return data


def _add_matrix(data: dict[str, Any], values: tuple[str, ...]) -> None:
    """--matrix PLATFORM.SETTING=V1,V2 onto the named platforms (repeatable)."""
    platforms: list[dict[str, Any]] = [{"name": p} if isinstance(p, str) else dict(p)
                                       for p in data.get("platforms", [])]
    for text in values:
        name, key, levels = matrix_mod.parse_option(text)
        spec = next((p for p in platforms if p["name"] == name), None)
        if spec is None:
            raise UsageError(f"--matrix names platform {name!r}, which is not in this run "
                             f"({', '.join(p['name'] for p in platforms) or 'none named'})")
        spec["matrix"] = {**(spec.get("matrix") or {}), key: levels}
    data["platforms"] = platforms


def campaign_from_options(options: RunOptions, say: Callable[[str], None]) -> Campaign:
    """The campaign these options describe, validated; platforms chosen when unnamed."""
    source = str(options.campaign_file) if options.campaign_file else "command line"
    data = _settings(options)
    where = data.get("host", "local")
    if "platforms" not in data and where != "local":
        data["platforms"] = (["native"] if isinstance(where, list)
                             else HOST_DEFAULTS.get(where, ["native", "qemu-kvm"]))
    if options.hypervisors and ("platforms" in data or options.hosts):
        raise UsageError("--hypervisors chooses the platforms and hosts itself: give no "
                         "--platform or --host with it")
    choose = "platforms" not in data
    overrides = parse_params(options.params)
    chosen = campaign_mod.from_mapping({**data, "platforms": data.get("platforms", ["native"])},
                                       source)
    names = {w.name for w in chosen.workloads}
    for workload in overrides:
        if workload not in names:
            raise UsageError(f"--param names workload {workload!r}, which is not in this "
                             f"run ({', '.join(sorted(names))})")
    data = chosen.model_dump(mode="json")
    for entry in data["workloads"]:
        entry["params"] = {**entry["params"], **overrides.get(entry["name"], {})}
    chosen = campaign_mod.from_mapping(data, source)
    if choose:  # only now, with everything else valid: the KVM check is slow
        from .platforms.choose import default_platforms, hypervisor_platforms

        data["platforms"] = (hypervisor_platforms(say) if options.hypervisors
                             else default_platforms(say))
        chosen = campaign_mod.from_mapping(data, source)
    return chosen
