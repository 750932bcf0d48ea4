"""What a dead hvbench leaves: a run whose lock died with it, an orphaned guest QEMU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from hvbench import leftovers
from hvbench.errors import UsageError

from .conftest import HVBENCH, cli_env

HOLD = """
import sys, time
from hvbench import leftovers
with leftovers.executing(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_run_lock_dies_with_its_holder(hvbench_home: Path) -> None:
    """A live executor is named and keeps a second one out; SIGKILLed, it leaves a run
    shown as interrupted and free to resume."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, "run-a"], stdout=subprocess.PIPE,
                              text=True, env=cli_env(hvbench_home))
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert leftovers.executor("run-a") == holder.pid
        assert leftovers.shown_status("run-a", "running") == "running"
        with pytest.raises(UsageError, match=f"another hvbench \\(pid {holder.pid}\\)"), \
                leftovers.executing("run-a"):
            pass
    finally:
        holder.kill()
        holder.wait(10)
    assert leftovers.executor("run-a") is None
    assert leftovers.shown_status("run-a", "running") == "interrupted"
    assert leftovers.shown_status("run-a", "complete") == "complete"
    with leftovers.executing("run-a"):
        assert leftovers.executor("run-a") == os.getpid()
    assert leftovers.executor("run-a") is None


def _orphan_qemu(name: str) -> int:
    """A real QEMU named like an hvbench guest whose parent has exited (adopted by
    init), as a guest of a dead hvbench would be; its pid."""
    code = ("import os, subprocess, sys\n"
            "p = subprocess.Popen(sys.argv[1:], start_new_session=True,\n"
            "    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
            "print(p.pid)\n")
    done = subprocess.run([sys.executable, "-c", code, "qemu-system-x86_64", "-name",
                           f"{name},debug-threads=on", "-machine", "none", "-nodefaults",
                           "-display", "none", "-S"],
                          capture_output=True, text=True, check=True, timeout=30)
    return int(done.stdout)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_doctor_names_an_orphaned_guest_and_clean_stops_it(tmp_path: Path) -> None:
    name = f"hvbench-orphan-{uuid.uuid4().hex[:8]}"
    pid = _orphan_qemu(name)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
                f"guest {name} " in leftover.what for leftover in leftovers.find()):
            time.sleep(0.1)
        env = cli_env(tmp_path)
        listed = subprocess.run([*HVBENCH, "doctor"], capture_output=True, text=True,
                                env=env, timeout=300, check=True)
        line = next(x for x in listed.stdout.splitlines() if name in x)
        assert line.startswith("left over: guest") and f"kill {pid}" in line
        assert _alive(pid)
        subprocess.run([*HVBENCH, "doctor", "--clean"], capture_output=True, text=True,
                       env=env, timeout=300, check=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        assert not _alive(pid)
    finally:
        if _alive(pid):
            os.kill(pid, 9)


@pytest.mark.slow
def test_a_run_warns_of_a_leftover_guest(tmp_path: Path) -> None:
    name = f"hvbench-orphan-{uuid.uuid4().hex[:8]}"
    pid = _orphan_qemu(name)
    try:
        done = subprocess.run(
            [*HVBENCH, "run", "--platform", "native", "--workload", "sysbench-cpu",
             "--reps", "2", "--no-warmup", "--param", "sysbench-cpu.events=200", "--quiet"],
            capture_output=True, text=True, env=cli_env(tmp_path), timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        warning = next(x for x in done.stderr.splitlines() if name in x)
        assert "will disturb this run" in warning and "hvbench doctor --clean" in warning
        listing = subprocess.run([*HVBENCH, "results", "--json"], capture_output=True,
                                 text=True, env=cli_env(tmp_path), timeout=60, check=True)
        assert [run["status"] for run in json.loads(listing.stdout)] == ["complete"]
    finally:
        os.kill(pid, 9)
