"""Processes on this machine: commands with time limits, background servers, and the
host itself as a Machine.

Every command gets its own session (process group), so a timeout, Ctrl-C or
SIGTERM kills the whole tree and nothing is left behind.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import TrialError, TrialTimeout, UsageError
from .machine import Background, Completed, Machine

_SETPRIV = shutil.which("setpriv")  # util-linux, essential on Debian

#: the warden: a helper that holds the read end of a lifeline pipe from hvbench and,
#: when that pipe closes (which the kernel does however hvbench ends, SIGKILL and the
#: OOM killer included), SIGKILLs every process group and then removes every directory
#: still registered. Lines: +GROUP / -GROUP, dPATH / rPATH.
_WARDEN = """
import os, shutil, signal, sys
groups, paths = set(), set()
for line in sys.stdin:
    kind, value = line[0], line[1:].rstrip("\\n")
    if kind in "+-":
        (groups.add if kind == "+" else groups.discard)(int(value))
    else:
        (paths.add if kind == "d" else paths.discard)(value)
for group in groups:
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass
for path in sorted(paths, reverse=True):
    shutil.rmtree(path, ignore_errors=True)
"""


class Warden:
    """Process groups and directories this hvbench made on this machine, ended and
    removed by the warden when hvbench dies without cleaning up; each is released once
    hvbench has stopped or removed it itself."""

    _lock = threading.Lock()
    _pipe: Any = None
    _pid = 0

    @classmethod
    def _send(cls, line: str) -> None:
        with cls._lock:
            if cls._pipe is None or cls._pid != os.getpid():  # first use, or a fork
                warden = subprocess.Popen(  # not tied: it must outlive hvbench
                    [sys.executable, "-c", _WARDEN], stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True)
                cls._pipe, cls._pid = warden.stdin, os.getpid()
            with contextlib.suppress(OSError, ValueError):
                cls._pipe.write(line.encode())
                cls._pipe.flush()

    @classmethod
    def watch(cls, group: int) -> None:
        cls._send(f"+{group}\n")

    @classmethod
    def release(cls, group: int) -> None:
        cls._send(f"-{group}\n")

    @classmethod
    def make_dir(cls, prefix: str, parent: Path | None = None) -> Path:
        """A new private directory (under ``parent``, else the temp dir) that the warden
        removes if hvbench dies without removing it with ``remove_dir``."""
        try:
            if parent is not None:
                parent.mkdir(parents=True, exist_ok=True)
            path = tempfile.mkdtemp(prefix=prefix, dir=parent)
        except OSError as exc:  # a full or read-only disk: the user must act
            where = parent or Path(tempfile.gettempdir())
            raise UsageError(f"cannot make a directory in {where} ({exc.strerror}): free "
                             "space there or make it writable (or point HVBENCH_HOME "
                             "elsewhere)") from None
        cls._send(f"d{path}\n")
        return Path(path)

    @classmethod
    def remove_dir(cls, path: Path | str) -> None:
        shutil.rmtree(path, ignore_errors=True)
        cls._send(f"r{path}\n")


def tied(argv: Sequence[str]) -> list[str]:
    """argv started so that its leader dies with the thread that started it (the
    kernel's parent-death signal, set by ``setpriv`` before it becomes argv; every
    caller waits for, or stops, its process in that thread). Its process group is
    also registered with the Warden by the caller. A missing program is a
    FileNotFoundError here, as Popen would raise it."""
    args = [str(a) for a in argv]
    program = args[0] if "/" in args[0] else shutil.which(args[0])
    if program is None or not os.path.exists(program):
        raise FileNotFoundError(args[0])
    if not os.access(program, os.X_OK):
        raise PermissionError(args[0])
    return [_SETPRIV, "--pdeathsig", "KILL", "--", *args] if _SETPRIV else args


def local_which(binary: str) -> str | None:
    """Path of ``binary`` on this machine; sbin directories are searched too (Debian
    installs john in /usr/sbin)."""
    path = os.environ.get("PATH", os.defpath) + ":/usr/sbin:/sbin"
    return shutil.which(binary, path=path)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group of ``process`` and reap the leader."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        process.wait(timeout=10)


def _spawn(args: list[str], stdin: int, stderr: int, cwd: str | None
           ) -> subprocess.Popen[bytes]:
    """Start args in a session of its own, tied to hvbench and watched by the warden;
    a missing or forbidden program is a TrialError."""
    try:
        process = subprocess.Popen(tied(args), stdin=stdin, stdout=subprocess.PIPE,
                                   stderr=stderr, start_new_session=True, cwd=cwd)
    except FileNotFoundError as exc:
        raise TrialError(f"{args[0]}: command not found") from exc
    except PermissionError as exc:
        raise TrialError(f"{args[0]}: permission denied") from exc
    Warden.watch(process.pid)
    return process


def run_local(argv: Sequence[str], timeout: float, stdin: bytes | None = None,
              cwd: str | None = None) -> Completed:
    """Run argv as a new process group; kill the group on timeout or interrupt."""
    args = [str(a) for a in argv]
    started = time.perf_counter()
    process = _spawn(args, subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                     subprocess.PIPE, cwd)
    try:
        stdout, stderr = process.communicate(input=stdin, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        _kill_group(process)
        raise TrialTimeout(
            f"{Path(args[0]).name} exceeded its {timeout:.0f} s time limit and was killed"
        ) from exc
    except BaseException:
        _kill_group(process)
        raise
    finally:
        # Children that outlived the leader (daemonised helpers) must not leak either.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        Warden.release(process.pid)
    seconds = time.perf_counter() - started
    return Completed(
        argv=tuple(args),
        stdout=stdout.decode("utf-8", "replace"),
        stderr=stderr.decode("utf-8", "replace"),
        exit_code=process.returncode,
        seconds=seconds,
    )


class LocalBackground(Background):
    """A local background process whose combined output is collected by a thread."""

    def __init__(self, argv: Sequence[str], cwd: str | None = None):
        self.argv = tuple(str(a) for a in argv)
        self._process = _spawn(list(self.argv), subprocess.DEVNULL, subprocess.STDOUT, cwd)
        self._started = time.perf_counter()
        self._chunks: list[bytes] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        stream = self._process.stdout
        assert isinstance(stream, io.BufferedReader)  # Popen's default buffering
        for chunk in iter(lambda: stream.read1(4096), b""):
            with self._changed:
                self._chunks.append(chunk)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def output(self) -> str:
        with self._changed:
            return b"".join(self._chunks).decode("utf-8", "replace")

    def wait_for_output(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if needle in b"".join(self._chunks).decode("utf-8", "replace"):
                    return
                if self._process.poll() is not None and not self._reader.is_alive():
                    raise TrialError(
                        f"{Path(self.argv[0]).name} exited with code "
                        f"{self._process.returncode} before it was ready"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TrialTimeout(
                        f"{Path(self.argv[0]).name} did not become ready within {timeout:.0f} s"
                    )
                self._changed.wait(min(remaining, 0.2))

    def running(self) -> bool:
        return self._process.poll() is None

    def stop(self) -> Completed:
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                _kill_group(self._process)
        with contextlib.suppress(ProcessLookupError, PermissionError):  # what is left
            os.killpg(self._process.pid, signal.SIGKILL)
        Warden.release(self._process.pid)
        self._reader.join(timeout=5)
        return Completed(self.argv, self.output(), "", self._process.returncode or 0,
                         time.perf_counter() - self._started)


class NativeMachine(Machine):
    """The host itself."""

    label = "this host"
    local = True

    def __init__(self, scratch_root: Path):
        self._scratch = Warden.make_dir("hvbench-", scratch_root)
        self._backgrounds: list[LocalBackground] = []

    def run(self, argv: Sequence[str], timeout: float, stdin: bytes | None = None) -> Completed:
        return run_local(argv, timeout, stdin, cwd=str(self._scratch))

    def spawn(self, argv: Sequence[str]) -> Background:
        background = LocalBackground(argv, cwd=str(self._scratch))
        self._backgrounds.append(background)
        return background

    def which(self, binary: str) -> str | None:
        return local_which(binary)

    def read_file(self, path: str) -> str | None:
        try:
            return Path(path).read_text(errors="replace")
        except OSError:
            return None

    def write_file(self, path: str, data: bytes) -> None:
        Path(path).write_bytes(data)

    def scratch_dir(self) -> str:
        return str(self._scratch)

    def free_port(self) -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])

    def close(self) -> None:
        for background in self._backgrounds:
            background.stop()
        Warden.remove_dir(self._scratch)

    def info(self) -> dict[str, Any]:
        return {"scratch_dir": str(self._scratch)}
