"""GuestMachine: the one guest lifecycle every hypervisor driver shares.

Boot (files placed on the host, a private directory, the driver's start, readiness
of the agent, the scratch disk checked), agent calls with their error handling,
restart after a crash or hang, health, boot logs kept as artifacts, and teardown
exist here once. A driver (QEMU, Xen) supplies hooks only: what its host must have,
how the guest starts and its agent is reached, how it is destroyed, and where its
boot log is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import uuid
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ..appliance.image import Image
from ..appliance.image import build as build_image
from ..collect import Collector, CountedKernel
from ..errors import GuestDied, TrialError, UsageError
from ..hosts.agent import AgentClosed, AgentError, KernelCounters, Ready
from ..hosts.base import Host
from ..hosts.channel import AgentChannel
from ..machine import Background, Completed, Machine, look_up, read_many, run_together
from ..paths import home
from ..scripts import Reply
from .base import Platform
from .guestbg import GuestBackground
from .guestcfg import DEVICES_SCRIPT, GuestSettings, mark_boot_log, parse_devices, tail
from .tile import Neighbourhood, Tile, check_fits

#: where the appliance's init mounts the scratch disk (or a tmpfs)
GUEST_SCRATCH = "/scratch/hvbench"
T = TypeVar("T")


class GuestMachine(Machine):
    """A guest booted from the appliance on a Host and driven through its agent."""

    #: the block device the appliance's init must mount as the scratch disk
    scratch_device: str
    #: seconds for small queries (which, cat); nested guests can stall for a while
    query_seconds: float = 60
    #: the host bridge the guest's NIC is on (None: no bridged network)
    bridge: str | None = None

    def __init__(self, platform: GuestPlatform, image: Image, settings: GuestSettings,
                 host: Host):
        self.platform = platform
        self.image = image
        self.settings = settings
        self.host = host
        self.label = f"the {platform.name} guest"
        self.channel: AgentChannel | None = None
        self.boots = 0
        self.boot_timings: dict[str, float] = {}
        self.boot_logs: list[str] = []
        self.artifact_errors: list[str] = []  # artifacts that could not be written
        #: the guest's own view of its scratch disk and NIC (drivers, sysfs paths)
        self.guest_view: dict[str, Any] = {}
        self._files: dict[str, str] = {}  # host paths of the placed image files
        self._dir: str | None = None  # the guest's private directory on the host
        self._which: dict[str, str | None] = {}
        #: the kernel counters the agent sent with each command since count_kernel()
        self._counted: list[KernelCounters] | None = None
        self._log_stem = f"{platform.name}-{uuid.uuid4().hex[:8]}"

    #: which guest of a tile this is, from 1 (0: the platform's only guest), of how many
    member: int = 0
    tile_size: int = 1

    @property
    def name(self) -> str:
        return f"{self.platform.name}-g{self.member}" if self.member else self.platform.name

    def join_tile(self, index: int, count: int) -> None:
        """Be guest ``index`` (from 1) of a tile of ``count``: a name, label and boot
        logs of its own (before it boots)."""
        self.member, self.tile_size = index, count
        self.label = f"guest {index} of {count} of {self.platform.name}"
        self._log_stem = f"{self.name}-{uuid.uuid4().hex[:8]}"

    # -- hooks -------------------------------------------------------------------------
    @abstractmethod
    def check_host(self) -> None:
        """Fail clearly (UsageError) when the host cannot run this guest."""

    @abstractmethod
    def image_files(self) -> dict[str, Path]:
        """The image files the guest boots from, by role, to place on the host."""

    @abstractmethod
    def start(self, started: float) -> tuple[Ready, dict[str, float]]:
        """Start the guest (its directory is ``self._dir``), set ``self.channel`` and wait
        for the agent's READY; the boot timings in milliseconds."""

    @abstractmethod
    def destroy(self) -> None:
        """Stop the guest and release what ``start`` made beyond its directory."""

    @abstractmethod
    def boot_log(self) -> str:
        """The guest's console output so far ('' when there is none)."""

    def after_boot(self) -> None:
        """Work once the agent is ready (pinning, recording the hypervisor's view)."""

    def running(self) -> bool:
        """Whether the guest's process or domain still runs, as far as is cheap to tell."""
        return True

    def linger(self, seconds: float) -> None:
        """A broken agent stream usually means the guest is going away: give it up to
        ``seconds`` to be gone, so the error names the real cause (exit code, panic)."""

    def raise_if_gone(self, when: str) -> None:
        """Raise a TrialError naming the cause when the guest is gone (exit, panic)."""

    def state(self) -> str:
        """A few words on the guest's state for error messages ('' when not known)."""
        return ""

    def death_note(self) -> str:
        """What the hypervisor said about the guest's end ('' when nothing is known)."""
        return ""

    def reattach(self) -> bool:
        """Reach the agent again after its stream ended while the guest still runs."""
        return False

    # -- the lifecycle -----------------------------------------------------------------
    def await_agent(self, started: float, deadline: float,
                    connect: Callable[[], AgentChannel], retry: float,
                    log: Path | None = None) -> tuple[Ready, dict[str, float]]:
        """Reach the agent (``connect`` raises OSError until it can, tried every ``retry``
        seconds) and wait for its READY; the guest's death, a broken stream and the
        deadline are errors that quote the boot log. With ``log`` (a local console log)
        the first output and the init's marker are timed too."""
        timings: dict[str, float] = {}
        next_try, seen = 0.0, 0
        while True:
            now = time.monotonic()
            self.raise_if_gone("during boot")
            if log is not None:
                seen = mark_boot_log(log, seen, now - started, timings)
            if self.channel is None and now >= next_try:
                next_try = now + retry
                with contextlib.suppress(OSError):
                    self.channel = connect()
            ready = None
            if self.channel is None:
                self.host.pause(min(retry, 0.05))
            else:
                try:
                    ready = self.channel.ready(0.01 if log is not None else 0.5)
                except AgentError:  # the stream broke: if the guest is exiting, say why
                    self.linger(2.0)
                    self.raise_if_gone("during boot")
                    said = self.death_note() or "it crashed or was destroyed"
                    raise GuestDied(f"the {self.name} guest closed its agent stream during "
                                    f"boot ({said}); boot log: {tail(self.boot_log())}"
                                    ) from None
            if ready is not None:
                timings["agent_ready_ms"] = (time.monotonic() - started) * 1000
                timings["guest_uptime_ms"] = ready.uptime * 1000
                if log is not None:
                    timings.setdefault("init_ms", timings["agent_ready_ms"])
                    timings.setdefault("first_output_ms", timings["init_ms"])
                return ready, timings
            if now > deadline:
                raise TrialError(f"the {self.name} guest on {self.host.label} did not "
                                 f"become ready within {deadline - started:g} s; boot log: "
                                 f"{tail(self.boot_log())}")

    def boot(self) -> None:
        """Place the image, start the guest and wait for its agent; record boot timings."""
        if not self.host.alive():
            self.host.reconnect()
        if not self._files:
            self.check_host()
            self._files = self.host.place(self.image_files(), self.image.key,
                                          self.platform.say)
        self.boots += 1
        started = time.monotonic()
        try:
            self._dir = self.host.make_dir(self.name)
            ready, self.boot_timings = self.start(started)
            if ready.scratch != self.scratch_device:
                raise TrialError(f"the {self.name} guest could not mount its scratch disk "
                                 f"(got {ready.scratch}); boot log: {tail(self.boot_log())}")
            self.after_boot()
            self.guest_view = self.devices()
        except BaseException:
            self.keep_log()
            self.shutdown()
            raise
        self.keep_log()

    def shutdown(self) -> None:
        """Stop the guest and remove everything it had on the host."""
        self.destroy()
        self._drop_channel()
        if self._dir is not None:
            self.host.remove(self._dir)
            self._dir = None
        self._which.clear()

    def restart(self) -> None:
        self.keep_log()
        self.shutdown()
        self.boot()

    def healthy(self) -> bool:
        return self.channel is not None and self.host.alive() and self.running()

    def close(self) -> None:
        self.keep_log()
        self.shutdown()

    def keep_log(self) -> None:
        """Copy the boot log next to the store, as an artifact of the run (best effort:
        the host may be gone)."""
        try:
            text = self.boot_log()
        except Exception:  # the host is gone (any transport error): nothing to keep
            return
        if not text:
            return
        target = home() / "artifacts" / "boot-logs"
        path = target / f"{self._log_stem}-boot{self.boots}.log"
        try:
            target.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        except OSError as exc:  # a full or read-only disk: say so in the run's records
            problem = f"boot log not kept at {path}: {exc.strerror}"
            if problem not in self.artifact_errors:
                self.artifact_errors.append(problem)
            return
        if str(path) not in self.boot_logs:
            self.boot_logs.append(str(path))

    def bridge_address(self, bridge: str) -> str:
        """The host's IPv4 address on ``bridge``: the guest's gateway, and where servers
        for network workloads listen."""
        address = self.host.bridge_address(bridge)
        if address is None:
            raise UsageError(f"platform {self.name}: bridge {bridge!r} does not exist on "
                             f"{self.host.label} or has no IPv4 address (create it, e.g. "
                             "'ip link add hvbr0 type bridge; ip addr add 10.0.100.1/24 dev "
                             "hvbr0; ip link set hvbr0 up')")
        return address

    def _drop_channel(self) -> None:
        channel, self.channel = self.channel, None
        if channel is not None:
            channel.close()

    def _call(self, action: Callable[[AgentChannel], T]) -> T:
        """``action`` on the agent. A stream that ended while the guest runs is reached
        again once and the request sent once more (every request hvbench sends may be
        repeated); otherwise the guest must restart before it is used again, and the
        error names the cause (QEMU's exit, a panic, the domain gone)."""
        for attempt in (1, 2):
            if not self.healthy():
                self.raise_if_gone("before the command")
                raise TrialError(f"the {self.name} guest is not running")
            assert self.channel is not None
            try:
                return action(self.channel)
            except AgentError as exc:
                if isinstance(exc, AgentClosed) and attempt == 1 and self.reattach():
                    continue
                self._drop_channel()
                self.linger(2.0)
                self.raise_if_gone("during the command")
                state = self.state()
                raise TrialError(f"{exc} ({self.name}{': ' + state if state else ''})"
                                 ) from None
            except TrialError:  # a time-out: the conversation is out of step
                self._drop_channel()
                self.raise_if_gone("during the command")
                raise
        raise AssertionError("unreachable")

    # -- Machine -----------------------------------------------------------------------
    def run(self, argv: Sequence[str], timeout: float, stdin: bytes | None = None) -> Completed:
        if stdin is not None:
            raise TrialError("guest commands take no standard input")
        margin = self.settings.agent_margin
        started = time.monotonic()
        counted = self._counted
        if counted is None:
            done = self._call(lambda channel: channel.run(argv, timeout, margin))
        else:
            done, counters = self._call(lambda channel: channel.run_counted(argv, timeout,
                                                                            margin))
            counted.append(counters)
        return dataclasses.replace(done, observed=time.monotonic() - started)

    def count_kernel(self) -> None:
        """From now on, have the agent read the kernel's counters around each command."""
        self._counted = []

    def kernel_counted(self) -> list[KernelCounters]:
        """The counters read around each command since ``count_kernel``; stops counting."""
        counted, self._counted = self._counted or [], None
        return counted

    def collectors(self) -> list[Collector]:
        """The guest's own kernel, read by its agent around the trial's commands; each
        driver adds its hypervisor's view."""
        return [CountedKernel(self)]

    def write_file(self, path: str, data: bytes) -> None:
        self._call(lambda channel: channel.put(path, data))

    def spawn(self, argv: Sequence[str]) -> Background:
        return GuestBackground(self, argv, GUEST_SCRATCH, self.query_seconds)

    def hardware_host(self) -> Machine:
        return self.host.native()

    def which(self, binary: str) -> str | None:
        return self.which_all([binary])[binary]

    def run_each(self, commands: Sequence[Sequence[str]], timeout: float) -> list[Reply]:
        return run_together(self, commands, timeout)

    def which_all(self, binaries: Sequence[str]) -> dict[str, str | None]:
        """Looked up in one request to the agent (a round trip through the guest),
        remembered until the guest restarts."""
        return look_up(self, 'for b; do which "$b" || echo -; done', binaries,
                       self._which, self.query_seconds)

    def read_file(self, path: str) -> str | None:
        done = self.run(["cat", path], timeout=self.query_seconds)
        return done.stdout if done.exit_code == 0 else None

    def read_files(self, paths: Sequence[str]) -> dict[str, str | None]:
        """In one request to the agent (each is a round trip through the guest)."""
        found = read_many(self, paths)
        return super().read_files(paths) if found is None else found

    def scratch_dir(self) -> str:
        return GUEST_SCRATCH

    def free_port(self) -> int:
        return self.host.native().free_port()

    def devices(self) -> dict[str, Any]:
        """Which devices and drivers the guest itself sees for its scratch disk and its
        first NIC (proof of the I/O path measured)."""
        done = self.run(["sh", "-c", DEVICES_SCRIPT, "sh", self.scratch_device],
                        timeout=self.query_seconds)
        return parse_devices(done.stdout, self.scratch_device)

    def network_absent(self) -> str | None:
        if self.bridge:
            return None
        return (f"{self.platform.name} has no network (network = '{self.settings.network}'"
                f"; set network = 'bridge' with a bridge on {self.host.label} to measure "
                "networking)")

    def network_peer(self) -> tuple[Machine, str, str]:
        """Servers for network workloads run on the host, reached on the bridge."""
        if not self.bridge:
            raise TrialError(str(self.network_absent()))
        address = self.bridge_address(self.bridge)
        return self.host.native(), address, address

    def common_info(self) -> dict[str, Any]:
        """What every guest records: host, image, boot timings and logs, pinning."""
        found: dict[str, Any] = {
            "host": self.host.label, "boot_timings_ms": self.boot_timings,
            "image": self.image.key, "kernel": self.image.manifest.get("kernel_origin"),
            "pinning": self.settings.pin, "boot_logs": self.boot_logs,
            "guest_view": self.guest_view, "artifact_errors": self.artifact_errors}
        if self.host.nested:
            found["nested"] = self.host.nested
        return found


class GuestPlatform(Platform):
    """A platform whose machine is a guest booted from the appliance on its host."""

    settings_model: ClassVar[type[GuestSettings]]
    #: the platform kind, e.g. "qemu-kvm" or "xen-pvh"
    kind: ClassVar[str]

    def guest_settings(self) -> GuestSettings:
        return self.parse_settings(self.settings_model)

    def _boot_surviving_one_death(self, machine: GuestMachine) -> None:
        """Boot ``machine``; one that died while booting (nested guests crash now and
        then) is booted once more before its platform counts as down. A hang is not
        retried: its boot time-out has already been waited for."""
        try:
            machine.boot()
        except GuestDied as first:
            self.say(f"{machine.name}: {first}; booting it once more")
            try:
                machine.boot()
            except GuestDied as again:
                raise GuestDied(f"{again} (it died on its first boot too)") from None

    def validate(self) -> None:
        settings = self.guest_settings()
        if settings.network == "bridge" and not (settings.bridge and settings.guest_address):
            raise UsageError(f"platform {self.name}: network = 'bridge' needs 'bridge' (an "
                             "existing bridge on the host) and 'guest_address' (e.g. "
                             "'10.0.100.2/24')")
        if settings.guests > 1 and settings.neighbours:
            raise UsageError(f"platform {self.name}: guests = {settings.guests} with "
                             f"neighbours = {settings.neighbours}: an interference study "
                             "measures one guest; drop one of them")
        count = settings.guests + settings.neighbours
        what = (f"guests = {settings.guests}" if settings.guests > 1
                else f"neighbours = {settings.neighbours}")
        if count > 1 and settings.guest_address:
            raise UsageError(f"platform {self.name}: {what} with one guest_address "
                             f"({settings.guest_address}): each guest would take the same "
                             "address; use network = 'user' for several guests")

    def check_fits(self, settings: GuestSettings, host: Host, count: int) -> None:
        """Refuse ``count`` guests the host cannot hold, before any boots."""
        check_fits(self.name, settings, host, count)

    def kernel(self, settings: GuestSettings) -> Path | None:
        """A kernel of the user's own to boot instead of the appliance's."""
        return None

    @abstractmethod
    def machine(self, image: Image, settings: GuestSettings, host: Host) -> GuestMachine:
        """The driver's machine for this guest on ``host`` (not booted yet)."""

    @contextlib.contextmanager
    def open(self) -> Iterator[Machine]:
        """Build (or find) the appliance, connect to the host, boot the guest there, and
        always tear both down. On an SSH host the host's own workload tools (the servers
        for guest network workloads) come from the guest's appliance."""
        settings = self.guest_settings()
        appliance = build_image(self.kernel(settings), payload=self.context.payload,
                                progress=self.say)
        count = settings.guests + settings.neighbours
        with contextlib.ExitStack() as stack:
            members: list[GuestMachine] = []
            for index in range(1, count + 1):
                # each guest of a tile gets a host connection of its own: during a trial
                # each is driven from a thread of its own, all at once
                host = self.context.connect()
                stack.callback(host.close)
                if self.context.over_ssh:
                    host.use_bundle(appliance, self.say)
                if index == 1 and count > 1:
                    self.check_fits(settings, host, count)
                machine = self.machine(appliance, settings, host)
                if count > 1:
                    machine.join_tile(index, count)
                stack.callback(machine.close)
                members.append(machine)
            # one after the other, from this thread: a guest's QEMU dies with the thread
            # that started it (tied()), and a guest calibrates its clock while it boots:
            # guests booting together on a busy host miscalibrate it (measured: one of
            # two TCG guests booted together counted sysbench at 460 events/s, 30% more
            # than a guest alone can do: its seconds were too long)
            for index, machine in enumerate(members, 1):
                if count > 1:
                    self.say(f"booting guest {index} of {count} of {self.name}")
                self._boot_surviving_one_death(machine)
            if settings.neighbours:
                yield Neighbourhood(list[Machine](members))
            else:
                yield members[0] if count == 1 else Tile(list[Machine](members), self.name)
