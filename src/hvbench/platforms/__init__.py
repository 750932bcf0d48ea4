"""Platform drivers by kind."""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from ..machine import Completed, Machine
from .base import Platform, PlatformContext
from .kvmprobe import KvmprobePlatform
from .libvirt import LibvirtPlatform
from .native import LabNativePlatform, NativePlatform
from .qemu import QemuKvmPlatform, QemuTcgPlatform
from .xen import XenHvmPlatform, XenPvhPlatform, XenPvPlatform

PLATFORM_KINDS: dict[str, type[Platform]] = {
    "native": NativePlatform,
    "lab-native": LabNativePlatform,
    "qemu-kvm": QemuKvmPlatform,
    "qemu-tcg": QemuTcgPlatform,
    "xen-pv": XenPvPlatform,
    "xen-pvh": XenPvhPlatform,
    "xen-hvm": XenHvmPlatform,
    "libvirt": LibvirtPlatform,
    "kvmprobe": KvmprobePlatform,
}

PLATFORM_DESCRIPTIONS = {
    "native": "the host itself, no virtualization (the usual baseline)",
    "lab-native": "a nested lab's host itself (--host lab:kvm): the baseline inside a lab",
    "qemu-kvm": "a QEMU guest with KVM (hardware virtualization), booted from the appliance",
    "qemu-tcg": "a QEMU guest under TCG (pure emulation), booted from the appliance",
    "xen-pv": "a Xen paravirtualized guest (xl, on a dom0: local, ssh:// or lab:xen)",
    "xen-pvh": "a Xen PVH guest (hardware virtualization, no device model)",
    "xen-hvm": "a Xen HVM guest (full hardware virtualization; needs qemu-system-xen in dom0)",
    "libvirt": "a transient libvirt domain booted from the appliance (setting uri: any "
               "libvirt URI; kvm where it works, else qemu)",
    "kvmprobe": "VM exit costs through this host's /dev/kvm (runs the kvm-exits workload)",
}


def make_platform(name: str, kind: str, settings: dict[str, Any],
                  context: PlatformContext | None = None) -> Platform:
    try:
        driver = PLATFORM_KINDS[kind]
    except KeyError:
        raise UsageError(f"unknown platform {kind!r}; choose from: {', '.join(PLATFORM_KINDS)}"
                         ) from None
    platform = driver(name=name, settings=dict(settings), context=context or PlatformContext())
    platform.validate()
    return platform


__all__ = ["PLATFORM_KINDS", "Completed", "Machine", "Platform", "PlatformContext",
           "make_platform"]
