"""Hosts reached over SSH (asyncssh): a remote KVM host or Xen dom0.

Host keys are checked against hvbench's own known_hosts file
(``$HVBENCH_HOME/known_hosts``); an unknown host is refused unless
``--accept-new-host-key`` is given, and a changed key is always refused.
Authentication uses keys only (an explicit ``--identity`` file, the SSH agent or
~/.ssh's default keys); no password is ever asked for or stored.

Commands cross SSH as argv lists: every argument is quoted for the remote POSIX
shell with ``shlex.quote``, so nothing from a config or a tool's output is ever
interpreted by it. Each command runs in a session of its own on the host, so a
time-out kills it with all its children.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncssh

from ..errors import TrialError, TrialTimeout, UsageError
from ..paths import home
from ..platforms.base import Background, Completed, Machine

#: the remote wrapper: a new session, start/end stamps and the exit code on stderr
_WRAPPER = ('echo "@@HVB-PID $$ $(date +%s%N)" >&2; "$@"; rc=$?; '
            'echo "@@HVB-END $(date +%s%N) $rc" >&2; exit $rc')
_PID = re.compile(r"^@@HVB-PID (\d+) (\d+)\n", re.M)
_END = re.compile(r"^@@HVB-END (\d+) (-?\d+)\n?", re.M)
CONNECT_TIMEOUT = 20.0
RECONNECT_SECONDS = 30.0  # how long a dropped host may take to accept us again


@dataclass(frozen=True)
class SshTarget:
    user: str | None
    host: str
    port: int

    @property
    def url(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"ssh://{user}{self.host}:{self.port}"


def parse_target(url: str) -> SshTarget:
    """ssh://[user@]host[:port]; anything else is a usage error."""
    parts = urlsplit(url)
    if parts.scheme != "ssh" or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.password:
        raise UsageError(f"--host {url!r}: expected ssh://[user@]host[:port] (keys only, "
                         "no password in the URL)")
    try:
        port = parts.port or 22
    except ValueError:
        raise UsageError(f"--host {url!r}: the port is not a number") from None
    return SshTarget(parts.username, parts.hostname, port)


def known_hosts_path() -> Path:
    return home() / "known_hosts"


def _host_pattern(target: SshTarget) -> str:
    return target.host if target.port == 22 else f"[{target.host}]:{target.port}"


class SshConnection:
    """One SSH connection with its own event loop, used synchronously."""

    def __init__(self, target: SshTarget, identity: Path | None = None,
                 accept_new_host_key: bool = False):
        self.target = target
        self.identity = identity
        self.accept_new = accept_new_host_key
        self.loop = asyncio.new_event_loop()
        self.conn: asyncssh.SSHClientConnection | None = None
        #: process groups of commands still running on the host; a command whose
        #: connection broke stays here and is killed after the reconnect
        self.live_groups: set[int] = set()

    def call(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    # -- connecting ---------------------------------------------------------------
    def connect(self) -> None:
        self.call(self._connect())

    async def _connect(self) -> None:
        path = known_hosts_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
        target = self.target
        options: dict[str, Any] = {
            "port": target.port, "known_hosts": str(path),
            "connect_timeout": CONNECT_TIMEOUT, "password": None,
            "kbdint_auth": False, "password_auth": False,
        }
        if target.user:
            options["username"] = target.user
        if self.identity is not None:
            if not self.identity.exists():
                raise UsageError(f"--identity {self.identity}: no such key file")
            options["client_keys"] = [str(self.identity)]
        try:
            if self.accept_new and not self._known(path):
                await self._trust_on_first_use(path)
            self.conn = await asyncssh.connect(target.host, **options)
        except asyncssh.HostKeyNotVerifiable as exc:
            if self._known(path):
                raise TrialError(
                    f"{target.url}: the host key CHANGED since it was trusted (possible "
                    f"man-in-the-middle); if the host was reinstalled, remove its line from "
                    f"{path}") from None
            raise UsageError(f"{target.url}: unknown host key ({exc.reason}); check it and "
                             "rerun with --accept-new-host-key to trust it") from None
        except asyncssh.PermissionDenied:
            raise UsageError(f"{target.url} refused our key (permission denied); give "
                             "--identity KEYFILE or load the key into ssh-agent") from None
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            raise TrialError(f"cannot reach {target.url}: {exc}") from None

    def _known(self, path: Path) -> bool:
        pattern = _host_pattern(self.target)
        return any(line.split(" ", 1)[0] == pattern
                   for line in path.read_text().splitlines() if line.strip())

    async def _trust_on_first_use(self, path: Path) -> None:
        key = await asyncssh.get_server_host_key(self.target.host, self.target.port)
        if key is None:
            raise TrialError(f"{self.target.url} offered no host key")
        line = f"{_host_pattern(self.target)} {key.export_public_key().decode().strip()}\n"
        with path.open("a") as handle:
            handle.write(line)

    def alive(self) -> bool:
        return self.conn is not None and not self.conn.is_closed()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            with contextlib.suppress(Exception):
                self.call(self.conn.wait_closed())
            self.conn = None
        if not self.loop.is_closed():
            self.loop.close()

    # -- commands ----------------------------------------------------------------
    def _require(self) -> asyncssh.SSHClientConnection:
        if not self.alive():
            raise TrialError(f"the connection to {self.target.url} is closed")
        assert self.conn is not None
        return self.conn

    def run(self, argv: Sequence[str], timeout: float, stdin: bytes | None = None
            ) -> Completed:
        """Run argv on the host in a session of its own; kill the session on time-out."""
        command = shlex.join(["setsid", "sh", "-c", _WRAPPER, "sh", *map(str, argv)])
        started = time.perf_counter()
        errors = bytearray()
        try:
            code, out = self.call(self._run(command, stdin, timeout, errors))
        except TimeoutError:
            found = _PID.search(errors.decode("utf-8", "replace"))
            if found:
                with contextlib.suppress(Exception):
                    self.call(asyncio.wait_for(self._require().run(
                        shlex.join(["kill", "-9", "--", f"-{found.group(1)}"]), check=False),
                        15))
                    self.live_groups.discard(int(found.group(1)))
            raise TrialTimeout(f"{Path(str(argv[0])).name} exceeded its {timeout:.0f} s time "
                               f"limit on {self.target.url} and was killed") from None
        except (asyncssh.Error, OSError) as exc:
            raise TrialError(f"the connection to {self.target.url} broke: {exc}") from None
        stderr = errors.decode("utf-8", "replace")
        seconds = time.perf_counter() - started
        begin, end = _PID.search(stderr), _END.search(stderr)
        if begin and end:
            seconds = (int(end.group(1)) - int(begin.group(2))) / 1e9
        if begin is None:  # the wrapper never started: setsid or sh missing
            raise TrialError(f"{self.target.url} could not start {argv[0]}: "
                             f"{stderr.strip()[:200]}")
        stderr = _END.sub("", _PID.sub("", stderr, count=1), count=1)
        return Completed(tuple(map(str, argv)), out.decode("utf-8", "replace"), stderr, code,
                         seconds)

    async def _run(self, command: str, stdin: bytes | None, timeout: float,
                   errors: bytearray) -> tuple[int, bytes]:
        process = await self._require().create_process(command, encoding=None)
        if stdin:
            process.stdin.write(stdin)
        process.stdin.write_eof()

        group: list[int] = []

        async def drain_errors() -> None:
            while chunk := await process.stderr.read(65536):
                errors.extend(chunk)
                if not group:
                    found = _PID.search(errors.decode("utf-8", "replace"))
                    if found:
                        group.append(int(found.group(1)))
                        self.live_groups.add(group[0])

        async def everything() -> tuple[int, bytes]:
            error_task = asyncio.ensure_future(drain_errors())
            try:
                out = await process.stdout.read()
                await error_task
            finally:
                if not error_task.done():
                    error_task.cancel()
                with contextlib.suppress(BaseException):
                    await error_task
            await process.wait_closed()
            status = process.exit_status
            if status is None:
                raise asyncssh.ConnectionLost("the command ended without an exit status")
            return status, out

        try:
            result = await asyncio.wait_for(everything(), timeout)
        finally:
            process.close()
        if group:
            self.live_groups.discard(group[0])
        return result


class SshBackground(Background):
    """A long-running process on the host (a network server for a workload)."""

    def __init__(self, connection: SshConnection, argv: Sequence[str]):
        self.connection = connection
        self.argv = tuple(map(str, argv))
        command = shlex.join(["setsid", "sh", "-c", _WRAPPER, "sh", *self.argv])
        self._output = ""
        self._pgid: int | None = None
        self._started = time.perf_counter()
        try:
            self._process = connection.call(connection._require().create_process(
                command, stderr=asyncssh.STDOUT, encoding="utf-8", errors="replace"))
        except (asyncssh.Error, OSError) as exc:
            raise TrialError(f"cannot start {self.argv[0]} on {connection.target.url}: "
                             f"{exc}") from None

    async def _read_until(self, needle: str, deadline: float) -> None:
        while needle not in self._output:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            chunk = await asyncio.wait_for(self._process.stdout.read(4096), remaining)
            if not chunk:
                raise EOFError
            self._output += chunk
            match = _PID.search(self._output)
            if match:
                self._pgid = int(match.group(1))

    def wait_for_output(self, needle: str, timeout: float) -> None:
        try:
            self.connection.call(self._read_until(needle, time.monotonic() + timeout))
        except TimeoutError:
            raise TrialTimeout(f"{self.argv[0]} on {self.connection.target.url} did not become "
                               f"ready within {timeout:.0f} s") from None
        except EOFError:
            raise TrialError(f"{self.argv[0]} on {self.connection.target.url} exited before "
                             f"it was ready: {self._output.strip()[-200:]}") from None

    def stop(self) -> Completed:
        if self._pgid is None:
            with contextlib.suppress(Exception):
                self.connection.call(self._read_until("@@HVB-PID", time.monotonic() + 5))
        if self._pgid is not None and self.connection.alive():
            with contextlib.suppress(TrialError):
                self.connection.run(["kill", "-9", "--", f"-{self._pgid}"], timeout=15)
        with contextlib.suppress(Exception):
            self._process.close()
        return Completed(self.argv, _PID.sub("", self._output), "", 0,
                         time.perf_counter() - self._started)


class SshMachine(Machine):
    """The SSH host itself, as the ``native`` platform sees it."""

    def __init__(self, connection: SshConnection):
        self.connection = connection
        self.label = connection.target.url
        self._scratch: str | None = None
        self._stale: list[str] = []  # scratch dirs a broken connection could not remove
        self._backgrounds: list[SshBackground] = []

    def open(self) -> None:
        self.connection.connect()
        made = self.connection.run(
            ["sh", "-c", 'mkdir -p "$1" && mktemp -d -p "$1" hvbench-XXXXXX', "sh",
             ".local/share/hvbench/scratch"], timeout=60)
        if made.exit_code != 0:
            raise TrialError(f"cannot make a scratch directory on {self.label}: "
                             f"{made.stderr.strip()[:200]}")
        path = made.stdout.strip()
        if not path.startswith("/"):
            home_dir = self.connection.run(["sh", "-c", 'echo "$HOME"'], timeout=30)
            path = f"{home_dir.stdout.strip()}/{path}"
        self._scratch = path

    def run(self, argv: Sequence[str], timeout: float, stdin: bytes | None = None) -> Completed:
        return self.connection.run(argv, timeout, stdin)

    def spawn(self, argv: Sequence[str]) -> Background:
        background = SshBackground(self.connection, argv)
        self._backgrounds.append(background)
        return background

    def which(self, binary: str) -> str | None:
        done = self.run(["sh", "-c", 'PATH="$PATH:/usr/sbin:/sbin" command -v "$1"', "sh",
                         binary], timeout=30)
        return (done.stdout.strip() or None) if done.exit_code == 0 else None

    def read_file(self, path: str) -> str | None:
        done = self.run(["cat", path], timeout=60)
        return done.stdout if done.exit_code == 0 else None

    def write_file(self, path: str, data: bytes) -> None:
        done = self.run(["sh", "-c", 'cat > "$1"', "sh", path], timeout=120, stdin=data)
        if done.exit_code != 0:
            raise TrialError(f"cannot write {path} on {self.label}: {done.stderr.strip()[:200]}")

    def scratch_dir(self) -> str:
        if self._scratch is None:
            raise TrialError(f"{self.label} is not connected")
        return self._scratch

    def free_port(self) -> int:
        """A port nothing listens on, asked of the host's own socket table."""
        for _ in range(20):
            port = random.randint(20000, 60999)
            done = self.run(["sh", "-c", 'ss -Htln "sport = :$1" 2>/dev/null | wc -l', "sh",
                             str(port)], timeout=30)
            if done.stdout.strip() == "0":
                return port
        raise TrialError(f"no free TCP port found on {self.label}")

    def healthy(self) -> bool:
        return self.connection.alive()

    def restart(self) -> None:
        """Reconnect after a dropped connection (a new scratch directory, too)."""
        self.close()
        deadline = time.monotonic() + RECONNECT_SECONDS
        while True:  # the host may be rebooting or its sshd restarting: keep trying
            self.connection.loop = asyncio.new_event_loop()
            try:
                self.open()
                break
            except TrialError:
                self.connection.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
        for group in sorted(self.connection.live_groups):  # orphans of the broken link
            with contextlib.suppress(TrialError):
                self.run(["kill", "-9", "--", f"-{group}"], timeout=15)
        self.connection.live_groups.clear()
        for stale in self._stale:
            with contextlib.suppress(TrialError):
                self.run(["rm", "-rf", "--", stale], timeout=120)
        self._stale.clear()

    def close(self) -> None:
        for background in self._backgrounds:
            with contextlib.suppress(Exception):
                background.stop()
        self._backgrounds.clear()
        if self._scratch and self.connection.alive():
            with contextlib.suppress(TrialError):
                self.run(["rm", "-rf", "--", self._scratch], timeout=120)
        elif self._scratch:
            self._stale.append(self._scratch)
        self._scratch = None
        self.connection.close()

    def info(self) -> dict[str, Any]:
        return {"host": self.label, "scratch_dir": self._scratch}
