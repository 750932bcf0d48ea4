"""The domain XML of a libvirt Xen guest (libvirt's libxl driver, ``xen:///system``).

A PV or PVH domain boots the appliance directly (PVH: the uncompressed vmlinux by its
PVH note), the agent on the PV console (``hvc0``, reached through libvirt's console
stream), the scratch disk on xen-blkfront (``xvdb``). Nested under TCG (the Xen lab)
a PVH guest gets what xl's guests get there (xencfg): the TSC not emulated and the
features QEMU's SVM emulation mishandles hidden. Values are set through ElementTree.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from .libvirtxml import DomainFiles, LibvirtSettings, identify, pin_vcpus, sub
from .xencfg import NESTED_MASKED

#: libvirt's OS type and machine for each of our Xen guest types
OS_TYPE = {"xen-pv": ("linux", "xenpv"), "xen-pvh": ("xenpvh", "xenpvh")}
SCRATCH = "xvdb"


def xen_domain_xml(s: LibvirtSettings, virt_type: str, name: str, files: DomainFiles,
                   cmdline: str, owner: dict[str, str], nested: bool) -> str:
    """The transient Xen domain for the appliance under ``name``."""
    os_type, machine = OS_TYPE[virt_type]
    root = ET.Element("domain", type="xen")
    identify(root, name, owner)
    sub(root, "memory", str(s.memory_mib), unit="MiB")
    sub(root, "vcpu", str(s.vcpus), placement="static")
    pin_vcpus(root, s)
    os_ = sub(root, "os")
    sub(os_, "type", os_type, arch="x86_64", machine=machine)
    sub(os_, "kernel", files.kernel)
    sub(os_, "initrd", files.initramfs)
    sub(os_, "cmdline", cmdline)
    clock = sub(root, "clock", offset="utc")
    if nested and virt_type == "xen-pvh":
        cpu = sub(root, "cpu", mode="host-passthrough")
        for feature in NESTED_MASKED:
            sub(cpu, "feature", policy="disable", name=feature)
        sub(clock, "timer", name="tsc", mode="native")
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        sub(root, event, "destroy")
    devices = sub(root, "devices")
    disk = sub(devices, "disk", type="file", device="disk")
    sub(disk, "driver", type="raw")
    sub(disk, "source", file=files.scratch)
    sub(disk, "target", dev=SCRATCH, bus="xen")
    console = sub(devices, "console", type="pty")
    sub(console, "target", type="xen", port="0")
    return ET.tostring(root, encoding="unicode")
