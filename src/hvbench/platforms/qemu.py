"""The ``qemu-kvm`` and ``qemu-tcg`` platforms: a guest booted from the appliance.

QEMU runs on a Host (this machine, an SSH server, a lab) in a session of its
own, its console streamed into a local boot log, the agent on a virtio-serial
port, a raw scratch disk on virtio-blk (formatted ext4 on the host) and
user-mode or bridged networking (``qemucfg`` makes the command line). The guest is
reused across trials; a guest that panics, hangs or loses its agent is restarted.
Everything is torn down on success, failure, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ..appliance import image as image_mod
from ..collect import Collector, HostKernel, Unavailable
from ..errors import GuestDied, TrialError, UsageError
from ..hosts.agent import Ready
from ..hosts.base import Host, HostProcess
from ..hosts.channel import AgentChannel
from ..hosts.qmp import QmpChannel
from ..localproc import Warden
from ..machine import Machine
from ..paths import home
from .accounting import KvmStats, QemuThreads
from .guest import GuestMachine, GuestPlatform
from .guestcfg import GuestSettings, tail
from .kvmtrace import ExitTracing
from .qemucfg import (
    QEMU,
    SCRATCH_DEVICE,
    USER_NET,
    GuestPaths,
    QemuSettings,
    describe,
    pin_vcpus,
    qemu_argv,
)


class QemuMachine(GuestMachine):
    """A running QEMU guest on a Host, driven through its agent."""

    settings: QemuSettings

    def __init__(self, platform: QemuPlatform, image: image_mod.Image, settings: QemuSettings,
                 host: Host):
        super().__init__(platform, image, settings, host)
        self.accelerator = "kvm" if platform.kind == "qemu-kvm" else "tcg"
        self.scratch_device = SCRATCH_DEVICE[settings.disk_bus]
        self._process: HostProcess | None = None
        self._logs: Path | None = None  # local: boot log and QEMU's stderr
        self._sockets: str | None = None  # on the host: agent socket (short path)
        self._tap: str | None = None
        self.qmp: QmpChannel | None = None  # QEMU's monitor, once the guest is up
        self.qmp_problem = "QMP was never connected"
        self._kvm_stats: KvmStats | None = None  # kept: it asks QEMU its counters once
        self._exits = ExitTracing(host)
        self.command: list[str] = []
        self.bridge = settings.bridge if settings.network == "bridge" else None

    # -- lifecycle ---------------------------------------------------------------
    def check_host(self) -> None:
        if self.host.native().which(QEMU) is None:
            raise UsageError(f"{QEMU} is not installed on {self.host.label}: "
                             "apt-get install qemu-system-x86")
        if self.accelerator == "kvm" and self.host.run(
                ["test", "-r", "/dev/kvm", "-a", "-w", "/dev/kvm"], timeout=30).exit_code:
            raise UsageError(f"qemu-kvm needs /dev/kvm (read-write) on {self.host.label}: "
                             "check 'hvbench doctor', or use qemu-tcg")
        if self.settings.vhost and self.host.run(["test", "-c", "/dev/vhost-net"],
                                                 timeout=30).exit_code:
            raise UsageError(f"platform {self.name}: vhost = true needs /dev/vhost-net on "
                             f"{self.host.label} (modprobe vhost_net), or vhost = false")

    def image_files(self) -> dict[str, Path]:
        return {"kernel": self.image.kernel, "initramfs": self.image.initramfs}

    def start(self, started: float) -> tuple[Ready, dict[str, float]]:
        """Start QEMU on the host; watch its boot log and the agent socket until the
        agent says it is ready."""
        self._logs = Warden.make_dir(f"{self.name}-", home() / "guests")
        self._sockets = self.host.make_dir("socket")
        self.host.make_scratch_disk(f"{self._dir}/scratch.img", self.settings.disk_size)
        bridge_ip = None
        if self.bridge:
            bridge_ip = self.bridge_address(self.bridge)
            self._tap = self.host.make_tap(self.bridge)
        assert self._dir is not None and self._sockets is not None
        self.command = qemu_argv(self.settings, self.accelerator, self.name, GuestPaths(
            self._files["kernel"], self._files["initramfs"], self._dir, self._sockets),
            self._tap, bridge_ip)
        self._process = self.host.start(self.command, self._logs / "boot.log",
                                        self._logs / "qemu.stderr")
        return self.await_agent(
            started, started + (self.settings.boot_timeout or 300),
            lambda: AgentChannel.over_unix(self.host, f"{self._sockets}/agent.sock"),
            0.25 if self.host.remote else 0.01,  # over SSH each attempt is a round trip
            self._logs / "boot.log")

    def after_boot(self) -> None:
        if self.settings.pin:
            pin_vcpus(self.host, f"{self._dir}/qemu.pid", self.settings.pin)
        try:
            self.qmp = QmpChannel.connect(self.host, f"{self._sockets}/qmp.sock")
            self._kvm_stats = KvmStats(self.qmp)
        except TrialError as exc:  # only the KVM counters are lost: say so in each trial
            self.qmp_problem = str(exc)

    def collectors(self) -> list[Collector]:
        """The guest's kernel, QEMU's threads on the host, the host's kernel and, under
        KVM, KVM's own counters for this VM (through QMP)."""
        found: list[Collector] = [*super().collectors(),
                                  QemuThreads(self.host, f"{self._dir}/qemu.pid"),
                                  HostKernel(self.host, "host_kernel")]
        if self.accelerator == "kvm":
            found.append(self._kvm_stats if self._kvm_stats is not None
                         else Unavailable("kvm", self.qmp_problem))
            found.append(self._exits.collector(f"{self._dir}/qemu.pid"))
        return found

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
        code = self._process.poll() if self._process is not None else None
        if code is None:
            return
        log = self.boot_log()
        if "Kernel panic" in log:
            cause = "the guest kernel panicked"
        elif code == -1 and self.host.remote and not self.host.alive():
            cause = f"the connection to {self.host.label} broke"
        else:
            cause = f"QEMU exited with code {code}"
        stderr = ""
        if self._logs is not None and (self._logs / "qemu.stderr").exists():
            stderr = tail((self._logs / "qemu.stderr").read_text(errors="replace"), 3)
        where = f" ({self.host.label})" if self.host.remote else ""
        raise GuestDied(f"{cause} {when} on {self.platform.name}{where}"
                         + (f"; QEMU said: {stderr}" if stderr else "")
                         + f"; boot log: {tail(log)}")

    def destroy(self) -> None:
        """Kill QEMU (its whole session); remove its sockets, local logs and tap."""
        process, self._process = self._process, None
        if process is not None:  # first, so a waiting request sees the end at once
            process.kill()
        self._exits.release()
        qmp, self.qmp, self._kvm_stats = self.qmp, None, None
        if qmp is not None:
            qmp.close()
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
        return None if self.settings.network == "user" else super().network_absent()

    def network_peer(self) -> tuple[Machine, str, str]:
        if self.settings.network == "user":  # QEMU forwards the gateway to the host
            return self.host.native(), "127.0.0.1", USER_NET[1]
        return super().network_peer()

    def _qemu_version(self) -> str | None:
        """QEMU's own first line of --version, from the host that ran it."""
        with contextlib.suppress(TrialError):
            done = self.host.run([self.command[0], "--version"], timeout=30)
            if done.exit_code == 0 and done.stdout.strip():
                return done.stdout.strip().splitlines()[0]
        return None

    def info(self) -> dict[str, Any]:
        return {
            **self.common_info(),
            "accelerator": self.accelerator,
            "qemu_command": " ".join(self.command),
            "qemu_argv": self.command,
            "qemu_version": self._qemu_version(),
            "kernel_boot": "PVH vmlinux" if self.image.pvh else "bzImage",
            "qmp": "connected" if self.qmp is not None else self.qmp_problem,
            **describe(self.settings, self._tap),
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

