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

import contextlib
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

from ..appliance import image as image_mod
from ..collect import Collector, HostKernel, Unavailable
from ..errors import TrialError, UsageError
from ..hosts.agent import Ready
from ..hosts.base import Host
from ..hosts.channel import AgentChannel
from ..machine import Completed
from .accounting import XenDomainCpu
from .guest import GuestMachine, GuestPlatform
from .guestcfg import GuestSettings, tail
from .xencfg import XenSettings, XlGuest, emulated_only, scratch_device, vif_for, xl_cfg
from .xentrace import XenTrace

_FREE = re.compile(r"^free_memory\s*:\s*(\d+)", re.M)
#: one domain created at a time per dom0 (by its label): platforms open side by side,
#: and each guest's memory check must see the domains created before it
_CREATING: dict[str, threading.Lock] = {}
_CREATING_LOCK = threading.Lock()


def _creating(host: Host) -> threading.Lock:
    with _CREATING_LOCK:
        return _CREATING.setdefault(host.label, threading.Lock())


class XenMachine(GuestMachine):
    """A running Xen domU, driven through its agent over the Xen console."""

    query_seconds = 300  # generous: nested domUs can stall for a while
    scratch_device = "xvdb"
    settings: XenSettings

    def __init__(self, platform: XenPlatform, image: image_mod.Image, settings: XenSettings,
                 host: Host):
        super().__init__(platform, image, settings, host)
        self.guest_type = platform.kind.removeprefix("xen-")
        self.scratch_device = scratch_device(self.guest_type, settings)
        self.config = ""
        self.xl_info = ""
        self.xl_list: Any = None
        self.bridge, self.guest_address = vif_for(settings, host.guest_bridge, platform.name)
        self.console_reattached = 0
        #: the domain's id after the last 'xl create' (tracing it; Xen's words on it)
        self._created: int | None = None
        #: dom0's CPU vendor (it names the exit reasons), or why xentrace cannot run
        self._tracing: tuple[str, str] | None = None
        nested_hvm = self.guest_type == "hvm" and bool(host.nested)
        self.boot_timeout = settings.boot_timeout or (900.0 if nested_hvm else 300.0)

    @property
    def domain(self) -> str:
        """The domain's name: the platform's, and the guest's number in a tile."""
        return f"hvbench-{self.name}"

    def join_tile(self, index: int, count: int) -> None:
        super().join_tile(index, count)
        if self.bridge and self.settings.network == "auto":  # an address of its own
            self.bridge, self.guest_address = vif_for(self.settings, self.host.guest_bridge,
                                                      self.platform.name, index)

    # -- lifecycle -------------------------------------------------------------------
    def _xl(self, *args: str, timeout: float = 120) -> Completed:
        return self.host.run(["xl", *args], timeout=timeout)

    def check_host(self) -> None:
        if self.host.native().which("xl") is None:
            raise UsageError(f"{self.host.label} has no xl: {self.platform.kind} needs a Xen "
                             "dom0 (Debian: xen-utils; or use --host lab:xen)")

    def _check_memory(self) -> None:
        """Xen works, and has the memory this guest (the first of a tile: the whole
        tile) needs, asked while no other guest is being created on this dom0."""
        info = self._xl("info")
        if info.exit_code != 0:
            raise UsageError(f"{self.host.label} is not a working Xen dom0 ('xl info' "
                             f"failed: {(info.stderr or info.stdout).strip()[:200]})")
        self.xl_info = info.stdout
        free = _FREE.search(info.stdout)
        # the first guest of a tile asks for the whole tile, before any boots
        count = self.tile_size if self.member <= 1 else 1
        needed = count * self.settings.memory_mib
        if free and int(free.group(1)) < needed:
            what = (f"{count} guests × {self.settings.memory_mib} MiB = {needed} MiB"
                    if count > 1 else f"the {self.platform.name} guest needs {needed} MiB")
            raise UsageError(f"{self.host.label}: Xen has {free.group(1)} MiB free, {what}: "
                             "lower memory_mib (or guests), or give dom0 less (dom0_mem=)")

    def _config(self, disk: str) -> str:
        net = f"{self.guest_address}+{self.bridge_address(self.bridge)}" if self.bridge \
            else None
        return xl_cfg(XlGuest(self.domain, self.guest_type, self._files, disk,
                              bool(self.host.nested), self.bridge, net), self.settings)

    def image_files(self) -> dict[str, Path]:
        files = {"bzimage": self.image.bzimage, "initramfs": self.image.initramfs}
        if self.guest_type == "pvh":
            if not self.image.pvh:
                raise UsageError(f"{self.platform.kind} boots a PVH vmlinux; this kernel "
                                 "has none (use xen-pv)")
            files["vmlinux"] = self.image.kernel
        elif self.guest_type == "pv" and self.image.pv_elf:
            files["vmlinux"] = self.image.kernel
        return files

    def start(self, started: float) -> tuple[Ready, dict[str, float]]:
        """xl create the domain, attach to its console and wait for the agent (another
        guest may be created on this dom0 meanwhile: platforms open side by side)."""
        with _creating(self.host):
            self._create(started)
        created_ms = (time.monotonic() - started) * 1000  # disk, xl.cfg, xl create
        ready, timings = self.await_agent(started, started + self.boot_timeout,
                                          self._console, 0.5)
        return ready, {"domain_created_ms": created_ms, **timings}

    def _create(self, started: float) -> None:
        self._xl("destroy", self.domain, timeout=60)  # a stale domain left by a crash
        self._check_memory()
        disk = f"{self._dir}/scratch.img"
        if self.settings.disk_backend == "file":
            self.host.make_scratch_disk(disk, self.settings.disk_size)
        elif not self.settings.disk_device:
            raise UsageError(f"platform {self.name}: disk_backend = 'phy' needs "
                             "disk_device (e.g. '/dev/vg0/bench')")
        self.config = self._config(disk)
        self.host.native().write_file(f"{self._dir}/xl.cfg", self.config.encode())
        created = self._xl("create", f"{self._dir}/xl.cfg", timeout=300)
        if created.exit_code != 0:
            said = [line.strip() for line in (created.stderr or created.stdout).splitlines()
                    if line.strip() and "libxl__destroy" not in line
                    and "destroy_c" not in line]
            model = self._log_tail(f"qemu-dm-{self.domain}.log")
            raise TrialError(f"xl create failed on {self.host.label} for "
                             f"{self.name}: {' | '.join(said)[-300:]}"
                             + (f"; device model: {model}" if model else ""))
        domid = self._xl("domid", self.domain, timeout=30).stdout.strip()
        self._created = int(domid) if domid.isdigit() else None

    def death_note(self) -> str:
        """Xen's last words on this domain in 'xl dmesg' (a triple fault, a crash)."""
        if self._created is None or not self.host.alive():
            return ""
        try:
            said = self._xl("dmesg", timeout=30).stdout
        except TrialError:
            return ""
        return domain_lines(said, self._created)

    def collectors(self) -> list[Collector]:
        """The guest's kernel, the domain's CPU time, dom0's kernel (backends) and,
        where dom0 can trace, the domain's exits and hypercalls (xentrace)."""
        found: list[Collector] = [*super().collectors(), XenDomainCpu(self.host, self.domain),
                                  HostKernel(self.host, "dom0_kernel")]
        if self.settings.trace:
            if self._tracing is None:  # asked once per guest
                self._tracing = self._trace_setup()
            vendor, why_not = self._tracing
            domid = self._created
            found.append(XenTrace(self.host, domid, vendor)
                         if not why_not and domid is not None else
                         Unavailable("xen_trace", why_not or "no domain id from xl"))
        return found

    def _trace_setup(self) -> tuple[str, str]:
        """dom0's CPU vendor, and why xentrace cannot run there ('' when it can)."""
        if self.host.native().which("xentrace") is None:
            return "", f"xentrace is not installed in dom0 on {self.host.label} (xen-utils)"
        if self.host.run(["id", "-u"], timeout=30).stdout.strip() != "0":
            return "", "xentrace needs root in dom0"
        cpuinfo = self.host.native().read_file("/proc/cpuinfo") or ""
        return ("Intel" if "GenuineIntel" in cpuinfo else "AMD"), ""


    def after_boot(self) -> None:
        listed = self._xl("list", "-l", self.domain)
        with contextlib.suppress(ValueError):
            self.xl_list = json.loads(listed.stdout or "null")

    def _console(self, first_id: int = 1) -> AgentChannel:
        """Speak to the agent through ``xl console`` on the dom0 (OSError: cannot start)."""
        return AgentChannel.over_command(self.host, ["xl", "console", "-t", "pv", self.domain],
                                         first_id)

    def reattach(self) -> bool:
        """After ``xl console`` went away while the domain still runs (its console pty
        can be replaced under it): a new console client, same agent. True on success."""
        if self.channel is None or not self.host.alive() or \
                self._xl("list", self.domain, timeout=30).exit_code != 0:
            return False
        first_id = self.channel.next_id
        self._drop_channel()
        try:
            self.channel = self._console(first_id)
        except OSError:
            return False
        self.console_reattached += 1
        return True

    def state(self) -> str:
        try:
            done = self._xl("list", self.domain, timeout=30)
        except TrialError as exc:  # the dom0 itself went away
            return str(exc)
        if done.exit_code == 0:
            return "still running"
        said = self.death_note()  # a triple fault of a nested guest, say
        return "the domain is gone" + (f"; {said}" if said else "")

    def _log_tail(self, name: str, lines: int = 3) -> str:
        """The last lines of a log in dom0's /var/log/xen (e.g. an HVM device model's)."""
        return tail(self.host.native().read_file(f"/var/log/xen/{name}") or "", lines)

    def boot_log(self) -> str:
        return self.host.native().read_file(f"/var/log/xen/console/guest-{self.domain}.log") \
            or ""

    def close(self) -> None:
        if not self.host.disposable:
            super().close()
            return
        # the run stops this lab next, with the domain in it: xl destroy (seconds under
        # TCG while dom0 unplugs the backends) and removing its files buy nothing
        self.keep_log()
        self._drop_channel()
        self._dir = None

    def destroy(self) -> None:
        """xl destroy the domain (its console client ends with it)."""
        if self.host.alive():
            with contextlib.suppress(TrialError):
                self._xl("destroy", self.domain, timeout=60)

    def info(self) -> dict[str, Any]:
        guest_type = None
        with contextlib.suppress(TrialError):
            guest_type = (self.read_file("/sys/hypervisor/guest_type") or "").strip() or None
        return {
            **self.common_info(), "hypervisor": "xen", "guest_type": self.guest_type,
            "guest_type_seen_inside": guest_type, "xl_cfg": self.config,
            "xl_info": self.xl_info, "xl_list": self.xl_list,
            "disk": {"backend": self.settings.disk_backend, "size": self.settings.disk_size,
                     "bus": ("emulated IDE (QEMU in dom0)" if emulated_only(
                         self.guest_type, self.settings) else "xen-blkfront (xvdb)"),
                     "filesystem": "ext4"},
            "xen_platform_pci": self.settings.xen_platform_pci,
            "network": (f"vif on bridge {self.bridge}, guest {self.guest_address}"
                        if self.bridge else "none"),
            "console_reattached": self.console_reattached,
        }


def domain_lines(dmesg: str, domid: int, keep: int = 2) -> str:
    """The last ``keep`` lines of Xen's console that name domain ``domid`` ("d5v0 Triple
    fault...", "Domain 5 (vcpu#0) crashed..."), without the "(XEN)" prefix."""
    naming = re.compile(rf"\b(d{domid}v\d+|d{domid}|Domain {domid})\b")
    found = [line.removeprefix("(XEN)").strip() for line in dmesg.splitlines()
             if naming.search(line)]
    return "Xen: " + " | ".join(found[-keep:]) if found else ""


class XenPlatform(GuestPlatform):
    """``xen-pv``, ``xen-pvh`` or ``xen-hvm``."""

    kind = "xen-pv"
    settings_model = XenSettings

    def validate(self) -> None:
        super().validate()
        settings = self.guest_settings()
        assert isinstance(settings, XenSettings)
        if not settings.xen_platform_pci and self.kind != "xen-hvm":
            raise UsageError(f"platform {self.name}: xen_platform_pci = false is for "
                             f"xen-hvm guests; a {self.kind} guest has only PV devices")

    def opens_beside_others(self) -> bool:
        # a PV or PVH domU takes its clock from Xen, and on a dom0 over SSH nothing it
        # starts is a process of this machine tied to the opening thread
        return self.kind in ("xen-pv", "xen-pvh") and self.context.host.kind != "local"

    def check_fits(self, settings: GuestSettings, host: Host, count: int) -> None:
        """Nothing here: a domU's memory comes from Xen's free pool, not dom0's, and the
        first guest of a tile checks it for all (XenMachine._check_memory)."""

    def machine(self, image: image_mod.Image, settings: GuestSettings, host: Host
                ) -> GuestMachine:
        assert isinstance(settings, XenSettings)
        return XenMachine(self, image, settings, host)


class XenPvPlatform(XenPlatform):
    kind = "xen-pv"


class XenPvhPlatform(XenPlatform):
    kind = "xen-pvh"


class XenHvmPlatform(XenPlatform):
    kind = "xen-hvm"

