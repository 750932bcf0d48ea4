"""The ``qemu-kvm`` and ``qemu-tcg`` platforms: a guest booted from the appliance.

QEMU runs on a Host (this machine, an SSH server, a lab) in a session of its
own, its console streamed into a local boot log, the agent on a virtio-serial
port, a raw scratch disk on virtio-blk (formatted ext4 on the host) and
user-mode networking. The guest is reused
across trials; a guest that panics, hangs or loses its agent is restarted.
Everything is torn down on success, failure, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..appliance import image as image_mod
from ..errors import TrialError, UsageError
from ..hosts.agent import Agent, AgentError
from ..machine import Completed, Machine
from ..paths import home
from .base import Platform
from .guest import GuestMachine

if TYPE_CHECKING:
    from ..hosts.base import Host, HostProcess

QEMU = "qemu-system-x86_64"
USER_NET = ("10.0.2.15/24", "10.0.2.2")  # QEMU user networking: guest, host gateway


class QemuSettings(BaseModel):
    """Settings of a QEMU guest (``settings = {...}`` in a campaign file)."""

    model_config = ConfigDict(extra="forbid")
    vcpus: int = Field(1, ge=1, le=512)
    memory_mib: int = Field(1024, ge=256, le=1 << 22)
    cpu: str | None = Field(None, pattern=r"^[A-Za-z0-9][\w.,+=-]*$")  # host, max, named
    machine: str = Field("q35", pattern=r"^[\w.-]+$")
    pin: list[int] | None = None  # host CPU for each vCPU, in order
    hugepages: bool = False
    disk_size: str = Field("2G", pattern=r"^\d+[MG]$")
    disk_cache: Literal["none", "writeback", "writethrough", "directsync", "unsafe"] = "none"
    disk_aio: Literal["threads", "native", "io_uring"] = "threads"
    network: Literal["user", "bridge", "none"] = "user"
    #: network = "bridge": an existing Linux bridge with an IPv4 address (needs root),
    #: and the guest's address on it, e.g. "10.0.100.2/24"
    bridge: str | None = Field(None, pattern=r"^[\w.-]{1,15}$")
    guest_address: str | None = Field(None, pattern=r"^\d+\.\d+\.\d+\.\d+/\d+$")
    boot_timeout: float = Field(300, gt=0)
    #: how long past a command's own limit to wait for the agent before giving up on it
    agent_margin: float = Field(30, gt=0)
    kernel: str | None = None
    #: extra kernel command-line options, e.g. "clocksource=hpet"
    kernel_args: str = Field("", pattern=r"^[\w.,=:/ -]*$")
    fresh: bool = False  # boot a new guest for every trial


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept)


class QemuMachine(GuestMachine):
    """A running QEMU guest on a Host, driven through its agent."""

    def __init__(self, platform: QemuPlatform, image: image_mod.Image, settings: QemuSettings,
                 host: Host):
        self.platform = platform
        self.image = image
        self.settings = settings
        self.host = host
        self.accelerator = "kvm" if platform.kind == "qemu-kvm" else "tcg"
        self.label = f"the {platform.name} guest"
        self._process: HostProcess | None = None
        self._agent: Agent | None = None
        self._logs: Path | None = None  # local: boot log and QEMU's stderr
        self._dir: str | None = None  # on the host: the scratch disk
        self._sockets: str | None = None  # on the host: agent socket (short path)
        self._ready_task: asyncio.Task[Any] | None = None
        self._tap: str | None = None
        self._which: dict[str, str | None] = {}
        self._files: dict[str, str] = {}
        self.boots = 0
        self.boot_timings: dict[str, float] = {}
        self.command: list[str] = []
        self.boot_logs: list[str] = []

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        return self.host.loop

    # -- lifecycle ---------------------------------------------------------------
    def _command(self) -> list[str]:
        s = self.settings
        cpu = s.cpu or ("host" if self.accelerator == "kvm" else "max")
        options = ["hvbench.port=hvbench.agent", "hvbench.disk=vda"]
        if s.network == "user":
            options.append(f"hvbench.net={USER_NET[0]},{USER_NET[1]}")
        elif s.network == "bridge":
            options.append(f"hvbench.net={s.guest_address},{self._bridge_host_ip()}")
        options += s.kernel_args.split()
        command = [
            QEMU, "-accel", self.accelerator, "-cpu", cpu, "-machine", s.machine,
            "-smp", str(s.vcpus), "-m", str(s.memory_mib),
            "-nodefaults", "-no-user-config", "-display", "none", "-vga", "none",
            "-no-reboot", "-name", f"hvbench-{self.platform.name},debug-threads=on",
            "-pidfile", f"{self._dir}/qemu.pid",
            "-kernel", self._files["kernel"], "-initrd", self._files["initramfs"],
            "-append", "console=ttyS0 loglevel=6 panic=-1 " + " ".join(options),
            # the console goes to QEMU's stdout: a local file, or our SSH channel
            "-chardev", "stdio,id=console,signal=off",
            "-serial", "chardev:console",
            "-device", "virtio-serial-pci",
            "-chardev", f"socket,id=agent,path={self._sockets}/agent.sock,server=on,wait=off",
            "-device", "virtserialport,chardev=agent,name=hvbench.agent",
            "-drive", (f"file={self._dir}/scratch.img,if=none,id=scratch,format=raw,"
                       f"cache={s.disk_cache},aio={s.disk_aio}"),
            "-device", "virtio-blk-pci,drive=scratch",
        ]
        if s.network == "user":
            command += ["-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0"]
        elif s.network == "bridge":
            command += ["-netdev", f"tap,id=net0,ifname={self._tap},script=no,downscript=no",
                        "-device", "virtio-net-pci,netdev=net0"]
        if s.hugepages:
            command += ["-mem-path", "/dev/hugepages", "-mem-prealloc"]
        return command

    def _bridge_host_ip(self) -> str:
        """The host's IPv4 address on the bridge: the guest's gateway and server address."""
        bridge = str(self.settings.bridge)
        address = self.host.bridge_address(bridge)
        if address is None:
            raise UsageError(f"platform {self.platform.name}: bridge {bridge!r} does not exist "
                             f"on {self.host.label} or has no IPv4 address (create it, e.g. "
                             "'ip link add hvbr0 type bridge; ip addr add 10.0.100.1/24 dev "
                             "hvbr0; ip link set hvbr0 up')")
        return address

    def _create_tap(self) -> None:
        """A tap device for this guest, enslaved to the bridge; deleted at shutdown."""
        if self.host.run(["id", "-u"], timeout=30).stdout.strip() != "0":
            raise UsageError(f"platform {self.platform.name}: bridge networking needs root "
                             f"on {self.host.label} (tap devices); use network = 'user' "
                             "otherwise")
        self._bridge_host_ip()  # fails clearly when the bridge is unusable
        tap = f"hvb{os.urandom(4).hex()}"
        for argv in (["ip", "tuntap", "add", "dev", tap, "mode", "tap"],
                     ["ip", "link", "set", tap, "master", str(self.settings.bridge)],
                     ["ip", "link", "set", tap, "up"]):
            done = self.host.run(argv, timeout=30)
            if done.exit_code != 0:
                self.host.run(["ip", "link", "del", tap], timeout=30)
                raise TrialError(f"cannot set up tap {tap}: {done.stderr.strip()[:200]}")
            self._tap = tap

    def _prepare_disk(self) -> None:
        disk = f"{self._dir}/scratch.img"
        self.host.check(["truncate", "-s", self.settings.disk_size, disk], 120,
                        "creating the scratch disk")
        mkfs = self.host.native().which("mke2fs")
        if mkfs:  # formatting on the host is fast; the guest falls back to busybox mke2fs
            self.host.check([mkfs, "-q", "-F", "-t", "ext4", "-E",
                             "lazy_itable_init=1,lazy_journal_init=1", disk], 300,
                            "formatting the scratch disk")

    def _check_host(self) -> None:
        if self.host.native().which(QEMU) is None:
            raise UsageError(f"{QEMU} is not installed on {self.host.label}: "
                             "apt-get install qemu-system-x86")
        if self.accelerator == "kvm" and self.host.run(
                ["test", "-r", "/dev/kvm", "-a", "-w", "/dev/kvm"], timeout=30).exit_code:
            raise UsageError(f"qemu-kvm needs /dev/kvm (read-write) on {self.host.label}: "
                             "check 'hvbench doctor', or use qemu-tcg")

    def boot(self) -> None:
        """Start QEMU on the host and wait for the agent; record boot timings."""
        if not self.host.alive():
            self.host.reconnect()
        if not self._files:
            self._check_host()
            self._files = self.host.place({"kernel": self.image.kernel,
                                           "initramfs": self.image.initramfs}, self.image.key,
                                          self.platform.say)
        runtime = home() / "guests"
        runtime.mkdir(parents=True, exist_ok=True)
        self._logs = Path(tempfile.mkdtemp(prefix=f"{self.platform.name}-", dir=runtime))
        self.boots += 1
        try:
            self._dir = self.host.make_dir(self.platform.name)
            self._sockets = self.host.make_dir("socket")
            self._prepare_disk()
            if self.settings.network == "bridge":
                self._create_tap()
            self.command = self._command()
            started = time.monotonic()
            self._process = self.host.start(self.command, self._logs / "boot.log",
                                            self._logs / "qemu.stderr")
            self.boot_timings = self._loop.run_until_complete(
                self._await_agent(started, self._logs / "boot.log"))
            self._pin_vcpus()
        except BaseException:
            self._keep_log()
            self.shutdown()
            raise
        self._keep_log()

    async def _await_agent(self, started: float, log: Path) -> dict[str, float]:
        deadline = started + self.settings.boot_timeout
        timings: dict[str, float] = {}
        socket_path = f"{self._sockets}/agent.sock"
        try:
            return await self._poll_boot(started, log, deadline, timings, socket_path)
        finally:
            task = self._ready_task
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            elif task is not None and not task.cancelled():
                task.exception()  # retrieved: never "exception was never retrieved"
            self._ready_task = None

    async def _poll_boot(self, started: float, log: Path, deadline: float,
                         timings: dict[str, float], socket_path: str) -> dict[str, float]:
        """Watch the boot log and the agent socket until the agent says it is ready;
        the caller finishes ``self._ready_task`` whatever happens."""
        ready_task: asyncio.Task[Any] | None = None
        next_try = 0.0  # over SSH every connection attempt costs a round trip
        seen = 0
        while True:
            now = time.monotonic()
            self._check_alive("during boot")
            size = log.stat().st_size if log.exists() else 0
            if "first_output_ms" not in timings and size:
                timings["first_output_ms"] = (now - started) * 1000
            if "init_ms" not in timings and size > seen:
                with log.open("rb") as handle:  # only what is new, plus a marker's length
                    handle.seek(max(0, seen - 16))
                    if b"hvbench-init" in handle.read():
                        timings["init_ms"] = (now - started) * 1000
                seen = size
            if self._agent is None and now >= next_try:
                next_try = now + (0.25 if self.host.remote else 0.01)
                with contextlib.suppress(OSError):
                    reader, writer = await self.host.open_unix(socket_path)
                    self._agent = Agent(reader, writer)
                    ready_task = asyncio.ensure_future(self._agent.wait_ready())
                    self._ready_task = ready_task
            if ready_task is not None and ready_task.done():
                if ready_task.exception() is not None:
                    # The agent connection broke: if QEMU is exiting, say why it did.
                    for _ in range(40):
                        if self._process is not None and self._process.poll() is not None:
                            break
                        await asyncio.sleep(0.05)
                    self._check_alive("during boot")
                ready = ready_task.result()
                if ready.scratch != "vda":
                    raise TrialError(f"the {self.platform.name} guest could not mount its "
                                     f"scratch disk (got {ready.scratch}); boot log: "
                                     f"{_tail(log)}")
                timings["agent_ready_ms"] = (time.monotonic() - started) * 1000
                timings["guest_uptime_ms"] = ready.uptime * 1000
                timings.setdefault("init_ms", timings["agent_ready_ms"])
                timings.setdefault("first_output_ms", timings["init_ms"])
                return timings
            if now > deadline:
                raise TrialError(f"the {self.platform.name} guest did not become ready within "
                                 f"{self.settings.boot_timeout:.0f} s; boot log: {_tail(log)}")
            await asyncio.sleep(0.01)

    def _check_alive(self, when: str) -> None:
        if self._process is not None and self._process.poll() is not None:
            code = self._process.poll()
            log = self._logs / "boot.log" if self._logs else Path("/nonexistent")
            stderr = _tail(self._logs / "qemu.stderr", 3) if self._logs else ""
            panic = "Kernel panic" in (log.read_text(errors="replace") if log.exists() else "")
            if panic:
                cause = "the guest kernel panicked"
            elif code == -1 and self.host.remote and not self.host.alive():
                cause = f"the connection to {self.host.label} broke"
            else:
                cause = f"QEMU exited with code {code}"
            where = f" ({self.host.label})" if self.host.remote else ""
            raise TrialError(f"{cause} {when} on {self.platform.name}{where}"
                             + (f"; QEMU said: {stderr}" if stderr else "")
                             + f"; boot log: {_tail(log)}")

    def _pin_vcpus(self) -> None:
        """Pin each vCPU thread (named 'CPU n/ACCEL' thanks to debug-threads=on)."""
        if not self.settings.pin:
            return
        listing = self.host.check(
            ["sh", "-c", 'p=$(cat "$1") && for t in /proc/$p/task/*; do '
             'echo "${t##*/} $(cat "$t/comm")"; done', "sh", f"{self._dir}/qemu.pid"],
            30, "listing QEMU's threads").stdout
        for line in listing.splitlines():
            tid, _, name = line.partition(" ")
            if not name.startswith("CPU ") or "/" not in name:
                continue
            index = int(name[4:name.index("/")])
            if index < len(self.settings.pin):
                self.host.check(["taskset", "-p", "-c", str(self.settings.pin[index]), tid],
                                30, f"pinning vCPU {index}")

    def _keep_log(self) -> str:
        """Copy the boot log next to the store, as an artifact of the run."""
        if self._logs is None or not (self._logs / "boot.log").exists():
            return ""
        target = home() / "artifacts" / "boot-logs"
        target.mkdir(parents=True, exist_ok=True)
        path = target / f"{self._logs.name}-boot{self.boots}.log"
        shutil.copyfile(self._logs / "boot.log", path)
        if str(path) not in self.boot_logs:
            self.boot_logs.append(str(path))
        return str(path)

    def _cancel_pending(self) -> None:
        """Finish tasks an interrupt left suspended, so none is destroyed while pending."""
        if self._loop.is_closed() or self._loop.is_running():
            return
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        if pending:
            with contextlib.suppress(BaseException):
                self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

    def shutdown(self) -> None:
        """Kill QEMU (its whole session) and remove the guest's directories."""
        process, self._process = self._process, None
        if process is not None:  # first, so a waiting task sees the end at once
            process.kill()
        self._cancel_pending()
        if self._agent is not None:
            with contextlib.suppress(Exception):
                self._agent.close()
            self._agent = None
        for directory in (self._dir, self._sockets):
            if directory is not None:
                self.host.remove(directory)
        self._dir = self._sockets = None
        if self._logs is not None:
            shutil.rmtree(self._logs, ignore_errors=True)
            self._logs = None
        if self._tap is not None:
            with contextlib.suppress(TrialError):
                self.host.run(["ip", "link", "del", self._tap], timeout=30)
            self._tap = None
        self._which.clear()

    def restart(self) -> None:
        self._keep_log()
        self.shutdown()
        self.boot()

    def healthy(self) -> bool:
        return self._process is not None and self._process.poll() is None \
            and self._agent is not None and self.host.alive()

    def close(self) -> None:
        self._keep_log()
        self.shutdown()

    # -- Machine ---------------------------------------------------------------------
    def run(self, argv: Sequence[str], timeout: float, stdin: bytes | None = None) -> Completed:
        if stdin is not None:
            raise TrialError("guest commands take no standard input")
        if not self.healthy():
            self._check_alive("before the command")
            raise TrialError(f"the {self.platform.name} guest is not running")
        try:
            return self._loop.run_until_complete(
                self._agent.run(argv, timeout, self.settings.agent_margin))  # type: ignore[union-attr]
        except AgentError as exc:
            self._agent = None  # the conversation is out of step: restart before reuse
            self._await_exit(2.0)
            self._check_alive("during the command")
            raise TrialError(f"{exc} ({self.platform.name})") from None
        except TrialError:
            self._agent = None
            self._check_alive("during the command")
            raise

    def _await_exit(self, seconds: float) -> None:
        """A broken agent connection usually means QEMU is exiting: give it a moment,
        so the error names the real cause (exit code, panic) rather than the symptom."""
        if self._process is not None:
            self._process.wait(seconds)

    def write_file(self, path: str, data: bytes) -> None:
        if not self.healthy():
            raise TrialError(f"the {self.platform.name} guest is not running")
        try:
            self._loop.run_until_complete(self._agent.put(path, data))  # type: ignore[union-attr]
        except AgentError as exc:
            self._agent = None
            raise TrialError(str(exc)) from None

    def network_absent(self) -> str | None:
        if self.settings.network == "none":
            return f"{self.platform.name} has no network (network = 'none')"
        return None

    def network_peer(self) -> tuple[Machine, str, str]:
        if self.settings.network == "none":
            raise TrialError(f"{self.platform.name} has no network (network = 'none')")
        if self.settings.network == "bridge":
            address = self._bridge_host_ip()
            return self.host.native(), address, address
        return self.host.native(), "127.0.0.1", USER_NET[1]

    def info(self) -> dict[str, Any]:
        found = {
            "host": self.host.label,
            "accelerator": self.accelerator,
            "qemu_command": " ".join(self.command),
            "qemu_argv": self.command,
            "boot_timings_ms": self.boot_timings,
            "image": self.image.key, "kernel": self.image.manifest.get("kernel_origin"),
            "kernel_boot": "PVH vmlinux" if self.image.pvh else "bzImage",
            "disk": {"format": "raw", "size": self.settings.disk_size,
                     "cache": self.settings.disk_cache, "aio": self.settings.disk_aio,
                     "bus": "virtio-blk", "filesystem": "ext4"},
            "network": {
                "user": "user-mode (slirp), virtio-net; servers on the host at 10.0.2.2",
                "bridge": f"tap {self._tap} on bridge {self.settings.bridge}, virtio-net; "
                          f"guest {self.settings.guest_address}",
                "none": "none"}[self.settings.network],
            "pinning": self.settings.pin, "hugepages": self.settings.hugepages,
            "boot_logs": [p for p in self.boot_logs if p],
        }
        if self.host.nested:
            found["nested"] = self.host.nested
        return found


class QemuPlatform(Platform):
    """``qemu-kvm`` (hardware virtualization) or ``qemu-tcg`` (emulation)."""

    kind = "qemu-tcg"

    def _settings(self) -> QemuSettings:
        return self.parse_settings(QemuSettings)

    def validate(self) -> None:
        settings = self._settings()
        if settings.network == "bridge" and not (settings.bridge and settings.guest_address):
            raise UsageError(f"platform {self.name}: network = 'bridge' needs 'bridge' (an "
                             "existing bridge) and 'guest_address' (e.g. '10.0.100.2/24')")

    @contextlib.contextmanager
    def open(self) -> Iterator[Machine]:
        settings = self._settings()
        appliance = image_mod.build(Path(settings.kernel) if settings.kernel else None,
                                    payload=self.context.payload, progress=self.say)
        with self.guest_on_host(appliance, lambda host: QemuMachine(
                self, appliance, settings, host)) as machine:
            yield machine


class QemuKvmPlatform(QemuPlatform):
    kind = "qemu-kvm"


class QemuTcgPlatform(QemuPlatform):
    kind = "qemu-tcg"

