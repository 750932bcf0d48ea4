"""The platforms of one host in a run, open: each platform opened (guests booted;
an interference condition shares its platform's guests), checked for every tool,
described in the store before the first trial and again at the end, and kept:
a guest that crashed is restarted once before it counts as down, a platform that
cannot be used fails its trials with the reason while the others go on.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from . import sysinfo
from .campaign import Campaign, PlatformSpec
from .disturb import Disturbed
from .errors import HvbenchError, MissingToolError, TrialError
from .hostinfo import platform_context
from .hosts import HostSpec, connect
from .hosts.lab import Labs
from .hosts.lock import measurement_lock
from .machine import DownMachine
from .platforms import Machine, Platform, make_platform
from .progress import Reporter
from .store import Store
from .workloads import get_workload


class PlatformSession:
    """Opens and keeps the platforms of a run (one host's at a time)."""

    def __init__(self, store: Store, reporter: Reporter):
        self.store = store
        self.reporter = reporter
        self.dead: dict[str, str] = {}  # platforms that could not be restarted
        self._descriptions: dict[str, dict[str, Any]] = {}  # platform settings as recorded

    @contextlib.contextmanager
    def open(self, run_id: str, campaign: Campaign, specs: list[PlatformSpec], labs: Labs,
                stop: threading.Event | None = None, lock: bool = True
                ) -> Iterator[dict[str, Machine]]:
        """These platforms (all on one host) open and checked for every tool, their
        metadata saved before the first trial and again at the end (restarts, boot
        logs); the host's measurement lock held all the while unless the caller holds
        it (``lock`` False)."""
        with (self._host_lock(campaign, campaign.host_of(specs[0]), stop) if lock
              else contextlib.nullcontext()), \
                self._machines(campaign, specs, labs) as machines:
            self._preflight(campaign, machines)
            workloads = [get_workload(w.name) for w in campaign.workloads]
            shares = {spec.name: spec.shares for spec in specs if spec.shares}
            systems = self._systems(machines, [name for name in machines
                                               if name not in shares], workloads)
            systems.update({name: systems[shared] for name, shared in shares.items()})
            self._save_info(run_id, machines, systems)
            try:
                yield machines
            finally:
                with contextlib.suppress(HvbenchError):
                    self._save_info(run_id, machines, systems)

    @contextlib.contextmanager
    def _host_lock(self, campaign: Campaign, spec: HostSpec, stop: threading.Event | None
                   ) -> Iterator[None]:
        """A remote host's measurement lock, over a connection of its own (see
        hosts/lock.py); this machine and its labs are this hvbench's to use."""
        if spec.target is None:
            yield
            return
        host = connect(spec, campaign.ssh_identity, campaign.accept_new_host_key)
        try:
            with measurement_lock(host, spec.target.lock, campaign.lock_timeout,
                                  self.reporter.message,
                                  cancelled=lambda: stop is not None and stop.is_set()):
                yield
        finally:
            host.close()

    @contextlib.contextmanager
    def _machines(self, campaign: Campaign, specs: list[PlatformSpec], labs: Labs
                  ) -> Iterator[dict[str, Machine]]:
        with contextlib.ExitStack() as stack:
            opened: dict[str, Machine] = {}
            platforms = {spec.name: make_platform(spec.name, spec.driver, spec.settings,
                                                  platform_context(campaign, spec, labs,
                                                                   self.reporter.message))
                         for spec in specs if not spec.shares}  # shares: its platform's
            together = {name: platform for name, platform in platforms.items()
                        if platform.opens_beside_others()}
            if len(together) > 1:
                self._open_side_by_side(stack, together, opened)
            for name, platform in platforms.items():
                if name not in opened:  # not opened side by side above
                    self.reporter.message(f"opening platform {name}")
                    try:
                        opened[name] = stack.enter_context(platform.open())
                    except TrialError as exc:  # e.g. a guest that panics at boot
                        self._mark_down(opened, name, exc)
                    self._descriptions[name] = platform.describe()
            machines = {name: opened[name] for name in platforms}  # in the campaign's order
            for spec in specs:
                if spec.shares and spec.aggressor and campaign.interference:
                    shared = machines[spec.shares]
                    machines[spec.name] = DownMachine(spec.name, shared.reason) if \
                        isinstance(shared, DownMachine) else \
                        Disturbed(shared, spec.aggressor, campaign.interference.settle)
                    self._descriptions[spec.name] = {
                        **self._descriptions[spec.shares], "shares": spec.shares,
                        "aggressor": spec.aggressor.model_dump()}
            yield machines

    def _open_side_by_side(self, stack: contextlib.ExitStack, platforms: dict[str, Platform],
                           opened: dict[str, Machine]) -> None:
        """Open these platforms at once, a thread each: one guest boots while the host
        creates the next (two Xen domUs: ~5 s of a nested lab's set-up). Every platform
        that opened is closed by ``stack``, even when another failed or Ctrl-C came
        meanwhile: the boots in flight are waited for first."""
        self.reporter.message(f"opening platforms {', '.join(platforms)} side by side")
        contexts = {name: platform.open() for name, platform in platforms.items()}
        failure: BaseException | None = None
        with ThreadPoolExecutor(len(contexts), thread_name_prefix="open") as pool:
            futures = {name: pool.submit(context.__enter__)
                       for name, context in contexts.items()}
            try:
                wait(futures.values())
            finally:  # after Ctrl-C too: each result waits for its boot to end
                for name, future in futures.items():
                    try:
                        opened[name] = future.result()
                        stack.push(contexts[name].__exit__)
                    except TrialError as exc:  # e.g. a guest that panics at boot
                        self._mark_down(opened, name, exc)
                    except BaseException as exc:  # a usage error: the run stops
                        failure = failure or exc
                    self._descriptions[name] = platforms[name].describe()
        if failure is not None:
            raise failure

    def _preflight(self, campaign: Campaign, machines: dict[str, Machine]) -> None:
        """Fail before the first trial when a tool is missing anywhere."""
        binaries = [tool.binary for spec in campaign.workloads
                    for tool in get_workload(spec.name).tools]
        for name, machine in machines.items():
            if isinstance(machine, DownMachine):
                continue
            # every program looked up at once (a round trip to a lab or a guest each)
            with contextlib.suppress(TrialError):  # then one by one, with the reason
                machine.which_all(binaries)
            for spec in campaign.workloads:
                try:
                    workload = get_workload(spec.name)
                    problem = self._restarting_once(name, machine, workload.missing)
                except TrialError as exc:  # a guest that cannot even answer 'which'
                    self._mark_down(machines, name, exc)
                    break
                if problem:
                    raise type(problem)(problem.workload, problem.binary, problem.package,
                                        f"{machine.label} (platform {name})")
            if isinstance(machine, Disturbed):  # its aggressor, where it will run
                try:
                    absent = self._restarting_once(name, machine, _aggressor_missing)
                except TrialError as exc:
                    self._mark_down(machines, name, exc)
                    continue
                if absent:
                    raise absent

    def _systems(self, machines: dict[str, Machine], names: list[str], workloads: list[Any]
                 ) -> dict[str, dict[str, Any]]:
        """The machines' metadata, read from all at once (a few round trips each: ~1 s
        per guest in a nested lab); one whose read failed is asked again alone, from
        this thread, where a crashed guest may be restarted (a local guest's QEMU is
        tied to the thread that starts it)."""
        live = [name for name in names if not isinstance(machines[name], DownMachine)]
        found: dict[str, dict[str, Any]] = {}
        if len(live) > 1:
            with ThreadPoolExecutor(len(live), thread_name_prefix="metadata") as pool:
                futures = {name: pool.submit(sysinfo.collect, machines[name], workloads)
                           for name in live}
                try:
                    wait(futures.values())
                finally:  # after Ctrl-C too: no machine closes under a read in flight
                    for name, future in futures.items():
                        with contextlib.suppress(TrialError):
                            found[name] = future.result()
        return {name: found[name] if name in found else
                self._system(name, machines, workloads) for name in names}

    def _system(self, name: str, machines: dict[str, Machine], workloads: list[Any]
                ) -> dict[str, Any]:
        """A machine's metadata; a guest too slow or broken to give it is marked down
        (its trials fail with the reason) instead of ending the whole run."""
        machine = machines[name]
        if isinstance(machine, DownMachine):
            return {"down": machine.reason}
        try:
            return self._restarting_once(name, machine,
                                         lambda m: sysinfo.collect(m, workloads))
        except TrialError as exc:
            self._mark_down(machines, name, exc)
            return {"down": str(exc)}

    def _mark_down(self, machines: dict[str, Machine], name: str, exc: TrialError) -> None:
        """A platform that cannot be used: its trials fail with this reason."""
        self.dead[name] = str(exc)
        self.reporter.message(f"platform {name} is down: {exc}")
        machines[name] = DownMachine(name, str(exc))

    def _restarting_once(self, name: str, machine: Machine,
                         action: Callable[[Machine], Any]) -> Any:
        """``action(machine)``; a guest that crashed or hung meanwhile is restarted and
        asked once more before it counts as down (nested guests crash now and then)."""
        try:
            return action(machine)
        except TrialError as exc:
            if machine.healthy():
                raise
            self.reporter.message(f"platform {name}: {exc}; restarting it")
            try:
                machine.restart()
            except HvbenchError:
                raise exc from None
            return action(machine)

    def _save_info(self, run_id: str, machines: dict[str, Machine],
                   systems: dict[str, dict[str, Any]]) -> None:
        for name, machine in machines.items():
            self.store.set_platform_info(run_id, name, {
                "platform": self._descriptions.get(name, {}),
                "machine": machine.info(), "system": systems[name]})

    def recover(self, platform: str, machine: Machine) -> str | None:
        """Restart a crashed or hung guest; a platform that cannot restart is down."""
        try:
            machine.restart()
        except HvbenchError as exc:
            self.dead[platform] = str(exc)
            self.reporter.message(f"platform {platform} could not be restarted: {exc}")
            return str(exc)
        return None


def _aggressor_missing(machine: Machine) -> MissingToolError | None:
    """An interference condition's aggressor tool missing where it will run."""
    return machine.missing() if isinstance(machine, Disturbed) else None
