"""Real guests under QEMU TCG: the appliance, the platform end to end, and its faults.

Every test checks that no QEMU process and no guest directory is left behind.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hvbench.campaign import from_mapping
from hvbench.errors import UsageError
from hvbench.progress import QuietReporter
from hvbench.runner import Runner
from hvbench.store import Store

from .conftest import HVBENCH, SHORT_QUICK, cli_env, tagged_processes, with_ctrl_c

pytestmark = pytest.mark.slow


def qemu_pids(tag: str = "hvbench-") -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if argv and argv[0].endswith(b"qemu-system-x86_64") and state != "Z" \
                and any(a.startswith(tag.encode()) for a in argv):
            found.append(int(entry.name))
    return found


def own_descendant(pid: int) -> bool:
    """Whether process ``pid`` descends from this test process."""
    while pid > 1:
        try:
            pid = int((Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1]).split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if pid == os.getpid():
            return True
    return False


def kill_first_own_qemu(within: float = 120) -> None:
    """SIGKILL the first QEMU this test process starts (it is still booting then)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        mine = [pid for pid in qemu_pids() if own_descendant(pid)]
        if mine:
            os.kill(mine[0], signal.SIGKILL)
            return
        time.sleep(0.02)


def socket_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("hvbench-sock-*")}


@pytest.fixture
def clean(hvbench_home: Path) -> Iterator[Path]:
    before = set(qemu_pids())
    sockets_before = socket_dirs()
    yield hvbench_home
    assert socket_dirs() - sockets_before == set(), "a socket directory leaked"
    deadline = time.monotonic() + 10
    while set(qemu_pids()) - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert set(qemu_pids()) - before == set(), "a QEMU process was left running"
    guests = hvbench_home / "guests"
    assert not guests.exists() or list(guests.iterdir()) == [], "a guest directory leaked"


def test_quick_suite_native_vs_tcg_end_to_end(clean: Path, tmp_path: Path) -> None:
    env = cli_env(clean)
    done = subprocess.run(
        [*HVBENCH, "run", "--platform", "native,qemu-tcg", "--suite", "quick", "--reps", "1",
         "--no-warmup", "--quiet", *SHORT_QUICK],
        capture_output=True, text=True, env=env, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "qemu-tcg vs native" in done.stdout
    exported = json.loads(subprocess.run([*HVBENCH, "export", "latest", "--json"], env=env,
                                         capture_output=True, text=True, check=True).stdout)
    by_platform: dict[str, set[str]] = {}
    for sample in exported["samples"]:
        by_platform.setdefault(sample["platform"], set()).add(sample["workload"])
    quick = {"sysbench-cpu", "sysbench-memory", "stress-ng-syscall", "stress-ng-pagefault",
             "fio-randread", "sockperf-pingpong"}
    assert by_platform == {"native": quick, "qemu-tcg": quick}
    guest = exported["platforms"]["qemu-tcg"]
    assert guest["machine"]["accelerator"] == "tcg"
    assert "-accel tcg" in guest["machine"]["qemu_command"]
    assert guest["system"]["kernel"].startswith("Linux 6.")
    assert guest["system"]["virtualization"] != "none"  # the guest sees a hypervisor
    # the default I/O path, in the guest's own view: virtio-blk and virtio-net
    view = guest["machine"]["guest_view"]
    assert "virtio_blk" in view["disk"]["drivers"] and view["nic"]["driver"] == "virtio_net"
    fio = [s for s in exported["trials"] if s["platform"] == "qemu-tcg"
           and s["workload"] == "fio-randread" and s["status"] == "ok"]
    assert fio and fio[0]["metadata"]["direct_io"] is True
    # every guest trial was timed by both clocks, and in a normal run they agree
    clocks = [t["metadata"].get("clock") for t in exported["trials"]
              if t["platform"] == "qemu-tcg" and t["status"] == "ok"]
    assert clocks and all(clocks) and not [c for c in clocks if "flag" in c], clocks
    # where the time went, from real counters: a CPU-bound guest keeps its vCPU thread
    # busy, more than QEMU's main loop; disk I/O makes QEMU's other threads work
    accounting = {t["workload"]: t["metadata"]["accounting"] for t in exported["trials"]
                  if t["platform"] == "qemu-tcg" and t["status"] == "ok" and not t["warmup"]}
    cpu = accounting["sysbench-cpu"]["host_threads"]
    assert cpu["vcpu_cores"] > 0.3 and cpu["vcpu_cores"] > cpu["main_loop_cores"], cpu
    disk = accounting["fio-randread"]["host_threads"]
    assert disk["main_loop_cores"] + disk["io_workers_cores"] > 0, disk
    # the guest's own kernel, read by its agent around the command itself: the window
    # is the command's, and a CPU-bound workload kept the guest's CPU busy
    kernel = accounting["sysbench-cpu"]["kernel"]
    took = next(t["seconds"] for t in exported["trials"] if t["platform"] == "qemu-tcg"
                and t["workload"] == "sysbench-cpu" and t["status"] == "ok")
    assert took - 0.05 <= kernel["seconds"] <= took + 1.0, (kernel, took)
    assert kernel["user_share"] > 0.5 and kernel["busy_cores"] > 0.5, kernel
    assert "steal_share" in kernel
    assert "user_share" in accounting["sysbench-cpu"]["host_kernel"]
    logs = guest["machine"]["boot_logs"]
    assert logs and "Linux version" in Path(logs[0]).read_text()
    report = tmp_path / "report.html"
    subprocess.run([*HVBENCH, "report", "latest", "--html", str(report)], env=env,
                   check=True, capture_output=True, timeout=120)
    assert "TCG (software emulation)" in report.read_text()
    assert "µs of host CPU per I/O" in report.read_text()  # where the time goes, per unit
    assert "wrong clock" not in report.read_text()


def test_boot_is_measured_like_a_workload(clean: Path) -> None:
    campaign = from_mapping({"platforms": ["native", "qemu-tcg"], "reps": 2,
                             "workloads": ["boot"], "warmup": False})
    store = Store(clean / "r.sqlite")
    outcome = Runner(store, QuietReporter()).start(campaign)
    rows = store.samples(outcome.run_id)
    assert {r.platform for r in rows} == {"qemu-tcg"}
    by_metric = {r.metric: r.value for r in rows}
    assert 0 < by_metric["first-output"] <= by_metric["init"] <= by_metric["agent-ready"]
    trials = store.trials(outcome.run_id)
    assert {t["status"] for t in trials if t["platform"] == "native"} == {"skipped"}
    assert outcome.failed == 0


def _kill_when(store_path: Path, platform_tag: str, trials_before: int, delay: float,
               sig: int) -> threading.Thread:
    """Send ``sig`` to the guest's QEMU once ``trials_before`` trials are stored."""
    def watch() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                with sqlite3.connect(store_path) as connection:
                    count = connection.execute("SELECT count(*) FROM trials").fetchone()[0]
            except sqlite3.Error:
                continue
            if count >= trials_before:
                time.sleep(delay)
                for pid in qemu_pids(platform_tag):
                    os.kill(pid, sig)
                return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_agent_that_stops_answering_times_out_and_guest_restarts(clean: Path) -> None:
    campaign = from_mapping({
        "platforms": [{"name": "frozen", "kind": "qemu-tcg",
                       "settings": {"agent_margin": 3}}],
        "reps": 2, "warmup": False, "timeout": 15,
        "workloads": [{"name": "sysbench-cpu", "params": {"events": 300}}]})
    store_path = clean / "r.sqlite"
    store = Store(store_path)
    # Freeze the real QEMU process right as the first workload request goes out.
    from hvbench.platforms import qemu as qemu_mod

    original_run = qemu_mod.QemuMachine.run
    frozen: list[int] = []

    def run_and_freeze(self, argv, timeout, stdin=None):  # type: ignore[no-untyped-def]
        if argv[0] == "sysbench" and "cpu" in argv and not frozen:
            assert self._process is not None
            os.kill(self._process.pid, signal.SIGSTOP)  # a real, hung guest
            frozen.append(self._process.pid)
        return original_run(self, argv, timeout, stdin)

    qemu_mod.QemuMachine.run = run_and_freeze  # type: ignore[method-assign]
    try:
        outcome = Runner(store, QuietReporter()).start(campaign)
    finally:
        qemu_mod.QemuMachine.run = original_run  # type: ignore[method-assign]
    trials = store.trials(outcome.run_id)
    assert [t["status"] for t in trials] == ["timeout", "ok"], trials
    assert "did not answer" in trials[0]["reason"]
    assert frozen and not Path(f"/proc/{frozen[0]}").exists()


def test_guest_kernel_panic_is_reported_and_native_goes_on(clean: Path) -> None:
    campaign = from_mapping({
        "platforms": ["native", {"name": "panicky", "kind": "qemu-tcg",
                                 "settings": {"kernel_args": "hvbench.panic=1"}}],
        "reps": 2, "warmup": False,
        "workloads": [{"name": "sysbench-cpu", "params": {"events": 300}}]})
    store = Store(clean / "r.sqlite")
    outcome = Runner(store, QuietReporter()).start(campaign)
    trials = store.trials(outcome.run_id)
    native = [t for t in trials if t["platform"] == "native"]
    guest = [t for t in trials if t["platform"] == "panicky"]
    assert [t["status"] for t in native] == ["ok", "ok"]
    assert [t["status"] for t in guest] == ["failed", "failed"]
    assert "kernel panicked" in guest[0]["reason"]
    assert "it died on its first boot too" in guest[0]["reason"]  # booted once more
    assert "sysrq" in guest[0]["reason"].lower() or "panic" in guest[0]["reason"].lower()
    assert outcome.failed == 2
    assert len(store.samples(outcome.run_id)) == 2


def test_ctrl_c_during_boot_leaves_nothing(clean: Path) -> None:
    process = subprocess.Popen(
        [*HVBENCH, "run", "--platform", "native,qemu-tcg", "--workload", "sysbench-cpu",
         "--quiet", "--param", "sysbench-cpu.events=300"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(clean),
        preexec_fn=with_ctrl_c)
    deadline = time.monotonic() + 120
    while not qemu_pids("hvbench-qemu-tcg") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert qemu_pids("hvbench-qemu-tcg"), "QEMU never started"
    time.sleep(1.0)  # inside the boot
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "--resume" in stderr
    assert "Traceback" not in stderr


def test_pinned_guest_affinity_and_its_clock_checked_against_the_host(clean: Path) -> None:
    """One boot, three checks: vCPU threads pinned; files read and programs looked up
    in one request each; the guest's clock agrees with the host's in a normal trial,
    and a trial in a guest whose clock was made to run 10% fast (adjtimex tick) is
    flagged."""
    from hvbench import workloads
    from hvbench.execution import execute_trial
    from hvbench.platforms.base import PlatformContext
    from hvbench.platforms.qemu import QemuTcgPlatform
    from hvbench.trial import Trial
    from hvbench.workloads.suites import get_suite

    target = os.cpu_count() - 1 if os.cpu_count() else 0
    quick = workloads.payload(e.workload for e in get_suite("quick"))  # the e2e test's image
    platform = QemuTcgPlatform(name="pinned", settings={"pin": [target], "network": "none"},
                               context=PlatformContext(payload=quick))
    with platform.open() as machine:
        pid = machine._process.pid  # type: ignore[attr-defined]
        affinities = {}
        for task in Path(f"/proc/{pid}/task").iterdir():
            name = (task / "comm").read_text().strip()
            status = (task / "status").read_text()
            allowed = next(line.split(":", 1)[1].strip() for line in status.splitlines()
                           if line.startswith("Cpus_allowed_list"))
            affinities[name] = allowed
        assert affinities.get("CPU 0/TCG") == str(target), affinities
        assert machine.info()["pinning"] == [target]
        # small files come back in one agent request: present ones whole, absent as None
        files = machine.read_files(["/proc/version", "/etc/hvbench/agent.sh", "/no/such"])
        assert files["/proc/version"] and files["/proc/version"].startswith("Linux version")
        assert files["/etc/hvbench/agent.sh"] == machine.read_file("/etc/hvbench/agent.sh")
        assert files["/no/such"] is None
        found = machine.which_all(["stress-ng", "hvbench-no-such-program"])  # one request
        assert found == {"stress-ng": "/usr/bin/stress-ng", "hvbench-no-such-program": None}

        trial = Trial(seq=0, platform="pinned", workload="stress-ng-cpu", workload_index=0,
                      repetition=0, warmup=False, params={"seconds": 5})
        _, metadata, _ = execute_trial(machine, trial, 120)
        assert metadata["clock"]["guest_s"] >= 5
        assert "flag" not in metadata["clock"], metadata["clock"]
        assert machine.run(["adjtimex", "-t", "11000"], timeout=60).exit_code == 0
        _, metadata, _ = execute_trial(machine, trial, 120)
        assert "the guest's clock ran fast" in metadata["clock"].get("flag", ""), \
            metadata["clock"]


def test_fresh_guest_boots_once_per_trial(clean: Path) -> None:
    """A new guest for each trial; its disk on virtio-scsi, fio on it (the I/O-path
    matrix test covers NVMe and IDE, the other tests virtio-blk)."""
    campaign = from_mapping({"platforms": [{"name": "fresh", "kind": "qemu-tcg", "settings": {
        "disk_bus": "virtio-scsi"}}], "reps": 2, "warmup": False, "fresh_guest": True,
        "workloads": [{"name": "fio-randread", "params": {"runtime": 1, "size": "16M"}}]})
    store = Store(clean / "r.sqlite")
    outcome = Runner(store, QuietReporter()).start(campaign)
    assert outcome.failed == 0
    info = store.platform_info(outcome.run_id)["fresh"]["machine"]
    assert len(info["boot_logs"]) == 2  # the first boot and one more for the second trial
    assert "virtio_scsi" in info["guest_view"]["disk"]["drivers"], info["guest_view"]
    assert len([s for s in store.samples(outcome.run_id) if s.metric == "iops"]) == 2


def _run_as_root(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_hugepages_back_guest_memory(clean: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("reserving hugepages needs root")
    sysctl = Path("/proc/sys/vm/nr_hugepages")
    before = sysctl.read_text().strip()
    mounted_here = False
    try:
        sysctl.write_text("320\n")
        if int(sysctl.read_text()) < 300:
            pytest.skip("the kernel would not reserve 300 hugepages here")
        if not os.path.ismount("/dev/hugepages"):
            Path("/dev/hugepages").mkdir(exist_ok=True)
            if _run_as_root(["mount", "-t", "hugetlbfs", "none", "/dev/hugepages"]).returncode:
                pytest.skip("cannot mount hugetlbfs here")
            mounted_here = True
        from hvbench.platforms.qemu import QemuTcgPlatform

        def free() -> int:
            meminfo = Path("/proc/meminfo").read_text()
            return int(next(line.split()[1] for line in meminfo.splitlines()
                            if line.startswith("HugePages_Free")))

        idle = free()
        platform = QemuTcgPlatform(name="huge", settings={"hugepages": True, "memory_mib": 512,
                                                          "network": "none"})
        with platform.open() as machine:
            assert machine.run(["true"], timeout=60).exit_code == 0
            assert idle - free() >= 256  # 512 MiB of 2 MiB pages, preallocated
        assert free() == idle
    finally:
        if mounted_here:
            _run_as_root(["umount", "/dev/hugepages"])
        sysctl.write_text(f"{before}\n")


def test_bridge_networking_in_a_private_namespace(clean: Path, tmp_path: Path) -> None:
    """tap + bridge, all inside a network namespace this test creates and removes."""
    if os.geteuid() != 0:
        pytest.skip("bridge networking needs root")
    namespace = f"hvbtest{os.getpid()}"
    if _run_as_root(["ip", "netns", "add", namespace]).returncode:
        pytest.skip("cannot create a network namespace here")
    inside = ["ip", "netns", "exec", namespace]
    try:
        for argv in (["ip", "link", "set", "lo", "up"],
                     ["ip", "link", "add", "hvbr0", "type", "bridge"],
                     ["ip", "addr", "add", "10.0.100.1/24", "dev", "hvbr0"],
                     ["ip", "link", "set", "hvbr0", "up"]):
            done = _run_as_root([*inside, *argv])
            assert done.returncode == 0, done.stderr
        campaign = tmp_path / "bridge.toml"
        campaign.write_text(
            'platforms = [{ name = "bridged", kind = "qemu-tcg", settings = { network = '
            '"bridge", bridge = "hvbr0", guest_address = "10.0.100.2/24" } }]\n'
            'workloads = [{ name = "iperf3-tcp", params = { seconds = 1 } },'
            ' { name = "sockperf-pingpong", params = { seconds = 1 } }]\n'
            'reps = 1\nwarmup = false\n')
        done = subprocess.run([*inside, *HVBENCH, "run", str(campaign), "--quiet"],
                              capture_output=True, text=True, env=cli_env(clean),
                              timeout=600, check=False)
        assert done.returncode == 0, done.stderr[-1500:]
        exported = json.loads(subprocess.run(
            [*HVBENCH, "export", "latest", "--json"], capture_output=True, text=True,
            env=cli_env(clean), check=True).stdout)
        assert {s["workload"] for s in exported["samples"]} == {"iperf3-tcp",
                                                               "sockperf-pingpong"}
        trial = exported["trials"][0]
        assert trial["metadata"]["server"] == "host, reached at 10.0.100.1"
        assert "bridge hvbr0" in exported["platforms"]["bridged"]["machine"]["network"]
        links = _run_as_root([*inside, "ip", "-o", "link"]).stdout
        assert "hvb" not in links.replace("hvbr0", ""), links  # the tap is gone
    finally:
        _run_as_root(["ip", "netns", "del", namespace])


def test_hvprobe_runs_natively_and_in_the_guest(clean: Path) -> None:
    campaign = from_mapping({
        # a small guest: the 256 MiB latency step must stop short of the OOM killer
        "platforms": ["native", {"name": "qemu-tcg", "kind": "qemu-tcg",
                                 "settings": {"memory_mib": 256}}],
        "reps": 1, "warmup": False,
        "workloads": [{"name": "hvprobe", "params": {"scale": 0.05, "max_chase_mib": 256,
                                                      "array_mib": 8}},
                      {"name": "stress-ng-syscall", "params": {"seconds": 1}}]})
    store = Store(clean / "r.sqlite")
    outcome = Runner(store, QuietReporter()).start(campaign)
    assert outcome.failed == 0, [t["reason"] for t in store.trials(outcome.run_id)]
    values: dict[str, dict[str, float]] = {}
    for row in store.samples(outcome.run_id):
        values.setdefault(row.platform, {})[row.metric] = row.value
    assert set(values["native"]) - set(values["qemu-tcg"]) == {"mem_latency_262144k"}
    assert "cpuid" in values["qemu-tcg"] and "mem_latency_65536k" in values["qemu-tcg"]
    assert "mem_latency_1048576k" not in values["native"]  # above max_chase_mib
    # Under emulation a page fault costs far more than a cached load: sanity of units.
    assert values["qemu-tcg"]["page_fault"] > values["qemu-tcg"]["mem_latency_16k"]
    # The "Why" section puts the syscall cost beside the syscall-heavy workload.
    from hvbench.analysis import analyse
    from hvbench.report import html

    analysis = analyse(store, outcome.run_id)
    syscall = next(w for w in analysis.why if w.operation == "syscall")
    assert syscall.platform == "qemu-tcg"
    assert [(w, m) for w, m, _ in syscall.explains] == [("stress-ng-syscall",
                                                         "bogo-ops-per-second")]
    assert 'id="why"' in html.render(analysis)


def test_a_guest_that_died_before_a_query_is_restarted_once(clean: Path) -> None:
    """A guest whose QEMU is killed while it boots is booted once more; the platform
    session's restart-once (preflight and metadata): a real guest whose QEMU is killed is
    booted again and asked again; a healthy guest's error is not retried."""
    from hvbench.errors import TrialError
    from hvbench.platforms import PlatformContext, make_platform
    from hvbench.workloads import payload

    platform = make_platform("qemu-tcg", "qemu-tcg", {},
                             PlatformContext(payload=payload(["sysbench-cpu"])))
    from hvbench.platformsession import PlatformSession

    session = PlatformSession(Store(clean / "r.sqlite"), QuietReporter())
    killer = threading.Thread(target=kill_first_own_qemu, daemon=True)
    killer.start()  # the first boot dies (QEMU killed): open() boots the guest once more
    with platform.open() as machine:
        killer.join(1)
        assert not killer.is_alive() and machine.boots == 2  # type: ignore[attr-defined]
        assert machine.which("sysbench")
        machine._process.kill()  # type: ignore[attr-defined]  # the guest dies
        machine._process.wait(10)  # type: ignore[attr-defined]
        assert not machine.healthy()
        found = session._restarting_once("qemu-tcg", machine, lambda m: m.which("cat"))
        assert found and machine.healthy()
        assert machine.boots == 3  # type: ignore[attr-defined]
        calls = []

        def refuses(m: object) -> None:
            calls.append(m)
            raise TrialError("no")

        with pytest.raises(TrialError, match="no"):
            session._restarting_once("qemu-tcg", machine, refuses)
        assert len(calls) == 1 and machine.boots == 3  # type: ignore[attr-defined]


def test_hvbench_killed_outright_leaves_no_process_and_keeps_its_samples(
        clean: Path) -> None:
    """SIGKILL (the OOM killer, a CI time-out) runs no clean-up code: what hvbench
    started must end anyway (the warden on its lifeline pipe, and the kernel's
    parent-death signal). Its guest's QEMU, the native workload in flight and the
    guest's directories go with it; the trials stored before are kept."""
    from .conftest import stored_trials

    env = cli_env(clean)
    process = subprocess.Popen(
        [*HVBENCH, "run", "--platform", "native,qemu-tcg", "--workload", "stress-ng-cpu",
         "--reps", "4", "--quiet", "--no-warmup", "--param", "stress-ng-cpu.seconds=1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    database = clean / "results.sqlite"
    measured = stored_trials(database, 3, seconds=300, status="ok")
    assert measured >= 3, "the run never got going"
    assert tagged_processes("qemu-system-x86", clean), "no guest was running"
    process.kill()
    process.wait(10)
    gone = time.monotonic() + 15
    while time.monotonic() < gone and (tagged_processes("qemu-system-x86", clean)
                                       or tagged_processes("stress-ng", clean)):
        time.sleep(0.2)
    assert tagged_processes("qemu-system-x86", clean) == [], "QEMU outlived hvbench"
    assert tagged_processes("stress-ng", clean) == [], "a workload outlived hvbench"
    with sqlite3.connect(database) as connection:
        kept = connection.execute("SELECT count(*) FROM samples").fetchone()[0]
    assert kept >= measured
    # its guest's directories (the scratch disk, the agent socket) go too; the clean
    # fixture checks that none is left
    gone = time.monotonic() + 10
    while time.monotonic() < gone and any((clean / "guests").glob("*")):
        time.sleep(0.2)
    # the run is listed as interrupted (its lock died with it), exports, and resumes
    listing = subprocess.run([*HVBENCH, "results", "--json"], capture_output=True, text=True,
                             env=env, timeout=60, check=True)
    run, = json.loads(listing.stdout)
    assert run["status"] == "interrupted"
    exported = subprocess.run([*HVBENCH, "export", run["id"], "--csv"], capture_output=True,
                              text=True, env=env, timeout=60, check=True)
    assert len(exported.stdout.strip().splitlines()) - 1 >= kept
    resumed = subprocess.run([*HVBENCH, "run", "--resume", run["id"], "--quiet"],
                             capture_output=True, text=True, env=env, timeout=600, check=False)
    assert resumed.returncode == 0, resumed.stderr
    with sqlite3.connect(database) as connection:
        status, = connection.execute("SELECT status FROM runs").fetchone()
        measured_ok, = connection.execute(
            "SELECT count(*) FROM trials WHERE warmup = 0 AND status = 'ok'").fetchone()
    assert status == "complete" and measured_ok == 8


#: the driver the guest must bind for each disk bus and NIC model (8139cp and 8139too
#: both drive an RTL8139: the kernel picks one)
DISK_DRIVERS = {"virtio-scsi": {"virtio_scsi"}, "nvme": {"nvme"}, "ide": {"ahci", "ata_piix"},
                "virtio-blk": {"virtio_blk"}}
NIC_DRIVERS = {"e1000e": {"e1000e"}, "rtl8139": {"8139cp", "8139too"},
               "virtio-net": {"virtio_net"}}


def test_io_paths_matrix_each_guest_uses_the_devices_asked_for(clean: Path) -> None:
    """A 3x2 matrix of disk buses and NIC models: every variant boots, runs fio and
    sockperf, and its own sysfs shows the driver of the path asked for; the analysis
    ranks the variants and estimates the effects. (virtio-blk and virtio-net run in
    the other tests; microvm is left out: under TCG its kernel can stall calibrating
    the TSC, which the boot timeout then reports.)"""
    from hvbench.analysis import analyse

    campaign = from_mapping({
        "platforms": ["native",
                      {"name": "io", "kind": "qemu-tcg", "settings": {"memory_mib": 512},
                       "matrix": {"disk_bus": ["nvme", "ide", "virtio-scsi"],
                                  "nic_model": ["e1000e", "rtl8139"]}}],
        "reps": 1, "warmup": False,
        "workloads": [{"name": "fio-randread", "params": {"runtime": 1, "size": "16M"}},
                      {"name": "sockperf-pingpong", "params": {"seconds": 1}}]})
    store = Store(clean / "r.sqlite")
    outcome = Runner(store, QuietReporter()).start(campaign)
    assert outcome.failed == 0, [t["reason"] for t in store.trials(outcome.run_id)
                                 if t["status"] != "ok"]
    info = store.platform_info(outcome.run_id)
    for spec in campaign.platforms[1:]:
        view = info[spec.name]["machine"]["guest_view"]
        bus = spec.settings.get("disk_bus", "virtio-blk")
        nic = spec.settings.get("nic_model", "virtio-net")
        assert DISK_DRIVERS[bus] & set(view["disk"]["drivers"]), (spec.name, view)
        assert view["nic"]["driver"] in NIC_DRIVERS[nic], (spec.name, view)
        assert info[spec.name]["machine"]["disk"]["bus"] == bus
    family, = analyse(store, outcome.run_id).effects
    assert family.family == "io" and family.factorial
    assert {e.setting for e in family.scopes[0].main} == {"disk_bus", "nic_model"}
    assert len(family.scopes[0].ranking) == 6
    # vhost on a host without /dev/vhost-net: refused before QEMU starts, naming the fix
    if not Path("/dev/vhost-net").exists():
        from hvbench.platforms.qemu import QemuTcgPlatform

        platform = QemuTcgPlatform(name="vhost", settings={
            "network": "bridge", "bridge": "hvbr-none", "guest_address": "10.0.100.2/24",
            "vhost": True})
        with pytest.raises(UsageError, match="vhost = true needs /dev/vhost-net"), \
                platform.open():
            pass
