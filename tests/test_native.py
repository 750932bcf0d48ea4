"""The native Machine: real subprocesses, time limits, process-group kills."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from hvbench.errors import TrialError, TrialTimeout
from hvbench.localproc import run_local
from hvbench.machine import Machine
from hvbench.platforms.native import NativePlatform


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(
        f"/proc/{pid}/stat").exists() else "X"
    return status != "Z"


def test_run_returns_output_exit_code_and_time() -> None:
    done = run_local(["sh", "-c", "echo out; echo err >&2; sleep 0.2; exit 3"], timeout=10)
    assert done.stdout == "out\n"
    assert done.stderr == "err\n"
    assert done.exit_code == 3
    assert 0.2 <= done.seconds < 5


def test_argv_is_not_interpreted_by_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    done = run_local(["echo", f"; touch {marker}"], timeout=10)
    assert done.stdout.strip() == f"; touch {marker}"
    assert not marker.exists()


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    started = time.monotonic()
    with pytest.raises(TrialTimeout, match="time limit"):
        run_local(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], timeout=1)
    assert time.monotonic() - started < 10
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the grandchild survived the timeout"


def test_missing_binary_is_a_trial_error() -> None:
    with pytest.raises(TrialError, match="command not found"):
        run_local(["/nonexistent/tool"], timeout=5)


def test_machine_cleans_scratch_and_background(tmp_path: Path) -> None:
    platform = NativePlatform("native", {"scratch": str(tmp_path)})
    with platform.open() as machine:
        scratch = Path(machine.scratch_dir())
        machine.write_file(f"{scratch}/x", b"data")
        assert machine.read_file(f"{scratch}/x") == "data"
        server = machine.spawn(["sh", "-c", "echo ready; exec sleep 60"])
        server.wait_for_output("ready", timeout=10)
        pid = server._process.pid  # type: ignore[attr-defined]
        assert scratch.is_dir()
    assert not scratch.exists()
    assert not _alive(pid)


def test_background_that_dies_early_is_reported() -> None:
    with NativePlatform("native").open() as machine:
        background = machine.spawn(["sh", "-c", "echo nope; exit 4"])
        with pytest.raises(TrialError, match="exited with code 4 before it was ready"):
            background.wait_for_output("ready", timeout=10)


def test_free_port_is_bindable() -> None:
    import socket

    with NativePlatform("native").open() as machine:
        port = machine.free_port()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_cpus_binds_every_command_and_refuses_cpus_the_host_lacks(
        hvbench_home: Path) -> None:
    """``cpus = [0]``: the commands run bound to CPU 0 (as the kernel reports their
    affinity), the argv recorded is the workload's own; a CPU that does not exist, or
    a setting of the wrong shape, is a one-line usage error."""
    from hvbench.errors import UsageError
    from hvbench.platforms import make_platform

    script = "import os; print(sorted(os.sched_getaffinity(0)))"
    with NativePlatform("native", {"cpus": [0]}).open() as machine:
        done = machine.run(["python3", "-c", script], timeout=30)
        assert done.stdout.strip() == "[0]" and done.argv[0] == "python3"
        background = machine.spawn(["python3", "-c", script + "; import time; "
                                    "time.sleep(30)"])
        background.wait_for_output("[0]", 20)
        background.stop()
    with NativePlatform("native").open() as machine:
        assert machine.run(["python3", "-c", script], timeout=30).stdout.strip() == \
            str(sorted(os.sched_getaffinity(0)))
    with pytest.raises(UsageError, match="cannot bind commands to CPUs 4095"), \
            NativePlatform("native", {"cpus": [4095]}).open():
        pass
    with pytest.raises(UsageError, match="cpus must be a list"):
        make_platform("native", "native", {"cpus": "0-1"})


def test_fio_rate_iops_caps_the_measured_rate(hvbench_home: Path) -> None:
    from hvbench.execution import measure
    from hvbench.trial import Trial

    trial = Trial(0, "native", "fio-randread", 0, 0, False,
                  {"runtime": 1, "rate_iops": 40, "size": "4M"})
    from hvbench.machine import Completed, WrappedMachine

    class Counting(WrappedMachine):
        """The native machine, keeping the commands it was given."""

        def __init__(self, inner: Machine):
            super().__init__(inner)
            self.commands: list[list[str]] = []

        def run(self, argv: Sequence[str], timeout: float, stdin: bytes | None = None
                ) -> Completed:
            self.commands.append(list(argv))
            return super().run(argv, timeout, stdin)

    with NativePlatform("native").open() as native:
        machine = Counting(native)
        result = measure(machine, trial, timeout=60)
        again = measure(machine, trial, timeout=60)
    assert result.status == again.status == "ok", result.reason or again.reason
    iops = next(s.value for s in result.samples if s.metric == "iops")
    assert 30 <= iops <= 44, iops
    # whether O_DIRECT works there is asked of fio once per machine, not per trial
    probes = [c for c in machine.commands if c[0] == "fio" and "--name=probe" in c]
    assert len(probes) == 1, machine.commands
    assert all(s.metadata["direct_io"] is True for s in again.samples)
