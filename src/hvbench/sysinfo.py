"""What a machine is, gathered through the Machine itself (host or guest alike).

Recorded with every run, so a number is never separated from the conditions it
was measured under. The hardware fingerprint ignores the kernel and what the
hypervisor hides (dom0 sees fewer CPUs and less memory than the bare metal), so
a bare-metal baseline from another boot of the same server can be matched.
"""

from __future__ import annotations

import hashlib
import platform as pyplatform
import re
from typing import Any

from . import __version__
from .errors import TrialError
from .machine import Machine
from .workloads.base import Workload

_DMI = ("sys_vendor", "product_name", "product_uuid", "board_vendor", "board_name",
        "board_serial")
_INTERESTING_FLAGS = ("hypervisor", "vmx", "svm", "avx", "avx2", "avx512f", "aes", "sha_ni",
                      "constant_tsc", "nonstop_tsc", "rdtscp", "pdpe1gb", "x2apic", "ept", "npt")


def _cpuinfo(text: str) -> dict[str, Any]:
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    mhz = re.search(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)
    flag_set = set(flags.group(1).split()) if flags else set()
    return {
        "cpu_model": model.group(1).strip() if model else pyplatform.processor() or "unknown",
        "cpu_logical": len(re.findall(r"^processor\s*:", text, re.M)),
        "cpu_mhz": float(mhz.group(1)) if mhz else None,
        "cpu_flags": sorted(flag_set),
        "cpu_flags_notable": [f for f in _INTERESTING_FLAGS if f in flag_set],
    }


def _meminfo(text: str | None) -> int | None:
    match = re.search(r"^MemTotal:\s+(\d+) kB", text or "", re.M)
    return int(match.group(1)) * 1024 if match else None


def _os_release(text: str | None) -> str | None:
    match = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', text or "", re.M)
    return match.group(1) if match else None


#: every file collect() reads, fetched at once (one round trip to a remote machine)
_GOVERNOR = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"
_NO_TURBO = "/sys/devices/system/cpu/intel_pstate/no_turbo"
_BOOST = "/sys/devices/system/cpu/cpufreq/boost"
_CLOCKSOURCE = "/sys/devices/system/clocksource/clocksource0/current_clocksource"
_FILES = ("/proc/cpuinfo", "/proc/meminfo", "/proc/sys/kernel/hostname", "/etc/os-release",
          "/sys/hypervisor/type", _GOVERNOR, _NO_TURBO, _BOOST, _CLOCKSOURCE, "/proc/loadavg",
          "/etc/machine-id", *(f"/sys/class/dmi/id/{key}" for key in _DMI))


def _first(files: dict[str, str | None], path: str) -> str | None:
    text = files.get(path)
    return text.strip() if text and text.strip() else None


#: the kernel, and what systemd-detect-virt says where it is installed: one round trip
_KERNEL_AND_VIRT = ("uname -srm; if command -v systemd-detect-virt >/dev/null 2>&1; then "
                    "systemd-detect-virt; else echo; fi; exit 0")


def _kernel_and_virt(machine: Machine) -> tuple[str, str]:
    """(uname -srm, systemd-detect-virt's answer or '')."""
    try:
        return _parse_kernel_and_virt(
            machine.run(["sh", "-c", _KERNEL_AND_VIRT], timeout=20).stdout)
    except TrialError:
        return "", ""


def _parse_kernel_and_virt(output: str) -> tuple[str, str]:
    lines = output.splitlines()
    return (lines[0].strip() if lines else "", lines[1].strip() if len(lines) > 1 else "")


def virtualization(machine: Machine, cpu_flags: list[str],
                   files: dict[str, str | None] | None = None, detected: str | None = None
                   ) -> str:
    """What the machine believes it runs on: 'none', 'kvm', 'xen', 'qemu', ...
    (``detected``: systemd-detect-virt's answer when the caller already has it)."""
    found = detected if detected is not None else _kernel_and_virt(machine)[1]
    if found:
        return found
    hypervisor = _first(files if files is not None else
                        machine.read_files(["/sys/hypervisor/type"]), "/sys/hypervisor/type")
    if hypervisor:
        return hypervisor
    return "unknown-hypervisor" if "hypervisor" in cpu_flags else "none"


def fingerprint(info: dict[str, Any]) -> str:
    """Hash of what stays the same across reboots and hypervisors on one server."""
    dmi = info.get("dmi") or {}
    if dmi.get("product_uuid") or dmi.get("board_serial"):
        parts = [info.get("cpu_model", ""), *(str(dmi.get(k, "")) for k in _DMI)]
    else:  # no DMI (containers, some VMs): fall back to what the OS shows
        memory_gib = round((info.get("memory_bytes") or 0) / 2**30)
        parts = [info.get("cpu_model", ""), str(info.get("cpu_logical")), str(memory_gib),
                 info.get("machine_id", "")]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _versions_and_kernel(machine: Machine, workloads: list[Workload[Any]]
                         ) -> tuple[dict[str, str], tuple[str, str]]:
    """First line of each tool's version output, plus Debian package versions; and
    ``_kernel_and_virt``'s answer: all in one round trip where each costs one (a
    remote host, a guest)."""
    versions: dict[str, str] = {}
    commands = {w.version_argv[0]: w.version_argv for w in workloads if w.version_argv}
    packages = sorted({tool.package for w in workloads for tool in (*w.tools, *w.files)})
    try:
        found = machine.which_all([*commands, "dpkg-query"])
    except TrialError:
        return versions, _kernel_and_virt(machine)
    present = [argv for tool, argv in commands.items() if found[tool]]
    queries: list[list[str]] = [["sh", "-c", _KERNEL_AND_VIRT], *map(list, present)]
    if packages and found["dpkg-query"]:
        queries.append(["dpkg-query", "-W", "-f=${Package} ${Version}\\n", *packages])
    try:
        replies = machine.run_each(queries, timeout=30)
    except TrialError:
        return versions, ("", "")
    for argv, reply in zip(present, replies[1:], strict=False):
        lines = reply.output.strip().splitlines()
        if lines:
            versions[argv[0]] = lines[0].strip()[:200]
    if len(replies) > len(present) + 1:  # dpkg-query's, with its complaints mixed in
        for line in replies[-1].output.splitlines():
            name, _, version = line.partition(" ")
            if name in packages and version:
                versions[f"deb:{name}"] = version
    return versions, _parse_kernel_and_virt(replies[0].output)


def collect(machine: Machine, workloads: list[Workload[Any]] | None = None) -> dict[str, Any]:
    """Metadata about ``machine``: CPU, memory, kernel, distro, virtualization, noise."""
    files = machine.read_files(_FILES)
    info: dict[str, Any] = _cpuinfo(files.get("/proc/cpuinfo") or "")
    info["memory_bytes"] = _meminfo(files.get("/proc/meminfo"))
    versions, (kernel, detected) = _versions_and_kernel(machine, workloads or [])
    info["kernel"] = kernel
    info["hostname"] = _first(files, "/proc/sys/kernel/hostname")
    info["distro"] = _os_release(files.get("/etc/os-release"))
    info["virtualization"] = virtualization(machine, info["cpu_flags"], files, detected)
    info["governor"] = _first(files, _GOVERNOR)
    no_turbo = _first(files, _NO_TURBO)
    boost = _first(files, _BOOST)
    info["turbo"] = (no_turbo == "0") if no_turbo else (boost == "1") if boost else None
    info["clocksource"] = _first(files, _CLOCKSOURCE)
    loadavg = _first(files, "/proc/loadavg")
    info["loadavg"] = [float(x) for x in loadavg.split()[:3]] if loadavg else None
    info["dmi"] = {key: value for key in _DMI
                   if (value := _first(files, f"/sys/class/dmi/id/{key}"))}
    info["machine_id"] = _first(files, "/etc/machine-id") or ""
    info["hvbench_version"] = __version__
    info["tool_versions"] = versions
    info["fingerprint"] = fingerprint(info)
    del info["machine_id"]  # used for the fingerprint only; not worth publishing
    info["dmi"].pop("product_uuid", None)
    info["dmi"].pop("board_serial", None)
    return info


def warnings(info: dict[str, Any]) -> list[str]:
    """What may skew results measured on this machine."""
    found = []
    if info.get("governor") and info["governor"] != "performance":
        found.append(f"CPU frequency governor is {info['governor']!r}, not 'performance'")
    if info.get("turbo"):
        found.append("turbo/boost is on: clock speed depends on temperature and load")
    load = info.get("loadavg")
    if load and info.get("cpu_logical") and load[0] > 0.5 * info["cpu_logical"]:
        found.append(f"the machine was busy (load average {load[0]:.2f} on "
                     f"{info['cpu_logical']} CPUs)")
    if info.get("clocksource") in {"xen", "hpet", "acpi_pm"}:
        found.append(f"clocksource {info['clocksource']!r} has no vDSO fast path: "
                     "time calls are system calls")
    return found
