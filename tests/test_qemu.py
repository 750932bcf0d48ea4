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
from hvbench.progress import QuietReporter
from hvbench.runner import Runner
from hvbench.store import Store

from .conftest import HVBENCH, cli_env

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
        [*HVBENCH, "run", "--platform", "native,qemu-tcg", "--suite", "quick", "--reps", "2",
         "--quiet", "--param", "sysbench-cpu.events=500",
         "--param", "sysbench-memory.total_size=512M", "--param", "fio-randread.size=16M",
         "--param", "fio-randread.runtime=1", "--param", "sockperf-pingpong.seconds=1",
         "--param", "stress-ng-syscall.seconds=1", "--param", "stress-ng-pagefault.seconds=1"],
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
    fio = [s for s in exported["trials"] if s["platform"] == "qemu-tcg"
           and s["workload"] == "fio-randread" and s["status"] == "ok"]
    assert fio and fio[0]["metadata"]["direct_io"] is True
    logs = guest["machine"]["boot_logs"]
    assert logs and "Linux version" in Path(logs[0]).read_text()
    report = tmp_path / "report.html"
    subprocess.run([*HVBENCH, "report", "latest", "--html", str(report)], env=env,
                   check=True, capture_output=True, timeout=120)
    assert "TCG (software emulation)" in report.read_text()


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


def test_qemu_killed_mid_workload_fails_one_trial_and_recovers(clean: Path) -> None:
    campaign = from_mapping({
        "platforms": [{"name": "victim", "kind": "qemu-tcg"}], "reps": 3, "warmup": False,
        "workloads": [{"name": "stress-ng-cpu", "params": {"seconds": 6}}]})
    store_path = clean / "r.sqlite"
    store = Store(store_path)
    watcher = _kill_when(store_path, "hvbench-victim", 1, 2.0, signal.SIGKILL)
    outcome = Runner(store, QuietReporter()).start(campaign)
    watcher.join(5)
    statuses = [t["status"] for t in store.trials(outcome.run_id)]
    assert statuses == ["ok", "failed", "ok"], store.trials(outcome.run_id)
    reason = store.trials(outcome.run_id)[1]["reason"]
    assert "QEMU exited" in reason
    assert len(store.samples(outcome.run_id)) == 2


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
    assert "sysrq" in guest[0]["reason"].lower() or "panic" in guest[0]["reason"].lower()
    assert outcome.failed == 2
    assert len(store.samples(outcome.run_id)) == 2


def test_ctrl_c_during_boot_leaves_nothing(clean: Path) -> None:
    process = subprocess.Popen(
        [*HVBENCH, "run", "--platform", "native,qemu-tcg", "--workload", "sysbench-cpu",
         "--quiet", "--param", "sysbench-cpu.events=300"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(clean))
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
