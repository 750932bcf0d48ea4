"""The ``qemu-kvm`` and ``qemu-tcg`` platforms: a guest booted from the appliance.

QEMU runs on a Host (this machine, an SSH server, a lab) in a session of its
own, its console streamed into a local boot log, the agent on a virtio-serial
port, a raw scratch disk on virtio-blk (formatted ext4 on the host) and
user-mode networking. The guest is reused
across trials; a guest that panics, hangs or loses its agent is restarted.
Everything is torn down on success, failure, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from ..appliance import image as image_mod
from ..errors import TrialError, UsageError
from ..hosts.agent import AgentError, Ready
from ..hosts.base import Host, HostProcess
from ..hosts.channel import AgentChannel
from ..localproc import Warden
from ..machine import Machine
from ..paths import home
from .guest import GuestMachine, GuestPlatform, GuestSettings, tail
from .qemucfg import QEMU, USER_NET, GuestPaths, QemuSettings, qemu_argv


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return tail(path.read_text(errors="replace"), lines)
    except OSError:
        return ""


class QemuMachine(GuestMachine):
    """A running QEMU guest on a Host, driven through its agent."""

    scratch_device = "vda"
    settings: QemuSettings

    def __init__(self, platform: QemuPlatform, image: image_mod.Image, settings: QemuSettings,
                 host: Host):
        super().__init__(platform, image, settings, host)
        self.accelerator = "kvm" if platform.kind == "qemu-kvm" else "tcg"
        self._process: HostProcess | None = None
        self._logs: Path | None = None  # local: boot log and QEMU's stderr
        self._sockets: str | None = None  # on the host: agent socket (short path)
        self._tap: str | None = None
        self.command: list[str] = []

    # -- lifecycle ---------------------------------------------------------------
    def check_host(self) -> None:
        if self.host.native().which(QEMU) is None:
            raise UsageError(f"{QEMU} is not installed on {self.host.label}: "
                             "apt-get install qemu-system-x86")
        if self.accelerator == "kvm" and self.host.run(
                ["test", "-r", "/dev/kvm", "-a", "-w", "/dev/kvm"], timeout=30).exit_code:
            raise UsageError(f"qemu-kvm needs /dev/kvm (read-write) on {self.host.label}: "
                             "check 'hvbench doctor', or use qemu-tcg")

    def image_files(self) -> dict[str, Path]:
        return {"kernel": self.image.kernel, "initramfs": self.image.initramfs}

    def start(self, started: float) -> tuple[Ready, dict[str, float]]:
        """Start QEMU on the host; watch its boot log and the agent socket until the
        agent says it is ready."""
        self._logs = Warden.make_dir(f"{self.name}-", home() / "guests")
        self._sockets = self.host.make_dir("socket")
        self.host.make_scratch_disk(f"{self._dir}/scratch.img", self.settings.disk_size)
        bridge_ip = None
        if self.settings.network == "bridge":
            bridge_ip = self.bridge_address(str(self.settings.bridge))
            self._tap = self.host.make_tap(str(self.settings.bridge))
        assert self._dir is not None and self._sockets is not None
        self.command = qemu_argv(self.settings, self.accelerator, self.name, GuestPaths(
            self._files["kernel"], self._files["initramfs"], self._dir, self._sockets),
            self._tap, bridge_ip)
        log = self._logs / "boot.log"
        self._process = self.host.start(self.command, log, self._logs / "qemu.stderr")
        deadline = started + (self.settings.boot_timeout or 300)
        timings: dict[str, float] = {}
        next_try = 0.0  # over SSH every connection attempt costs a round trip
        seen = 0
        while True:
            now = time.monotonic()
            self.raise_if_gone("during boot")
            size = log.stat().st_size if log.exists() else 0
            if "first_output_ms" not in timings and size:
                timings["first_output_ms"] = (now - started) * 1000
            if "init_ms" not in timings and size > seen:
                with log.open("rb") as handle:  # only what is new, plus a marker's length
                    handle.seek(max(0, seen - 16))
                    if b"hvbench-init" in handle.read():
                        timings["init_ms"] = (now - started) * 1000
                seen = size
            if self.channel is None and now >= next_try:
                next_try = now + (0.25 if self.host.remote else 0.01)
                with contextlib.suppress(OSError):
                    self.channel = AgentChannel.over_unix(self.host,
                                                          f"{self._sockets}/agent.sock")
            ready = None
            if self.channel is None:
                self.host.pause(0.01)
            else:
                try:
                    ready = self.channel.ready(0.01)
                except AgentError:  # the connection broke: if QEMU is exiting, say why
                    self.linger(2.0)
                    self.raise_if_gone("during boot")
                    raise
            if ready is not None:
                timings["agent_ready_ms"] = (time.monotonic() - started) * 1000
                timings["guest_uptime_ms"] = ready.uptime * 1000
                timings.setdefault("init_ms", timings["agent_ready_ms"])
                timings.setdefault("first_output_ms", timings["init_ms"])
                return ready, timings
            if now > deadline:
                raise TrialError(f"the {self.name} guest did not become ready within "
                                 f"{self.settings.boot_timeout or 300:.0f} s; boot log: "
                                 f"{_tail(log)}")

    def after_boot(self) -> None:
        self._pin_vcpus()

    def linger(self, seconds: float) -> None:
        if self._process is not None:
            self._process.wait(seconds)

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def boot_log(self) -> str:
        if self._logs is None or not (self._logs / "boot.log").exists():
            return ""
        return (self._logs / "boot.log").read_text(errors="replace")

    def raise_if_gone(self, when: str) -> None:
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

    def destroy(self) -> None:
        """Kill QEMU (its whole session); remove its sockets, local logs and tap."""
        process, self._process = self._process, None
        if process is not None:  # first, so a waiting request sees the end at once
            process.kill()
        if self._sockets is not None:
            self.host.remove(self._sockets)
            self._sockets = None
        if self._logs is not None:
            Warden.remove_dir(self._logs)
            self._logs = None
        if self._tap is not None:
            self.host.remove_tap(self._tap)
            self._tap = None

    def network_absent(self) -> str | None:
        if self.settings.network == "none":
            return f"{self.platform.name} has no network (network = 'none')"
        return None

    def network_peer(self) -> tuple[Machine, str, str]:
        if self.settings.network == "none":
            raise TrialError(f"{self.platform.name} has no network (network = 'none')")
        if self.settings.network == "bridge":
            address = self.bridge_address(str(self.settings.bridge))
            return self.host.native(), address, address
        return self.host.native(), "127.0.0.1", USER_NET[1]

    def info(self) -> dict[str, Any]:
        return {
            **self.common_info(),
            "accelerator": self.accelerator,
            "qemu_command": " ".join(self.command),
            "qemu_argv": self.command,
            "kernel_boot": "PVH vmlinux" if self.image.pvh else "bzImage",
            "disk": {"format": "raw", "size": self.settings.disk_size,
                     "cache": self.settings.disk_cache, "aio": self.settings.disk_aio,
                     "bus": "virtio-blk", "filesystem": "ext4"},
            "network": {
                "user": "user-mode (slirp), virtio-net; servers on the host at 10.0.2.2",
                "bridge": f"tap {self._tap} on bridge {self.settings.bridge}, virtio-net; "
                          f"guest {self.settings.guest_address}",
                "none": "none"}[self.settings.network],
            "hugepages": self.settings.hugepages,
        }


class QemuPlatform(GuestPlatform):
    """``qemu-kvm`` (hardware virtualization) or ``qemu-tcg`` (emulation)."""

    kind = "qemu-tcg"
    settings_model = QemuSettings

    def kernel(self, settings: GuestSettings) -> Path | None:
        assert isinstance(settings, QemuSettings)
        return Path(settings.kernel) if settings.kernel else None

    def machine(self, image: image_mod.Image, settings: GuestSettings, host: Host
                ) -> GuestMachine:
        assert isinstance(settings, QemuSettings)
        return QemuMachine(self, image, settings, host)


class QemuKvmPlatform(QemuPlatform):
    kind = "qemu-kvm"


class QemuTcgPlatform(QemuPlatform):
    kind = "qemu-tcg"

