"""The guest appliance: cpio writer, module dependencies, kernel handling, the cache."""

from __future__ import annotations

import io
import struct
import subprocess
import time
from pathlib import Path

import pytest
import zstandard

from hvbench.appliance import image, kernel, modules
from hvbench.appliance.cpio import CpioWriter
from hvbench.appliance.libs import closure, needed_libraries
from hvbench.workloads import payload


def test_cpio_is_read_back_by_gnu_cpio(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    writer = CpioWriter(buffer)
    writer.directory("/etc")
    writer.file("/etc/hello", b"hello\n" * 3, 0o640)
    writer.file("/etc/odd", b"x" * 5)  # forces padding
    writer.symlink("/etc/link", "hello")
    writer.close()
    archive = tmp_path / "a.cpio"
    archive.write_bytes(buffer.getvalue())
    listing = subprocess.run(["cpio", "-it", "--quiet"], input=archive.read_bytes(),
                             capture_output=True, check=True).stdout.decode().split()
    assert listing == ["etc", "etc/hello", "etc/odd", "etc/link"]
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["cpio", "-idm", "--quiet"], input=archive.read_bytes(), cwd=out,
                   check=True)
    assert (out / "etc/hello").read_bytes() == b"hello\n" * 3
    assert (out / "etc/hello").stat().st_mode & 0o777 == 0o640
    assert (out / "etc/link").readlink() == Path("hello")


def test_a_host_program_replaces_the_busybox_applet_of_its_name() -> None:
    """Through Debian's merged /usr (/sbin -> usr/sbin): the applet's entry, wherever
    the link puts it, gives way to the real program (a lab's sshd, libvirtd)."""
    tree = image._Tree()
    tree.add_symlink(tree._real("/sbin/losetup"), "/usr/bin/busybox")
    tree.add_symlink(tree._real("/usr/bin/true"), "/usr/bin/busybox")
    tree.add_host_program("/usr/sbin/losetup")
    entry = tree.entries[tree._real("/usr/sbin/losetup")]
    assert entry.kind == "file" and entry.source == Path("/usr/sbin/losetup")
    tree.forget("/usr/bin/true")
    assert tree._real("/usr/bin/true") not in tree.entries


def test_library_closure_of_real_binaries() -> None:
    libraries = needed_libraries(Path("/usr/bin/sysbench"))
    assert any(p.name.startswith("libc.so") for p in libraries)
    assert needed_libraries(Path("/bin/busybox")) == []  # static
    assert set(closure([Path("/usr/bin/sysbench")])) == set(libraries)


@pytest.fixture(scope="module")
def debian_kernel() -> kernel.Kernel:
    return kernel.find_kernel(image.cache_root())


@pytest.mark.slow
def test_modules_come_with_dependencies_first(debian_kernel: kernel.Kernel) -> None:
    order = [p.name for p in modules.resolve(debian_kernel.modules_dir,
                                              ["virtio_blk", "ext4"])]
    assert order.index("virtio.ko") < order.index("virtio_blk.ko")
    assert order.index("jbd2.ko") < order.index("ext4.ko")
    assert order.index("mbcache.ko") < order.index("ext4.ko")
    with pytest.raises(Exception, match="not in"):
        modules.resolve(debian_kernel.modules_dir, ["no_such_module"])


def _elf_with_note(owner: bytes, kind: int) -> bytes:
    """A minimal ELF64 whose only segment is one note."""
    name = owner + b"\0"
    note = struct.pack("<III", len(name), 4, kind) + name.ljust((len(name) + 3) // 4 * 4,
                                                                b"\0") + b"\0" * 4
    header = (b"\x7fELF\x02\x01\x01" + b"\0" * 9
              + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0, 64, 0, 0, 64, 56, 1, 0, 0, 0))
    segment = struct.pack("<IIQQQQQQ", 4, 4, 120, 0, 0, len(note), len(note), 4)
    return header + segment + note


@pytest.mark.slow
def test_vmlinux_extraction_and_pvh_note(debian_kernel: kernel.Kernel) -> None:
    vmlinux = kernel.extract_vmlinux(debian_kernel.bzimage.read_bytes())
    assert vmlinux is not None and vmlinux.startswith(b"\x7fELF")
    assert kernel.has_pvh_note(vmlinux)
    assert kernel.has_pv_note(vmlinux)  # Xen PV boots the same vmlinux
    assert not kernel.has_pv_note(_elf_with_note(b"GNU", 1))  # type 1 of another owner
    assert kernel.has_pv_note(_elf_with_note(b"Xen", 1))
    assert kernel.bzimage_version(debian_kernel.bzimage) == debian_kernel.version
    assert kernel.extract_vmlinux(b"not a kernel") is None


@pytest.mark.slow
def test_image_is_cached_by_content(tmp_path: Path) -> None:
    built = image.build(payload=payload(["sysbench-cpu"]))
    assert built.pvh and built.kernel.name == "vmlinux"
    archive = built.cpio.read_bytes()
    listing = subprocess.run(["cpio", "-it", "--quiet"], input=archive,
                             capture_output=True, check=True).stdout.decode().split()
    # guests boot the same archive compressed (every guest test boots it)
    booted = built.initramfs.read_bytes()
    assert zstandard.ZstdDecompressor().decompress(booted) == archive
    assert len(booted) < len(archive) / 2
    assert {"init", "etc/hvbench/agent.sh", "usr/bin/sysbench", "usr/bin/busybox"} <= \
        set(listing)
    assert any(name.startswith("lib/modules/virtio_blk") for name in listing) or \
        any("virtio_blk.ko" in name for name in listing)
    started = time.monotonic()
    again = image.build(payload=payload(["sysbench-cpu"]))
    assert time.monotonic() - started < 1.0
    assert again.key == built.key
    other = image.build(payload=payload(["sysbench-cpu", "fio-randread"]))
    assert other.key != built.key
