"""A Xen guest's configuration: its settings, kernel command line and xl.cfg."""

from __future__ import annotations

import ipaddress
import zlib
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from ..errors import UsageError
from .guestcfg import GuestSettings


class XenSettings(GuestSettings):
    """Settings of a Xen guest (``settings = {...}`` in a campaign file)."""

    memory_mib: int = Field(512, ge=128, le=1 << 22, description="guest memory in MiB")
    disk_size: str = Field("1G", pattern=r"^\d+[MG]$",
                           description="size of the scratch disk the I/O workloads use")
    disk_backend: Literal["file", "phy"] = Field(
        "file", description='"file": an image file on the dom0 (loop device); "phy": an '
                            "existing block device (disk_device)")
    disk_device: str | None = Field(None, pattern=r"^/dev/[\w/.-]+$",
                                    description='the dom0 block device for disk_backend '
                                                '"phy"')
    network: Literal["auto", "none", "bridge"] = Field(
        "auto", description='"auto": a vif on the bridge the host offers its guests (the '
                            'Xen lab\'s xenbr0), else none; "bridge": a vif on an existing '
                            "dom0 bridge with an IPv4 address")
    # boot_timeout unset: 300 s, or 900 s for HVM nested in a lab (its device model
    # copies the kernel and initramfs in slowly under TCG)
    kernel_args: str = Field("", pattern=r"^[\w.=:/ -]*$",
                             description="extra kernel command-line options")
    trace: bool = Field(False, description="record the domain's VM exits and hypercalls "
                                           "during each trial with xentrace in dom0 (it "
                                           "costs time and perturbs: docs/reports.md)")
    xen_platform_pci: bool = Field(
        True, description="xen-hvm only: false removes the Xen platform device, so the guest "
                          "cannot use PV drivers and does its I/O through the devices QEMU "
                          "emulates in dom0 (an IDE disk, an RTL8139 NIC)")
    tsc_mode: Literal["default", "always_emulate", "native", "native_paravirt"] | None = Field(
        None, description='xl.cfg tsc_mode (unset: Xen\'s default, or "native" for PVH and '
                          "HVM nested in a lab)")


def _quote(value: str) -> str:
    """An xl.cfg string literal (values are validated: no quotes or newlines inside)."""
    if any(c in value for c in "\"\\\n"):
        raise UsageError(f"cannot put {value!r} in an xl.cfg")
    return f'"{value}"'


#: CPU features hidden from PVH and HVM guests nested under TCG: RDTSCP exits crash at
#: once (QEMU's SVM emulation); AVX is a precaution from before eager FPU switching
NESTED_MASKED = ("rdtscp", "avx", "avx2")


@dataclass(frozen=True)
class XlGuest:
    """What an xl.cfg needs besides the settings."""

    domain: str
    guest_type: str  # pv | pvh | hvm
    files: dict[str, str]  # bzimage, vmlinux (PVH), initramfs: paths on the dom0
    disk: str  # the scratch disk image (disk_backend = "file")
    nested: bool  # dom0 runs in a lab under TCG
    bridge: str | None  # a vif on this bridge, or none
    net: str | None  # "GUEST_ADDRESS/PREFIX+GATEWAY" for the appliance's init


def vif_for(s: XenSettings, guest_bridge: tuple[str, str] | None, name: str,
            member: int = 0) -> tuple[str | None, str | None]:
    """(bridge, guest address/prefix) of the guest's vif, or (None, None): network =
    "auto" takes the bridge the host offers its guests (the Xen lab's xenbr0) and one
    stable address per platform name on it, clear of the host's own; the guests of a
    tile take the addresses after it."""
    if s.network == "bridge":
        return s.bridge, s.guest_address
    if s.network == "auto" and guest_bridge:
        bridge, own = guest_bridge
        interface = ipaddress.ip_interface(own)
        candidates = [a for a in interface.network.hosts() if a != interface.ip][9:]
        chosen = candidates[(zlib.crc32(name.encode()) + member) % len(candidates)]
        return bridge, f"{chosen}/{interface.network.prefixlen}"
    return None, None


def emulated_only(guest_type: str, s: XenSettings) -> bool:
    """An HVM guest without the Xen platform device: no PV drivers, QEMU's devices."""
    return guest_type == "hvm" and not s.xen_platform_pci


def scratch_device(guest_type: str, s: XenSettings) -> str:
    """The scratch disk's name inside the guest: blkfront's xvdb, or (emulated only)
    the same disk on QEMU's emulated IDE controller, the first SCSI-named disk."""
    return "sda" if emulated_only(guest_type, s) else "xvdb"


def kernel_args(guest: XlGuest, settings: XenSettings) -> str:
    return xen_cmdline(guest.guest_type, scratch_device(guest.guest_type, settings),
                       guest.net, guest.nested, settings.kernel_args)


def xen_cmdline(guest_type: str, disk: str, net: str | None, nested: bool, extra: str
                ) -> str:
    """The appliance's command line in a Xen domain (xl's or libvirt's): the agent on the
    PV console, the scratch disk, the network, what nesting under TCG needs."""
    options = ["console=hvc0", "loglevel=1", "panic=-1", "hvbench.port=hvc0",
               f"hvbench.disk={disk}"]
    if net:
        options.append(f"hvbench.net={net}")
    if nested and guest_type == "pv":
        # Nested under TCG, an idle tickless domU can miss its console's event for a
        # minute or more once a second domU runs; a periodic tick picks it up. Not
        # for PVH and HVM: each tick there is a few exits through QEMU's emulated
        # SVM, whose rare mishandling (a triple fault right after an intercepted
        # RDTSC or x2APIC EOI) the tick made frequent enough to kill most runs.
        options.append("nohz=off")
    return " ".join(options + extra.split())


def xl_cfg(guest: XlGuest, s: XenSettings) -> str:
    """The domain's xl.cfg."""
    # PVH boots the uncompressed vmlinux by its PVH note, PV too where the image has
    # one (libxc would otherwise unpack the bzImage in dom0 at each boot); HVM the bzImage
    kernel = guest.files["vmlinux" if guest.guest_type != "hvm" and "vmlinux" in guest.files
                         else "bzimage"]
    lines = [f"name = {_quote(guest.domain)}", f"type = {_quote(guest.guest_type)}",
             f"kernel = {_quote(kernel)}", f"ramdisk = {_quote(guest.files['initramfs'])}",
             f"extra = {_quote(kernel_args(guest, s))}", f"memory = {s.memory_mib}",
             f"vcpus = {s.vcpus}", 'on_poweroff = "destroy"', 'on_reboot = "destroy"',
             'on_crash = "destroy"']
    if s.pin:
        lines.append(f"cpus = [{', '.join(_quote(str(c)) for c in s.pin)}]")
    tsc_mode = s.tsc_mode
    if guest.guest_type != "pv" and guest.nested:
        # Nested under TCG, QEMU's SVM emulation mishandles the RDTSC(P) exits Xen
        # takes to emulate the TSC (PVH triple faults, segfaults): no emulation there
        tsc_mode = tsc_mode or "native"
        # AVX is masked too, a precaution from before the lab switched Xen to eager
        # FPU (AVX state was then seen corrupted: random segfaults)
        lines.append(f'cpuid = "host,{",".join(f"{f}=0" for f in NESTED_MASKED)}"')
    if tsc_mode:
        lines.append(f"tsc_mode = {_quote(tsc_mode)}")
    if guest.guest_type == "hvm":
        # no display: the agent talks over the PV console (hvc0), which needs no
        # platform device (its event channel comes by the callback vector)
        lines += ['serial = "none"', 'vga = "none"', 'vnc = 0', 'sdl = 0', 'boot = "c"']
        if not s.xen_platform_pci:
            lines.append("xen_platform_pci = 0")
    # xvdb: for HVM also IDE disk 1 of QEMU's emulated controller (libxl emulates the
    # first four); with PV drivers the guest unplugs it and uses blkfront instead
    target = f"target={guest.disk}" if s.disk_backend == "file" else \
        f"target={s.disk_device}"
    lines.append(f"disk = [{_quote(f'format=raw,vdev=xvdb,access=rw,{target}')}]")
    if guest.bridge:
        # HVM: a PV vif only, or (emulated only) an RTL8139 QEMU emulates in dom0
        kind = ""
        if emulated_only(guest.guest_type, s):
            kind = ",type=ioemu,model=rtl8139"
        elif guest.guest_type == "hvm":
            kind = ",type=vif"
        lines.append(f"vif = [{_quote(f'bridge={guest.bridge}{kind}')}]")
    return "\n".join(lines) + "\n"
