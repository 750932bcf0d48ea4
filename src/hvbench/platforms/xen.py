"""The ``xen-pv``, ``xen-pvh`` and ``xen-hvm`` platforms: appliance guests under Xen.

The guest is described by an xl.cfg written on the dom0 (the Host: this
machine when hvbench runs in dom0, a dom0 over SSH, or the Xen lab), started
with ``xl create`` and always ended with ``xl destroy``, also on failure and
Ctrl-C. The agent talks over the guest's Xen console (``hvc0``) through ``xl
console``; the agent's framing and checksums make console noise harmless. A
scratch disk appears in the guest as ``xvdb`` (a file or a block device on the
dom0). A stale domain of the same name, left by a crash, is destroyed first.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import re
import time
import zlib
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..appliance import image as image_mod
from ..errors import TrialError, UsageError
from ..hosts.agent import Agent, AgentClosed, AgentError, Ready
from ..machine import Completed, Machine
from ..paths import home
from .base import Platform
from .guest import GuestMachine

if TYPE_CHECKING:
    from ..hosts.base import Host

_FREE = re.compile(r"^free_memory\s*:\s*(\d+)", re.M)


class XenSettings(BaseModel):
    """Settings of a Xen guest (``settings = {...}`` in a campaign file)."""

    model_config = ConfigDict(extra="forbid")
    vcpus: int = Field(1, ge=1, le=512)
    memory_mib: int = Field(512, ge=128, le=1 << 22)
    pin: list[int] | None = None  # physical CPUs for the vCPUs (xl.cfg cpus=)
    disk_size: str = Field("1G", pattern=r"^\d+[MG]$")
    #: "file": an image file on the dom0 (loop device); "phy": an existing block device
    disk_backend: Literal["file", "phy"] = "file"
    disk_device: str | None = Field(None, pattern=r"^/dev/[\w/.-]+$")  # for "phy"
    #: "auto": a vif on the bridge the host offers its guests (the Xen lab's xenbr0),
    #: else none; "bridge": a vif on an existing dom0 bridge with an IPv4 address
    network: Literal["auto", "none", "bridge"] = "auto"
    bridge: str | None = Field(None, pattern=r"^[\w.-]{1,15}$")
    guest_address: str | None = Field(None, pattern=r"^\d+\.\d+\.\d+\.\d+/\d+$")
    #: seconds to the agent; default 300, or 900 for HVM nested in a lab (its device
    #: model copies the kernel and initramfs in slowly under TCG)
    boot_timeout: float | None = Field(None, gt=0)
    agent_margin: float = Field(30, gt=0)
    kernel_args: str = Field("", pattern=r"^[\w.=:/ -]*$")
    #: xl.cfg tsc_mode; unset: Xen's default, or "native" for PVH/HVM nested in a lab
    tsc_mode: Literal["default", "always_emulate", "native", "native_paravirt"] | None = None
    fresh: bool = False


def _quote(value: str) -> str:
    """An xl.cfg string literal (values are validated: no quotes or newlines inside)."""
    if any(c in value for c in "\"\\\n"):
        raise UsageError(f"cannot put {value!r} in an xl.cfg")
    return f'"{value}"'


class _Unready(Exception):
    """The guest did not reach its agent; the message says how."""


class XenMachine(GuestMachine):
    """A running Xen domU, driven through its agent over the Xen console."""

    query_seconds = 300  # generous: nested domUs can stall for a while

    def __init__(self, platform: XenPlatform, image: image_mod.Image, settings: XenSettings,
                 host: Host):
        self.platform = platform
        self.image = image
        self.settings = settings
        self.host = host
        self.guest_type = platform.kind.removeprefix("xen-")
        self.domain = f"hvbench-{platform.name}"
        self.label = f"the {platform.name} guest"
        self._agent: Agent | None = None
        self._console: Any = None
        self._dir: str | None = None
        self._files: dict[str, str] = {}
        self._which: dict[str, str | None] = {}
        self.config = ""
        self.boots = 0
        self.boot_timings: dict[str, float] = {}
        self.boot_logs: list[str] = []
        self.xl_info = ""
        self.xl_list: Any = None
        self.bridge, self.guest_address = self._network()
        self.console_reattached = 0
        nested_hvm = self.guest_type == "hvm" and bool(host.nested)
        self.boot_timeout = settings.boot_timeout or (900.0 if nested_hvm else 300.0)

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        return self.host.loop

    # -- lifecycle -------------------------------------------------------------------
    def _xl(self, *args: str, timeout: float = 120) -> Completed:
        return self.host.run(["xl", *args], timeout=timeout)

    def _check_host(self) -> None:
        if self.host.native().which("xl") is None:
            raise UsageError(f"{self.host.label} has no xl: {self.platform.kind} needs a Xen "
                             "dom0 (Debian: xen-utils; or use --host lab:xen)")
        info = self._xl("info")
        if info.exit_code != 0:
            raise UsageError(f"{self.host.label} is not a working Xen dom0 ('xl info' "
                             f"failed: {(info.stderr or info.stdout).strip()[:200]})")
        self.xl_info = info.stdout
        free = _FREE.search(info.stdout)
        if free and int(free.group(1)) < self.settings.memory_mib:
            raise UsageError(f"{self.host.label}: Xen has {free.group(1)} MiB free, the "
                             f"{self.platform.name} guest needs {self.settings.memory_mib} "
                             "MiB: lower memory_mib, or give dom0 less (dom0_mem=)")

    def _network(self) -> tuple[str | None, str | None]:
        """(bridge, guest address/prefix) of the guest's vif, or (None, None)."""
        s = self.settings
        if s.network == "bridge":
            return s.bridge, s.guest_address
        if s.network == "auto" and self.host.guest_bridge:
            bridge, own = self.host.guest_bridge
            interface = ipaddress.ip_interface(own)
            # one stable address per platform, clear of the host's own
            candidates = [a for a in interface.network.hosts() if a != interface.ip][9:]
            chosen = candidates[zlib.crc32(self.platform.name.encode()) % len(candidates)]
            return bridge, f"{chosen}/{interface.network.prefixlen}"
        return None, None

    def _kernel_args(self) -> str:
        options = ["console=hvc0", "loglevel=1", "panic=-1", "hvbench.port=hvc0",
                   "hvbench.disk=xvdb"]
        if self.bridge:
            options.append(f"hvbench.net={self.guest_address}+{self._bridge_ip()}")
        if self.host.nested and self.guest_type == "pv":
            # Nested under TCG, an idle tickless domU can miss its console's event for a
            # minute or more once a second domU runs; a periodic tick picks it up. Not
            # for PVH and HVM: each tick there is a few exits through QEMU's emulated
            # SVM, whose rare mishandling (a triple fault right after an intercepted
            # RDTSC or x2APIC EOI) the tick made frequent enough to kill most runs.
            options.append("nohz=off")
        return " ".join(options + self.settings.kernel_args.split())

    def _bridge_ip(self) -> str:
        """dom0's address on the guest's bridge: the guest's gateway and server address."""
        address = self.host.bridge_address(str(self.bridge))
        if address is None:
            raise UsageError(f"platform {self.platform.name}: bridge {self.bridge!r} "
                             f"does not exist on {self.host.label} or has no IPv4 address")
        return address

    def _config(self, disk: str) -> str:
        s = self.settings
        # PVH boots the uncompressed vmlinux by its PVH note; PV and HVM the bzImage
        kernel = self._files["vmlinux" if self.guest_type == "pvh" else "bzimage"]
        lines = [f"name = {_quote(self.domain)}", f"type = {_quote(self.guest_type)}",
                 f"kernel = {_quote(kernel)}", f"ramdisk = {_quote(self._files['initramfs'])}",
                 f"extra = {_quote(self._kernel_args())}", f"memory = {s.memory_mib}",
                 f"vcpus = {s.vcpus}", 'on_poweroff = "destroy"', 'on_reboot = "destroy"',
                 'on_crash = "destroy"']
        if s.pin:
            lines.append(f"cpus = [{', '.join(_quote(str(c)) for c in s.pin)}]")
        tsc_mode = s.tsc_mode
        if self.guest_type != "pv" and self.host.nested:
            # Nested under TCG, QEMU's SVM emulation mishandles the RDTSC(P) exits Xen
            # takes to emulate the TSC (PVH triple faults, segfaults): no emulation there
            tsc_mode = tsc_mode or "native"
            # AVX is masked too, a precaution from before the lab switched Xen to eager
            # FPU (AVX state was then seen corrupted: random segfaults)
            lines.append('cpuid = "host,rdtscp=0,avx=0,avx2=0"')
        if tsc_mode:
            lines.append(f"tsc_mode = {_quote(tsc_mode)}")
        if self.guest_type == "hvm":
            # no display: the agent talks over the PV console (hvc0)
            lines += ['serial = "none"', 'vga = "none"', 'vnc = 0', 'sdl = 0', 'boot = "c"']
        target = f"target={disk}" if s.disk_backend == "file" else f"target={s.disk_device}"
        lines.append(f"disk = [{_quote(f'format=raw,vdev=xvdb,access=rw,{target}')}]")
        if self.bridge:
            # HVM: a PV vif only (no emulated NIC, whose ROM the device model would need)
            kind = ",type=vif" if self.guest_type == "hvm" else ""
            lines.append(f"vif = [{_quote(f'bridge={self.bridge}{kind}')}]")
        return "\n".join(lines) + "\n"

    def boot(self) -> None:
        if not self.host.alive():
            self.host.reconnect()
        if not self._files:
            self._check_host()
            files = {"bzimage": self.image.bzimage, "initramfs": self.image.initramfs}
            if self.guest_type == "pvh":
                if not self.image.pvh:
                    raise UsageError(f"{self.platform.kind} boots a PVH vmlinux; this kernel "
                                     "has none (use xen-pv)")
                files["vmlinux"] = self.image.kernel
            self._files = self.host.place(files, self.image.key, self.platform.say)
        self.boots += 1
        self._xl("destroy", self.domain, timeout=60)  # a stale domain left by a crash
        started = time.monotonic()
        try:
            self._dir = self.host.make_dir(self.platform.name)
            disk = f"{self._dir}/scratch.img"
            if self.settings.disk_backend == "file":
                self.host.check(["truncate", "-s", self.settings.disk_size, disk], 120,
                                "creating the scratch disk")
                mkfs = self.host.native().which("mke2fs")
                if mkfs:
                    self.host.check([mkfs, "-q", "-F", "-t", "ext4", "-E",
                                     "lazy_itable_init=1,lazy_journal_init=1", disk], 300,
                                    "formatting the scratch disk")
            elif not self.settings.disk_device:
                raise UsageError(f"platform {self.platform.name}: disk_backend = 'phy' needs "
                                 "disk_device (e.g. '/dev/vg0/bench')")
            self.config = self._config(disk)
            self._write(f"{self._dir}/xl.cfg", self.config.encode())
            created = self._xl("create", f"{self._dir}/xl.cfg", timeout=300)
            if created.exit_code != 0:
                said = [line.strip() for line in (created.stderr or created.stdout).splitlines()
                        if line.strip() and "libxl__destroy" not in line
                        and "destroy_c" not in line]
                model = self._log_tail(f"qemu-dm-{self.domain}.log")
                raise TrialError(f"xl create failed on {self.host.label} for "
                                 f"{self.platform.name}: {' | '.join(said)[-300:]}"
                                 + (f"; device model: {model}" if model else ""))
            try:
                ready, self.boot_timings = self._loop.run_until_complete(
                    self._await_agent(started))
            except _Unready as exc:  # explained here: the dom0 is asked for the console
                raise TrialError(f"the {self.platform.name} guest {exc}; console: "
                                 f"{self._console_tail()}") from None
            if ready.scratch != "xvdb":
                raise TrialError(f"the {self.platform.name} guest could not mount its "
                                 f"scratch disk (got {ready.scratch}); console: "
                                 f"{self._console_tail()}")
            listed = self._xl("list", "-l", self.domain)
            with contextlib.suppress(ValueError):
                self.xl_list = json.loads(listed.stdout or "null")
        except BaseException:
            self._keep_log()
            self.shutdown()
            raise
        self._keep_log()

    def _write(self, path: str, data: bytes) -> None:
        done = self.host.run(["sh", "-c", 'cat > "$1"', "sh", path], timeout=60, stdin=data)
        if done.exit_code != 0:
            raise TrialError(f"cannot write {path} on {self.host.label}: "
                             f"{done.stderr.strip()[:200]}")

    async def _await_agent(self, started: float) -> tuple[Ready, dict[str, float]]:
        """Attach to the console and wait for the agent (no host commands in here: the
        event loop they would need is this one)."""
        deadline = started + self.boot_timeout
        timings: dict[str, float] = {}
        await self._attach(deadline)
        assert self._agent is not None
        try:
            remaining = max(1.0, deadline - time.monotonic())
            ready = await asyncio.wait_for(self._agent.wait_ready(), remaining)
        except TimeoutError:
            raise _Unready(f"did not become ready within {self.boot_timeout:g} s"
                           ) from None
        except AgentError:
            raise _Unready("closed its console during boot (it crashed or was destroyed)"
                           ) from None
        timings["agent_ready_ms"] = (time.monotonic() - started) * 1000
        timings["guest_uptime_ms"] = ready.uptime * 1000
        return ready, timings

    async def _attach(self, deadline: float, first_id: int = 1) -> None:
        """Start ``xl console`` for the domain and speak to the agent through it."""
        while self._agent is None:
            if time.monotonic() > deadline:
                raise _Unready(f"did not become ready within {self.boot_timeout:g} s")
            try:
                reader, writer, handle = await self.host.open_stream(
                    ["xl", "console", "-t", "pv", self.domain], tty=True)
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise TrialError(f"cannot attach to {self.domain}'s console: {exc}") from None
                await asyncio.sleep(0.5)
                continue
            self._console = handle
            self._agent = Agent(reader, writer, first_id)

    def _reattach(self) -> bool:
        """After ``xl console`` went away while the domain still runs (its console pty
        can be replaced under it): a new console client, same agent. True on success."""
        if self._agent is None or not self.host.alive() or \
                self._xl("list", self.domain, timeout=30).exit_code != 0:
            return False
        first_id = self._agent.next_id
        with contextlib.suppress(Exception):
            self._console.close()
        self._agent = self._console = None
        try:
            self._loop.run_until_complete(self._attach(time.monotonic() + 60, first_id))
        except (_Unready, TrialError):
            return False
        self.console_reattached += 1
        return True

    def _call(self, make: Callable[[Agent], Coroutine[Any, Any, Any]]) -> Any:
        """Run ``make(agent)`` on the agent; a console client that went away is replaced
        and the request sent once more (the agent may run a command twice then: every
        request hvbench sends may be repeated)."""
        for attempt in (1, 2):
            if self._agent is None:
                raise TrialError(f"the {self.platform.name} guest is not running")
            try:
                return self._loop.run_until_complete(make(self._agent))
            except AgentClosed as exc:
                if attempt == 1 and self._reattach():
                    continue
                self._agent = None
                raise TrialError(f"{exc} ({self.platform.name}: {self._state()})") from None
            except AgentError as exc:
                self._agent = None
                raise TrialError(f"{exc} ({self.platform.name}: {self._state()})") from None
            except TrialError:
                self._agent = None
                raise
        raise AssertionError("unreachable")

    def _state(self) -> str:
        try:
            done = self._xl("list", self.domain, timeout=30)
        except TrialError as exc:  # the dom0 itself went away
            return str(exc)
        return "still running" if done.exit_code == 0 else "the domain is gone"

    def _console_log(self) -> str:
        done = self.host.run(["cat", f"/var/log/xen/console/guest-{self.domain}.log"],
                             timeout=30)
        return done.stdout if done.exit_code == 0 else ""

    def _console_tail(self, lines: int = 8) -> str:
        kept = [line.strip() for line in self._console_log().splitlines() if line.strip()]
        return " | ".join(kept[-lines:])

    def _log_tail(self, name: str, lines: int = 3) -> str:
        """The last lines of a log in dom0's /var/log/xen (e.g. an HVM device model's)."""
        done = self.host.run(["tail", "-n", str(lines), f"/var/log/xen/{name}"], timeout=30)
        kept = [line.strip() for line in done.stdout.splitlines() if line.strip()]
        return " | ".join(kept) if done.exit_code == 0 else ""

    def _keep_log(self) -> None:
        with contextlib.suppress(Exception):
            text = self._console_log()
            if not text:
                return
            target = home() / "artifacts" / "boot-logs"
            target.mkdir(parents=True, exist_ok=True)
            path = target / f"{self.domain}-{int(time.time())}-boot{self.boots}.log"
            path.write_text(text)
            if str(path) not in self.boot_logs:
                self.boot_logs.append(str(path))

    def shutdown(self) -> None:
        """xl destroy the domain; remove its directory on the dom0."""
        if self._console is not None:
            with contextlib.suppress(Exception):
                self._console.close()
            self._console = None
        if not self._loop.is_closed() and not self._loop.is_running():
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            if pending:
                with contextlib.suppress(BaseException):
                    self._loop.run_until_complete(asyncio.gather(*pending,
                                                                 return_exceptions=True))
        self._agent = None
        if self.host.alive():
            with contextlib.suppress(TrialError):
                self._xl("destroy", self.domain, timeout=60)
        if self._dir is not None:
            self.host.remove(self._dir)
            self._dir = None
        self._which.clear()

    def restart(self) -> None:
        self.shutdown()
        self.boot()

    def healthy(self) -> bool:
        return self._agent is not None and self.host.alive()

    def close(self) -> None:
        self.shutdown()

    # -- Machine -------------------------------------------------------------------
    def run(self, argv: Sequence[str], timeout: float, stdin: bytes | None = None) -> Completed:
        if stdin is not None:
            raise TrialError("guest commands take no standard input")
        result: Completed = self._call(
            lambda agent: agent.run(argv, timeout, self.settings.agent_margin))
        return result

    def write_file(self, path: str, data: bytes) -> None:
        self._call(lambda agent: agent.put(path, data))

    def network_absent(self) -> str | None:
        if self.bridge:
            return None
        return (f"{self.platform.name} has no network (network = "
                f"'{self.settings.network}' and {self.host.label} offers no guest bridge; "
                "set network = 'bridge' with a dom0 bridge to measure networking)")

    def network_peer(self) -> tuple[Machine, str, str]:
        if not self.bridge:
            raise TrialError(str(self.network_absent()))
        address = self._bridge_ip()
        return self.host.native(), address, address

    def info(self) -> dict[str, Any]:
        guest_type = None
        with contextlib.suppress(TrialError):
            guest_type = (self.read_file("/sys/hypervisor/guest_type") or "").strip() or None
        found: dict[str, Any] = {
            "host": self.host.label, "hypervisor": "xen", "guest_type": self.guest_type,
            "guest_type_seen_inside": guest_type, "xl_cfg": self.config,
            "xl_info": self.xl_info, "xl_list": self.xl_list,
            "boot_timings_ms": self.boot_timings, "image": self.image.key,
            "kernel": self.image.manifest.get("kernel_origin"),
            "disk": {"backend": self.settings.disk_backend, "size": self.settings.disk_size,
                     "bus": "xen-blkfront (xvdb)", "filesystem": "ext4"},
            "network": (f"vif on bridge {self.bridge}, guest {self.guest_address}"
                        if self.bridge else "none"),
            "pinning": self.settings.pin, "boot_logs": self.boot_logs,
            "console_reattached": self.console_reattached,
        }
        if self.host.nested:
            found["nested"] = self.host.nested
        return found


class XenPlatform(Platform):
    """``xen-pv``, ``xen-pvh`` or ``xen-hvm``."""

    kind = "xen-pv"

    def _settings(self) -> XenSettings:
        return self.parse_settings(XenSettings)

    def validate(self) -> None:
        settings = self._settings()
        if settings.network == "bridge" and not (settings.bridge and settings.guest_address):
            raise UsageError(f"platform {self.name}: network = 'bridge' needs 'bridge' and "
                             "'guest_address'")

    @contextlib.contextmanager
    def open(self) -> Iterator[Machine]:
        settings = self._settings()
        appliance = image_mod.build(payload=self.context.payload, progress=self.say)
        with self.guest_on_host(appliance, lambda host: XenMachine(
                self, appliance, settings, host)) as machine:
            yield machine


class XenPvPlatform(XenPlatform):
    kind = "xen-pv"


class XenPvhPlatform(XenPlatform):
    kind = "xen-pvh"


class XenHvmPlatform(XenPlatform):
    kind = "xen-hvm"

