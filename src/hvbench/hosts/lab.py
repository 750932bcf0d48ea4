"""Nested labs: a hypervisor host booted under QEMU TCG on this machine.

``lab:kvm`` is a Linux host (the Debian generic kernel with ``kvm_amd``, since
TCG's ``-cpu max`` offers AMD SVM with nested paging) that carries QEMU, the
workload tools and an OpenSSH server. It is reached over SSH on a forwarded
loopback port, exactly like a remote server, so the drivers under test are the
ones users run. Its image is the guest appliance plus those extras, cached by
content; its SSH keys are made once and kept in the cache.

A lab outlives the command that booted it (``hvbench lab kvm``) until ``hvbench
lab stop``; a run that had to boot one stops it at the end. A lab left by a
crashed hvbench is found through its state file and reused, or cleaned up.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..appliance import image as image_mod
from ..appliance import kernel as kernel_mod
from ..appliance import libs, modules, xenpkgs
from ..errors import HvbenchError, TrialError, UsageError
from ..localproc import Warden
from ..paths import home, write_atomic
from .labvirt import GROUP, PASSWD, add_to_image, libvirt_uri_for, start_daemon
from .local import LocalHost
from .spec import SshTarget
from .ssh import SshConnection
from .sshhost import SshHost

Say = Callable[[str], None]
QEMU = "/usr/bin/qemu-system-x86_64"
SSHD = "/usr/sbin/sshd"
BOOT_TIMEOUT = 300.0
#: how long a running lab's sshd may take to greet us before the lab counts as wedged
#: (TCG under load is slow, but a healthy sshd answers within a second or two)
SSH_ANSWER_SECONDS = 20.0
DISK_GIB = 16  # sparse: only what the lab writes takes space
#: what QEMU needs besides its binary: firmware (at the paths Debian's QEMU looks
#: in), option ROMs for its NICs, and TCG, which Debian builds as a module
QEMU_FILES = ["/usr/share/seabios/bios-256k.bin", "/usr/share/qemu/bios-256k.bin",
              "/usr/share/qemu/kvmvapic.bin", "/usr/share/qemu/linuxboot.bin",
              "/usr/share/qemu/linuxboot_dma.bin", "/usr/share/qemu/pvh.bin",
              "/usr/share/qemu/multiboot.bin", "/usr/share/qemu/multiboot_dma.bin",
              "/usr/share/qemu/efi-virtio.rom", "/usr/lib/ipxe/qemu/efi-virtio.rom",
              # the emulated NICs a guest may be given (nic_model; Xen HVM without PV
              # drivers): QEMU will not start such a NIC without its ROM
              "/usr/lib/ipxe/qemu/efi-e1000e.rom", "/usr/lib/ipxe/qemu/efi-rtl8139.rom",
              "/usr/share/qemu/bios-microvm.bin",  # machine = "microvm" boots qboot
              "/usr/share/qemu/keymaps/en-us",  # the Xen device model loads it even headless
              "/usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so"]


#: the host's guest-image cache, shared read-only into the lab (9p over virtio) so
#: guests boot from it without an upload over SSH; mounted by lab.sh
SHARE_TAG = "hvimages"
SHARE_MOUNT = "/mnt/hvbench-images"
SHARE_MODULES = ["9pnet_virtio", "9p"]


@dataclass(frozen=True)
class LabSpec:
    kind: str
    title: str
    modules: list[str]  # loaded in L1, dependencies resolved from .modinfo
    memory_mib: int
    binaries: list[str]  # host programs carried into L1 with their libraries
    vcpus: int = 1


COMMON = [SSHD, "/usr/sbin/mke2fs", "/usr/bin/taskset", "/usr/bin/ss", "/usr/bin/date",
          "/usr/sbin/losetup", "/usr/bin/flock", "/usr/sbin/ip"]
SPECS = {
    "kvm": LabSpec("kvm", "KVM lab (Linux with kvm_amd, nested under QEMU TCG)",
                   ["irqbypass", "kvm", "ccp", "kvm_amd", "tun", "bridge", "vhost_net",
                    *SHARE_MODULES],
                   3072,
                   [QEMU, *COMMON]),
    # Xen under TCG needs two vCPUs to be usable (LAB-NOTES); dom0 keeps 1 GiB
    "xen": LabSpec("xen", "Xen lab (Xen 4.17 with a Linux dom0, nested under QEMU TCG)",
                   ["xen-privcmd", "xenfs", "xen-evtchn", "xen-gntdev", "xen-gntalloc",
                    "xen-blkback", "xen-netback", "loop", "bridge", "tun", *SHARE_MODULES],
                   3072,
                   COMMON, vcpus=2),
}
#: Xen programs dom0 runs (with their libraries), from the unpacked packages
XEN_PROGRAMS = ["xl", "xenstored", "xenconsoled", "xenconsole", "xen-init-dom0",
                "libxl-save-helper", "xentrace"]
DOM0_MEMORY = "dom0_mem=1024M,max:1024M"
#: Xen under TCG: smap=0, or dom0 dies at once of an SMAP fault; eager FPU switching,
#: because with Xen's lazy switching (its default on AMD CPUs, which TCG's -cpu max
#: is) code computed with wrong FPU/AVX register contents under TCG: dom0's AVX2
#: SHA-256 came out wrong in about 5 of 160 tries while a domU ran floating-point
#: code (0 of 160 with eager switching): broken agent checksums, stalled guests
XEN_TCG_OPTIONS = "smap=0 spec-ctrl=eager-fpu=1"

#: the bridge the Xen lab's dom0 offers its domUs (no uplink: dom0 and its guests only)
XEN_LAB_BRIDGE = ("xenbr0", "10.231.0.1/24")
#: each lab's guest bridge: the KVM lab's is for QEMU's taps (network = "bridge"), the
#: way to vhost-net there
LAB_BRIDGES = {"xen": XEN_LAB_BRIDGE, "kvm": ("hvbr0", "10.232.0.1/24")}

def spec_for(kind: str) -> LabSpec:
    if kind not in SPECS:
        raise UsageError(f"unknown lab {kind!r}: choose from {', '.join(SPECS)}")
    return SPECS[kind]


def lab_dir(kind: str) -> Path:
    path = home() / "labs" / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- keys ---------------------------------------------------------------------------
def keys() -> dict[str, Path]:
    """The lab's SSH keys (client and host), made once and kept in the cache."""
    import asyncssh

    directory = image_mod.cache_root() / "labs" / "keys"
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    paths = {"client": directory / "client_ed25519", "host": directory / "host_ed25519"}
    for path in paths.values():
        if not path.exists():
            key = asyncssh.generate_private_key("ssh-ed25519")
            write_atomic(path.with_suffix(".pub"), key.export_public_key("openssh"))
            write_atomic(path, key.export_private_key("openssh"), 0o600)
    return paths


# -- the image ----------------------------------------------------------------------
def _sshd_config() -> bytes:
    return (b"Port 22\nHostKey /etc/ssh/ssh_host_ed25519_key\n"
            b"AuthorizedKeysFile /root/.ssh/authorized_keys\nPidFile /run/sshd.pid\n"
            b"PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            b"PermitRootLogin prohibit-password\nStrictModes no\nUseDNS no\n"
            b"AllowTcpForwarding yes\nAllowStreamLocalForwarding yes\n"
            b"MaxSessions 64\nMaxStartups 64\n")  # no ClientAlive*: we answer only while busy


def _extension(spec: LabSpec) -> image_mod.Extension:
    def extend(tree: Any, kernel: kernel_mod.Kernel) -> dict[str, Any]:
        missing = [b for b in (QEMU, SSHD) if not Path(b).exists()]
        if missing:
            raise UsageError(f"the {spec.kind} lab needs {' and '.join(missing)} on this "
                             "machine: apt-get install qemu-system-x86 openssh-server")
        paths = keys()
        tree.add_file("/etc/hvbench/lab.sh", data=image_mod.guest_script("lab.sh"), mode=0o755)
        tree.add_file("/etc/hostname", data=f"hvbench-lab-{spec.kind}\n".encode())
        tree.add_file("/etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n"
                      b"sshd:x:100:65534::/run/sshd:/bin/false\n" + PASSWD)
        tree.add_file("/etc/shadow", data=b"root:*:19000:0:99999:7:::\nsshd:*:19000::::::\n",
                      mode=0o600)
        tree.add_file("/etc/group", data=b"root:x:0:\nnogroup:x:65534:\n" + GROUP)
        tree.add_file("/etc/ssh/sshd_config", data=_sshd_config())
        # a bridge (no uplink) for the lab's guests: Xen's vifs, QEMU's taps
        tree.add_file("/etc/hvbench/guest-bridge",
                      data=" ".join(LAB_BRIDGES[spec.kind]).encode() + b"\n")
        tree.add_file("/etc/ssh/ssh_host_ed25519_key", data=paths["host"].read_bytes(),
                      mode=0o600)
        tree.add_file("/root/.ssh/authorized_keys",
                      data=paths["client"].with_suffix(".pub").read_bytes(), mode=0o600)
        binaries = [Path(b) for b in spec.binaries if Path(b).exists()]
        for binary in binaries:  # the real program replaces a busybox applet of its name
            tree.add_host_program(str(binary))
        for library in libs.closure([b.resolve() for b in binaries]):
            tree.add_host_path(str(library))
        for extra in QEMU_FILES:
            if Path(extra).exists():
                tree.add_host_path(extra)
        available = modules.index(kernel.modules_dir)
        extra_modules = modules.resolve(kernel.modules_dir, spec.modules, available)
        listing = tree.entries["/etc/hvbench/modules"]
        loaded = (listing.data or b"").decode().split()
        for module in extra_modules:
            tree.add_file(f"/lib/modules/{module.name}", source=module, mode=0o644)
            if module.name not in loaded:
                loaded.append(module.name)
        tree.add_file("/etc/hvbench/modules", data="".join(f"{m}\n" for m in loaded).encode())
        found: dict[str, Any] = {"lab": spec.kind, "lab_modules": [m.name for m in extra_modules]}
        if spec.kind == "xen":
            xen = xenpkgs.fetch(image_mod.cache_root())
            found["xen"] = _add_xen(tree, xen)
            found.update(add_to_image(tree, spec.kind, xen.root, str(xen.library_dir)))
        else:
            found.update(add_to_image(tree, spec.kind))
        return found

    return extend


def _add_xen(tree: Any, xen: xenpkgs.XenTree) -> str:
    """dom0's toolstack from Debian's Xen packages (unpacked): xl, xenstored,
    xenconsoled, the hotplug scripts and their libraries."""
    root = xen.root
    for path in sorted(root.rglob("*")):
        relative = "/" + str(path.relative_to(root))
        if not relative.startswith((f"/usr/lib/xen-{xenpkgs.XEN_VERSION}/", "/usr/lib/xen-common/",
                                    "/etc/xen/", "/usr/bin/xenstore",
                                    "/usr/lib/x86_64-linux-gnu/", xenpkgs.DEVICE_MODEL)):
            continue
        if path.is_symlink():
            tree.add_symlink(relative, os.readlink(path))
        elif path.is_file():
            tree.add_file(relative, source=path)
    programs = [xen.tools / "bin" / name for name in XEN_PROGRAMS]
    programs += sorted((root / "usr" / "bin").glob("xenstore*"))
    programs.append(root / xenpkgs.DEVICE_MODEL.lstrip("/"))
    for library in libs.closure([p for p in programs if libs.is_elf(p)],
                                library_path=str(xen.library_dir)):
        if not str(library).startswith(str(root)):
            tree.add_host_path(str(library))
    gcc = Path("/lib/x86_64-linux-gnu/libgcc_s.so.1")  # xl aborts without it
    if gcc.exists():
        tree.add_host_path(str(gcc))
    for name in ("xl", "xenstored", "xenconsoled", "xentrace"):
        tree.forget(f"/usr/sbin/{name}")
        tree.add_symlink(f"/usr/sbin/{name}", f"/usr/lib/xen-{xenpkgs.XEN_VERSION}/bin/{name}")
    tree.add_file("/etc/hvbench/xen-dom0", data=xen.version.encode())
    return xen.version


def build_image(kind: str, payload: image_mod.Payload, say: Say | None = None
                ) -> image_mod.Image:
    """L1's kernel and initramfs: the appliance (every workload's tools, so the lab host
    runs lab-native workloads) plus QEMU, sshd and kvm modules; planned once per process
    (a run asks at every platform it opens in the lab: ~1 s of hashing each time)."""
    spec = spec_for(kind)
    return image_mod.build(None, payload=payload, progress=say, extend=_extension(spec),
                           extend_key=f"lab-{kind}")


# -- state ----------------------------------------------------------------------------
@dataclass
class LabState:
    kind: str
    pid: int
    port: int
    image: str
    started: float

    def running(self) -> bool:
        try:
            command = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return False
        return f"hvbench-lab-{self.kind}".encode() in command


def load_state(kind: str) -> LabState | None:
    try:
        data = json.loads((lab_dir(kind) / "state.json").read_text())
        return LabState(**data)
    except (OSError, ValueError, TypeError):
        return None


def _save_state(state: LabState) -> None:
    write_atomic(lab_dir(state.kind) / "state.json", json.dumps(state.__dict__).encode())


@contextlib.contextmanager
def _locked(kind: str) -> Iterator[None]:
    """One hvbench at a time boots or stops a given lab."""
    with (lab_dir(kind) / "lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join([line.strip() for line in text.splitlines() if line.strip()][-lines:])


def _kill(state: LabState) -> None:
    if state.running():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(state.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(state.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while state.running() and time.monotonic() < deadline:
            time.sleep(0.05)


def _reap(pid: int) -> None:
    """Collect a lab QEMU that this process started and that has exited."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def boot(kind: str, payload: image_mod.Payload, say: Say | None = None) -> LabState:
    """Build (cached) and boot the lab; return once its SSH server is up."""
    spec = spec_for(kind)
    say = say or (lambda _text: None)
    image = build_image(kind, payload, say)
    directory = lab_dir(kind)
    console = directory / "console.log"
    port = _free_port()
    disk = directory / "disk.img"  # L1's own disk: guest disks need O_DIRECT, not tmpfs
    disk.unlink(missing_ok=True)
    here = LocalHost()
    try:
        here.make_scratch_disk(str(disk), f"{DISK_GIB}G")
    finally:
        here.close()
    options = "quiet panic=-1 hvbench.net=10.0.2.15/24+10.0.2.2 hvbench.disk=vda"
    # L1 boots the plain cpio: this machine's QEMU loads it quickly, and L1 (under TCG)
    # would only spend longer unpacking a compressed one
    if kind == "xen":  # Xen boots by multiboot; dom0's kernel and initramfs are modules
        if "," in str(image.cpio) + str(image.bzimage):
            raise UsageError(f"the Xen lab cannot boot from a path with a comma: {image.directory}")
        boot = ["-kernel", str(xenpkgs.fetch(image_mod.cache_root()).hypervisor),
                "-append", f"console=com1 com1=115200,8n1 {DOM0_MEMORY} {XEN_TCG_OPTIONS}",
                "-initrd", f"{image.bzimage} console=hvc0 {options},{image.cpio}"]
    else:
        boot = ["-kernel", str(image.kernel), "-initrd", str(image.cpio),
                "-append", f"console=ttyS0 {options}"]
    shared = image_mod.cache_root() / "images"
    shared.mkdir(parents=True, exist_ok=True)
    share = ([] if "," in str(shared) else  # QEMU's option syntax: no commas in the path
             ["-virtfs", f"local,path={shared},mount_tag={SHARE_TAG},security_model=none,"
                         "readonly=on"])
    argv = [QEMU, "-accel", "tcg", "-cpu", "max", "-m", str(spec.memory_mib),
            "-smp", str(spec.vcpus),
            "-nodefaults", "-no-user-config", "-display", "none", "-vga", "none",
            "-no-reboot", "-name", f"hvbench-lab-{kind}", *boot,
            "-drive", f"file={disk},if=virtio,format=raw,cache=unsafe",
            "-serial", f"file:{console}",
            "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:22",
            "-device", "virtio-net-pci,netdev=net0", *share]
    say(f"booting the {spec.title}")
    console.write_bytes(b"")
    with (directory / "qemu.stderr").open("wb") as stderr:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=stderr, start_new_session=True)
    state = LabState(kind, process.pid, port, image.key, time.time())
    _save_state(state)
    started = time.monotonic()
    try:
        while b"hvbench-lab-ready" not in console.read_bytes():
            if process.poll() is not None:
                said = _tail(directory / "qemu.stderr", 3)
                raise TrialError(f"the {kind} lab's QEMU exited with code {process.returncode} "
                                 f"while booting" + (f"; QEMU said: {said}" if said else "")
                                 + f"; console: {_tail(console)}")
            if b"hvbench-lab-failed" in console.read_bytes():
                raise TrialError(f"the {kind} lab could not start its SSH server; console: "
                                 f"{_tail(console)}")
            if time.monotonic() - started > BOOT_TIMEOUT:
                raise TrialError(f"the {kind} lab did not come up within {BOOT_TIMEOUT:.0f} s; "
                                 f"console: {_tail(console)}")
            time.sleep(0.1)
    except BaseException:
        _kill(state)
        _reap(process.pid)
        (directory / "state.json").unlink(missing_ok=True)
        raise
    say(f"the {kind} lab is up after {time.monotonic() - started:.1f} s "
        f"(ssh on 127.0.0.1:{port})")
    return state


def _answers_ssh(port: int, seconds: float = SSH_ANSWER_SECONDS) -> bool:
    """The lab's sshd sends its banner: a bare connect proves nothing, since QEMU's user
    network accepts on the forwarded port even when the lab inside is wedged."""
    deadline = time.monotonic() + seconds
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=seconds) as probe:
            received = b""
            while b"\n" not in received and len(received) < 256:
                probe.settimeout(max(0.1, deadline - time.monotonic()))
                chunk = probe.recv(256)
                if not chunk:
                    return False
                received += chunk
    except OSError:  # refused, reset, or no banner in time
        return False
    return received.startswith(b"SSH-")


def ensure(kind: str, payload: image_mod.Payload, say: Say | None = None
           ) -> tuple[LabState, bool]:
    """The running lab, reused when healthy and on the current image, else (re)booted;
    and whether this call brought it up where none ran (a lab someone started and that
    had to be rebooted for a newer image is still theirs)."""
    with _locked(kind):
        state = load_state(kind)
        running = state is not None and state.running()
        if state is not None and running:
            if state.image != build_image(kind, payload).key:
                if say:
                    say(f"the {kind} lab runs an older image: rebooting it")
            elif _answers_ssh(state.port):
                return state, False
            elif say:
                say(f"the {kind} lab's SSH server does not answer: rebooting the lab")
            _kill(state)  # outdated, or alive but unreachable (wedged)
            _reap(state.pid)
        return boot(kind, payload, say), not running


def stop(kind: str) -> bool:
    """Stop the lab; True when one was running."""
    with _locked(kind):
        state = load_state(kind)
        (lab_dir(kind) / "state.json").unlink(missing_ok=True)
        if state is None or not state.running():
            return False
        _kill(state)
        _reap(state.pid)
        (lab_dir(kind) / "disk.img").unlink(missing_ok=True)
        return True


def known_hosts(kind: str, state: LabState) -> Path:
    """A known_hosts file naming the lab's own host key on its current port."""
    public = keys()["host"].with_suffix(".pub").read_text().strip()
    path = lab_dir(kind) / "known_hosts"
    # all at once: the lab's platforms connect from threads of their own, each reading
    # the file while another may be writing it
    write_atomic(path, f"[127.0.0.1]:{state.port} {public}\n".encode())
    return path


class Labs:
    """The labs one run (or command) uses, as a context manager: a lab is booted when
    first needed; one this session had to boot is stopped when the session is done
    with it (``release``) or ends, however it ends; a lab that was already up (``hvbench
    lab kvm``) stays up. A lab this session booted dies with hvbench too, however
    hvbench dies (the warden holds its QEMU)."""

    def __init__(self, payload: image_mod.Payload, say: Say | None = None):
        self.payload = payload  # what a lab host's image carries
        self.say = say
        self.booted: dict[str, int] = {}  # lab kind -> its QEMU's process group

    def host(self, kind: str) -> SshHost:
        """The lab as an SSH host, booted first when needed."""
        state, booted = ensure(kind, self.payload, self.say)
        if booted:
            self.booted[kind] = state.pid
            Warden.watch(state.pid)
        return _lab_host(kind, state, disposable=kind in self.booted)

    def release(self, kind: str) -> None:
        """Done with this lab: stop it if this session booted it."""
        group = self.booted.pop(kind, None)
        if group is not None:
            stop(kind)
            Warden.release(group)

    def close(self) -> None:
        for kind in sorted(self.booted):
            with contextlib.suppress(HvbenchError):
                self.release(kind)

    def __enter__(self) -> Labs:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class LabHost(SshHost):
    """A running lab as an SSH host, with the libvirt daemon it carries."""

    def __init__(self, connection: SshConnection, kind: str, state: LabState,
                 disposable: bool):
        super().__init__(connection, label=f"lab:{kind}")
        self.kind, self.state = kind, state
        self.disposable = disposable

    def libvirt_uri(self) -> str | None:
        """The lab's own libvirtd (started now when it is not running), over SSH."""
        start_daemon(self)
        return libvirt_uri_for(self.kind, self.state.port, keys()["client"],
                               known_hosts(self.kind, self.state))


def _lab_host(kind: str, state: LabState, disposable: bool = False) -> SshHost:
    """A running lab as an SSH host (``disposable``: one this session booted, and stops
    when it is done with it)."""
    connection = SshConnection(SshTarget("root", "127.0.0.1", state.port), keys()["client"],
                               known_hosts=known_hosts(kind, state), compress_uploads=False,
                               name=f"lab:{kind} (ssh://root@127.0.0.1:{state.port})")
    try:
        host = LabHost(connection, kind, state, disposable)
        name = {"kvm": "KVM", "xen": "Xen"}[kind]
        host.nested = (f"ran inside the {kind} lab, nested under QEMU TCG emulation: its "
                       "numbers compare the lab host with its guests and prove the pipeline, "
                       f"not {name}'s real performance")
        if kind == "xen":
            host.nested += "; the lab host is Xen's dom0, itself a PV guest"
            host.guest_bridge = XEN_LAB_BRIDGE
        host.shared_images = (image_mod.cache_root() / "images", SHARE_MOUNT)
        return host.open()
    except HvbenchError:
        connection.close()
        raise


def shell_argv(kind: str, state: LabState) -> list[str]:
    """An interactive ssh into the lab, for a person."""
    return ["ssh", "-i", str(keys()["client"]), "-p", str(state.port),
            "-o", f"UserKnownHostsFile={known_hosts(kind, state)}",
            "-o", "StrictHostKeyChecking=yes", "root@127.0.0.1"]
