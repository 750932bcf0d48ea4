"""libvirt inside a lab: the daemon a lab carries, started on first use and reached
from this machine over libvirt's own SSH transport.

The lab's image carries this machine's ``libvirtd``, ``virt-ssh-helper`` (which
libvirt's SSH transports run on the far side), the lab's driver (QEMU's in the
KVM lab, libxl's in the Xen lab) and a configuration for a root-only host without
systemd (LAB-NOTES: the packaged one expects a ``libvirt-qemu`` user and virtlogd).
The daemon is not started at the lab's boot: probing QEMU's capabilities under
nested emulation costs seconds that runs without a libvirt platform should not pay.

The URI (``qemu+libssh://`` / ``xen+libssh://``) names the lab's client key and a
known_hosts file holding the lab's own host key, checked strictly: libvirt's
``ssh`` transport runs the ``ssh`` program, which can only be told of a
known_hosts file through the user's own configuration.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..appliance import libs
from ..errors import TrialError, UsageError
from .base import Host

LIBVIRTD = "/usr/sbin/libvirtd"
SSH_HELPER = "/usr/bin/virt-ssh-helper"
DRIVER_DIR = "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver"
CPU_MAP = Path("/usr/share/libvirt/cpu_map")
SOCKET = "/run/libvirt/libvirt-sock"
LOG = "/var/log/libvirt/libvirtd.log"
#: the lab's hypervisor driver and the URI scheme that reaches it
DRIVERS = {"kvm": ("qemu", "qemu"), "xen": ("libxl", "xen")}

#: the QEMU driver looks up the user and group it was built for before it reads its
#: configuration (which then makes it run QEMU as root)
PASSWD = b"libvirt-qemu:x:64055:64055::/var/lib/libvirt:/bin/false\n"
GROUP = b"libvirt-qemu:x:64055:\nkvm:x:64056:\n"
#: root only, no polkit (root's own socket), logs in a file
LIBVIRTD_CONF = (b'unix_sock_rw_perms = "0700"\nunix_sock_ro_perms = "0700"\n'
                 b'auth_unix_rw = "none"\nauth_unix_ro = "none"\n'
                 b'log_outputs = "3:file:' + LOG.encode() + b'"\n')
#: QEMU as root with no cgroups, namespaces, security driver or virtlogd: the lab has
#: none of them
QEMU_CONF = (b'user = "root"\ngroup = "root"\ndynamic_ownership = 0\nremember_owner = 0\n'
             b'security_driver = "none"\nnamespaces = []\ncgroup_controllers = []\n'
             b'stdio_handler = "file"\n')


def add_to_image(tree: Any, kind: str, driver_root: Path = Path("/"),
                 library_path: str | None = None) -> dict[str, Any]:
    """The daemon, the helper, the lab's driver and their configuration, into a lab's
    tree; the manifest entry says what was carried (or why nothing was)."""
    driver, _scheme = DRIVERS[kind]
    module = driver_root / DRIVER_DIR.lstrip("/") / f"libvirt_driver_{driver}.so"
    missing = [str(p) for p in (Path(LIBVIRTD), Path(SSH_HELPER), module) if not p.exists()]
    if missing:  # the lab still works; its libvirt platform says what is missing
        return {"libvirt": f"not carried: {', '.join(missing)} missing on this machine"}
    programs = [Path(LIBVIRTD), Path(SSH_HELPER)]
    for program in programs:
        tree.add_host_program(str(program))
    tree.add_file(f"{DRIVER_DIR}/{module.name}", source=module, mode=0o644)
    for library in libs.closure([*programs, module], library_path=library_path):
        if driver_root == Path("/") or not str(library).startswith(str(driver_root)):
            tree.add_host_path(str(library))
    for cpu_model in sorted(CPU_MAP.glob("*.xml")):  # the drivers read x86 CPU models
        tree.add_file(str(cpu_model), source=cpu_model, mode=0o644)
    if kind == "xen":
        _add_lab_cpu_model(tree)
    tree.add_file("/etc/libvirt/libvirtd.conf", data=LIBVIRTD_CONF)
    if driver == "qemu":
        tree.add_file("/etc/libvirt/qemu.conf", data=QEMU_CONF)
    return {"libvirt": f"libvirtd with the {driver} driver"}


def libvirt_uri_for(kind: str, port: int, key: Path, known_hosts: Path) -> str:
    """The URI of the lab's libvirt on ``port``, host key checked against ``known_hosts``."""
    _driver, scheme = DRIVERS[kind]
    return (f"{scheme}+libssh://root@127.0.0.1:{port}/system?keyfile={quote(str(key))}"
            f"&known_hosts={quote(str(known_hosts))}&known_hosts_verify=normal"
            "&sshauth=privkey")


def start_daemon(host: Host, timeout: float = 120) -> None:
    """libvirtd running on the lab ``host`` (started when it is not), its socket up."""
    if host.native().which("libvirtd") is None:
        raise UsageError(f"{host.label} carries no libvirtd: install libvirt-daemon and "
                         "its driver on this machine (make setup does), then 'hvbench lab "
                         "stop' so the lab is rebuilt with it")
    if host.run(["test", "-S", SOCKET], timeout=30).exit_code == 0 and \
            host.run(["pidof", "libvirtd"], timeout=30).exit_code == 0:
        return
    host.run(["mkdir", "-p", "/var/log/libvirt", "/var/lib/libvirt", "/var/cache/libvirt"],
             timeout=30)
    host.check([LIBVIRTD, "--daemon", "--pid-file", "/run/libvirtd.pid"], 60,
               "starting libvirtd")
    deadline = time.monotonic() + timeout
    while host.run(["test", "-S", SOCKET], timeout=30).exit_code != 0:
        if time.monotonic() > deadline or host.run(["pidof", "libvirtd"],
                                                   timeout=30).exit_code != 0:
            said = host.native().read_file(LOG) or ""
            raise TrialError(f"libvirtd did not start on {host.label}: "
                             f"{' | '.join(said.strip().splitlines()[-3:])[-300:]}")
        host.pause(0.2)


#: Xen's host CPU features under TCG lack VME (TCG has none) and SEP (Xen clears it),
#: which every x86 model in libvirt's CPU map requires: the libxl driver then fails
#: to start ("Cannot find suitable CPU model"). The Xen lab's map adds this one.
LAB_CPU_MODEL = "x86_hvbench-xen-lab.xml"
_LAB_CPU_FEATURES = ["apic", "clflush", "cmov", "cx16", "cx8", "de", "fpu", "fxsr", "lm",
                     "mca", "mce", "mmx", "msr", "mtrr", "nx", "pae", "pat", "pge", "pni",
                     "pse", "pse36", "sse", "sse2", "syscall", "tsc"]


def _add_lab_cpu_model(tree: Any) -> None:
    """qemu64 without VME and SEP, as a CPU model libvirt can decode the lab's host as."""
    features = "".join(f"    <feature name='{name}'/>\n" for name in _LAB_CPU_FEATURES)
    model = ("<cpus>\n  <model name='hvbench-xen-lab'>\n    <decode host='on' guest='off'/>\n"
             f"{features}  </model>\n</cpus>\n")
    tree.add_file(str(CPU_MAP / LAB_CPU_MODEL), data=model.encode(), mode=0o644)
    index = (CPU_MAP / "index.xml").read_text()
    anchor = "<include filename='x86_qemu64.xml'/>"
    if anchor not in index:
        raise UsageError(f"{CPU_MAP / 'index.xml'} has no qemu64 model to add the Xen lab's "
                         "beside (an unexpected libvirt version)")
    index = index.replace(anchor, f"{anchor}\n    <include filename='{LAB_CPU_MODEL}'/>")
    tree.add_file(str(CPU_MAP / "index.xml"), data=index.encode(), mode=0o644)
