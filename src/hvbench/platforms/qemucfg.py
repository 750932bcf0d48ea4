"""A QEMU guest's configuration: its settings and the command line they make."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from ..hosts.base import Host
from .guest import GuestSettings

QEMU = "qemu-system-x86_64"
USER_NET = ("10.0.2.15/24", "10.0.2.2")  # QEMU user networking: guest, host gateway


class QemuSettings(GuestSettings):
    """Settings of a QEMU guest (``settings = {...}`` in a campaign file)."""

    memory_mib: int = Field(1024, ge=256, le=1 << 22)
    cpu: str | None = Field(None, pattern=r"^[A-Za-z0-9][\w.,+=-]*$")  # host, max, named
    machine: str = Field("q35", pattern=r"^[\w.-]+$")
    hugepages: bool = False
    disk_cache: Literal["none", "writeback", "writethrough", "directsync", "unsafe"] = "none"
    disk_aio: Literal["threads", "native", "io_uring"] = "threads"
    network: Literal["user", "bridge", "none"] = "user"
    kernel: str | None = None
    #: extra kernel command-line options, e.g. "clocksource=hpet"
    kernel_args: str = Field("", pattern=r"^[\w.,=:/ -]*$")


@dataclass(frozen=True)
class GuestPaths:
    """Where a guest's files are on its host."""

    kernel: str
    initramfs: str
    directory: str  # the guest's own: scratch disk, pid file
    sockets: str  # short path for the agent's UNIX socket


def qemu_argv(s: QemuSettings, accelerator: str, name: str, paths: GuestPaths,
              tap: str | None, bridge_ip: str | None) -> list[str]:
    """argv for QEMU: the appliance kernel and initramfs, the agent on a virtio-serial
    port, the scratch disk on virtio-blk, the console on stdout, the chosen network."""
    cpu = s.cpu or ("host" if accelerator == "kvm" else "max")
    options = ["hvbench.port=hvbench.agent", "hvbench.disk=vda"]
    if s.network == "user":
        options.append(f"hvbench.net={USER_NET[0]},{USER_NET[1]}")
    elif s.network == "bridge":
        options.append(f"hvbench.net={s.guest_address},{bridge_ip}")
    options += s.kernel_args.split()
    command = [
        QEMU, "-accel", accelerator, "-cpu", cpu, "-machine", s.machine,
        "-smp", str(s.vcpus), "-m", str(s.memory_mib),
        "-nodefaults", "-no-user-config", "-display", "none", "-vga", "none",
        "-no-reboot", "-name", f"hvbench-{name},debug-threads=on",
        "-pidfile", f"{paths.directory}/qemu.pid",
        "-kernel", paths.kernel, "-initrd", paths.initramfs,
        "-append", "console=ttyS0 loglevel=6 panic=-1 " + " ".join(options),
        # the console goes to QEMU's stdout: a local file, or our SSH channel
        "-chardev", "stdio,id=console,signal=off",
        "-serial", "chardev:console",
        "-device", "virtio-serial-pci",
        "-chardev", f"socket,id=agent,path={paths.sockets}/agent.sock,server=on,wait=off",
        "-device", "virtserialport,chardev=agent,name=hvbench.agent",
        "-drive", (f"file={paths.directory}/scratch.img,if=none,id=scratch,format=raw,"
                   # a full host disk: an error in the guest, not a paused VM
                   f"cache={s.disk_cache},aio={s.disk_aio},werror=report,rerror=report"),
        "-device", "virtio-blk-pci,drive=scratch",
    ]
    if s.network == "user":
        command += ["-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0"]
    elif s.network == "bridge":
        command += ["-netdev", f"tap,id=net0,ifname={tap},script=no,downscript=no",
                    "-device", "virtio-net-pci,netdev=net0"]
    if s.hugepages:
        command += ["-mem-path", "/dev/hugepages", "-mem-prealloc"]
    return command


def describe(s: QemuSettings, tap: str | None) -> dict[str, Any]:
    """How the guest's disk and network are attached, for the run's records."""
    return {
        "disk": {"format": "raw", "size": s.disk_size, "cache": s.disk_cache,
                 "aio": s.disk_aio, "bus": "virtio-blk", "filesystem": "ext4"},
        "network": {
            "user": "user-mode (slirp), virtio-net; servers on the host at 10.0.2.2",
            "bridge": f"tap {tap} on bridge {s.bridge}, virtio-net; guest {s.guest_address}",
            "none": "none"}[s.network],
        "hugepages": s.hugepages,
    }


def pin_vcpus(host: Host, pidfile: str, pins: list[int]) -> None:
    """Pin each vCPU thread of the QEMU whose pid is in ``pidfile`` to its host CPU
    (the threads are named 'CPU n/ACCEL' thanks to debug-threads=on)."""
    listing = host.check(
        ["sh", "-c", 'p=$(cat "$1") && for t in /proc/$p/task/*; do '
         'echo "${t##*/} $(cat "$t/comm")"; done', "sh", pidfile],
        30, "listing QEMU's threads").stdout
    for line in listing.splitlines():
        tid, _, name = line.partition(" ")
        if name.startswith("CPU ") and "/" in name:
            index = int(name[4:name.index("/")])
            if index < len(pins):
                host.check(["taskset", "-p", "-c", str(pins[index]), tid], 30,
                           f"pinning vCPU {index}")
