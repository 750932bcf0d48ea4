#!/usr/bin/env python3
"""Cold start to a finished trivial command: the hvbench appliance versus virtme-ng.

Both boot the same Debian kernel under the same accelerator (TCG unless --kvm);
pairs are interleaved and the order alternates, so drift hits both alike. Each
side is timed from process start until `true` has run in the guest and the
guest is gone. hvbench boots the PVH vmlinux with a minimal initramfs and talks
to its agent; virtme-ng boots the bzImage and shares the host's root over 9p.

virtme-ng is not a dependency of hvbench; install it beside it:
    python3 -m venv /tmp/vng && /tmp/vng/bin/pip install virtme-ng
    .venv/bin/python benchmarks/boot_time.py --vng /tmp/vng/bin [--pairs 5]
Without virtme-ng the comparison is against a plain `qemu -kernel -initrd` boot
of a busybox initramfs that powers off at once (the floor of any Linux boot).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from hvbench.appliance import image as image_mod
from hvbench.appliance.cpio import CpioWriter
from hvbench.appliance.kernel import find_kernel
from hvbench.platforms.qemu import QemuTcgPlatform


def hvbench_boot() -> float:
    started = time.perf_counter()
    with QemuTcgPlatform(name="bench", settings={"network": "none"}).open() as m:
        if m.run(["echo", "HVB-RAN"], timeout=60).stdout != "HVB-RAN\n":
            raise SystemExit("the hvbench guest did not run the command")
    return time.perf_counter() - started


def vng_boot(vng_bin: Path, bzimage: Path) -> float:
    env = {**os.environ, "PATH": f"{vng_bin}:{os.environ['PATH']}"}
    started = time.perf_counter()
    # virtme-ng exits 255 here even when the command ran (it finds no virtio-serial script
    # port and falls back to the console), and it shows that console only with --verbose,
    # so --verbose is used and the output checked (the kernel log costs it a little).
    done = subprocess.run([str(vng_bin / "vng"), "--run", str(bzimage), "--disable-kvm",
                           "--verbose", "--exec", "echo VNG-RAN"], env=env,
                          capture_output=True, text=True,
                          timeout=300, check=False, stdin=subprocess.DEVNULL,
                          cwd=tempfile.gettempdir())  # inside a git tree vng wants a build
    if "\nVNG-RAN" not in done.stdout + done.stderr:
        raise SystemExit(f"virtme-ng did not run the command: {done.stderr[-300:]}")
    return time.perf_counter() - started


def plain_boot(bzimage: Path, initrd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", "512",
                    "-nodefaults", "-display", "none", "-no-reboot", "-serial", "null",
                    "-kernel", str(bzimage), "-initrd", str(initrd),
                    "-append", "console=ttyS0 quiet panic=-1"],
                   check=True, capture_output=True, timeout=300)
    return time.perf_counter() - started


def busybox_initrd(path: Path) -> None:
    with path.open("wb") as stream:
        writer = CpioWriter(stream)
        writer.directory("/bin")
        writer.directory("/proc")
        writer.file("/bin/busybox", Path("/bin/busybox").read_bytes(), 0o755)
        writer.file("/init", b"#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\n"
                              b"echo o > /proc/sysrq-trigger\n", 0o755)
        writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--vng", type=Path, help="directory holding virtme-ng's vng")
    args = parser.parse_args()
    image_mod.build()
    # The same kernel both ways: the unpacked package's bzImage (virtme-ng finds the
    # matching modules next to it); hvbench boots the vmlinux extracted from it.
    bzimage = find_kernel(image_mod.cache_root()).bzimage
    other_name = "virtme-ng"
    if args.vng is None or not (args.vng / "vng").exists():
        other_name = "plain qemu + busybox initramfs"
        print("virtme-ng not given (--vng DIR): comparing with a plain busybox boot instead")
        workdir = Path(tempfile.mkdtemp())
        initrd = workdir / "busybox.cpio"
        busybox_initrd(initrd)

        def other() -> float:
            return plain_boot(bzimage, initrd)
    else:
        def other() -> float:
            return vng_boot(args.vng, bzimage)
    ratios = []
    for pair in range(args.pairs):
        runners = [("hvbench", hvbench_boot), (other_name, other)]
        if pair % 2:
            runners.reverse()
        times = {name: run() for name, run in runners}
        ratios.append(times["hvbench"] / times[other_name])
        print(f"pair {pair + 1}: hvbench {times['hvbench']:6.2f} s   {other_name} "
              f"{times[other_name]:6.2f} s")
    print(f"median ratio hvbench / {other_name}: {statistics.median(ratios):.3f} "
          "(goal <= 1.0; TCG: shows relative start-up cost, not KVM boot speed)")
    if other_name != "virtme-ng":
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
