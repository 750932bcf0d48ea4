"""A libvirt guest's configuration: its settings and the domain XML they make.

The XML boots the appliance directly (kernel, initramfs, command line), puts the
agent on a virtio-serial channel, the console in a file on the host, the scratch disk
on the chosen bus and the NIC on user networking. Every value placed in the XML is
set through ElementTree (escaped), never pasted into text.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Literal

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET
from pydantic import Field, model_validator

from .qemucfg import QemuSettings

#: settings a template decides (set in a campaign too, they would be ignored: refused)
DECIDED = ("vcpus", "memory_mib", "pin", "hugepages", "machine", "cpu", "disk_bus",
           "nic_model", "iothread", "queues", "virt_type")
#: the Xen domain types (libvirtxen.py) and the QEMU settings they have no use for
XEN_TYPES = ("xen-pv", "xen-pvh")
QEMU_ONLY = ("cpu", "machine", "hugepages", "disk_cache", "disk_aio", "disk_bus",
             "nic_model", "vhost", "iothread", "queues")
#: the namespace of hvbench's own element in a domain's <metadata>: who started it
OWNER_NS = "https://hvbench.invalid/xmlns/owner/1"
AGENT_CHANNEL = "hvbench.agent"
#: libvirt's disk target for each bus (the guest's own name is qemucfg's SCRATCH_DEVICE)
#: and its NIC model for each of ours; nvme needs libvirt 10.x (not Debian 12's 9.0)
_TARGET = {"virtio-blk": ("vda", "virtio"), "virtio-scsi": ("sda", "scsi"),
           "ide": ("sda", "sata")}
NIC_MODEL = {"virtio-net": "virtio", "e1000e": "e1000e", "rtl8139": "rtl8139"}


class LibvirtSettings(QemuSettings):
    """Settings of a libvirt guest: the QEMU guest's, plus where libvirt is."""

    uri: str | None = Field(None, pattern=r"^[a-z0-9+]+://[^\s]*$",
                            description="libvirt connection URI (unset: libvirt's default, "
                                        "e.g. LIBVIRT_DEFAULT_URI)")
    virt_type: Literal["kvm", "qemu", "xen-pv", "xen-pvh"] | None = Field(
        None, description="the domain type: kvm, qemu (TCG), or on a Xen connection xen-pv "
                          "or xen-pvh; unset: kvm where it works, else qemu; xen-pvh on Xen")
    network: Literal["user", "none"] = Field("user", description="user networking or none")
    template: str | None = Field(None, description="your own domain XML as a template: a "
                                 "file, e.g. 'virsh dumpxml prod-vm' output")
    domain: str | None = Field(None, min_length=1,
                               description="a defined domain read from the connection as the "
                                           "template (never changed or started)")

    @model_validator(mode="after")
    def _libvirt_can(self) -> LibvirtSettings:
        if self.disk_bus == "nvme":
            raise ValueError("disk_bus = 'nvme' needs libvirt 10 or later (an emulated "
                             "NVMe bus); use virtio-blk, virtio-scsi or ide")
        if self.microvm:
            raise ValueError(f"machine = '{self.machine}': libvirt has no microvm machine "
                             "type; use q35 or pc")
        if self.kernel:
            raise ValueError("kernel: the libvirt kind boots the appliance's own kernel")
        if self.template and self.domain:
            raise ValueError("set either template (a file) or domain (a defined domain), "
                             "not both")
        if self.virt_type in XEN_TYPES:
            if self.template or self.domain:
                raise ValueError(f"virt_type = '{self.virt_type}': templates are for QEMU "
                                 "domains; hvbench generates the Xen domain")
            refused = sorted(self.model_fields_set & set(QEMU_ONLY))
            if refused:
                raise ValueError(f"{refused[0]} is a QEMU guest's setting; a {self.virt_type} "
                                 "domain's disk is xen-blkfront (xvdb)")
            if "network" in self.model_fields_set and self.network == "user":
                raise ValueError(f"network = 'user' does not exist for {self.virt_type} "
                                 "domains; use network = 'none'")
        if self.template or self.domain:
            clash = sorted(self.model_fields_set & set(DECIDED))
            if clash:
                raise ValueError(f"{clash[0]} is decided by the template (its domain XML "
                                 "keeps it): set it in a copy of the template instead")
        return self


@dataclass(frozen=True)
class DomainFiles:
    """Where the domain's files are on its host."""

    kernel: str
    initramfs: str
    scratch: str
    console_log: str
    #: the agent channel's socket (a short path: libvirt's own would be long under a
    #: deep home directory, and UNIX socket paths are limited to 107 bytes)
    agent_socket: str


def sub(parent: ET.Element, tag: str, text: str | None = None, **attributes: str
        ) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    if text is not None:
        element.text = text
    return element


def domain_xml(s: LibvirtSettings, virt_type: str, name: str, files: DomainFiles,
               cmdline: str, owner: dict[str, str]) -> str:
    """The transient domain for the appliance under ``name``; ``owner`` (host, pid) is
    kept in its metadata so a later run can tell a stale domain from a live one."""
    root = ET.Element("domain", type=virt_type)
    sub(root, "memory", str(s.memory_mib), unit="MiB")
    sub(root, "vcpu", str(s.vcpus), placement="static")
    if s.iothread:
        sub(root, "iothreads", "1")
    pin_vcpus(root, s)
    if s.hugepages:
        sub(sub(root, "memoryBacking"), "hugepages")
    sub(sub(root, "os"), "type", "hvm", arch="x86_64", machine=s.machine)
    if s.cpu:
        model = sub(root, "cpu", mode="custom", match="exact", check="none")
        sub(model, "model", s.cpu, fallback="forbid")
    else:
        sub(root, "cpu", mode="host-passthrough" if virt_type == "kvm" else "maximum")
    sub(root, "clock", offset="utc")
    add_appliance(root, s, name, files, cmdline, owner)
    return ET.tostring(root, encoding="unicode")


def pin_vcpus(root: ET.Element, s: LibvirtSettings) -> None:
    """Each vCPU on its host CPU (``<cputune><vcpupin>``), when the settings pin them."""
    if s.pin:
        cputune = sub(root, "cputune")
        for vcpu, host_cpu in enumerate(s.pin[:s.vcpus]):
            sub(cputune, "vcpupin", vcpu=str(vcpu), cpuset=str(host_cpu))


def identify(root: ET.Element, name: str, owner: dict[str, str]) -> None:
    """The domain's name, and its owner in its metadata (who may sweep it)."""
    sub(root, "name", name)
    metadata = root.find("metadata")
    if metadata is None:
        metadata = sub(root, "metadata")
    ET.SubElement(metadata, f"{{{OWNER_NS}}}owner", owner)


def add_appliance(root: ET.Element, s: LibvirtSettings, name: str, files: DomainFiles,
                  cmdline: str, owner: dict[str, str], scsi_controller: bool = True) -> None:
    """What every hvbench domain has, generated or from a template: its name and owner,
    direct kernel boot of the appliance, ACPI (without it a guest's poweroff leaves it
    running), destroy on any stop, the scratch disk, the console in a file, the
    agent's channel and the NIC on user networking."""
    identify(root, name, owner)
    os_ = root.find("os")
    if os_ is None:
        os_ = sub(root, "os")
    sub(os_, "kernel", files.kernel)
    sub(os_, "initrd", files.initramfs)
    sub(os_, "cmdline", cmdline)
    features = root.find("features")
    if features is None:
        features = sub(root, "features")
    if features.find("acpi") is None:
        sub(features, "acpi")
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        sub(root, event, "destroy")
    devices = root.find("devices")
    if devices is None:
        devices = sub(root, "devices")
    _disk(devices, s, files.scratch, scsi_controller)
    serial = sub(devices, "serial", type="file")
    sub(serial, "source", path=files.console_log)
    sub(serial, "target", port="0")
    channel = sub(devices, "channel", type="unix")
    sub(channel, "source", mode="bind", path=files.agent_socket)
    sub(channel, "target", type="virtio", name=AGENT_CHANNEL)
    if s.network == "user":
        interface = sub(devices, "interface", type="user")
        sub(interface, "model", type=NIC_MODEL[s.nic_model])
    if devices.find("memballoon") is None:
        sub(devices, "memballoon", model="none")


def _disk(devices: ET.Element, s: LibvirtSettings, path: str, scsi_controller: bool
          ) -> None:
    """The scratch disk (raw, errors reported to the guest) on its bus."""
    device, bus = _TARGET[s.disk_bus]
    if s.disk_bus == "ide" and "q35" not in s.machine:
        device, bus = "hda", "ide"  # pc has PIIX IDE, no AHCI (the guest still sees sda)
    queues = {"queues": str(s.queues)} if s.queues > 1 else {}
    thread = {"iothread": "1"} if s.iothread else {}
    if s.disk_bus == "virtio-scsi" and scsi_controller:
        controller = sub(devices, "controller", type="scsi", index="0", model="virtio-scsi")
        if queues or thread:
            sub(controller, "driver", **queues, **thread)
        queues, thread = {}, {}
    disk = sub(devices, "disk", type="file", device="disk")
    sub(disk, "driver", name="qemu", type="raw", cache=s.disk_cache, io=s.disk_aio,
         error_policy="report", rerror_policy="report", **queues, **thread)
    sub(disk, "source", file=path)
    sub(disk, "target", dev=device, bus=bus)


def owner_of(xml: str) -> dict[str, str] | None:
    """The owner hvbench recorded in a domain's XML, or None (not one of ours)."""
    try:
        root = SafeET.fromstring(xml)
    except (ET.ParseError, DefusedXmlException):
        return None
    found = root.find(f"metadata/{{{OWNER_NS}}}owner")
    return dict(found.attrib) if found is not None else None
