"""Find or fetch the guest kernel and its modules; extract vmlinux for PVH boot.

Order: ``--kernel PATH``; the host's own /boot/vmlinuz-$(uname -r) with
/lib/modules/$(uname -r); Debian's generic ``linux-image-amd64`` fetched with
``apt-get download`` and unpacked into the cache (no install, no root needed).
The generic kernel also serves as Xen dom0/domU.
"""

from __future__ import annotations

import io
import lzma
import os
import platform
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.segments import NoteSegment

from ..errors import HvbenchError, UsageError

XEN_ELFNOTE_ENTRY = 1  # the PV entry point (Xen's public elfnote.h)
XEN_ELFNOTE_PHYS32_ENTRY = 18  # the PVH entry point
_XZ_MAGIC = b"\xfd7zXZ\x00"
DEBIAN_META_PACKAGE = "linux-image-amd64"


@dataclass(frozen=True)
class Kernel:
    version: str
    bzimage: Path
    modules_dir: Path
    origin: str  # "explicit", "host" or the Debian package name and version


def bzimage_version(path: Path) -> str | None:
    """The version string a bzImage carries in its setup header."""
    with path.open("rb") as handle:
        header = handle.read(0x10000)
    if len(header) < 0x210 or header[0x202:0x206] != b"HdrS":
        return None
    (offset,) = struct.unpack_from("<H", header, 0x20E)
    start = offset + 0x200
    if start >= len(header):
        return None
    text = header[start:start + 256].split(b"\0", 1)[0].decode("ascii", "replace")
    return text.split()[0] if text else None


def find_kernel(cache: Path, explicit: Path | None = None,
                modules: Path | None = None, refresh: bool = False) -> Kernel:
    if explicit is not None:
        if not explicit.is_file():
            raise UsageError(f"--kernel {explicit}: no such file")
        version = bzimage_version(explicit) or ""
        modules_dir = modules or Path("/lib/modules") / version
        if not modules_dir.is_dir():
            raise UsageError(f"no modules for kernel {explicit} (looked in {modules_dir}); "
                             "give --modules DIR")
        return Kernel(version, explicit, modules_dir, "explicit")
    release = platform.release()
    host_kernel = Path("/boot") / f"vmlinuz-{release}"
    host_modules = Path("/lib/modules") / release
    if os.access(host_kernel, os.R_OK) and host_modules.is_dir():
        return Kernel(release, host_kernel, host_modules, "host")
    if not refresh:
        cached = sorted((cache / "kernels").glob("linux-image-*/.unpacked"),
                        key=lambda p: p.stat().st_mtime)
        if cached:  # a kernel fetched earlier; --refresh-kernel looks for a newer one
            return _unpacked(cached[-1].parent)
    return fetch_debian_kernel(cache)


def run_apt(args: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=600,
                              check=False)
    except FileNotFoundError:
        raise HvbenchError(f"{args[0]} is missing: fetching a Debian kernel needs apt") from None
    if done.returncode != 0:
        raise HvbenchError(f"{' '.join(args)} failed: {done.stderr.strip()[-300:]} "
                           "(run 'apt-get update' as root, or give --kernel PATH)")
    return done.stdout


def fetch_debian_kernel(cache: Path) -> Kernel:
    """Resolve linux-image-amd64 to its versioned package, download and unpack it."""
    depends = run_apt(["apt-cache", "depends", DEBIAN_META_PACKAGE])
    match = re.search(r"Depends:\s+(linux-image-\S+)", depends)
    if not match and os.geteuid() == 0:  # a fresh machine may have no package lists yet
        run_apt(["apt-get", "update", "-qq"])
        depends = run_apt(["apt-cache", "depends", DEBIAN_META_PACKAGE])
        match = re.search(r"Depends:\s+(linux-image-\S+)", depends)
    if not match:
        raise HvbenchError(f"apt-cache knows no {DEBIAN_META_PACKAGE}: run 'apt-get update'")
    package = match.group(1)
    target = cache / "kernels" / package
    ready = target / ".unpacked"
    if not ready.exists():
        download = target.with_name(target.name + ".download")
        shutil.rmtree(download, ignore_errors=True)
        download.mkdir(parents=True)
        run_apt(["apt-get", "download", package], cwd=download)
        debs = list(download.glob("*.deb"))
        if len(debs) != 1:
            raise HvbenchError(f"apt-get download {package} produced no package file")
        unpacked = download / "root"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], check=True,
                       timeout=600)
        (unpacked / ".unpacked").write_text(debs[0].name)
        shutil.rmtree(target, ignore_errors=True)
        unpacked.rename(target)
        shutil.rmtree(download, ignore_errors=True)
    return _unpacked(target)


def _unpacked(target: Path) -> Kernel:
    images = sorted((target / "boot").glob("vmlinuz-*"))
    if not images:
        raise HvbenchError(f"{target.name} contains no /boot/vmlinuz-*")
    version = images[0].name.removeprefix("vmlinuz-")
    return Kernel(version, images[0], target / "lib" / "modules" / version,
                  f"{target.name} ({(target / '.unpacked').read_text().strip()})")


def extract_vmlinux(bzimage: bytes) -> bytes | None:
    """The uncompressed ELF kernel inside an XZ-compressed bzImage, or None."""
    start = bzimage.find(_XZ_MAGIC)
    while start >= 0:
        decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        try:
            data = decompressor.decompress(bzimage[start:])
        except lzma.LZMAError:
            data = b""
        if data.startswith(b"\x7fELF"):
            return data
        start = bzimage.find(_XZ_MAGIC, start + 1)
    return None


def xen_note_types(vmlinux: bytes) -> set[int]:
    """The types of the ELF kernel's "Xen" notes, read from its note segments by hand:
    pyelftools names note types by the GNU table whatever the owner, so Xen's type 1
    (the PV entry point) would read as NT_GNU_ABI_TAG."""
    elf = ELFFile(io.BytesIO(vmlinux))
    found: set[int] = set()
    for segment in elf.iter_segments():
        if not isinstance(segment, NoteSegment):
            continue
        data, offset = segment.data(), 0
        while offset + 12 <= len(data):
            namesz, descsz, kind = struct.unpack_from("<III", data, offset)
            name = data[offset + 12:offset + 12 + namesz].rstrip(b"\0")
            if name == b"Xen":
                found.add(kind)
            offset += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return found


def has_pvh_note(vmlinux: bytes) -> bool:
    """True when the ELF kernel declares a PVH entry point (direct boot, no firmware)."""
    return XEN_ELFNOTE_PHYS32_ENTRY in xen_note_types(vmlinux)


def has_pv_note(vmlinux: bytes) -> bool:
    """True when the ELF kernel declares a Xen PV entry point (xl boots it as is)."""
    return XEN_ELFNOTE_ENTRY in xen_note_types(vmlinux)
