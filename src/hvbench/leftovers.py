"""What a dead hvbench may have left, and the lock that tells a dead run from a live one.

A run holds an advisory lock (``flock``) on a file named after it for as long as it
executes. The kernel drops the lock when the process dies, however it dies (SIGKILL
included), so a run stored as 'running' whose lock is free was cut off: it is shown
as interrupted and may be resumed; one whose lock is held is refused a second
executor. Guests and labs are found from /proc and the labs' state files:
``hvbench doctor`` and the start of every run name them with the command that stops
them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError
from .hosts import lab
from .paths import home


def _lock_path(run_id: str) -> Path:
    return home() / "runs" / f"{run_id}.lock"


@contextlib.contextmanager
def executing(run_id: str) -> Iterator[None]:
    """Hold ``run_id``'s lock while the run executes; UsageError when another live
    hvbench holds it."""
    path = _lock_path(run_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+")
    except OSError as exc:  # a read-only or full HVBENCH_HOME
        raise UsageError(f"cannot write the run's lock {path} ({exc.strerror}): make "
                         f"{path.parent} writable, or point HVBENCH_HOME elsewhere") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise UsageError(f"run {run_id} is being executed by another hvbench (pid "
                             f"{handle.read().strip() or '?'}); wait for it, or stop it "
                             "first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # still under the lock: no one else wrote it


def executor(run_id: str) -> int | None:
    """The pid of the live hvbench executing ``run_id``, else None."""
    path = _lock_path(run_id)
    try:
        handle = path.open("r")
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = handle.read().strip()
            return int(text) if text.isdigit() else -1
        return None


def shown_status(run_id: str, stored: str) -> str:
    """The status to show: 'running' only while a live hvbench executes the run."""
    if stored == "running" and executor(run_id) is None:
        return "interrupted"
    return stored


@dataclass(frozen=True)
class Leftover:
    what: str  # a few words: what it is and since when
    pid: int
    stop: str  # how to stop it, in words for the user
    lab: str | None = None  # a running lab (started by 'hvbench lab': meant to outlive it)

    @property
    def intended(self) -> bool:
        return self.lab is not None


def _argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def find() -> list[Leftover]:
    """Running labs, and QEMU guests named hvbench-* whose hvbench is gone: orphans,
    adopted by init (hvbench ties each guest to itself with a parent-death signal, so
    only a guest of an older hvbench, or one started by hand, can be one)."""
    found: list[Leftover] = []
    lab_pids = set()
    for kind in ("kvm", "xen"):
        state = lab.load_state(kind)
        if state is not None and state.running():
            lab_pids.add(state.pid)
            minutes = (time.time() - state.started) / 60
            found.append(Leftover(f"the {kind} lab (QEMU pid {state.pid}, up {minutes:.0f} "
                                  "min)", state.pid, f"hvbench lab stop {kind}", kind))
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in lab_pids:
            continue
        argv = _argv(int(entry.name))
        if not argv or not Path(argv[0]).name.startswith("qemu-system-"):
            continue
        names = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "-name"]
        if not names or not names[0].startswith("hvbench-"):
            continue
        if _parent(int(entry.name)) != 1:
            continue  # its parent lives (hvbench ties a guest to it): not left over
        guest = names[0].split(",")[0]
        found.append(Leftover(f"guest {guest} (QEMU pid {entry.name}) from a dead hvbench",
                              int(entry.name), f"kill {entry.name}"))
    return found


def stop(leftover: Leftover) -> None:
    """Stop one leftover: a lab through its own stop, a guest's QEMU with SIGKILL."""
    if leftover.lab is not None:
        lab.stop(leftover.lab)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(leftover.pid, signal.SIGKILL)
