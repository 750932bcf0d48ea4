"""The xl.cfg hvbench writes for each Xen guest type, on a real host and nested in a lab
(the lab's own end-to-end tests boot these; here: what goes in, quickly)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hvbench.appliance.image import Image
from hvbench.errors import UsageError
from hvbench.hosts.local import LocalHost
from hvbench.platforms import make_platform
from hvbench.platforms.xen import XenMachine, XenSettings
from hvbench.platforms.xencfg import XlGuest, xl_cfg


def machine_for(kind: str, nested: str = "", pv_elf: bool = False, **settings: object
                ) -> XenMachine:
    host = LocalHost()
    host.nested = nested
    platform = make_platform(kind, kind, dict(settings))
    image = Image("k", Path("/g"), Path("/g/vmlinux"), Path("/g/bzImage"),
                  Path("/g/initramfs.cpio.zst"), Path("/g/initramfs.cpio"),
                  {"pvh": True, "pv_elf": pv_elf})
    machine = XenMachine(platform, image, XenSettings(**settings), host)
    # where boot() would have placed them on the dom0 (a local host: where they are)
    machine._files = {name: str(path) for name, path in machine.image_files().items()}
    return machine


def lines(machine: XenMachine) -> list[str]:
    return machine._config("/g/scratch.img").splitlines()


@pytest.mark.parametrize("kind", ["xen-pv", "xen-pvh", "xen-hvm"])
def test_a_real_dom0_gets_xens_defaults(kind: str) -> None:
    config = lines(machine_for(kind))
    assert f'type = "{kind[4:]}"' in config
    assert not any(line.startswith(("tsc_mode", "cpuid")) for line in config)
    assert "nohz=off" not in "\n".join(config)
    assert 'disk = ["format=raw,vdev=xvdb,access=rw,target=/g/scratch.img"]' in config
    kernel = "/g/vmlinux" if kind == "xen-pvh" else "/g/bzImage"
    assert f'kernel = "{kernel}"' in config
    # a vmlinux with a PV entry note boots PV as is (no bzImage to unpack in dom0)
    config = lines(machine_for(kind, pv_elf=True))
    kernel = "/g/bzImage" if kind == "xen-hvm" else "/g/vmlinux"
    assert f'kernel = "{kernel}"' in config


def test_nested_pvh_and_hvm_avoid_tsc_emulation_and_the_periodic_tick() -> None:
    for kind in ("xen-pvh", "xen-hvm"):
        config = lines(machine_for(kind, nested="xen lab"))
        assert 'tsc_mode = "native"' in config
        assert 'cpuid = "host,rdtscp=0,avx=0,avx2=0"' in config
        assert "nohz=off" not in "\n".join(config)
    pv = "\n".join(lines(machine_for("xen-pv", nested="xen lab")))
    assert "nohz=off" in pv and "tsc_mode" not in pv


def test_a_chosen_tsc_mode_wins_everywhere() -> None:
    for nested in ("", "xen lab"):
        config = lines(machine_for("xen-pvh", nested=nested, tsc_mode="always_emulate"))
        assert 'tsc_mode = "always_emulate"' in config
        assert sum(line.startswith("tsc_mode") for line in config) == 1


def test_an_unknown_tsc_mode_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="tsc_mode"):
        make_platform("x", "xen-pvh", {"tsc_mode": "fast"})


def test_hvm_without_the_platform_device_uses_emulated_devices_only() -> None:
    """xen_platform_pci = false: no platform device, so no PV drivers; the scratch disk
    is the same xvdb, which libxl also emulates as an IDE disk the guest sees as sda;
    the NIC an RTL8139 emulated by QEMU in dom0 instead of a PV vif."""
    machine = machine_for("xen-hvm", nested="xen lab", xen_platform_pci=False)
    config = lines(machine)
    assert "xen_platform_pci = 0" in config
    assert "hvbench.disk=sda" in "\n".join(config) and machine.scratch_device == "sda"
    with_pv = machine_for("xen-hvm", nested="xen lab")
    assert "xen_platform_pci" not in "\n".join(lines(with_pv))
    assert with_pv.scratch_device == "xvdb"
    for platform_pci, vif in ((False, "bridge=xenbr0,type=ioemu,model=rtl8139"),
                              (True, "bridge=xenbr0,type=vif")):
        guest = XlGuest("d", "hvm", machine._files, "/g/s.img", True, "xenbr0",
                        "10.0.3.10/24+10.0.3.1")
        config = xl_cfg(guest, XenSettings(xen_platform_pci=platform_pci)).splitlines()
        assert f'vif = ["{vif}"]' in config


@pytest.mark.parametrize(("kind", "settings", "named"), [
    ("xen-pv", {"xen_platform_pci": False}, "a xen-pv guest has only PV devices"),
    ("xen-pvh", {"xen_platform_pci": False}, "a xen-pvh guest has only PV devices"),
])
def test_emulated_devices_only_where_they_exist(kind: str, settings: dict[str, object],
                                                named: str) -> None:
    with pytest.raises(UsageError, match=named):
        make_platform("p", kind, settings).validate()


def test_xens_last_words_on_a_domain_name_only_that_domain() -> None:
    from hvbench.platforms.xen import domain_lines

    dmesg = "\n".join([
        "(XEN) [  101.2] d3v0 Triple fault - invoking HVM shutdown action 1",
        "(XEN) [  102.5] d13v0 Triple fault - invoking HVM shutdown action 1",
        "(XEN) [  102.9] Domain 13 (vcpu#0) crashed on cpu#1:",
        "(XEN) [  103.0] d130v1 unhandled exception",
    ])
    assert domain_lines(dmesg, 13) == ("Xen: [  102.5] d13v0 Triple fault - invoking HVM "
                                       "shutdown action 1 | [  102.9] Domain 13 (vcpu#0) "
                                       "crashed on cpu#1:")
    assert domain_lines(dmesg, 4) == ""
