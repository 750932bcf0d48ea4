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


def machine_for(kind: str, nested: str = "", **settings: object) -> XenMachine:
    host = LocalHost()
    host.nested = nested
    platform = make_platform(kind, kind, dict(settings))
    image = Image("k", Path("/g"), Path("/g/vmlinux"), Path("/g/bzImage"),
                  Path("/g/initramfs.cpio"), {"pvh": True})
    machine = XenMachine(platform, image, XenSettings(**settings), host)
    # where boot() would have placed them on the dom0
    machine._files = {"bzimage": str(image.bzimage), "vmlinux": str(image.kernel),
                      "initramfs": str(image.initramfs)}
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
