"""The KVM lab end to end: a Linux host with kvm_amd nested under QEMU TCG, reached
over SSH, running a real KVM guest (L2) beside its own baseline (lab-native)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import HVBENCH, SHORT_QUICK_EXTRAS, cli_env

pytestmark = pytest.mark.slow

QUICK = {"sysbench-cpu", "sysbench-memory", "stress-ng-syscall", "stress-ng-pagefault",
         "fio-randread", "sockperf-pingpong"}


def hv(home: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HVBENCH, *args], capture_output=True, text=True,
                          env=cli_env(home), timeout=timeout, check=False)


def lab_pids(kind: str = "kvm") -> list[int]:
    """Live QEMU processes of the ``kind`` lab."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if f"hvbench-lab-{kind}".encode() in argv and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("the lab's SSH server logs in as root")
    path = tmp_path / "home"
    yield path
    hv(path, "lab", "stop", timeout=60)
    assert lab_pids() == [], "a lab QEMU was left running"


def test_a_run_boots_the_lab_it_needs_and_stops_it(home: Path) -> None:
    done = hv(home, "run", "--host", "lab:kvm", "--platform", "lab-native",
              "--workload", "sysbench-cpu", "--param", "sysbench-cpu.events=200",
              "--reps", "1", "--no-warmup", "--quiet")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "booting the KVM lab" in done.stderr
    assert lab_pids() == [], "a lab booted for one run must stop with it"
    exported = json.loads(hv(home, "export", "latest", "--json").stdout)
    host = exported["run"]["host"]  # gathered on L1, not on this machine
    assert host["host"] == "lab:kvm" and host["hostname"] == "hvbench-lab-kvm"
    assert "svm" in host["cpu_flags_notable"]
    assert [s["platform"] for s in exported["samples"]] == ["lab-native"]


def test_a_wedged_lab_is_rebooted_by_the_next_command(home: Path) -> None:
    """A lab whose QEMU is alive but whose sshd no longer answers (stopped here, as a
    hung dom0 would be): QEMU's user network still accepts on the forwarded port, so only
    the missing SSH banner shows it; the next command reboots the lab instead of every
    run failing with 'cannot reach'."""
    up = hv(home, "lab", "kvm", timeout=600)
    assert up.returncode == 0, up.stderr
    [wedged] = lab_pids()
    os.kill(wedged, signal.SIGSTOP)
    try:
        again = hv(home, "lab", "kvm", timeout=600)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(wedged, signal.SIGCONT)
    assert again.returncode == 0, again.stderr
    assert "SSH server does not answer: rebooting the lab" in again.stderr, again.stderr
    [rebooted] = lab_pids()
    assert rebooted != wedged
    done = hv(home, "run", "--host", "lab:kvm", "--platform", "lab-native",
              "--workload", "sysbench-cpu", "--param", "sysbench-cpu.events=100",
              "--reps", "1", "--no-warmup", "--quiet")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "booting" not in done.stderr  # the rebooted lab answers: reused as it is


def test_kvm_lab_quick_suite_with_a_real_nested_kvm_guest(home: Path) -> None:
    started = time.monotonic()
    up = hv(home, "lab", "kvm", timeout=600)
    assert up.returncode == 0, up.stderr
    assert "lab kvm is up" in up.stdout
    booted = time.monotonic() - started
    shell = hv(home, "lab", "kvm", "--shell", timeout=60)  # stdin is empty: exits at once
    assert shell.returncode == 0, shell.stderr

    done = hv(home, "run", "--host", "lab:kvm", "--suite", "quick", *SHORT_QUICK_EXTRAS,
              "--reps", "1", "--no-warmup", "--quiet")  # cpu and disk timed as is: rates
    assert done.returncode == 0, done.stderr + done.stdout
    assert "booting the KVM lab" not in done.stderr, "a running lab must be reused"
    assert lab_pids(), "a lab started by 'hvbench lab kvm' stays up after a run"
    exported = json.loads(hv(home, "export", "latest", "--json").stdout)
    measured = {(s["platform"], s["workload"]) for s in exported["samples"]}
    assert measured == {(p, w) for p in ("lab-native", "qemu-kvm") for w in QUICK}
    guest = exported["platforms"]["qemu-kvm"]["machine"]
    assert guest["accelerator"] == "kvm" and guest["host"] == "lab:kvm"
    assert "nested under QEMU TCG" in guest["nested"]
    assert "-accel" in guest["qemu_argv"] and "kvm" in guest["qemu_argv"]
    # the default I/O path under real KVM, in the guest's own view
    view = guest["guest_view"]
    assert "virtio_blk" in view["disk"]["drivers"] and view["nic"]["driver"] == "virtio_net"
    # KVM's own counters for each trial, through QMP relayed over the lab's SSH link:
    # a guest waiting for its disk halts its vCPU, a CPU-bound guest hardly ever does
    assert guest["qmp"] == "connected"
    kvm = {t["workload"]: t["metadata"]["accounting"]["kvm"] for t in exported["trials"]
           if t["platform"] == "qemu-kvm" and t["status"] == "ok"}
    fio, cpu = kvm["fio-randread"], kvm["sysbench-cpu"]
    assert fio["counts"]["exits"] > 0 and cpu["counts"]["exits"] > 0, kvm
    assert fio["counts"]["halt_exits"] / fio["seconds"] > \
        cpu["counts"]["halt_exits"] / cpu["seconds"], kvm
    # exit reasons from the kvm:kvm_exit tracepoint in L1 (a histogram in its kernel):
    # as many as KVM's own exit counter saw in the same trial; a disk read's virtio
    # notification is an MMIO write, a nested page fault (npf) on AMD, which a
    # CPU-bound guest hardly makes
    reasons = {t["workload"]: t["metadata"]["accounting"]["kvm_exit_reasons"]
               for t in exported["trials"] if t["platform"] == "qemu-kvm"
               and t["status"] == "ok"}
    traced = reasons["fio-randread"]
    assert traced["method"] == "histogram trigger", reasons
    # the guest's tracefs instance is kept from trial to trial, its histogram added
    # and removed per trial: each trial counts its own exits, none of the ones before
    for workload, counted in reasons.items():
        ratio = sum(counted["counts"].values()) / kvm[workload]["counts"]["exits"]
        assert 0.5 < ratio < 2, (workload, counted, kvm[workload])
    npf_rate = {w: reasons[w]["counts"].get("npf", 0) / kvm[w]["seconds"]
                for w in ("fio-randread", "sysbench-cpu")}
    assert npf_rate["fio-randread"] > 5 * npf_rate["sysbench-cpu"], reasons
    # per unit of work: each disk read costs exits and host CPU
    assert hv(home, "report", "latest", "--json", str(home / "r.json")).returncode == 0
    where = {(w["platform"], w["workload"]): w
             for w in json.loads((home / "r.json").read_text())["where"]}
    per_io = where[("qemu-kvm", "fio-randread")]
    assert per_io["work_unit"] == "I/O" and per_io["per_unit"]["exits"] >= 1, per_io
    assert per_io["per_unit"]["host_cpu_us"] > 0 and per_io["efficiency"] > 0
    # a CPU-bound event needs the hypervisor less often than a disk read does (its
    # exits are the timer's and interrupts'; measured 1.3 per event, 3.0 per I/O)
    per_event = where[("qemu-kvm", "sysbench-cpu")]
    assert per_event["work_unit"] == "event", per_event
    assert 0 < per_event["per_unit"]["exits"] < per_io["per_unit"]["exits"], (per_event,
                                                                             per_io)
    report = hv(home, "report", "latest")
    assert report.returncode == 0
    for text in ("lab-native (baseline)", "qemu-kvm", "nested under QEMU TCG"):
        assert text in report.stdout.replace("\n", " "), text

    # libvirt in the lab: hvbench starts the lab's own libvirtd and drives it from here
    # over libvirt's SSH transport; a transient domain under real KVM, nothing left
    virt = hv(home, "run", "--host", "lab:kvm", "--platform", "lab-native,libvirt",
              "--workload", "sysbench-cpu,fio-randread", "--param", "sysbench-cpu.events=300",
              "--param", "fio-randread.runtime=1", "--param", "fio-randread.size=16M",
              "--reps", "1", "--no-warmup", "--quiet")
    assert virt.returncode == 0, virt.stderr + virt.stdout
    exported = json.loads(hv(home, "export", "latest", "--json").stdout)
    assert {(s["platform"], s["workload"]) for s in exported["samples"]} >= {
        ("libvirt", "sysbench-cpu"), ("libvirt", "fio-randread")}
    domain = exported["platforms"]["libvirt"]["machine"]
    assert domain["uri"].startswith("qemu+libssh://root@127.0.0.1:"), domain["uri"]
    assert "known_hosts_verify=normal" in domain["uri"]  # the lab's host key is checked
    assert domain["virt_type"] == "kvm" and domain["accelerator"] == "kvm"
    assert domain["hypervisor"].startswith("QEMU") and domain["host"] == "lab:kvm"
    assert "virtio_blk" in domain["guest_view"]["disk"]["drivers"]
    assert "nested under QEMU TCG" in domain["nested"]
    read = [t["metadata"]["accounting"]["libvirt"] for t in exported["trials"]
            if t["platform"] == "libvirt" and t["workload"] == "fio-randread"]
    assert read[0]["disk_requests"] > 100, read
    from hvbench.hosts.virt import binding

    connection = binding().open(domain["uri"])
    try:
        assert [d.name() for d in connection.listAllDomains(0)] == []  # none defined either
    finally:
        connection.close()
    inside = subprocess.run([*HVBENCH, "lab", "kvm", "--shell"],
                            input="ps -o args\nls /sys/kernel/tracing/instances\n",
                            capture_output=True, text=True, env=cli_env(home), timeout=60,
                            check=False)
    assert "libvirtd" in inside.stdout and "qemu-system" not in inside.stdout, inside.stdout
    assert "hvbench-" not in inside.stdout, "a guest's tracefs instance outlived it"

    # A lab whose QEMU died (a crash) is found stale and booted afresh.
    state = json.loads((home / "labs" / "kvm" / "state.json").read_text())
    os.kill(state["pid"], signal.SIGKILL)
    again = hv(home, "lab", "kvm", timeout=600)
    assert again.returncode == 0, again.stderr
    assert "booting the KVM lab" in again.stderr
    assert json.loads((home / "labs" / "kvm" / "state.json").read_text())["pid"] \
        != state["pid"]
    stopped = hv(home, "lab", "stop")
    assert "lab kvm: stopped" in stopped.stdout
    assert not (home / "labs" / "kvm" / "state.json").exists()
    print(f"lab boot {booted:.1f} s, quick suite in the lab "
          f"{time.monotonic() - started:.1f} s in all")


def run_a_two_guest_tile(home: Path, tmp_path: Path, host: str, kind: str,
                         settings: str = "") -> dict[str, Any]:
    """Two guests of ``kind`` as one tile on a lab ``host``, sysbench-cpu twice: every
    trial ran in both from one start barrier within the spread limit, with the tile's
    aggregate and fairness; the run's export."""
    campaign = tmp_path / "tile.toml"
    campaign.write_text(
        f'host = "{host}"\nreps = 2\nwarmup = false\n'
        f'platforms = [{{ name = "tile", kind = "{kind}", settings = {{ guests = 2, '
        f'memory_mib = 256{settings} }} }}]\n'
        'workloads = [{ name = "sysbench-cpu", params = { events = 200 } }]\n')
    done = hv(home, "run", str(campaign), "--quiet")
    assert done.returncode == 0, done.stderr + done.stdout
    exported: dict[str, Any] = json.loads(hv(home, "export", "latest", "--json").stdout)
    tiles = [t["metadata"]["tile"] for t in exported["trials"] if t["status"] == "ok"]
    assert len(tiles) == 2 and all(t["guests"] == 2 and len(t["starts_ms"]) == 2 and
                                   t["start_spread_ms"] <= t["spread_limit_ms"]
                                   for t in tiles), tiles
    assert {"events-per-second", "events-per-second-sum", "fairness"} <= {
        s["metric"] for s in exported["samples"]}
    assert len(exported["platforms"]["tile"]["machine"]["members"]) == 2
    return exported


@pytest.mark.labextra
def test_two_nested_kvm_guests_run_a_synchronized_tile(home: Path, tmp_path: Path) -> None:
    """A tile of two real KVM guests (L2) in the KVM lab; the lab the run booted is
    stopped after it (the fixture checks)."""
    exported = run_a_two_guest_tile(home, tmp_path, "lab:kvm", "qemu-kvm")
    assert exported["platforms"]["tile"]["machine"]["accelerator"] == "kvm"


@pytest.mark.labextra
def test_kvm_lab_guests_use_the_io_paths_asked_for(home: Path, tmp_path: Path) -> None:
    """Real KVM in the lab's L1 behind every disk bus and NIC model QEMU offers besides
    virtio (which the quick suite runs), and virtio-net through vhost-net on a tap on
    L1's guest bridge: each nested guest runs fio and sockperf, and its own sysfs shows
    the drivers of the path asked for."""
    from .test_qemu import DISK_DRIVERS, NIC_DRIVERS

    paths = {"scsi-e1000e": ("virtio-scsi", "e1000e"), "nvme-rtl8139": ("nvme", "rtl8139"),
             "ide-virtio": ("ide", "virtio-net"), "vhost": ("virtio-blk", "virtio-net")}
    vhost = ('network = "bridge", bridge = "hvbr0", guest_address = "10.232.0.10/24", '
             "vhost = true, ")
    campaign = tmp_path / "io-paths.toml"
    campaign.write_text(
        'host = "lab:kvm"\nreps = 1\nwarmup = false\nplatforms = [\n' + ",\n".join(
            f'  {{ name = "{name}", kind = "qemu-kvm", settings = {{ '
            f'{vhost if name == "vhost" else ""}disk_bus = "{disk}", nic_model = "{nic}" }} }}'
            for name, (disk, nic) in paths.items()) + "]\n"
        'workloads = [{ name = "fio-randread", params = { runtime = 1, size = "16M" } },\n'
        '  { name = "sockperf-pingpong", params = { seconds = 1 } }]\n')
    done = hv(home, "run", str(campaign), "--quiet")
    assert done.returncode == 0, done.stderr + done.stdout
    exported = json.loads(hv(home, "export", "latest", "--json").stdout)
    assert {(s["platform"], s["workload"]) for s in exported["samples"]} >= {
        (p, w) for p in paths for w in ("fio-randread", "sockperf-pingpong")}
    for name, (disk, nic) in paths.items():
        machine = exported["platforms"][name]["machine"]
        assert machine["accelerator"] == "kvm" and machine["host"] == "lab:kvm"
        view = machine["guest_view"]
        assert DISK_DRIVERS[disk] & set(view["disk"]["drivers"]), (name, view)
        assert view["nic"]["driver"] in NIC_DRIVERS[nic], (name, view)
    network = exported["platforms"]["vhost"]["machine"]["network"]
    assert "with vhost-net" in network and "on bridge hvbr0" in network, network
