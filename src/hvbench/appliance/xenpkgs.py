"""Xen from Debian's packages, downloaded with apt and unpacked (never installed):
the hypervisor, the xl toolstack and libvirt's libxl driver that the Xen lab's dom0
carries."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import HvbenchError
from .kernel import run_apt

#: hypervisor and tools must be the same version; qemu-system-xen is the device model
#: HVM guests need (libxl runs /usr/libexec/xen-qemu-system-i386)
PACKAGES = ["xen-hypervisor-4.17-amd64", "xen-utils-4.17", "xen-utils-common",
            "xenstore-utils", "libxencall1", "libxenevtchn1", "libxenforeignmemory1",
            "libxengnttab1", "libxenmisc4.17", "libxenstore4", "libxentoollog1", "libyajl2",
            "libxenhypfs1", "libxendevicemodel1", "libxentoolcore1", "qemu-system-xen",
            # libvirt's libxl driver, for the libvirt platform on xen:///system
            "libvirt-daemon-driver-xen"]
DEVICE_MODEL = "/usr/libexec/xen-qemu-system-i386"
XEN_VERSION = "4.17"


@dataclass(frozen=True)
class XenTree:
    root: Path  # the packages unpacked
    hypervisor: Path  # uncompressed: QEMU's multiboot loader rejects the .gz
    version: str  # the package version

    @property
    def tools(self) -> Path:
        return self.root / "usr" / "lib" / f"xen-{XEN_VERSION}"

    @property
    def library_dir(self) -> Path:
        return self.root / "usr" / "lib" / "x86_64-linux-gnu"


def fetch(cache: Path) -> XenTree:
    """The Xen packages of the configured Debian release, unpacked once into the cache."""
    policy = run_apt(["apt-cache", "policy", PACKAGES[0]])
    found = re.search(r"Candidate:\s+(\S+)", policy)
    if not found or found.group(1) == "(none)":
        raise HvbenchError(f"apt knows no {PACKAGES[0]}: run 'apt-get update' (Debian 12's "
                           "main archive has Xen 4.17)")
    version = found.group(1)
    target = cache / "xen" / version.replace(":", "_").replace("+", "_")
    marker = f"{version} {' '.join(PACKAGES)}"
    done = target / ".unpacked"
    if not done.exists() or done.read_text() != marker:
        download = target.with_name(target.name + ".download")
        shutil.rmtree(download, ignore_errors=True)
        download.mkdir(parents=True)
        run_apt(["apt-get", "download", "-q", *PACKAGES], cwd=download)
        root = download / "root"
        for deb in sorted(download.glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, timeout=600)
        images = sorted((root / "boot").glob("xen-*.gz"))
        if not images:
            raise HvbenchError("the Xen hypervisor package holds no /boot/xen-*.gz")
        (root / "boot" / "xen").write_bytes(gzip.decompress(images[0].read_bytes()))
        (root / ".unpacked").write_text(marker)
        shutil.rmtree(target, ignore_errors=True)
        root.rename(target)
        shutil.rmtree(download, ignore_errors=True)
    return XenTree(target, target / "boot" / "xen", version)
