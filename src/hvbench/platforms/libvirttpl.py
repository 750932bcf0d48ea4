"""The user's own domain as a template for a libvirt guest.

From a domain XML (a file, e.g. ``virsh dumpxml prod-vm``, or a domain read from the
connection) hvbench keeps what makes the guest what it is (CPU model and topology,
NUMA, ``cputune``, ``memoryBacking``, features, clock, machine type, controllers and
other device models) and replaces what it must: name and UUID, the boot (direct
kernel boot of the appliance; the firmware and its NVRAM are the user's and are
dropped), the disks (one scratch disk on the bus of the template's first disk), the
interfaces (one on user networking with the model of the template's first), the
console and channels, and the display. The user's definition itself is only read.
"""

from __future__ import annotations

import copy
import difflib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET

from ..errors import UsageError
from .libvirtxml import NIC_MODEL, DomainFiles, LibvirtSettings, add_appliance

#: devices that tie a guest to host resources hvbench cannot provide or must not touch
_REFUSED = ("hostdev", "filesystem", "redirdev", "smartcard", "tpm", "shmem")
#: replaced by the appliance's own (see the module's docstring)
_REPLACED_DEVICES = ("disk", "interface", "serial", "console", "channel", "graphics")
_REPLACED_OS = ("boot", "bootmenu", "loader", "nvram", "kernel", "initrd", "cmdline", "dtb")
_REPLACED = ("name", "uuid", "on_poweroff", "on_reboot", "on_crash", "genid")
#: the template's first disk bus -> our disk_bus (the appliance has these drivers)
_BUS = {"virtio": "virtio-blk", "scsi": "virtio-scsi", "sata": "ide", "ide": "ide"}


@dataclass(frozen=True)
class Template:
    source: str  # where it came from, for messages: a path or "domain NAME"
    text: str  # as read, never changed
    root: ET.Element
    #: what the template decides, as settings: the guest's records and its command
    #: line (which device the scratch disk is) follow it
    decided: dict[str, Any]


def read_template(text: str, source: str) -> Template:
    """Parse and check a domain XML; UsageError naming the element it cannot use."""
    try:
        root = SafeET.fromstring(text)
    except (ET.ParseError, DefusedXmlException) as exc:
        raise UsageError(f"template {source}: not a readable domain XML ({exc})") from None
    if root.tag != "domain":
        raise UsageError(f"template {source}: the root element is <{root.tag}>, not <domain>")
    kind = root.get("type", "")
    if kind not in ("kvm", "qemu"):
        raise UsageError(f"template {source}: <domain type='{kind}'> is not supported (QEMU "
                         "templates only: type 'kvm' or 'qemu')")
    devices = root.find("devices")
    disk = devices.find("disk[@device='disk']") if devices is not None else None
    if devices is None or disk is None:
        raise UsageError(f"template {source}: it has no <disk device='disk'>: the scratch "
                         "disk takes the bus of the template's first disk")
    for tag in _REFUSED:
        if devices.find(tag) is not None:
            raise UsageError(f"template {source}: hvbench cannot keep <{tag}> (a host "
                             "resource); remove it from a copy of the template")
    bus = (disk.find("target").get("bus", "") if disk.find("target") is not None else "")
    if bus not in _BUS:
        raise UsageError(f"template {source}: the first disk's <target bus='{bus}'> is not "
                         f"one the appliance can use ({', '.join(_BUS)})")
    if bus == "scsi" and devices.find("controller[@type='scsi'][@model='virtio-scsi']") is None:
        raise UsageError(f"template {source}: a SCSI disk needs <controller type='scsi' "
                         "model='virtio-scsi'> (the appliance has no other SCSI driver)")
    decided: dict[str, Any] = {"disk_bus": _BUS[bus], "virt_type": kind}
    driver = disk.find("driver")
    for attribute, setting in (("cache", "disk_cache"), ("io", "disk_aio")):
        if driver is not None and driver.get(attribute):
            decided[setting] = driver.get(attribute)
    interface = devices.find("interface")
    if interface is None:
        decided["network"] = "none"
    else:
        model = interface.find("model")
        wanted = model.get("type", "") if model is not None else ""
        ours = {v: k for k, v in NIC_MODEL.items()}
        if wanted not in ours:
            raise UsageError(f"template {source}: <interface><model type='{wanted}'> is not "
                             f"one the appliance has a driver for ({', '.join(ours)})")
        decided["nic_model"] = ours[wanted]
    vcpus, memory = root.findtext("vcpu", "").strip(), root.find("memory")
    if vcpus.isdigit():
        decided["vcpus"] = int(vcpus)
    if memory is not None and (memory.text or "").strip().isdigit():
        scale = {"b": 2**-20, "bytes": 2**-20, "k": 2**-10, "kib": 2**-10, "m": 1, "mib": 1,
                 "g": 1024, "gib": 1024}.get(memory.get("unit", "KiB").lower())
        if scale is not None:
            decided["memory_mib"] = int(int((memory.text or "0").strip()) * scale)
    os_type = root.find("os/type")
    machine = os_type.get("machine", "") if os_type is not None else ""
    decided["machine"] = "q35" if "q35" in machine else "pc"
    return Template(source, text, root, decided)


def load(path: str) -> Template:
    """A template file; UsageError when it cannot be read or used."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"template {path}: cannot read it ({exc})") from None
    return read_template(text, path)


def template_xml(template: Template, s: LibvirtSettings, name: str, files: DomainFiles,
                 cmdline: str, owner: dict[str, str]) -> str:
    """The template's domain with the appliance in it; ``s`` already holds what the
    template decided."""
    root = copy.deepcopy(template.root)
    for tag in _REPLACED:
        for element in root.findall(tag):
            root.remove(element)
    os_ = root.find("os")
    if os_ is not None:
        for tag in _REPLACED_OS:
            for element in os_.findall(tag):
                os_.remove(element)
    devices = root.find("devices")
    assert devices is not None  # read_template checked
    for tag in _REPLACED_DEVICES:
        for element in devices.findall(tag):
            devices.remove(element)
    add_appliance(root, s, name, files, cmdline, owner, scsi_controller=False)
    return ET.tostring(root, encoding="unicode")


def diff(template: Template, final: str) -> str:
    """A unified diff from the template to the domain hvbench started (both indented
    the same way, so only real changes show)."""
    def lines(text: str) -> list[str]:
        root = SafeET.fromstring(text)
        ET.indent(root)
        return ET.tostring(root, encoding="unicode").splitlines(keepends=True)

    return "".join(difflib.unified_diff(lines(template.text), lines(final),
                                        template.source, "started"))
