"""A QEMU guest's configuration: its settings and the command line they make."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, model_validator

from ..hosts.base import Host
from .guestcfg import GuestSettings

QEMU = "qemu-system-x86_64"
USER_NET = ("10.0.2.15/24", "10.0.2.2")  # QEMU user networking: guest, host gateway


DiskBus = Literal["virtio-blk", "virtio-scsi", "nvme", "ide"]
NicModel = Literal["virtio-net", "e1000e", "rtl8139"]
#: the block device each disk bus gives the guest, and the NIC device QEMU models
SCRATCH_DEVICE = {"virtio-blk": "vda", "virtio-scsi": "sda", "nvme": "nvme0n1", "ide": "sda"}
NIC_DEVICE = {"virtio-net": "virtio-net-pci", "e1000e": "e1000e", "rtl8139": "rtl8139"}


class QemuSettings(GuestSettings):
    """Settings of a QEMU guest (``settings = {...}`` in a campaign file)."""

    memory_mib: int = Field(1024, ge=256, le=1 << 22, description="guest memory in MiB")
    cpu: str | None = Field(None, pattern=r"^[A-Za-z0-9][\w.,+=-]*$",
                            description="QEMU's -cpu model: host, max or a named model "
                                        "(unset: host under KVM, max under TCG)")
    machine: str = Field("q35", pattern=r"^[\w.-]+$",
                         description="q35, pc (i440FX) or microvm (virtio-mmio, no PCI), or "
                                     "a versioned q35/pc type")
    hugepages: bool = Field(False, description="back guest memory with hugepages")
    disk_cache: Literal["none", "writeback", "writethrough", "directsync", "unsafe"] = Field(
        "none", description="the scratch disk's cache mode")
    disk_aio: Literal["threads", "native", "io_uring"] = Field(
        "threads", description="how QEMU submits the scratch disk's I/O")
    disk_bus: DiskBus = Field("virtio-blk", description="how the scratch disk is attached "
                              "(ide is AHCI on q35 and PIIX IDE on pc)")
    nic_model: NicModel = Field("virtio-net", description="the guest's network card")
    vhost: bool = Field(False, description="vhost-net: virtio-net's data path in the host "
                                           "kernel (bridge networking only)")
    iothread: bool = Field(False, description="serve the disk's requests in an I/O thread "
                                              "of its own (virtio-blk, virtio-scsi)")
    queues: int = Field(1, ge=1, le=64, description="virtio multiqueue: queues of the disk "
                        "(virtio-blk, virtio-scsi) and, on a bridge, of virtio-net")
    network: Literal["user", "bridge", "none"] = Field(
        "user", description="user (QEMU's slirp), bridge (a tap on an existing bridge) or "
                            "none")
    kernel: str | None = Field(None, description="boot this kernel instead of the "
                                                 "appliance's")
    kernel_args: str = Field("", pattern=r"^[\w.,=:/ -]*$",
                             description='extra kernel command-line options, e.g. '
                                         '"clocksource=hpet"')

    @property
    def microvm(self) -> bool:
        return self.machine.startswith("microvm")

    @model_validator(mode="after")
    def _compatible(self) -> QemuSettings:
        """Refuse combinations QEMU cannot make, naming both settings."""
        virtio_disk = self.disk_bus in ("virtio-blk", "virtio-scsi")
        if self.vhost and self.network != "bridge":
            raise ValueError("vhost = true needs network = 'bridge' (a tap): user "
                             "networking cannot use vhost-net")
        if self.vhost and self.nic_model != "virtio-net":
            raise ValueError(f"vhost = true needs nic_model = 'virtio-net', not "
                             f"'{self.nic_model}'")
        if self.iothread and not virtio_disk:
            raise ValueError(f"iothread = true needs disk_bus virtio-blk or virtio-scsi, "
                             f"not '{self.disk_bus}'")
        if self.queues > 1 and not virtio_disk:
            raise ValueError(f"queues = {self.queues} needs disk_bus virtio-blk or "
                             f"virtio-scsi, not '{self.disk_bus}'")
        if self.microvm and (self.disk_bus != "virtio-blk" or self.nic_model != "virtio-net"):
            raise ValueError(f"machine = '{self.machine}' has no PCI bus: it takes disk_bus "
                             f"'virtio-blk' and nic_model 'virtio-net' (over virtio-mmio), "
                             f"not '{self.disk_bus}' and '{self.nic_model}'")
        return self


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
    port, the scratch disk on its bus, the console on stdout, the chosen network."""
    cpu = s.cpu or ("host" if accelerator == "kvm" else "max")
    bus = "device" if s.microvm else "pci"  # virtio over MMIO or PCI
    command = [
        QEMU, "-accel", accelerator, "-cpu", cpu, "-machine", s.machine,
        "-smp", str(s.vcpus), "-m", str(s.memory_mib),
        "-nodefaults", "-no-user-config", "-display", "none", "-vga", "none",
        "-no-reboot", "-name", f"hvbench-{name},debug-threads=on",
        "-pidfile", f"{paths.directory}/qemu.pid",
        "-kernel", paths.kernel, "-initrd", paths.initramfs,
        "-append", kernel_cmdline(s, bridge_ip),
        # the console goes to QEMU's stdout: a local file, or our SSH channel
        "-chardev", "stdio,id=console,signal=off",
        "-serial", "chardev:console",
        "-device", f"virtio-serial-{bus}",
        "-chardev", f"socket,id=agent,path={paths.sockets}/agent.sock,server=on,wait=off",
        "-device", "virtserialport,chardev=agent,name=hvbench.agent",
        "-qmp", f"unix:{paths.sockets}/qmp.sock,server=on,wait=off",
        "-drive", (f"file={paths.directory}/scratch.img,if=none,id=scratch,format=raw,"
                   # a full host disk: an error in the guest, not a paused VM
                   f"cache={s.disk_cache},aio={s.disk_aio},werror=report,rerror=report"),
        *_disk(s, bus),
    ]
    if s.network != "none":
        command += _nic(s, bus, tap)
    if s.hugepages:
        command += ["-mem-path", "/dev/hugepages", "-mem-prealloc"]
    return command


def kernel_cmdline(s: QemuSettings, bridge_ip: str | None) -> str:
    """The appliance's kernel command line: console, the agent's port, the scratch disk
    and the guest's network address (whoever starts QEMU: hvbench or libvirt)."""
    options = ["console=ttyS0", "loglevel=6", "panic=-1", "hvbench.port=hvbench.agent",
               f"hvbench.disk={SCRATCH_DEVICE[s.disk_bus]}"]
    if s.network == "user":
        options.append(f"hvbench.net={USER_NET[0]},{USER_NET[1]}")
    elif s.network == "bridge":
        options.append(f"hvbench.net={s.guest_address},{bridge_ip}")
    return " ".join(options + s.kernel_args.split())


def _disk(s: QemuSettings, bus: str) -> list[str]:
    """The scratch disk's controller and device."""
    tuning = ",iothread=io0" if s.iothread else ""
    if s.disk_bus == "virtio-blk":
        queues = f",num-queues={s.queues}" if s.queues > 1 else ""
        device = ["-device", f"virtio-blk-{bus},drive=scratch{tuning}{queues}"]
    elif s.disk_bus == "virtio-scsi":
        queues = f",num_queues={s.queues}" if s.queues > 1 else ""
        device = ["-device", f"virtio-scsi-pci,id=scsi0{tuning}{queues}",
                  "-device", "scsi-hd,drive=scratch,bus=scsi0.0"]
    elif s.disk_bus == "nvme":
        device = ["-device", "nvme,drive=scratch,serial=hvbench-scratch"]
    else:  # q35's built-in AHCI or pc's PIIX IDE both name their first bus ide.0
        device = ["-device", "ide-hd,drive=scratch,bus=ide.0"]
    return (["-object", "iothread,id=io0"] if s.iothread else []) + device


def _nic(s: QemuSettings, bus: str, tap: str | None) -> list[str]:
    """The network backend (user-mode, or a tap with or without vhost-net) and NIC."""
    model = NIC_DEVICE[s.nic_model].replace("-pci", f"-{bus}")
    if s.network == "user":
        return ["-netdev", "user,id=net0", "-device", f"{model},netdev=net0"]
    backend = f"tap,id=net0,ifname={tap},script=no,downscript=no"
    if s.vhost:
        backend += ",vhost=on"
    if s.nic_model == "virtio-net" and s.queues > 1:
        backend += f",queues={s.queues}"
        model += f",mq=on,vectors={2 * s.queues + 2}"
    return ["-netdev", backend, "-device", f"{model},netdev=net0"]


def describe(s: QemuSettings, tap: str | None) -> dict[str, Any]:
    """How the guest's disk and network are attached, for the run's records."""
    nic = f"{s.nic_model}{' with vhost-net' if s.vhost else ''}"
    return {
        "disk": {"format": "raw", "size": s.disk_size, "cache": s.disk_cache,
                 "aio": s.disk_aio, "bus": s.disk_bus, "iothread": s.iothread,
                 "queues": s.queues, "filesystem": "ext4"},
        "network": {
            "user": f"user-mode (slirp), {nic}; servers on the host at 10.0.2.2",
            "bridge": f"tap {tap} on bridge {s.bridge}, {nic}; guest {s.guest_address}",
            "none": "none"}[s.network],
        "machine_type": s.machine,
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
