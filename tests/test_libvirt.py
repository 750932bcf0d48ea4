"""The libvirt platform: domain XML and templates (fast), and real transient domains
on a libvirt daemon of the tests' own under TCG (slow): end to end from the CLI, the
user's domain as a template, and faults (no daemon, a domain that cannot start, a
stale domain of a dead hvbench, the daemon killed mid-command)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from defusedxml import ElementTree as ET

from hvbench.appliance.image import build as build_image
from hvbench.doctor import check_libvirt
from hvbench.errors import TrialError, UsageError
from hvbench.hosts.owner import owner, stale
from hvbench.hosts.virt import binding
from hvbench.platforms import make_platform
from hvbench.platforms.base import PlatformContext
from hvbench.platforms.libvirttpl import diff, load, read_template, template_xml
from hvbench.platforms.libvirtxml import DomainFiles, LibvirtSettings, domain_xml, owner_of

from .conftest import HVBENCH, cli_env
from .libvirtd import session_daemon, short_dir

FILES = DomainFiles("/k/vmlinuz", "/k/initramfs", "/d/scratch & <1>.img", "/d/console.log",
                    "/s/agent.sock")

#: the user's own domain: a custom CPU model, two pinned vCPUs, a SCSI disk on a
#: virtio-scsi controller, an e1000e NIC, firmware with NVRAM, a display and a UUID
TEMPLATE = """<domain type='qemu'>
  <name>prod-vm</name>
  <uuid>5b5c4f4e-8a52-4a43-9a43-0d3c8f3f1a11</uuid>
  <memory unit='MiB'>512</memory>
  <vcpu placement='static'>2</vcpu>
  <cputune>
    <vcpupin vcpu='0' cpuset='0'/>
    <vcpupin vcpu='1' cpuset='1'/>
  </cputune>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features><acpi/><apic/></features>
  <cpu mode='custom' match='exact' check='none'>
    <model fallback='forbid'>qemu64</model>
    <topology sockets='1' dies='1' cores='2' threads='1'/>
  </cpu>
  <clock offset='utc'/>
  <devices>
    <controller type='scsi' index='0' model='virtio-scsi'/>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='writeback'/>
      <source file='/var/lib/libvirt/images/prod-vm.qcow2'/>
      <target dev='sda' bus='scsi'/>
    </disk>
    <interface type='network'>
      <source network='default'/>
      <model type='e1000e'/>
    </interface>
    <graphics type='vnc' port='-1' passwd='hush2026'/>
    <console type='pty'/>
  </devices>
</domain>
"""


# -- fast: XML, settings, templates, owners -------------------------------------------
def test_generated_domain_escapes_paths_and_keeps_the_settings() -> None:
    settings = LibvirtSettings(vcpus=2, pin=[1, 0], disk_bus="virtio-scsi", queues=2,
                               nic_model="e1000e", hugepages=True)
    xml = domain_xml(settings, "qemu", "hvbench-x", FILES, "console=ttyS0",
                     {"host": "h", "pid": "1"})
    root = ET.fromstring(xml)  # the path's '&' and '<' were escaped, not pasted
    assert root.get("type") == "qemu"
    assert root.find("devices/disk/source").get("file") == FILES.scratch
    assert root.find("devices/disk/target").attrib == {"dev": "sda", "bus": "scsi"}
    assert root.find("devices/controller").get("model") == "virtio-scsi"
    assert root.find("devices/controller/driver").get("queues") == "2"
    assert [p.attrib for p in root.findall("cputune/vcpupin")] == [
        {"vcpu": "0", "cpuset": "1"}, {"vcpu": "1", "cpuset": "0"}]
    assert root.find("memoryBacking/hugepages") is not None
    assert root.find("devices/interface/model").get("type") == "e1000e"
    assert root.find("devices/channel/target").get("name") == "hvbench.agent"
    assert root.find("cpu").get("mode") == "maximum"  # TCG: every feature it can emulate
    assert owner_of(xml) == {"host": "h", "pid": "1"}
    assert owner_of("<domain><name>theirs</name></domain>") is None
    assert owner_of("not xml") is None
    pc = ET.fromstring(domain_xml(LibvirtSettings(disk_bus="ide", machine="pc"), "kvm", "n",
                                  FILES, "", {}))
    assert pc.find("devices/disk/target").attrib == {"dev": "hda", "bus": "ide"}
    assert pc.find("cpu").get("mode") == "host-passthrough"


@pytest.mark.parametrize("nested", [False, True])
def test_xen_domains_boot_the_right_kernel_on_the_pv_console(nested: bool) -> None:
    from hvbench.platforms.libvirtxen import xen_domain_xml

    settings = LibvirtSettings(virt_type="xen-pvh", vcpus=2, pin=[1, 0], memory_mib=512)
    pvh = ET.fromstring(xen_domain_xml(settings, "xen-pvh", "hvbench-x", FILES, "a=1&b",
                                       {"host": "h", "pid": "1"}, nested))
    assert pvh.get("type") == "xen" and pvh.findtext("name") == "hvbench-x"
    assert pvh.find("os/type").text == "xenpvh" and pvh.find("os/type").get("machine") == \
        "xenpvh"
    assert pvh.findtext("os/kernel") == FILES.kernel and pvh.findtext("os/cmdline") == "a=1&b"
    assert pvh.find("devices/disk/source").get("file") == FILES.scratch  # escaped, intact
    assert pvh.find("devices/disk/target").attrib == {"dev": "xvdb", "bus": "xen"}
    assert pvh.find("devices/console/target").attrib == {"type": "xen", "port": "0"}
    assert [p.attrib for p in pvh.findall("cputune/vcpupin")] == [
        {"vcpu": "0", "cpuset": "1"}, {"vcpu": "1", "cpuset": "0"}]
    assert pvh.find("devices/channel") is None and pvh.find("devices/interface") is None
    # nested under TCG: what xl's PVH guests get there (no TSC emulation, no RDTSCP)
    hidden = {f.get("name") for f in pvh.findall("cpu/feature[@policy='disable']")}
    assert (hidden == {"rdtscp", "avx", "avx2"}) is nested
    assert (pvh.find("clock/timer[@name='tsc']") is not None) is nested
    pv = ET.fromstring(xen_domain_xml(LibvirtSettings(virt_type="xen-pv"), "xen-pv", "n",
                                      FILES, "", {}, nested))
    assert pv.find("os/type").text == "linux" and pv.find("os/type").get("machine") == "xenpv"
    assert pv.find("cpu") is None  # PV guests have no SVM exits to avoid


@pytest.mark.parametrize(("settings", "named"), [
    ({"virt_type": "xen-pv", "disk_bus": "ide"}, "disk_bus is a QEMU guest's setting"),
    ({"virt_type": "xen-pvh", "network": "user"}, "network = 'user' does not exist"),
    ({"virt_type": "xen-pvh", "domain": "prod-vm"}, "templates are for QEMU"),
    ({"virt_type": "hvm"}, "virt_type"),
    ({"disk_bus": "nvme"}, "nvme"),
    ({"machine": "microvm"}, "microvm"),
    ({"vhost": True}, "vhost"),
    ({"network": "bridge"}, "network"),
    ({"template": "a.xml", "domain": "b"}, "not both"),
    ({"domain": "prod-vm", "vcpus": 4}, "vcpus is decided by the template"),
    ({"uri": "not a uri"}, "uri"),
])
def test_bad_settings_are_refused_up_front(settings: dict[str, object], named: str) -> None:
    with pytest.raises(UsageError, match=named):
        make_platform("lv", "libvirt", settings)


def test_template_keeps_the_users_guest_and_replaces_what_it_must(tmp_path: Path) -> None:
    path = tmp_path / "prod-vm.xml"
    path.write_text(TEMPLATE)
    template = load(str(path))
    assert template.decided == {
        "disk_bus": "virtio-scsi", "virt_type": "qemu", "disk_cache": "writeback",
        "nic_model": "e1000e", "vcpus": 2, "memory_mib": 512, "machine": "q35"}
    settings = LibvirtSettings(template=str(path)).model_copy(update=template.decided)
    xml = template_xml(template, settings, "hvbench-t", FILES, "console=ttyS0",
                       {"host": "h", "pid": "1"})
    root = ET.fromstring(xml)
    # kept
    assert root.find("cpu/model").text == "qemu64"
    assert root.find("cpu/topology").get("cores") == "2"
    assert len(root.findall("cputune/vcpupin")) == 2
    assert root.find("features/apic") is not None
    assert root.find("devices/controller").get("model") == "virtio-scsi"
    # replaced
    assert root.findtext("name") == "hvbench-t" and root.find("uuid") is None
    assert root.find("os/boot") is None and root.findtext("os/kernel") == FILES.kernel
    disks = root.findall("devices/disk")
    assert len(disks) == 1 and disks[0].find("source").get("file") == FILES.scratch
    assert disks[0].find("target").attrib == {"dev": "sda", "bus": "scsi"}
    assert disks[0].find("driver").get("cache") == "writeback"
    assert len(root.findall("devices/controller")) == 1  # the template's, not a second
    assert [i.get("type") for i in root.findall("devices/interface")] == ["user"]
    assert root.find("devices/interface/model").get("type") == "e1000e"
    assert root.find("devices/graphics") is None and "hush2026" not in xml
    changes = diff(template, xml)
    assert "-    <boot dev=\"hd\" />" in changes and "+    <kernel>/k/vmlinuz</kernel>" in changes
    assert path.read_text() == TEMPLATE  # only read


@pytest.mark.parametrize(("change", "named"), [
    (("<domain type='qemu'>", "<domain type='xen'>"), "type='xen'"),
    (("<disk type='file' device='disk'>", "<disk type='file' device='cdrom'>"), "no <disk"),
    (("<console type='pty'/>", "<hostdev mode='subsystem' type='pci'/>"), "<hostdev>"),
    (("bus='scsi'", "bus='usb'"), "bus='usb'"),
    (("model='virtio-scsi'", "model='lsilogic'"), "virtio-scsi"),
    (("<model type='e1000e'/>", "<model type='e1000'/>"), "type='e1000'"),
    (("<domain type='qemu'>", "<domian type='qemu'>"), "not a readable domain XML"),
])
def test_templates_hvbench_cannot_use_are_refused_naming_the_element(
        change: tuple[str, str], named: str) -> None:
    with pytest.raises(UsageError, match=named.replace("(", r"\(")):
        read_template(TEMPLATE.replace(*change), "t.xml")


def test_a_missing_template_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read it"):
        make_platform("lv", "libvirt", {"template": str(tmp_path / "absent.xml")})


def test_a_domain_is_stale_only_when_its_hvbench_is_gone() -> None:
    assert not stale(owner())  # this very process
    child = subprocess.Popen(["true"])
    recorded = {**owner(), "pid": str(child.pid)}
    recorded["started"] = "1"  # whatever runs under that pid now started later
    child.wait()
    assert stale(recorded)
    assert not stale({**recorded, "host": "another-machine"})  # never judged


# -- slow: real domains on a daemon of our own --------------------------------------
def domain_qemus(tag: str = "guest=hvbench-") -> list[int]:
    """QEMU processes started by libvirt for hvbench domains (``-name guest=...``)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"qemu-system-x86_64") and any(
                a.startswith(tag.encode()) for a in argv):
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def daemon() -> Iterator[str]:
    with short_dir() as base, session_daemon(base) as (uri, _process):
        yield uri


def left_on(uri: str) -> list[str]:
    connection = binding().open(uri)
    try:
        return [d.name() for d in connection.listAllDomains(0)
                if d.name().startswith("hvbench-") and d.isActive()]
    finally:
        connection.close()


@pytest.mark.slow
def test_native_vs_libvirt_from_the_cli(daemon: str, hvbench_home: Path) -> None:
    env = {**cli_env(hvbench_home), "LIBVIRT_DEFAULT_URI": daemon}
    done = subprocess.run(
        [*HVBENCH, "run", "--platform", "native,libvirt", "--workload",
         "sysbench-cpu,fio-randread", "--reps", "1", "--no-warmup", "--quiet",
         "--param", "sysbench-cpu.events=500", "--param", "fio-randread.size=16M",
         "--param", "fio-randread.runtime=1"],
        capture_output=True, text=True, env=env, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    exported = json.loads(subprocess.run([*HVBENCH, "export", "latest", "--json"], env=env,
                                         capture_output=True, text=True, check=True).stdout)
    measured = {(s["platform"], s["workload"]) for s in exported["samples"]}
    assert {("libvirt", "sysbench-cpu"), ("libvirt", "fio-randread")} <= measured
    machine = exported["platforms"]["libvirt"]["machine"]
    assert machine["uri"] == daemon and machine["virt_type"] == "qemu"
    assert machine["accelerator"] == "tcg" and machine["libvirt"].startswith("9.")
    assert ET.fromstring(machine["domain_xml"]).findtext("name") == machine["domain"]
    assert machine["guest_view"]["disk"]["drivers"][0] == "virtio_blk"
    accounting = {t["workload"]: t["metadata"]["accounting"]["libvirt"]
                  for t in exported["trials"]
                  if t["platform"] == "libvirt" and t["status"] == "ok" and not t["warmup"]}
    assert accounting["sysbench-cpu"]["vcpu_cores"] > 0.3, accounting
    assert accounting["fio-randread"]["disk_requests"] > 100, accounting
    assert left_on(daemon) == [] and domain_qemus() == []


@pytest.mark.slow
def test_users_domain_as_template_runs_with_its_devices_and_stays_untouched(
        daemon: str, hvbench_home: Path) -> None:
    lib = binding()
    connection = lib.open(daemon)
    connection.defineXML(TEMPLATE)  # the user's own, defined but not running
    defined = connection.lookupByName("prod-vm").XMLDesc(0)
    try:
        platform = make_platform("prod", "libvirt", {"uri": daemon, "domain": "prod-vm"},
                                 PlatformContext())
        with platform.open() as machine:
            view = machine.guest_view
            assert "virtio_scsi" in view["disk"]["drivers"], view
            assert view["nic"]["driver"] == "e1000e", view
            assert machine.run(["nproc"], timeout=60).stdout.strip() == "2"
            assert "QEMU Virtual CPU" in machine.read_file("/proc/cpuinfo")  # qemu64
            info = machine.info()
            assert info["template"] == "domain prod-vm"
            assert "+    <kernel>" in info["template_diff"]
            live = ET.fromstring(info["domain_xml"])
            assert len(live.findall("cputune/vcpupin")) == 2
        user = connection.lookupByName("prod-vm")
        assert user.XMLDesc(0) == defined and not user.isActive()
        assert left_on(daemon) == [] and domain_qemus() == []
    finally:
        connection.lookupByName("prod-vm").undefine()
        connection.close()


@pytest.mark.slow
def test_faults_leave_nothing_running(tmp_path: Path, hvbench_home: Path) -> None:
    """A daemon of this test's own: no daemon, a domain that cannot start, a stale
    domain of a dead hvbench, and the daemon killed in the middle of a command."""
    lib = binding()
    with short_dir() as base, session_daemon(base) as (uri, process):
        socket_path = uri.split("socket=", 1)[1]
        gone = uri.replace(socket_path, str(tmp_path / "no-daemon.sock"))
        env = {**cli_env(hvbench_home), "LIBVIRT_DEFAULT_URI": gone}
        done = subprocess.run([*HVBENCH, "run", "--platform", "libvirt", "--workload",
                               "sysbench-cpu", "--reps", "1", "--quiet"],
                              capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 2, done.stderr
        errors = [line for line in done.stderr.splitlines() if "error" in line]
        assert len(errors) == 1 and f"cannot connect to {gone}: " in errors[0], done.stderr

        unbootable = make_platform("bad", "libvirt", {"uri": uri, "machine": "pc-q35-0.1",
                                                      "virt_type": "qemu"})
        with pytest.raises(TrialError, match=r"libvirt could not start the bad guest: .*q35"
                           ), unbootable.open():
            pass

        # a domain left running by an hvbench killed outright (its owner is gone) is
        # destroyed before the next start
        connection = lib.open(uri)
        appliance = build_image()
        scratch = tmp_path / "orphan.img"
        subprocess.run(["truncate", "-s", "64M", str(scratch)], check=True)
        dead = {"host": socket.gethostname(), "pid": "1", "started": "not-init's"}
        connection.createXML(domain_xml(LibvirtSettings(), "qemu", "hvbench-orphan-1",
                                        DomainFiles(str(appliance.kernel),
                                                    str(appliance.initramfs), str(scratch),
                                                    str(tmp_path / "orphan.log"),
                                                    str(tmp_path / "orphan.sock")),
                                        "console=ttyS0", dead), 0)
        assert left_on(uri) == ["hvbench-orphan-1"]
        connection.close()

        platform = make_platform("lv", "libvirt", {"uri": uri, "virt_type": "qemu"})
        with platform.open() as machine:
            assert left_on(uri) == [machine.domain_name]  # the orphan is gone
            name = machine.domain_name
            assert domain_qemus(f"guest={name},")
            killer = threading.Timer(2.0, os.kill, (process.pid, signal.SIGKILL))
            killer.start()
            with pytest.raises(TrialError, match=r"libvirt|agent"):
                machine.run(["sleep", "20"], timeout=60)
            killer.join()
        assert domain_qemus(f"guest={name},") == []  # its QEMU killed without libvirt


@pytest.mark.slow
def test_doctor_names_the_connections_it_can_open(daemon: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", daemon)
    found = {check.component: check for check in check_libvirt()}
    ours = found[f"libvirt {daemon}"]
    assert ours.ok and ours.detail.startswith("QEMU ") and "libvirt 9." in ours.detail
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", daemon.replace("libvirt-sock", "absent"))
    refused = [c for c in check_libvirt() if "absent" in c.component]
    assert len(refused) == 1 and not refused[0].ok and "absent" in refused[0].detail
