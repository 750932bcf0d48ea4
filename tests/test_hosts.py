"""QEMU guests on an SSH host (a real OpenSSH server on loopback): end to end, a
remote tile whose guest is killed mid-workload, and remote processes that die with the link."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from hvbench.campaign import from_mapping
from hvbench.errors import TrialTimeout
from hvbench.hosts import HostSpec
from hvbench.hosts.owner import STAMP, stamp
from hvbench.hosts.ssh import SshConnection, SshTarget
from hvbench.hosts.sshhost import SshHost
from hvbench.platforms import PlatformContext
from hvbench.progress import QuietReporter
from hvbench.runner import Runner
from hvbench.store import Store
from hvbench.workloads import payload

from .sshd import Sshd, descendants
from .test_qemu import _kill_when, qemu_pids, socket_dirs
from .test_ssh import hv, sshd  # noqa: F401 - sshd is a fixture

pytestmark = pytest.mark.slow


def _no_remote_guests_left(before: set[int]) -> None:
    deadline = time.monotonic() + 15
    while set(qemu_pids()) - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert set(qemu_pids()) - before == set(), "a remote QEMU was left running"


def _left_by(stamp: str) -> list[Path]:
    """Directories on this (SSH) host as a hvbench with this owner stamp would leave
    them: a guest's, the host machine's scratch, a QEMU socket directory."""
    made = []
    for parent, prefix in ((Path.home() / ".local/share/hvbench/guests", "qemu-tcg"),
                           (Path.home() / ".local/share/hvbench/scratch", "hvbench"),
                           (Path("/tmp"), "hvbench-sock")):
        parent.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=parent))
        (path / STAMP).write_text(stamp + "\n")
        made.append(path)
    return made


def test_qemu_guest_on_an_ssh_host_end_to_end(sshd: Sshd, tmp_path: Path) -> None:  # noqa: F811
    before = set(qemu_pids())
    # what a hvbench killed outright left (its stamp names a process that has ended),
    # and what a live one has (this test process's stamp): the run sweeps only the first
    dead_stamp = subprocess.run([sys.executable, "-c", "from hvbench.hosts.owner import "
                                 "stamp; print(stamp())"], capture_output=True, text=True,
                                check=True).stdout.strip()
    dead, live = _left_by(dead_stamp), _left_by(stamp())
    sockets_before = socket_dirs()
    home = tmp_path / "home"
    done = hv(home, "run", "--host", sshd.url, "--identity", str(sshd.client_key),
              "--accept-new-host-key", "--platform", "native,qemu-tcg",
              "--workload", "sysbench-cpu,fio-randread,sockperf-pingpong", "--reps", "1",
              "--no-warmup", "--quiet", "--param", "sysbench-cpu.events=300",
              "--param", "fio-randread.runtime=1", "--param", "fio-randread.size=16M",
              "--param", "sockperf-pingpong.seconds=1", timeout=600)
    assert done.returncode == 0, done.stderr + done.stdout
    exported = json.loads(hv(home, "export", "latest", "--json").stdout)
    measured = {(s["platform"], s["workload"]) for s in exported["samples"]}
    for platform in ("native", "qemu-tcg"):
        for workload in ("sysbench-cpu", "fio-randread", "sockperf-pingpong"):
            assert (platform, workload) in measured
    guest = exported["platforms"]["qemu-tcg"]["machine"]
    assert guest["host"] == sshd.url
    assert guest["accelerator"] == "tcg"
    assert guest["qmp"] == "connected"  # QEMU's monitor, relayed through the SSH link
    # where the time went, read on the SSH host: QEMU's threads by kind
    cpu = next(t for t in exported["trials"] if t["platform"] == "qemu-tcg"
               and t["workload"] == "sysbench-cpu")["metadata"]["accounting"]
    assert cpu["host_threads"]["vcpu_cores"] > 0.3, cpu
    # the image went to the host's cache once, by content key, whole (no .part left)
    cached = Path("/root/.cache/hvbench/host-images") / guest["image"]
    assert (cached / "initramfs.cpio.zst").stat().st_size > 1 << 20
    assert not list(cached.glob("*.part"))
    _no_remote_guests_left(before)
    # its own socket directory is gone (one a killed run left earlier is not its own)
    assert socket_dirs() - sockets_before == set(), "a socket directory leaked"
    assert [p for p in dead if p.exists()] == [], "a dead hvbench's leftovers were kept"
    assert all(p.exists() for p in live), "a live hvbench's directories were swept"
    for path in live:
        shutil.rmtree(path)


def test_remote_tile_guest_killed_mid_workload_fails_one_trial_and_recovers(
        sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """A two-guest tile on the SSH host, the QEMU of its second guest killed in the
    middle of a trial: that trial fails naming the guest, the other guest's values are
    kept with it, the dead guest is restarted on the host and the last trial measures
    both again, started together (the barrier's spread recorded); no QEMU outlives it.
    (The local tile takes the same path with a local host: tested here once, remote.)"""
    before = set(qemu_pids())
    monkeypatch.setenv("HVBENCH_HOME", str(tmp_path / "home"))
    campaign = from_mapping({
        "platforms": [{"name": "victim", "kind": "qemu-tcg",
                       "settings": {"network": "none", "guests": 2, "memory_mib": 256}}],
        "reps": 3, "warmup": False, "host": sshd.url, "ssh_identity": str(sshd.client_key),
        "accept_new_host_key": True,
        "workloads": [{"name": "stress-ng-cpu", "params": {"seconds": 4}}]})
    store_path = tmp_path / "r.sqlite"
    store = Store(store_path)
    watcher = _kill_when(store_path, "hvbench-victim-g2", 1, 1.5, signal.SIGKILL)
    outcome = Runner(store, QuietReporter()).start(campaign)
    watcher.join(5)
    trials = store.trials(outcome.run_id)
    assert [t["status"] for t in trials] == ["ok", "failed", "ok"], trials
    assert "QEMU exited" in trials[1]["reason"]
    assert trials[1]["reason"].startswith("guest 2 of 2 of victim"), trials[1]["reason"]
    kept = trials[1]["metadata"]["tile"]["kept"]
    assert list(kept) == ["guest 1"] and kept["guest 1"]["bogo-ops-per-second"] > 0
    last = trials[2]["metadata"]["tile"]
    assert len(last["starts_ms"]) == 2 and last["start_spread_ms"] <= last["spread_limit_ms"]
    values = {(r.trial_id, r.metric): r for r in store.samples(outcome.run_id)}
    assert {metric for _, metric in values} >= {"bogo-ops-per-second",
                                                "bogo-ops-per-second-sum", "fairness"}
    assert all(len(r.metadata["per_guest"]) == 2 for r in values.values())
    _no_remote_guests_left(before)


def test_remote_process_dies_with_the_ssh_connection(sshd: Sshd,  # noqa: F811
                                                     tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    connection = SshConnection(SshTarget("root", "127.0.0.1", sshd.port), sshd.client_key,
                               accept_new_host_key=True, known_hosts=known)
    host = SshHost(connection).open()
    marker = f"600.{time.monotonic_ns() % 10**9}"  # a sleep nobody else runs
    process = host.start(["sleep", marker], tmp_path / "out", tmp_path / "err")

    def sleepers() -> list[int]:
        return [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/cmdline")
                if _cmdline(p) == [b"sleep", marker.encode()]]

    deadline = time.monotonic() + 10
    while not sleepers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sleepers(), "the remote process did not start"
    assert process.poll() is None
    # The link drops: kill the server's side of our connection, not the listener.
    for pid in descendants(sshd.process.pid):
        with contextlib.suppress(OSError):
            if b"sshd: root" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while sleepers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sleepers() == [], "the remote process outlived its SSH connection"
    assert process.poll() == -1
    host.close()


def test_host_commands_untimed_and_workloads_timed_by_the_hosts_clock(
        sshd: Sshd, tmp_path: Path) -> None:  # noqa: F811
    """The host's own commands go through one kept shell and skip the remote clock (a
    session and two date processes each: most of a command's cost in a nested lab) yet
    keep output, exit code and the time-out's kill (the command's whole session); a
    command of the host as a machine (a workload) is timed by its clock."""
    connection = SshConnection(SshTarget("root", "127.0.0.1", sshd.port), sshd.client_key,
                               accept_new_host_key=True, known_hosts=tmp_path / "known")
    host = SshHost(connection).open()
    try:
        done = host.run(["sh", "-c", "echo out; echo err >&2; sleep 0.3; exit 3"], 30)
        assert (done.stdout, done.stderr, done.exit_code) == ("out\n", "err\n", 3)
        assert done.seconds >= 0.3
        marker = f"{time.monotonic_ns() % 10**9 + 10**9}"  # a sleep nobody else runs
        started = time.monotonic()
        with pytest.raises(TrialTimeout):  # a child of the command is killed too
            host.run(["sh", "-c", 'sleep "$1" & sleep "$1"', "sh", marker], 1)
        assert time.monotonic() - started < 10
        assert not [p for p in Path("/proc").glob("[0-9]*/cmdline")
                    if _cmdline(p) == [b"sleep", marker.encode()]]
        assert host.run(["cat"], 30).stdout == ""  # stdin: never the shell's commands
        timed = host.native().run(["sh", "-c", "sleep 0.3; echo x"], 30)
        assert timed.stdout == "x\n" and "@@HVB" not in timed.stderr
        assert 0.3 <= timed.seconds < 0.3 + 0.25
        # the host's own commands run one after another in one kept shell (each in a
        # session of its own), timed from here over the whole trip; a workload's session
        # is its own, and the host's clock times the command alone
        parents, timings = set(), []
        for _ in range(3):
            started = time.perf_counter()
            done = host.run(["sh", "-c", "echo $PPID; ps -o sid= -p $$"], 30)
            wall = time.perf_counter() - started
            timings.append((done.seconds, wall))
            parent, session = done.stdout.split()
            assert int(session) != int(parent)  # its own session, not the shell's
            parents.add(parent)
        assert len(parents) == 1, parents
        assert all(0.8 * wall <= seconds <= wall for seconds, wall in timings), timings
        os.kill(int(parent), signal.SIGKILL)  # the kept shell ends while idle: a new one
        again = host.run(["sh", "-c", "echo $PPID"], 30)
        assert again.exit_code == 0 and again.stdout.strip() not in parents
        started = time.perf_counter()
        alone = host.native().run(["sh", "-c", "echo $PPID"], 30)
        assert alone.stdout.strip() not in parents
        assert alone.seconds < 0.8 * (time.perf_counter() - started)
    finally:
        host.close()


def _cmdline(path: Path) -> list[bytes]:
    try:
        return path.read_bytes().split(b"\0")[:2]
    except OSError:
        return []


def test_two_hosts_run_side_by_side_into_one_run(sshd: Sshd, tmp_path: Path) -> None:  # noqa: F811
    home = tmp_path / "home"
    done = hv(home, "run", "--host", "local", "--host", sshd.url, "--identity",
              str(sshd.client_key), "--accept-new-host-key", "--platform", "native",
              "--workload", "sysbench-cpu", "--param", "sysbench-cpu.events=300",
              "--reps", "2", "--no-warmup")
    assert done.returncode == 0, done.stderr + done.stdout
    remote = f"native@127.0.0.1:{sshd.port}"
    assert f"[127.0.0.1:{sshd.port}]" in done.stderr  # each host has its own line
    exported = json.loads(hv(home, "export", "latest", "--json").stdout)
    counts: dict[str, int] = {}
    for sample in exported["samples"]:
        counts[sample["platform"]] = counts.get(sample["platform"], 0) + 1
    assert set(counts) == {"native@local", remote} and len(set(counts.values())) == 1
    assert exported["platforms"][remote]["machine"]["host"] == sshd.url
    assert "appliance" in exported["platforms"][remote]["machine"]["tools_from"]
    assert set(exported["run"]["host"]["hosts"]) == {"local", sshd.url}


def test_a_host_whose_kvm_cannot_boot_linux_or_without_qemu_is_named(
        sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    # This machine's /dev/kvm cannot boot Linux (LAB-NOTES): QEMU either stops with
    # KVM's error or the guest crawls until its boot time-out (kvm_pvm versions differ);
    # over SSH the failure names the host and what happened, and the run goes on.
    home = tmp_path / "home"
    campaign = tmp_path / "kvm.toml"
    campaign.write_text(
        f'host = "{sshd.url}"\nreps = 1\nwarmup = false\nplatforms = ["native", '
        '{ name = "qemu-kvm", kind = "qemu-kvm", settings = { boot_timeout = 45 } }]\n'
        'workloads = [{ name = "sysbench-cpu", params = { events = 200 } }]\n')
    done = hv(home, "run", str(campaign), "--identity", str(sshd.client_key),
              "--accept-new-host-key", "--quiet")
    exported = json.loads(hv(home, "export", "latest", "--json").stdout)
    reasons = {t["platform"]: t["reason"] for t in exported["trials"]}
    if reasons["qemu-kvm"] is None:
        pytest.skip("KVM boots Linux on this machine")
    assert done.returncode == 1
    assert sshd.url in reasons["qemu-kvm"], reasons
    assert "QEMU" in reasons["qemu-kvm"] or "did not become ready within 45 s" in \
        reasons["qemu-kvm"], reasons
    assert reasons["native"] is None
    # A host without QEMU: one line naming the host and the package.
    from hvbench.errors import UsageError
    from hvbench.hosts.sshmachine import SshMachine
    from hvbench.platforms.qemu import QemuTcgPlatform

    real_which = SshMachine.which
    monkeypatch.setattr(SshMachine, "which", lambda self, binary: None
                        if binary == "qemu-system-x86_64" else real_which(self, binary))
    monkeypatch.setenv("HVBENCH_HOME", str(home))
    platform = QemuTcgPlatform(name="q", context=PlatformContext(
        host=HostSpec.parse(sshd.url), ssh_identity=str(sshd.client_key),
        payload=payload(["sysbench-cpu"])))
    with pytest.raises(UsageError, match=f"not installed on {sshd.url}.*qemu-system-x86"), \
            platform.open():
        pass


def test_a_hosts_process_group_is_killed_alone() -> None:
    """The argv that kills a command's process group on a host, exec'd (as ``setsid``
    or ``env`` would run it, never as a shell builtin), kills that group and nothing
    else (procps-ng 4.0's ``/bin/kill -9 -PGID`` kills every process it may signal).
    Run in a PID namespace of its own, so a regression cannot take anything else down."""
    from hvbench.hosts.ssh import kill_group

    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs unshare and root")
    # pids from 10001 on: that /bin/kill reads -10002 as -1
    script = ('echo 10000 > /proc/sys/kernel/ns_last_pid; '
              'sleep 300 & bystander=$!; setsid sleep 301 & victim=$!; sleep 0.2; '
              'env "$@" "$victim"; wait "$victim"; echo "victim $?"; '
              '{ read -r s < "/proc/$bystander/stat"; } 2>/dev/null && case "$s" in '
              '*") Z "*) ;; *) echo bystander-alive;; esac; kill "$bystander"')  # not a zombie
    done = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", script,
                           "sh", *kill_group(0)[:-1]], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.stdout.split("\n")[:2] == ["victim 137", "bystander-alive"], done
