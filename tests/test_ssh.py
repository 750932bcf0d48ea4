"""A real OpenSSH server on loopback (own host keys, own port, no system service touched):
native runs on an SSH host end to end, and the faults a remote host can have."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hvbench.errors import TrialError
from hvbench.hosts.ssh import SshConnection, SshTarget

from .conftest import HVBENCH, cli_env
from .sshd import Sshd, descendants, free_port, sshd_processes, start_sshd

pytestmark = pytest.mark.slow


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    if os.geteuid() != 0:
        pytest.skip("the test sshd logs in as root")
    server = start_sshd(tmp_path / "sshd")
    try:
        yield server
    finally:
        server.stop()


def hv(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HVBENCH, *args], capture_output=True, text=True, env=cli_env(home),
                          timeout=timeout, check=False)


def test_native_on_an_ssh_host_end_to_end(sshd: Sshd, tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = hv(home, "run", "--host", sshd.url, "--identity", str(sshd.client_key),
              "--accept-new-host-key", "--platform", "native",
              "--workload", "sysbench-cpu,iperf3-tcp,fio-randread",
              "--reps", "2", "--quiet", "--param", "sysbench-cpu.events=300",
              "--param", "iperf3-tcp.seconds=1", "--param", "fio-randread.runtime=1",
              "--param", "fio-randread.size=16M")
    assert done.returncode == 0, done.stderr
    exported = json.loads(hv(home, "export", "latest", "--json").stdout)
    assert {s["workload"] for s in exported["samples"]} == {"sysbench-cpu", "iperf3-tcp",
                                                           "fio-randread"}
    assert exported["run"]["host"]["host"] == sshd.url
    assert exported["run"]["host"]["fingerprint"]
    machine = exported["platforms"]["native"]["machine"]
    assert machine["host"] == sshd.url
    # the host's kernel, read around the workload's own command (no trip of its own)
    kernel = [t["metadata"]["accounting"]["kernel"] for t in exported["trials"]
              if t["workload"] == "sysbench-cpu" and not t["warmup"]]
    assert len(kernel) == 2 and all(k["seconds"] > 0.05 and k["user_share"] > 0
                                    for k in kernel), kernel
    assert not any("@@HVB" in (t.get("reason") or "") for t in exported["trials"])
    # Nothing is left in the remote scratch area.
    scratch = Path("/root/.local/share/hvbench/scratch")
    assert not any(p.name == Path(machine["scratch_dir"]).name for p in scratch.iterdir())
    known = (home / "known_hosts").read_text()
    assert f"[127.0.0.1]:{sshd.port} ssh-ed25519 " in known


def test_unknown_host_key_is_refused_without_trust_on_first_use(sshd: Sshd,
                                                                tmp_path: Path) -> None:
    done = hv(tmp_path / "home", "run", "--host", sshd.url, "--identity",
              str(sshd.client_key), "--workload", "sysbench-cpu", "--quiet")
    assert done.returncode == 2
    assert "unknown host key" in done.stderr and "--accept-new-host-key" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_changed_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = hv(home, "run", "--host", sshd.url, "--identity", str(sshd.client_key),
               "--accept-new-host-key", "--platform", "native", "--workload", "sysbench-cpu",
               "--reps", "1",
               "--no-warmup", "--quiet", "--param", "sysbench-cpu.events=100")
    assert first.returncode == 0, first.stderr
    sshd.stop()
    impostor = start_sshd(sshd.directory, host_key_name="other_host_key")
    try:
        url = f"ssh://root@127.0.0.1:{sshd.port}"
        known = home / "known_hosts"
        # The impostor listens on another port: move the trusted entry to it.
        known.write_text(known.read_text().replace(f"]:{sshd.port} ", f"]:{impostor.port} "))
        done = hv(home, "run", "--host", url.replace(str(sshd.port), str(impostor.port)),
                  "--identity", str(sshd.client_key), "--accept-new-host-key",
                  "--workload", "sysbench-cpu", "--quiet")
        assert done.returncode != 0
        assert "CHANGED" in done.stderr
    finally:
        impostor.stop()


def test_refused_key_and_unreachable_host(sshd: Sshd, tmp_path: Path) -> None:
    home = tmp_path / "home"
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
                   check=True)
    refused = hv(home, "run", "--host", sshd.url, "--identity", str(stranger),
                 "--accept-new-host-key", "--workload", "sysbench-cpu", "--quiet")
    assert refused.returncode == 2
    assert "refused our key" in refused.stderr
    closed = free_port()
    unreachable = hv(home, "run", "--host", f"ssh://root@127.0.0.1:{closed}", "--identity",
                     str(sshd.client_key), "--accept-new-host-key", "--workload",
                     "sysbench-cpu", "--quiet")
    assert unreachable.returncode == 1
    assert f"cannot reach ssh://root@127.0.0.1:{closed}" in unreachable.stderr
    bad = hv(home, "run", "--host", "ssh://root:secret@127.0.0.1", "--workload",
             "sysbench-cpu")
    assert bad.returncode == 2 and "no password" in bad.stderr


def test_a_host_that_accepts_but_never_speaks_ssh(sshd: Sshd, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A wedged host (or lab: QEMU's user network accepts for a guest that is gone):
    the connection times out with a reason, not an empty message, and a lab on such a
    port does not count as up; a real sshd does."""
    from hvbench.hosts import lab, ssh

    with socket.socket() as silent:  # listens, never accepts: the kernel completes connects
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        monkeypatch.setattr(ssh, "CONNECT_TIMEOUT", 1.0)
        connection = SshConnection(SshTarget("root", "127.0.0.1", port), sshd.client_key,
                                   known_hosts=tmp_path / "known_hosts")
        try:
            with pytest.raises(TrialError, match=r"no SSH handshake within 1 s"):
                connection.connect()
        finally:
            connection.close()
        assert not lab._answers_ssh(port, seconds=1.0)
    assert lab._answers_ssh(sshd.port, seconds=10.0)


def test_killed_sshd_fails_the_trial_and_reconnects(sshd: Sshd, tmp_path: Path) -> None:
    """sshd is killed mid-workload and comes back: one trial fails, the run goes on."""
    from hvbench.campaign import from_mapping
    from hvbench.progress import QuietReporter
    from hvbench.runner import Runner
    from hvbench.store import Store

    os.environ["HVBENCH_HOME"] = str(tmp_path / "home")
    os.environ["HVBENCH_TEST_HOME"] = str(tmp_path / "home")
    try:
        campaign = from_mapping({
            "host": sshd.url, "ssh_identity": str(sshd.client_key),
            "accept_new_host_key": True, "platforms": ["native"], "reps": 3,
            "warmup": False, "workloads": [{"name": "stress-ng-cpu",
                                            "params": {"seconds": 3}}]})
        store = Store(tmp_path / "home" / "r.sqlite")
        state = {"restarted": None}

        def saboteur() -> None:
            # Wait until the second trial is running, kill every sshd process (the
            # listener and the session), then start a fresh one on the same port.
            import sqlite3
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                time.sleep(0.2)
                try:
                    with sqlite3.connect(tmp_path / "home" / "r.sqlite") as connection:
                        count = connection.execute("SELECT count(*) FROM trials").fetchone()[0]
                except sqlite3.Error:
                    continue
                if count >= 1:
                    time.sleep(1.0)
                    for pid in sshd_processes(sshd):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)  # the listener and the session
                    sshd.process.wait(10)
                    sshd.process = subprocess.Popen(
                        ["/usr/sbin/sshd", "-D", "-e", "-f",
                         str(sshd.directory / "sshd_config")],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    state["restarted"] = True
                    return

        import threading
        started = time.time() - 1
        thread = threading.Thread(target=saboteur, daemon=True)
        thread.start()
        outcome = Runner(store, QuietReporter()).start(campaign)
        thread.join(10)
        statuses = [t["status"] for t in store.trials(outcome.run_id)]
        assert state["restarted"]
        reasons = [t["reason"] for t in store.trials(outcome.run_id)]
        assert statuses[0] == "ok" and statuses[-1] == "ok", reasons
        assert "failed" in statuses or "timeout" in statuses
        time.sleep(0.5)
        # No remote process of the broken session survives, and no scratch dir is left.
        scratch_root = Path("/root/.local/share/hvbench/scratch")
        survivors = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if (entry / "comm").read_text().strip() == "stress-ng" and \
                            str(scratch_root) in os.readlink(entry / "cwd"):
                        survivors.append(entry.name)
        assert survivors == []
        assert [p for p in scratch_root.iterdir() if p.stat().st_mtime > started] == []
    finally:
        os.environ.pop("HVBENCH_HOME", None)
        os.environ.pop("HVBENCH_TEST_HOME", None)


def test_many_files_read_in_one_round_trip_whatever_they_hold(
        sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hvbench.hosts import HostSpec, connect

    monkeypatch.setenv("HVBENCH_HOME", str(tmp_path / "home"))
    files = {"text": "line one\nline two\n", "empty": "", "odd": "tab\there\r\n+-\x00end",
             "unicode": "温度 ±2%\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    host = connect(HostSpec.parse(sshd.url), str(sshd.client_key), accept_new_host_key=True)
    try:
        machine = host.native()
        paths = [str(tmp_path / name) for name in files] + [str(tmp_path / "missing")]
        read = machine.read_files(paths)
        assert read == {**{str(tmp_path / n): t for n, t in files.items()},
                        str(tmp_path / "missing"): None}
        assert read == {p: machine.read_file(p) for p in paths}  # as one by one says
        # programs are looked up in one command too: absolute paths, or None
        found = machine.which_all(["sh", "hvbench-no-such-program", "cat"])
        assert found["sh"] == shutil.which("sh") and found["cat"] == shutil.which("cat")
        assert found["hvbench-no-such-program"] is None
        assert machine.which("cat") == found["cat"]
        # and short commands run in one command, each with its own output and status
        replies = machine.run_each([["sh", "-c", "echo a; echo b >&2; exit 3"],
                                    ["echo", "$(id)", "'x y'"]], timeout=30)
        assert [(r.output, r.exit_code) for r in replies] == [("a\nb\n", 3),
                                                              ("$(id) 'x y'\n", 0)]
    finally:
        host.close()


def test_a_host_aggressor_on_an_ssh_host_runs_beside_each_trial_and_its_end_is_noticed(
        sshd: Sshd, tmp_path: Path) -> None:
    """stress-ng on the SSH host beside a native victim there: started before each
    trial of the condition and recorded with it; killed by hand during one trial, that
    trial fails naming the aggressor and the others are kept; nothing is left on the
    host."""
    home = tmp_path / "home"
    campaign = tmp_path / "remote.toml"
    campaign.write_text(
        f'host = "{sshd.url}"\nssh_identity = "{sshd.client_key}"\n'
        'accept_new_host_key = true\nplatforms = ["native"]\nreps = 3\nwarmup = false\n'
        '[interference]\nsettle = 1.0\n'
        'victim = { name = "sysbench-cpu", params = { events = 300 } }\n'
        'neighbours = [{ workload = "stress-ng-cpu", where = "host", '
        'params = { instances = 1 } }]\n')

    def aggressors() -> set[int]:
        found = set()
        for pid in descendants(sshd.process.pid):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().startswith("stress-ng"):
                    found.add(pid)
        return found

    def saboteur() -> None:
        # the second time an aggressor appears, kill it while it settles before the trial
        seen, deadline = 0, time.monotonic() + 240
        while time.monotonic() < deadline:
            running = aggressors()
            if running:
                seen += 1
                if seen == 2:
                    for pid in running:
                        with contextlib.suppress(OSError):
                            os.kill(pid, signal.SIGKILL)
                    return
                while aggressors() and time.monotonic() < deadline:
                    time.sleep(0.05)
            time.sleep(0.05)

    watcher = threading.Thread(target=saboteur, daemon=True)
    watcher.start()
    done = hv(home, "run", str(campaign), "--quiet")
    watcher.join(5)
    assert done.returncode == 1, done.stderr[-2000:]  # a trial failed, the run went on
    assert "1 of 6 trials failed" in done.stderr
    exported = json.loads(hv(home, "export", "latest", "--json").stdout)
    condition = [t for t in exported["trials"]
                 if t["platform"] == "native.with-host-stress-ng-cpu"]
    assert [t["status"] for t in condition] == ["ok", "failed", "ok"], condition
    assert "the aggressor host-stress-ng-cpu on" in condition[1]["reason"], condition[1]
    assert condition[1]["reason"].endswith("ended before the trial did: Killed")
    beside = [t["metadata"]["beside"] for t in condition if t["status"] == "ok"]
    assert all(b["targets"] == [sshd.url] and b["seconds"] > 0
               and b["argv"][:2] == ["stress-ng", "--cpu"] for b in beside), beside
    assert all(t["status"] == "ok" for t in exported["trials"] if t["platform"] == "native")
    time.sleep(0.5)
    assert aggressors() == set()


def test_hosts_sharing_a_home_upload_and_unpack_one_bundle_at_once(
        sshd: Sshd, tmp_path: Path) -> None:
    """Several hosts with one home (here: one machine, as a loopback fleet is) upload
    the same image to the same path and unpack the same bundle at the same time: each
    upload lands whole under its own name, and each unpacker ends with the complete
    bundle, nothing half done or left beside it."""
    import io

    from hvbench.appliance.cpio import CpioWriter
    from hvbench.hosts.bundle import _UNPACK

    buffer = io.BytesIO()
    writer = CpioWriter(buffer)
    writer.directory("usr")
    writer.directory("usr/bin")
    payload = os.urandom(8 << 20)  # big enough for the writers to overlap
    writer.file("usr/bin/tool", payload, 0o755)
    writer.close()
    source = tmp_path / "bundle.cpio"
    source.write_bytes(buffer.getvalue())
    target = tmp_path / "placed" / "bundle.cpio"
    target.parent.mkdir()
    connections = [SshConnection(SshTarget("root", "127.0.0.1", sshd.port),
                                 sshd.client_key, accept_new_host_key=True,
                                 known_hosts=tmp_path / f"known_hosts{i}")
                   for i in range(3)]
    try:
        for connection in connections:
            connection.connect()
        errors: list[BaseException] = []

        def upload(connection: SshConnection) -> None:
            try:
                connection.upload(source, str(target))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=upload, args=(c,)) for c in connections]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert errors == [] and target.read_bytes() == source.read_bytes()
    finally:
        for connection in connections:
            connection.close()
    root = tmp_path / "placed" / "root"
    unpackers = [subprocess.Popen(["sh", "-c", _UNPACK, "sh", str(root), str(target)])
                 for _ in range(4)]
    assert [p.wait(120) for p in unpackers] == [0, 0, 0, 0]
    assert (root / "usr/bin/tool").read_bytes() == payload and (root / ".done").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["bundle.cpio", "root"]
    assert sorted(p.name for p in root.iterdir()) == [".done", "usr"]
