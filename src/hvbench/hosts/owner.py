"""Who made what hvbench leaves on a host while it runs (a libvirt domain, a guest's
directory): this hvbench process, named by machine, pid and start time, so a later
hvbench can tell the leftovers of a dead one (SIGKILL runs no clean-up) from those
of a live one. Only an owner on this machine is ever judged: another machine's
hvbench may still be running.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

#: the file in each directory hvbench makes on an SSH host that names its owner
STAMP = ".hvbench-owner"


def _process_started(pid: int) -> str | None:
    """When process ``pid`` of this machine started (clock ticks since boot), or None
    when there is no such process: a pid and its start time name one process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _boot() -> str:
    """This boot of this machine (machines may share a host name; pids restart)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "?"


def owner() -> dict[str, str]:
    """This hvbench process."""
    return {"host": socket.gethostname(), "boot": _boot(), "pid": str(os.getpid()),
            "started": _process_started(os.getpid()) or "?"}


def stale(recorded: dict[str, str]) -> bool:
    """Whether the hvbench that made something is dead (it ran on this machine, in this
    boot, and its process is gone); another machine's is never judged."""
    if recorded.get("host") != socket.gethostname() or not recorded.get("pid", "").isdigit():
        return False
    if recorded.get("boot", _boot()) != _boot():
        return False
    return _process_started(int(recorded["pid"])) != recorded.get("started")


def stamp() -> str:
    """This process as one line of a directory's owner file."""
    return " ".join(f"{key}={value}" for key, value in owner().items())


def parse_stamp(text: str) -> dict[str, str]:
    """An owner file's line back as a mapping ({} when it is not one)."""
    fields = dict(part.partition("=")[::2] for part in text.split())
    return fields if {"host", "boot", "pid", "started"} <= fields.keys() else {}
