"""This machine as a Host: subprocesses, local files and local sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import tty as tty_mod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import TrialError
from ..localproc import NativeMachine, Warden, run_local, tied
from ..machine import Completed, Machine
from ..paths import home
from .base import Host, HostProcess


class LocalProcess(HostProcess):
    def __init__(self, process: subprocess.Popen[bytes]):
        self.process = process
        self.pid = process.pid
        Warden.watch(self.pid)

    def poll(self) -> int | None:
        return self.process.poll()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.process.wait(timeout=30)
        Warden.release(self.pid)

    def wait(self, seconds: float) -> int | None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self.process.wait(timeout=seconds)
        return None


class _StreamHandle:
    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        Warden.watch(process.pid)

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        Warden.release(self.process.pid)


class LocalHost(Host):
    label = "this host"
    remote = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._native: NativeMachine | None = None

    def run(self, argv: Sequence[str], timeout: float, stdin: bytes | None = None
            ) -> Completed:
        return run_local(argv, timeout, stdin)

    def start(self, argv: Sequence[str], stdout: Path, stderr: Path) -> HostProcess:
        try:
            with stdout.open("wb") as out, stderr.open("wb") as err:
                process = subprocess.Popen(tied(argv), stdin=subprocess.DEVNULL,
                                           stdout=out, stderr=err, start_new_session=True)
        except OSError as exc:
            raise TrialError(f"cannot start {argv[0]}: {exc}") from None
        return LocalProcess(process)

    async def open_unix(self, path: str) -> tuple[Any, Any]:
        return await asyncio.open_unix_connection(path, limit=1 << 22)

    async def open_stream(self, argv: Sequence[str], tty: bool = False
                          ) -> tuple[Any, Any, Any]:
        if not tty:
            process = await asyncio.create_subprocess_exec(
                *tied(argv), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True, limit=1 << 22)
            return process.stdout, process.stdin, _StreamHandle(process)
        master, slave = os.openpty()
        tty_mod.setraw(slave)
        try:
            process = await asyncio.create_subprocess_exec(
                *tied(argv), stdin=slave, stdout=slave, stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True)
        finally:
            os.close(slave)
        reader = asyncio.StreamReader(limit=1 << 22)
        await self._loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                          os.fdopen(master, "rb", 0))
        transport, protocol = await self._loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(os.dup(master), "wb", 0))
        writer = asyncio.StreamWriter(transport, protocol, reader, self._loop)
        return reader, writer, _StreamHandle(process)

    def make_dir(self, purpose: str) -> str:
        if purpose == "socket":  # UNIX socket paths are limited to 107 bytes
            return str(Warden.make_dir("hvbench-sock-"))
        return str(Warden.make_dir(f"{purpose}-", home() / "guests"))

    def remove(self, path: str) -> None:
        Warden.remove_dir(path)

    def place(self, files: dict[str, Path], key: str,
              say: Callable[[str], None] | None = None) -> dict[str, str]:
        return {name: str(path) for name, path in files.items()}

    def native(self) -> Machine:
        if self._native is None:
            self._native = NativeMachine(home() / "scratch")
        return self._native

    def reconnect(self) -> None:
        """Nothing to reach: this machine is always here."""
        return None

    def close(self) -> None:
        if self._native is not None:
            self._native.close()
            self._native = None
        if not self._loop.is_closed():
            self._loop.close()
