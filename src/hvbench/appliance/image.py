"""``hvbench image build``: the guest appliance, a kernel plus an initramfs.

The initramfs carries busybox, the host's own workload binaries with their
shared libraries (so guests run exactly what the host runs), the kernel
modules the guest needs, data files some workloads read, and the agent
(init.sh). The result is cached under ``$HVBENCH_CACHE`` (default
~/.cache/hvbench) by a hash of every input's content: a warm cache costs one
pass of hashing, well under a second.

Guests boot the initramfs compressed with zstd: nested hypervisors copy a ramdisk
into a guest slowly (libxl's domain builder in the Xen lab took 25 s for a 126 MiB
one, the KVM lab's QEMU 15 s), while the guest's kernel unpacks a third of the bytes
in about a second more, even under TCG. The plain cpio stays beside it for what
unpacks it on a host (the SSH tool bundle) and for the labs' own boot (a local QEMU
loads it quickly, and L1 would only spend longer unpacking it).
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import zstandard

from ..errors import HvbenchError
from ..localproc import local_which
from ..paths import write_atomic
from . import kernel as kernel_mod
from . import libs, modules
from .cpio import CpioWriter

FORMAT = 2  # bump when the layout changes, to invalidate old caches
#: zstd level of the boot initramfs: 3x smaller than the cpio at well under a second
#: per 100 MiB on two cores (higher levels gain a few percent for seconds more)
ZSTD_LEVEL = 7
GUEST_MODULES = ["virtio_pci", "virtio_mmio", "virtio_blk", "virtio_net", "virtio_console",
                 "crc32c_generic", "ext4", "xen_blkfront", "xen_netfront",
                 # the other I/O paths a guest may be given (QEMU's disk_bus, nic_model)
                 "virtio_scsi", "sd_mod", "nvme", "ahci", "ata_piix", "e1000e", "8139cp",
                 "8139too"]
BUSYBOX = Path("/bin/busybox")
#: extra programs the appliance needs besides busybox and the workload tools
EXTRA_BINARIES = ["/bin/bash"]
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Payload:
    """What an appliance carries besides its own system: the workloads' tools, their data
    and whether to build hvprobe. The workload layer says what that is
    (``hvbench.workloads.payload``); the builder only copies it."""

    #: (binary, Debian package that provides it)
    binaries: tuple[tuple[str, str], ...] = ()
    #: data files as glob patterns (copied when present on the host)
    data: tuple[str, ...] = ()
    hvprobe: bool = False


@dataclass(frozen=True)
class Image:
    """A built appliance: what QEMU or xl boots."""

    key: str
    directory: Path
    kernel: Path  # vmlinux (PVH direct boot) when possible, else the bzImage
    bzimage: Path  # always available (Xen HVM and firmware boots use it)
    initramfs: Path  # zstd-compressed: what guests boot
    cpio: Path  # the same archive uncompressed: unpacked on hosts, booted by the labs
    manifest: dict[str, Any]

    @property
    def pvh(self) -> bool:
        return bool(self.manifest.get("pvh"))

    @property
    def pv_elf(self) -> bool:
        """The vmlinux also boots as a Xen PV domain (its Xen PV entry note)."""
        return bool(self.manifest.get("pv_elf"))


def cache_root() -> Path:
    configured = os.environ.get("HVBENCH_CACHE")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hvbench"


@dataclass
class _Entry:
    """One path of the initramfs."""

    kind: str  # dir | file | symlink | dev
    mode: int = 0o755
    source: Path | None = None
    data: bytes | None = None
    target: str = ""
    device: tuple[int, int] = (0, 0)

    def content(self) -> bytes:
        """A file entry's bytes: given, or read from its host source."""
        if self.data is not None:
            return self.data
        assert self.source is not None, "a file entry has data or a source"
        return self.source.read_bytes()

    def fingerprint(self, memo: dict[str, str]) -> str:
        if self.kind == "file":
            if self.data is not None:
                digest = hashlib.sha256(self.data).hexdigest()
            else:
                assert self.source is not None, "a file entry has data or a source"
                digest = _file_digest(self.source, memo)
            return f"file:{self.mode:o}:{digest}"
        return f"{self.kind}:{self.mode:o}:{self.target}:{self.device}"


def _file_digest(path: Path, memo: dict[str, str]) -> str:
    """Content hash, remembered per (path, size, mtime, inode) so warm checks are fast."""
    info = path.stat()
    stamp = f"{path}:{info.st_size}:{info.st_mtime_ns}:{info.st_ino}"
    if stamp not in memo:
        memo[stamp] = hashlib.sha256(path.read_bytes()).hexdigest()
    return memo[stamp]


class _Tree:
    """The initramfs as a mapping of absolute path -> entry, host layout preserved."""

    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(top):  # Debian's merged /usr: keep the same symlinks
                self.entries[top] = _Entry("symlink", target=os.readlink(top))

    def _parents(self, path: str) -> None:
        parent = os.path.dirname(path)
        while parent not in ("/", ""):
            if parent not in self.entries:
                self.entries[parent] = _Entry("dir")
            parent = os.path.dirname(parent)

    def _real(self, path: str) -> str:
        """The path with merged-/usr symlinks resolved (where the file really lives)."""
        head, tail = path, ""
        while head not in ("/", ""):
            entry = self.entries.get(head)
            if entry is not None and entry.kind == "symlink":
                return self._real(os.path.normpath(os.path.join(os.path.dirname(head),
                                                                entry.target)) + tail)
            head, tail = os.path.dirname(head), "/" + os.path.basename(head) + tail
        return path

    def add_file(self, path: str, source: Path | None = None, data: bytes | None = None,
                 mode: int | None = None) -> None:
        real = self._real(path)
        self._parents(real)
        if mode is None:
            mode = (source.stat().st_mode & 0o777) if source else 0o644
        self.entries[real] = _Entry("file", mode=mode, source=source, data=data)

    def add_symlink(self, path: str, target: str) -> None:
        real = self._real(path)
        self._parents(real)
        if real not in self.entries:
            self.entries[real] = _Entry("symlink", target=target)

    def forget(self, path: str) -> None:
        """Drop the entry at ``path`` (a busybox applet a real program replaces)."""
        head, name = os.path.split(path)
        self.entries.pop(f"{self._real(head)}/{name}", None)

    def add_host_program(self, path: str) -> None:
        """A host program in place of any busybox applet of its name."""
        self.forget(path)
        self.add_host_path(path)

    def add_host_path(self, path: str) -> None:
        """A host file (following its symlink chain, which is kept as symlinks)."""
        host = Path(path)
        if host.is_symlink():
            target = os.readlink(host)
            self.add_symlink(path, target)
            self.add_host_path(os.path.normpath(os.path.join(os.path.dirname(path), target)))
        elif host.is_file():
            self.add_file(path, source=host)

    def write(self, stream: io.BufferedWriter) -> None:
        writer = CpioWriter(stream)
        for path in sorted(self.entries, key=lambda p: (p.count("/"), p)):
            entry = self.entries[path]
            if entry.kind == "dir":
                writer.directory(path, entry.mode)
            elif entry.kind == "symlink":
                writer.symlink(path, entry.target)
            elif entry.kind == "dev":
                writer.char_device(path, *entry.device)
            else:
                writer.file(path, entry.content(), entry.mode)
        writer.close()


def _tools(payload: Payload) -> tuple[list[Path], list[str], list[str]]:
    """Host paths of the payload's binaries, its data globs, and what is missing."""
    binaries, missing = [], []
    for binary, package in payload.binaries:
        found = local_which(binary)
        if found:
            binaries.append(Path(found))
        else:
            missing.append(f"{binary} ({package})")
    return sorted(set(binaries)), list(payload.data), sorted(set(missing))


def guest_script(name: str) -> bytes:
    """A guest-side script shipped in this package (init.sh, agent.sh)."""
    return resources.files("hvbench.guest").joinpath(name).read_bytes()


def _plan(kernel: kernel_mod.Kernel, payload: Payload) -> tuple[_Tree, dict[str, Any]]:
    if not BUSYBOX.is_file() or libs.needed_libraries(BUSYBOX):
        raise HvbenchError("a static busybox is needed at /bin/busybox: "
                           "apt-get install busybox-static")
    tree = _Tree()
    for directory in ("/dev", "/proc", "/sys", "/tmp", "/run", "/root", "/scratch", "/etc",
                      "/var", "/var/tmp", "/etc/hvbench", "/lib/modules"):
        tree.entries.setdefault(tree._real(directory), _Entry("dir"))
    tree.entries["/dev/console"] = _Entry("dev", mode=0o600, device=(5, 1))
    tree.entries["/dev/null"] = _Entry("dev", mode=0o666, device=(1, 3))
    tree.add_file("/init", data=guest_script("init.sh"), mode=0o755)
    tree.add_file("/etc/hvbench/agent.sh", data=guest_script("agent.sh"), mode=0o755)
    tree.add_file("/etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n")
    tree.add_file("/etc/group", data=b"root:x:0:\n")
    tree.add_file("/etc/hosts", data=b"127.0.0.1 localhost\n")
    tree.add_file("/etc/hostname", data=b"hvbench-guest\n")

    binaries, patterns, missing = _tools(payload)
    binaries += [Path(p) for p in EXTRA_BINARIES if Path(p).exists()]
    if payload.hvprobe:
        from ..probes.build import build as build_hvprobe
        from ..probes.build import compiler

        if compiler():
            probe = build_hvprobe(cache_root())
            tree.add_file("/usr/local/bin/hvprobe", source=probe, mode=0o755)
            binaries.append(probe)
        else:
            missing.append("hvprobe (gcc)")
    for binary in binaries:
        if "/hvprobe/" not in str(binary):  # carried at /usr/local/bin, added above
            tree.add_host_path(str(binary))
    real_binaries = [b.resolve() for b in binaries if libs.is_elf(b.resolve())]
    for library in libs.closure(real_binaries):
        tree.add_host_path(str(library))
    loader = "/lib64/ld-linux-x86-64.so.2"
    if Path(loader).exists():
        tree.add_host_path(loader)
    for pattern in patterns:
        for match in sorted(glob.glob(pattern, recursive=True)):
            if Path(match).is_file():
                tree.add_host_path(match)
    # Shared libraries of executables found among the data (mafft's helpers).
    extra_elves = [e.source.resolve() for e in tree.entries.values()
                   if e.kind == "file" and e.source is not None and (e.mode & 0o111)
                   and e.source.stat().st_size > 4 and libs.is_elf(e.source)
                   and e.source.resolve() not in real_binaries]
    for library in libs.closure(extra_elves):
        tree.add_host_path(str(library))

    tree.add_file("/usr/bin/busybox", source=BUSYBOX, mode=0o755)
    applets = subprocess.run([str(BUSYBOX), "--list-full"], capture_output=True, text=True,
                             check=True, timeout=30).stdout.split()
    for applet in applets:
        path = tree._real("/" + applet)
        if path not in tree.entries:
            tree.add_symlink(path, "/usr/bin/busybox")

    available = modules.index(kernel.modules_dir)
    module_files = modules.resolve(kernel.modules_dir, [m for m in GUEST_MODULES
                                                        if m in available], available)
    for module in module_files:
        tree.add_file(f"/lib/modules/{module.name}", source=module, mode=0o644)
    tree.add_file("/etc/hvbench/modules",
                  data="".join(f"{m.name}\n" for m in module_files).encode())
    manifest = {
        "format": FORMAT, "kernel_version": kernel.version, "kernel_origin": kernel.origin,
        "modules": [m.name for m in module_files],
        "binaries": [str(b) for b in binaries], "missing_tools": missing,
        "files": len(tree.entries),
    }
    return tree, manifest


def _key(kernel: kernel_mod.Kernel, tree: _Tree, root: Path) -> str:
    memo_path = root / "content-hashes.json"
    try:
        memo: dict[str, str] = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    digest = hashlib.sha256(f"hvbench-image-{FORMAT}\n".encode())
    digest.update(_file_digest(kernel.bzimage, memo).encode())
    for path in sorted(tree.entries):
        digest.update(f"{path}\0{tree.entries[path].fingerprint(memo)}\n".encode())
    write_atomic(memo_path, json.dumps(memo).encode())
    return digest.hexdigest()[:20]


#: adds to an appliance's tree (a lab host's QEMU and sshd); returns manifest entries
Extension = Callable[["_Tree", kernel_mod.Kernel], dict[str, Any]]


#: appliances this process has found or built, by their inputs: a fleet run opens a
#: platform per host, and planning an image (every module and binary read and hashed)
#: once per host cost more CPU than the hosts' trials
_FOUND: dict[tuple[Any, ...], Image] = {}
_FOUND_LOCK = threading.Lock()


def build(kernel_path: Path | None = None, modules_dir: Path | None = None,
          payload: Payload | None = None, progress: Progress | None = None,
          cache: Path | None = None, refresh_kernel: bool = False,
          extend: Extension | None = None, extend_key: str | None = None) -> Image:
    """The appliance for these inputs, from the cache or freshly built (planned once
    per process for the same inputs; ``refresh_kernel``, and ``extend`` without an
    ``extend_key`` naming what it adds, always plan)."""
    if (extend is not None and extend_key is None) or refresh_kernel:
        return _build(kernel_path, modules_dir, payload, progress, cache, refresh_kernel,
                      extend)
    inputs = (kernel_path, modules_dir, payload or Payload(), cache or cache_root(),
              extend_key)
    with _FOUND_LOCK:  # the hosts of a fleet ask at once: one plans, the others reuse
        found = _FOUND.get(inputs)
        if found is None or not found.initramfs.exists():
            found = _FOUND[inputs] = _build(kernel_path, modules_dir, payload, progress,
                                            cache, refresh_kernel, extend)
        return found


def _build(kernel_path: Path | None, modules_dir: Path | None, payload: Payload | None,
           progress: Progress | None, cache: Path | None, refresh_kernel: bool,
           extend: Extension | None) -> Image:
    say = progress or (lambda _text: None)
    root = cache or cache_root()
    found = kernel_mod.find_kernel(root, kernel_path, modules_dir, refresh_kernel)
    tree, manifest = _plan(found, payload or Payload())
    if extend is not None:
        manifest.update(extend(tree, found))
    key = _key(found, tree, root)
    directory = root / "images" / key
    if (directory / "manifest.json").exists():
        return _load(directory)
    say(f"building guest image {key} (kernel {found.version}, {len(tree.entries)} files)")
    root.joinpath("images").mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root / "images"))
    try:
        shutil.copyfile(found.bzimage, staging / "bzImage")
        say("extracting vmlinux for PVH direct boot")
        vmlinux = kernel_mod.extract_vmlinux(found.bzimage.read_bytes())
        pvh = vmlinux is not None and kernel_mod.has_pvh_note(vmlinux)
        # a PV domain boots the same vmlinux: xl would otherwise unpack the bzImage's
        # xz payload in dom0 at every boot (4-5 s nested under TCG)
        pv_elf = vmlinux is not None and pvh and kernel_mod.has_pv_note(vmlinux)
        if vmlinux is not None and pvh:
            (staging / "vmlinux").write_bytes(vmlinux)
        say("writing the initramfs")
        with (staging / "initramfs.cpio").open("wb") as stream:
            tree.write(stream)
        say("compressing the initramfs")
        _compress(staging / "initramfs.cpio", staging / "initramfs.cpio.zst")
        manifest.update({"key": key, "pvh": pvh, "pv_elf": pv_elf,
                         "initramfs_bytes": (staging / "initramfs.cpio").stat().st_size,
                         "boot_initramfs_bytes":
                             (staging / "initramfs.cpio.zst").stat().st_size})
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))
        try:
            staging.rename(directory)
        except OSError:  # another process built the same image meanwhile
            if not (directory / "manifest.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _load(directory)


def _compress(source: Path, target: Path) -> None:
    """zstd in one frame, content size recorded (the kernel's unpacker reads either)."""
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1)
    with source.open("rb") as reader, target.open("wb") as writer:
        compressor.copy_stream(reader, writer, size=source.stat().st_size)


def _load(directory: Path) -> Image:
    manifest = json.loads((directory / "manifest.json").read_text())
    vmlinux = directory / "vmlinux"
    return Image(manifest["key"], directory, vmlinux if vmlinux.exists()
                 else directory / "bzImage", directory / "bzImage",
                 directory / "initramfs.cpio.zst", directory / "initramfs.cpio", manifest)
