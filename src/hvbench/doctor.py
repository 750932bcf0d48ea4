"""``hvbench doctor``: what this host can run, found by trying rather than assuming."""

from __future__ import annotations

import fcntl
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import TrialError, UsageError
from .localproc import local_which, run_local
from .workloads import CATALOGUE

KVM_GET_API_VERSION = 0xAE00  # _IO(KVMIO, 0x00)
KVM_CREATE_VM = 0xAE01  # _IO(KVMIO, 0x01)


@dataclass(frozen=True)
class Check:
    component: str
    ok: bool
    detail: str


def _version(argv: list[str]) -> str | None:
    try:
        done = run_local(argv, timeout=20)
    except TrialError:
        return None
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip()[:120] if lines else None


def check_kvm(device: str = "/dev/kvm") -> Check:
    """Open /dev/kvm and create a VM: existence of the node alone proves nothing."""
    if not os.path.exists(device):
        return Check("kvm", False, f"{device} does not exist (no VT-x/AMD-V or kvm module)")
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except PermissionError:
        return Check("kvm", False, f"{device} exists but is not accessible: run as root or "
                                   "add yourself to the 'kvm' group")
    except OSError as exc:
        return Check("kvm", False, f"cannot open {device}: {exc.strerror}")
    try:
        api = fcntl.ioctl(fd, KVM_GET_API_VERSION)
        vm_fd = fcntl.ioctl(fd, KVM_CREATE_VM, 0)
        os.close(vm_fd)
    except OSError as exc:
        return Check("kvm", False, f"{device} opens but KVM_CREATE_VM fails: {exc.strerror}")
    finally:
        os.close(fd)
    cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    backend = ("VT-x" if re.search(r"\bvmx\b", cpuinfo) else
               "AMD-V" if re.search(r"\bsvm\b", cpuinfo) else "a paravirtual backend "
               "(no vmx/svm flag: full Linux guests may not boot under KVM here)")
    return Check("kvm", True, f"API version {api}, VM created; hardware: {backend}")


def check_kvmprobe() -> Check:
    """One short exit probe in long mode at CPL3, its exits counted by KVM."""
    from .probes import kvmprobe

    try:
        fd = kvmprobe.open_kvm()
        try:
            _elapsed, counts, returns = kvmprobe._run_probe(fd, "pio", 3, 200)
        finally:
            os.close(fd)
    except kvmprobe.KvmProbeError as exc:
        return Check("kvmprobe", False, str(exc))
    exits = counts.get("exits", 0)
    ok = returns == 200 and abs(exits - 200) <= 10
    return Check("kvmprobe", ok, f"{kvmprobe.backend()}: 200 port writes at CPL3 made "
                 f"{returns} userspace exits and {exits} counted exits (platform kvmprobe, "
                 "workload kvm-exits)")


def check_xen() -> Check:
    capabilities = Path("/proc/xen/capabilities")
    if capabilities.exists() and "control_d" in capabilities.read_text(errors="replace"):
        version = _version(["xl", "info"]) if local_which("xl") else None
        return Check("xen dom0", True, "this host is a Xen dom0" +
                     ("" if version else " (but 'xl' is missing: apt-get install xen-utils)"))
    hypervisor = Path("/sys/hypervisor/type")
    if hypervisor.exists() and hypervisor.read_text().strip() == "xen":
        return Check("xen dom0", False, "running as a Xen domU, not dom0")
    return Check("xen dom0", False, "not a Xen host")


def checks() -> list[Check]:
    found: list[Check] = []
    seen: set[str] = set()
    for workload in CATALOGUE.values():
        for tool in workload.tools:
            if tool.binary in seen:
                continue
            seen.add(tool.binary)
            path = local_which(tool.binary)
            if path is None:
                found.append(Check(tool.binary, False,
                                   f"missing: apt-get install {tool.package}"))
                continue
            argv = list(workload.version_argv) if workload.version_argv else None
            detail = (_version(argv) if argv else None) or path
            found.append(Check(tool.binary, True, detail))
        for data in workload.files:
            if data.binary not in seen:
                seen.add(data.binary)
                ok = os.access(data.binary, os.R_OK)
                found.append(Check(Path(data.binary).name, ok, data.binary if ok else
                                   f"missing: apt-get install {data.package}"))
    from .probes.build import compiler

    cc = compiler()
    found.append(Check("cc (hvprobe)", bool(cc), cc or "missing: apt-get install gcc libc6-dev"))
    qemu = local_which("qemu-system-x86_64")
    usable = False
    found.append(Check("qemu", bool(qemu), (_version(["qemu-system-x86_64", "--version"])
                                            or "installed") if qemu
                       else "missing: apt-get install qemu-system-x86"))
    kvm = check_kvm()
    found.append(kvm)
    if kvm.ok and qemu:
        from .platforms.choose import kvm_usable

        try:
            usable, why = kvm_usable()
        except Exception as exc:  # the probe itself failed (no kernel, no apt)
            usable, why = False, f"could not test: {exc}"
        found.append(Check("kvm linux guest", usable, why))
    found.append(check_kvmprobe() if kvm.ok else Check("kvmprobe", False, kvm.detail))
    found.append(Check("default comparison", True, "native vs " + (
        "qemu-kvm" if kvm.ok and qemu and usable else "qemu-tcg")))
    found.append(check_xen())
    found += check_libvirt()
    return found


def libvirt_uris() -> list[str]:
    """The connections worth trying: the user's default, then the usual local ones."""
    uris = [os.environ.get("LIBVIRT_DEFAULT_URI", ""), "qemu:///system"]
    uris.append("qemu:///session" if os.geteuid() else "")
    uris.append("xen:///system" if Path("/proc/xen/capabilities").exists() else "")
    return list(dict.fromkeys(u for u in uris if u))


def check_libvirt() -> list[Check]:
    """The libvirt connections this host can open, with hypervisor and versions."""
    from .hosts.virt import INSTALL_HINT, binding, connect, disconnect, version

    try:
        binding()
    except UsageError:
        return [Check("libvirt", False, f"libvirt-python missing: {INSTALL_HINT}")]
    found = []
    for uri in libvirt_uris():
        try:
            connection = connect(uri)
        except UsageError as exc:
            detail = str(exc).split(": ", 1)[-1].split(" (is the libvirt", 1)[0]
            found.append(Check(f"libvirt {uri}", False, detail))
            continue
        try:
            found.append(Check(f"libvirt {uri}", True, (
                f"{connection.getType()} {version(connection.getVersion())}, libvirt "
                f"{version(connection.getLibVersion())}; platform kind libvirt with "
                f"uri = '{uri}'")))
        finally:
            disconnect(connection)
    return found

