"""Shared fixtures: an isolated HVBENCH_HOME and the captured real tool outputs."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from hvbench.machine import Completed

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent
HVBENCH = [sys.executable, "-m", "hvbench.cli"]
#: the quick suite's workloads that no lab assertion times, made short: in a nested
#: lab each second of workload is paid on every platform
SHORT_QUICK_EXTRAS = ["--param", "sysbench-memory.total_size=256M",
                      "--param", "stress-ng-syscall.seconds=1",
                      "--param", "stress-ng-pagefault.seconds=1",
                      "--param", "sockperf-pingpong.seconds=1"]
SHORT_QUICK = [*SHORT_QUICK_EXTRAS, "--param", "sysbench-cpu.events=400",
               "--param", "fio-randread.runtime=1", "--param", "fio-randread.size=16M"]


def load_capture(name: str) -> tuple[Completed, dict[str, Any]]:
    """A real output captured on a Debian machine by tests/capture_outputs.py."""
    record = json.loads((DATA / f"{name}.json").read_text())
    output = Completed(tuple(record["argv"]), record["stdout"], record["stderr"],
                       record["exit_code"], record["seconds"])
    return output, record["params"]


@pytest.fixture
def hvbench_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "hvbench-home"
    monkeypatch.setenv("HVBENCH_HOME", str(home))
    monkeypatch.setenv("HVBENCH_TEST_HOME", str(home))  # tags the processes we start
    return home


def with_ctrl_c() -> None:
    """preexec_fn for a CLI a test interrupts as Ctrl-C would: SIGINT acted on, as in a
    terminal, even when the tests themselves were started in the background (where
    the shell has made SIGINT ignored, and a child inherits that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli_env(home: Path) -> dict[str, str]:
    """Environment for a CLI run; HVBENCH_TEST_HOME tags every process it starts."""
    return {**os.environ, "HVBENCH_HOME": str(home), "COLUMNS": "200",
            "HVBENCH_TEST_HOME": str(home)}


def tagged_processes(name: str, home: Path | None = None) -> list[int]:
    """Live processes called ``name`` (started under ``home``'s tag when given), so
    tests running side by side never see each other's processes."""
    found = []
    tag = f"HVBENCH_TEST_HOME={home}".encode() if home else None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != name:
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            if tag is not None and tag not in (entry / "environ").read_bytes().split(b"\0"):
                continue
        except OSError:
            continue
        found.append(int(entry.name))
    return found


def stored_trials(database: Path, at_least: int, seconds: float, status: str | None = None
                  ) -> int:
    """Wait until the store of a run in progress holds ``at_least`` measured trials (of
    this status, if given); how many it holds then."""
    import contextlib
    import sqlite3
    import time

    deadline = time.monotonic() + seconds
    found = 0
    while time.monotonic() < deadline and found < at_least:
        time.sleep(0.3)
        if database.exists():
            with contextlib.closing(sqlite3.connect(database)) as connection:
                try:
                    found = connection.execute(
                        "SELECT count(*) FROM trials WHERE warmup = 0 AND "
                        "(? IS NULL OR status = ?)", (status, status)).fetchone()[0]
                except sqlite3.OperationalError:  # the schema is not there yet
                    found = 0
    return int(found)
