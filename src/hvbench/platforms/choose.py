"""The default comparison: native against qemu-kvm where KVM really works, else qemu-tcg.

Whether KVM works is decided by trying: the appliance is booted under
``-accel kvm`` with a short time limit (a /dev/kvm that exists may still be
unable to run Linux, see LAB-NOTES). The verdict is cached per host kernel,
QEMU version and image, so only the first run pays for it.
"""

from __future__ import annotations

import json
import os
import platform as pyplatform
import shutil
import subprocess
from pathlib import Path

from ..appliance import image as image_mod
from ..errors import HvbenchError
from .base import PlatformContext
from .qemu import QemuKvmPlatform

PROBE_BOOT_TIMEOUT = 45.0


def _verdict_path() -> Path:
    return image_mod.cache_root() / "kvm-verdict.json"


def _qemu_version() -> str:
    done = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True,
                          timeout=30, check=False)
    return done.stdout.splitlines()[0] if done.stdout else "unknown"


def kvm_usable(say: image_mod.Progress | None = None) -> tuple[bool, str]:
    """(usable, why), from the cache or by booting the appliance under KVM."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is missing or not accessible"
    if shutil.which("qemu-system-x86_64") is None:
        return False, "QEMU is not installed"
    appliance = image_mod.build(progress=say)
    key = f"{pyplatform.release()}|{_qemu_version()}|{appliance.key}"
    path = _verdict_path()
    try:
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return bool(cached["usable"]), str(cached["why"])
    except (OSError, ValueError, KeyError):
        pass
    if say:
        say(f"checking whether KVM can boot Linux here (up to {PROBE_BOOT_TIMEOUT:.0f} s, once)")
    probe = QemuKvmPlatform(name="kvm-probe", settings={"boot_timeout": PROBE_BOOT_TIMEOUT,
                                                         "network": "none"},
                            context=PlatformContext(say=say))
    try:
        with probe.open() as machine:
            done = machine.run(["true"], timeout=30)
        usable, why = done.exit_code == 0, "a Linux guest booted under KVM"
    except HvbenchError as exc:
        usable, why = False, f"a Linux guest did not boot under KVM: {str(exc)[:300]}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "usable": usable, "why": why}))
    return usable, why


def dom0_here() -> bool:
    """This machine is a Xen dom0 with a toolstack."""
    try:
        capabilities = Path("/proc/xen/capabilities").read_text()
    except OSError:
        return False
    return "control_d" in capabilities and shutil.which("xl") is not None


def hypervisor_platforms(say: image_mod.Progress | None = None) -> list[dict[str, str]]:
    """The study's comparison: native and QEMU/TCG here, plus KVM and Xen: the real
    ones where this machine has them, the nested labs (each with its own lab-native
    baseline) where it does not."""
    usable, _why = kvm_usable(say)
    found = [{"name": "native@local", "kind": "native", "host": "local"},
             {"name": "qemu-tcg@local", "kind": "qemu-tcg", "host": "local"}]
    if usable:
        found.append({"name": "qemu-kvm@local", "kind": "qemu-kvm", "host": "local"})
    else:
        found += [{"name": "lab-native@lab-kvm", "kind": "lab-native", "host": "lab:kvm"},
                  {"name": "qemu-kvm@lab-kvm", "kind": "qemu-kvm", "host": "lab:kvm"}]
    if dom0_here():
        found += [{"name": f"{k}@local", "kind": k, "host": "local"}
                  for k in ("xen-pv", "xen-pvh")]
    else:
        found += [{"name": "lab-native@lab-xen", "kind": "lab-native", "host": "lab:xen"},
                  {"name": "xen-pv@lab-xen", "kind": "xen-pv", "host": "lab:xen"},
                  {"name": "xen-pvh@lab-xen", "kind": "xen-pvh", "host": "lab:xen"}]
    if say:
        where = ", ".join(sorted({p["host"] for p in found}))
        say(f"comparing the hypervisors on: {where} (labs run one after another, after "
            "this machine's own platforms)")
    return found


def default_platforms(say: image_mod.Progress | None = None) -> list[str]:
    usable, why = kvm_usable(say)
    if say:
        short = why if usable else "KVM cannot boot Linux here; 'hvbench doctor' says why"
        say(f"default comparison: native vs {'qemu-kvm' if usable else 'qemu-tcg'} ({short})")
    return ["native", "qemu-kvm" if usable else "qemu-tcg"]
