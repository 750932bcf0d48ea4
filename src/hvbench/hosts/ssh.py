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
import binascii
import contextlib
import random
import re
import shlex
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import asyncssh

from ..appliance.image import Image
from ..errors import TrialError, TrialTimeout, UsageError
from ..machine import Background, Completed, Machine
from ..paths import home
from .base import Host, HostProcess
from .loop import pause, run_quietly
from .spec import SshTarget

#: the remote wrapper: a new session, start/end stamps and the exit code on stderr
#: (coreutils' /bin/date by path: a busybox shell would run its own date applet,
#: which has no %N)
_WRAPPER = ('t() { /bin/date +%s%N 2>/dev/null || date +%s%N; }; '
            'echo "@@HVB-PID $$ $(t)" >&2; "$@"; rc=$?; '
            'echo "@@HVB-END $(t) $rc" >&2; exit $rc')
#: a stamp is nanoseconds, or "<seconds>%N" where date has no %N (busybox): then
#: the time is taken on our side instead
_PID = re.compile(r"^@@HVB-PID (\d+) (\d+)(%N)?\n", re.M)
_END = re.compile(r"^@@HVB-END (\d+)(%N)? (-?\d+)\n?", re.M)
#: read_files: each file as one line, so any content survives the trip
_READ_MANY = ('command -v base64 >/dev/null || exit 3; '
              'for f; do if c=$(base64 -w0 < "$f" 2>/dev/null); then echo "+$c"; '
              'else echo "-"; fi; done')
CONNECT_TIMEOUT = 20.0
CHANNEL_SECONDS = 60.0  # opening a session on a responsive host takes well under a second
RECONNECT_SECONDS = 30.0  # how long a dropped host may take to accept us again


def _in_session(wrapper: str, argv: Sequence[str]) -> str:
    """The remote command line: ``wrapper`` running argv in a new session.

    setsid must run as a child of the shell, never in its place: a process-group
    leader's setsid forks and returns at once (busybox's shell execs a lone last
    command), and the server would then close the channel under the command.
    """
    return shlex.join(["sh", "-c", 'setsid "$@"; exit $?', "sh", "sh", "-c", wrapper, "sh",
                       *map(str, argv)])


def known_hosts_path() -> Path:
    return home() / "known_hosts"


def _host_pattern(target: SshTarget) -> str:
    return target.host if target.port == 22 else f"[{target.host}]:{target.port}"


class SshConnection:
    """One SSH connection with its own event loop, used synchronously."""

    def __init__(self, target: SshTarget, identity: Path | None = None,
                 accept_new_host_key: bool = False, known_hosts: Path | None = None,
                 compress_uploads: bool = True, name: str | None = None):
        self.target = target
        #: how messages name the host ("lab:xen (ssh://root@127.0.0.1:PORT)" for a lab)
        self.name = name or target.url
        #: gzip uploads: worth it over a network, not on loopback to a lab whose
        #: emulated CPU would spend minutes decompressing
        self.compress_uploads = compress_uploads
        self.known_hosts = known_hosts
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
        path = self.known_hosts or known_hosts_path()
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
            raise TrialError(f"cannot reach {self.name}: {exc}") from None

    def _known(self, path: Path) -> bool:
        pattern = _host_pattern(self.target)
        return any(line.split(" ", 1)[0] == pattern
                   for line in path.read_text().splitlines() if line.strip())

    async def _trust_on_first_use(self, path: Path) -> None:
        key = await asyncssh.get_server_host_key(self.target.host, self.target.port)
        if key is None:
            raise TrialError(f"{self.name} offered no host key")
        line = f"{_host_pattern(self.target)} {key.export_public_key().decode().strip()}\n"
        with path.open("a") as handle:
            handle.write(line)

    def alive(self) -> bool:
        """Connected; a close the server sent while we were idle is noticed here
        (the event loop only runs while we use it)."""
        if self.conn is None:
            return False
        pause(self.loop, 0.01)
        return not self.conn.is_closed()

    def reconnect(self) -> None:
        """Reach the host again after a dropped link, then kill what the link orphaned."""
        self.close()
        deadline = time.monotonic() + RECONNECT_SECONDS
        while True:  # the host may be rebooting or its sshd restarting: keep trying
            self.loop = asyncio.new_event_loop()
            try:
                self.connect()
                break
            except TrialError:
                self.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
        for group in sorted(self.live_groups):
            with contextlib.suppress(TrialError):
                self.run(["kill", "-9", f"-{group}"], timeout=15)
        self.live_groups.clear()

    def upload(self, local: Path, remote: str, timeout: float = 1800) -> None:
        """Stream a local file into a remote path, written whole and then renamed;
        gzip-compressed on the way unless told not to (images shrink 2-4x)."""
        unpack = "gzip -dc" if self.compress_uploads else "cat"
        command = shlex.join(["sh", "-c", unpack + ' > "$1.part" && mv -f "$1.part" "$1"',
                              "sh", remote])

        async def send() -> int | None:
            process = await self._require().create_process(command, encoding=None)
            packer = zlib.compressobj(1, wbits=31)  # level 1: cheap, gzip framing
            pack = packer.compress if self.compress_uploads else bytes
            try:
                with local.open("rb") as handle:
                    while chunk := handle.read(1 << 20):
                        process.stdin.write(pack(chunk))
                        await process.stdin.drain()
                if self.compress_uploads:
                    process.stdin.write(packer.flush())
                process.stdin.write_eof()
                await process.wait_closed()
                return process.exit_status
            finally:
                process.close()

        try:
            status = self.call(asyncio.wait_for(send(), timeout))
        except TimeoutError:
            raise TrialError(f"copying {local.name} to {self.name} took over "
                             f"{timeout:.0f} s") from None
        except (asyncssh.Error, OSError) as exc:
            raise TrialError(f"copying {local.name} to {self.name} failed: {exc}"
                             ) from None
        if status != 0:
            raise TrialError(f"cannot write {remote} on {self.name} (disk full or "
                             "no permission?)")

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
            raise TrialError(f"the connection to {self.name} is closed")
        assert self.conn is not None
        return self.conn

    def run(self, argv: Sequence[str], timeout: float, stdin: bytes | None = None
            ) -> Completed:
        """Run argv on the host in a session of its own; kill the session on time-out."""
        command = _in_session(_WRAPPER, argv)
        started = time.perf_counter()
        errors = bytearray()
        try:
            code, out = self.call(self._run(command, stdin, timeout, errors))
        except TimeoutError:
            found = _PID.search(errors.decode("utf-8", "replace"))
            if found:
                with contextlib.suppress(Exception):
                    self.call(asyncio.wait_for(self._require().run(
                        shlex.join(["kill", "-9", f"-{found.group(1)}"]), check=False),
                        15))
                    self.live_groups.discard(int(found.group(1)))
            raise TrialTimeout(f"{Path(str(argv[0])).name} exceeded its {timeout:.0f} s time "
                               f"limit on {self.name} and was killed") from None
        except (asyncssh.Error, OSError) as exc:
            raise TrialError(f"the connection to {self.name} broke: {exc}") from None
        stderr = errors.decode("utf-8", "replace")
        seconds = time.perf_counter() - started
        begin, end = _PID.search(stderr), _END.search(stderr)
        if begin and end and not begin.group(3) and not end.group(2):
            seconds = (int(end.group(1)) - int(begin.group(2))) / 1e9
        if begin is None:  # the wrapper never started: setsid or sh missing
            raise TrialError(f"{self.name} could not start {argv[0]}: "
                             f"{stderr.strip()[:200]}")
        stderr = _END.sub("", _PID.sub("", stderr, count=1), count=1)
        return Completed(tuple(map(str, argv)), out.decode("utf-8", "replace"), stderr, code,
                         seconds)

    async def open_process(self, command: str, encoding: str | None = None,
                           **options: Any) -> Any:
        """A new channel running ``command``; a host that cannot even open one within
        CHANNEL_SECONDS (wedged) is an error, not an endless wait."""
        try:
            return await asyncio.wait_for(
                self._require().create_process(command, encoding=encoding, **options),
                CHANNEL_SECONDS)
        except TimeoutError:
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_CONNECT_FAILED,
                f"{self.name} did not open a session within {CHANNEL_SECONDS:.0f} s") from None

    async def _run(self, command: str, stdin: bytes | None, timeout: float,
                   errors: bytearray) -> tuple[int, bytes]:
        process = await self.open_process(command)
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
        command = _in_session(_WRAPPER, self.argv)
        self._output = ""
        self._pgid: int | None = None
        self._started = time.perf_counter()
        try:
            self._process = connection.call(connection.open_process(
                command, stderr=asyncssh.STDOUT, encoding="utf-8", errors="replace"))
        except (asyncssh.Error, OSError) as exc:
            raise TrialError(f"cannot start {self.argv[0]} on {connection.name}: "
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
            raise TrialTimeout(f"{self.argv[0]} on {self.connection.name} did not become "
                               f"ready within {timeout:.0f} s") from None
        except EOFError:
            raise TrialError(f"{self.argv[0]} on {self.connection.name} exited before "
                             f"it was ready: {self._output.strip()[-200:]}") from None

    def running(self) -> bool:
        return self._process.exit_status is None and not self._process.is_closing()

    def stop(self) -> Completed:
        if self._pgid is None:
            with contextlib.suppress(Exception):
                self.connection.call(self._read_until("@@HVB-PID", time.monotonic() + 5))
        if self._pgid is not None and self.connection.alive():
            with contextlib.suppress(TrialError):
                self.connection.run(["kill", "-9", f"-{self._pgid}"], timeout=15)
        with contextlib.suppress(Exception):
            self._process.close()
        return Completed(self.argv, _END.sub("", _PID.sub("", self._output)), "", 0,
                         time.perf_counter() - self._started)


class SshMachine(Machine):
    """The SSH host itself, as the ``native`` platform sees it."""

    def __init__(self, connection: SshConnection, shared: bool = False):
        self.connection = connection
        self.shared = shared  # the connection belongs to an SshHost: never close it here
        self.label = connection.name
        self._scratch: str | None = None
        self._stale: list[str] = []  # scratch dirs a broken connection could not remove
        self._backgrounds: list[SshBackground] = []
        self.nested = ""

    def open(self) -> None:
        if not self.connection.alive():
            self.connection.connect()
        made = self.connection.run(  # an absolute path in one round trip
            ["sh", "-c", 'mkdir -p "$HOME/$1" && mktemp -d -p "$HOME/$1" hvbench-XXXXXX',
             "sh", ".local/share/hvbench/scratch"], timeout=60)
        path = made.stdout.strip()
        if made.exit_code != 0 or not path.startswith("/"):
            raise TrialError(f"cannot make a scratch directory on {self.label}: "
                             f"{(made.stderr or made.stdout).strip()[:200]}")
        self._scratch = path

    def run(self, argv: Sequence[str], timeout: float, stdin: bytes | None = None) -> Completed:
        return self.connection.run(argv, timeout, stdin)

    def spawn(self, argv: Sequence[str]) -> Background:
        background = SshBackground(self.connection, argv)
        self._backgrounds.append(background)
        return background

    def which(self, binary: str) -> str | None:
        """The program's absolute path (never a shell builtin or busybox applet name)."""
        done = self.run(["sh", "-c", 'IFS=:; for d in $PATH /usr/sbin /sbin; do '
                         '[ -f "$d/$1" ] && [ -x "$d/$1" ] && { echo "$d/$1"; exit 0; }; '
                         'done; exit 1', "sh", binary], timeout=30)
        found = done.stdout.strip()
        return found if done.exit_code == 0 and found.startswith("/") else None

    def read_file(self, path: str) -> str | None:
        done = self.run(["cat", path], timeout=60)
        return done.stdout if done.exit_code == 0 else None

    def read_files(self, paths: Sequence[str]) -> dict[str, str | None]:
        """All in one command (a fixed script; the paths are its arguments): a line per
        file, '+' and its base64 or '-' where it cannot be read."""
        done = self.run(["sh", "-c", _READ_MANY, "sh", *paths], timeout=60)
        lines = done.stdout.splitlines()
        if done.exit_code != 0 or len(lines) != len(paths):  # no base64 here: one by one
            return super().read_files(paths)
        return {path: binascii.a2b_base64(line[1:]).decode("utf-8", "replace")
                if line.startswith("+") else None for path, line in zip(paths, lines,
                                                                        strict=True)}

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
            done = self.run(["sh", "-c", 'if command -v ss >/dev/null; then '
                             'ss -Htln "sport = :$1"; else netstat -tln | grep ":$1 "; fi | '
                             'wc -l', "sh", str(port)], timeout=30)
            if done.stdout.strip() == "0":
                return port
        raise TrialError(f"no free TCP port found on {self.label}")

    def healthy(self) -> bool:
        return self.connection.alive()

    def restart(self) -> None:
        """Reconnect after a dropped connection (a new scratch directory, too)."""
        self.close()
        self.connection.reconnect()
        self.open()
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
        if not self.shared:
            self.connection.close()

    def info(self) -> dict[str, Any]:
        found: dict[str, Any] = {"host": self.label, "scratch_dir": self._scratch}
        if self.nested:
            found["nested"] = self.nested
        return found


#: a long-lived process: its session dies when our SSH channel closes (the
#: ``cat`` lifeline sees end-of-file), so a dropped link leaves nothing running
_LIFELINE = ('exec 3<&0; echo "@@HVB-PID $$" >&2; "$@" </dev/null 3<&- & q=$!; '
             '(cat <&3 >/dev/null; kill -9 -$$) & '
             'wait $q; rc=$?; echo "@@HVB-EXIT $rc" >&2; '
             "trap 'exit $rc' TERM; kill -TERM -$$; exit $rc")
_EXIT = re.compile(rb"@@HVB-EXIT (-?\d+)")
_GROUP = re.compile(rb"^@@HVB-PID (\d+)\n", re.M)


class SshProcess(HostProcess):
    """A remote process whose stdout and stderr are copied into local files."""

    def __init__(self, connection: SshConnection, argv: Sequence[str], stdout: Path,
                 stderr: Path):
        self.connection = connection
        self.argv = tuple(map(str, argv))
        self.group: int | None = None
        self.code: int | None = None
        self._killed = False
        command = _in_session(_LIFELINE, self.argv)
        try:
            self._process = connection.call(connection.open_process(command))
        except (asyncssh.Error, OSError) as exc:
            raise TrialError(f"cannot start {self.argv[0]} on {connection.name}: "
                             f"{exc}") from None
        self._tasks = [connection.loop.create_task(self._copy_out(stdout)),
                       connection.loop.create_task(self._copy_err(stderr))]

    async def _copy_out(self, path: Path) -> None:
        with path.open("wb") as handle:
            while chunk := await self._process.stdout.read(65536):
                handle.write(chunk)
                handle.flush()

    async def _copy_err(self, path: Path) -> None:
        """Copy stderr line by line, taking out the wrapper's own markers."""
        pending = b""
        with path.open("wb") as handle:
            while chunk := await self._process.stderr.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if self.group is None and (found := _GROUP.match(line + b"\n")):
                        self.group = int(found.group(1))
                        self.connection.live_groups.add(self.group)
                    elif exited := _EXIT.match(line):
                        self.code = int(exited.group(1))
                    else:
                        handle.write(line + b"\n")
                handle.flush()
            handle.write(pending)

    def _finished(self) -> bool:
        return all(task.done() for task in self._tasks)

    def poll(self) -> int | None:
        pause(self.connection.loop, 0)
        if self.code is not None:
            return self.code
        if self._finished() or not self.connection.alive():
            return -1  # the channel closed without a status: the link or the host died
        return None

    def wait(self, seconds: float) -> int | None:
        async def until_done() -> None:
            await asyncio.wait(self._tasks, timeout=seconds)

        run_quietly(self.connection.loop, until_done())
        return self.poll()

    def kill(self) -> None:
        if self._killed:
            return
        self._killed = True
        if self.group is not None and self.connection.alive() and self.code is None:
            with contextlib.suppress(Exception):
                self.connection.run(["kill", "-9", f"-{self.group}"], timeout=15)
            self.connection.live_groups.discard(self.group)
        with contextlib.suppress(Exception):
            self._process.close()  # the lifeline fires even if the kill above did not run
        for task in self._tasks:
            task.cancel()
        run_quietly(self.connection.loop, _gathered(self._tasks))


class SshHost(Host):
    """A remote host (a KVM server, a Xen dom0, a lab) driven over one SSH connection."""

    remote = True

    def __init__(self, connection: SshConnection, label: str | None = None):
        self.connection = connection
        self.label = label or connection.name
        self._native: SshMachine | None = None
        self._bundled: Machine | None = None
        self._home: str | None = None
        self._processes: list[SshProcess] = []
        #: the appliance whose tools the host's own workloads use (None: the host's)
        self._bundle: Image | None = None
        self._say: Callable[[str], None] | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.connection.loop

    def open(self) -> SshHost:
        if not self.connection.alive():
            self.connection.connect()
        return self

    def home(self) -> str:
        if self._home is None:
            done = self.check(["sh", "-c", 'echo "$HOME"'], 30, "finding the home directory")
            self._home = done.stdout.strip() or "/tmp"
        return self._home

    def run(self, argv: Sequence[str], timeout: float, stdin: bytes | None = None
            ) -> Completed:
        return self.connection.run(argv, timeout, stdin)

    def start(self, argv: Sequence[str], stdout: Path, stderr: Path) -> HostProcess:
        process = SshProcess(self.connection, argv, stdout, stderr)
        self._processes.append(process)
        return process

    async def open_unix(self, path: str) -> tuple[Any, Any]:
        try:
            return await self.connection._require().open_unix_connection(path)
        except asyncssh.ChannelOpenError as exc:
            # not there yet (a guest still booting), or forwarding is disabled in sshd
            raise OSError(f"{self.label}: cannot open {path}: {exc.reason}") from None

    async def open_stream(self, argv: Sequence[str], tty: bool = False
                          ) -> tuple[Any, Any, Any]:
        try:
            process = await self.connection.open_process(
                shlex.join(map(str, argv)), stderr=asyncssh.DEVNULL,
                term_type="dumb" if tty else None)
        except (asyncssh.Error, OSError) as exc:
            raise OSError(f"{self.label}: cannot start {argv[0]}: {exc}") from None
        return process.stdout, process.stdin, process

    def make_dir(self, purpose: str) -> str:
        if purpose == "socket":
            argv = ["mktemp", "-d", "/tmp/hvbench-sock-XXXXXX"]
        else:
            argv = ["sh", "-c", 'mkdir -p "$1" && mktemp -d "$1/$2-XXXXXX"', "sh",
                    f"{self.home()}/.local/share/hvbench/guests", purpose]
        return self.check(argv, 60, "making a directory").stdout.strip()

    def remove(self, path: str) -> None:
        if self.connection.alive():
            with contextlib.suppress(TrialError):
                self.run(["rm", "-rf", "--", path], timeout=120)

    def place(self, files: dict[str, Path], key: str,
              say: Callable[[str], None] | None = None) -> dict[str, str]:
        """Copy files once per content key into the host's cache (~/.cache/hvbench)."""
        shared = self._shared(files)
        if shared is not None:
            return shared
        directory = f"{self.home()}/.cache/hvbench/host-images/{key}"
        placed = {name: f"{directory}/{path.name}" for name, path in files.items()}
        present = self.run(["sh", "-c", 'for f; do [ -e "$f" ] && echo "$f"; done; exit 0',
                            "sh", *placed.values()], timeout=30).stdout.split("\n")
        wanted = {name: path for name, path in files.items() if placed[name] not in present}
        if not wanted:
            return placed  # an upload lands whole (renamed at the end), never half
        self.check(["mkdir", "-p", directory], 60, "making the image cache")
        size = sum(path.stat().st_size for path in wanted.values()) / 2**20
        if say is not None:
            say(f"copying image {key} ({size:.0f} MiB) to {self.label} (once per image)")
        for name, path in wanted.items():
            self.connection.upload(path, placed[name])
        return placed

    def _shared(self, files: dict[str, Path]) -> dict[str, str] | None:
        """The files' paths in a directory the host shares with this machine, when all of
        them are there and the host sees them (else None: they are copied)."""
        if self.shared_images is None:
            return None
        here, there = self.shared_images
        try:
            placed = {name: f"{there}/{path.resolve().relative_to(here.resolve())}"
                      for name, path in files.items()}
        except ValueError:  # a file outside the shared directory
            return None
        seen = self.run(["sh", "-c", 'for f; do [ -r "$f" ] || exit 1; done', "sh",
                         *placed.values()], timeout=60)
        return placed if seen.exit_code == 0 else None

    def native(self) -> Machine:
        """The host itself; its workload tools come from the appliance bundle when one
        is set (so servers for guests and the baseline run the guests' binaries)."""
        if self._native is None:
            self._native = SshMachine(self.connection, shared=True)
            self._native.label = self.label
            self._native.nested = self.nested
            self._native.open()
        if self._bundle is not None:
            if self._bundled is None:
                from .bundle import BundledMachine

                self._bundled = BundledMachine(self._native, self, self._bundle, self._say)
            return self._bundled
        return self._native

    def use_bundle(self, image: Image, say: Callable[[str], None]) -> None:
        self._bundle, self._say, self._bundled = image, say, None

    def alive(self) -> bool:
        return self.connection.alive()

    def reconnect(self) -> None:
        if self._native is not None:
            self._native.close()
            self._native = None
        self._bundled = None
        self.connection.reconnect()

    def close(self) -> None:
        for process in self._processes:  # none outlives the host, whatever state it is in
            process.kill()
        self._processes.clear()
        if self._native is not None:
            with contextlib.suppress(Exception):
                self._native.close()
            self._native = None
        self._bundled = None
        self.connection.close()


async def _gathered(tasks: list[asyncio.Task[Any]]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)
