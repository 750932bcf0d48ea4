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
import re
import shlex
import time
import zlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncssh

from ..errors import TrialError, TrialTimeout, UsageError
from ..machine import Completed
from ..paths import home
from .agent import KernelCounters
from .loop import pause
from .spec import SshTarget
from .sshshell import KeptShell, ShellGone

#: the remote wrapper: a new session, start/end stamps and the exit code on stderr
#: (coreutils' /bin/date by path: a busybox shell would run its own date applet,
#: which has no %N)
WRAPPER = ('t() { /bin/date +%s%N 2>/dev/null || date +%s%N; }; '
           'echo "@@HVB-PID $$ $(t)" >&2; "$@"; rc=$?; '
           'echo "@@HVB-END $(t) $rc" >&2; exit $rc')
#: the same without the clock, for the harness's own commands that read stdin (the
#: others go through the kept shell): each date is a process of its own (~30 ms in a
#: nested lab, twice per command); their time is taken here
UNTIMED_WRAPPER = ('echo "@@HVB-PID $$ 0%N" >&2; "$@"; rc=$?; '
                   'echo "@@HVB-END 0%N $rc" >&2; exit $rc')
#: the same, with the kernel's counters (/proc/uptime, /proc/stat) on stderr just
#: before and just after the command: a trial's accounting in the command's own trip
COUNTED_WRAPPER = ('t() { /bin/date +%s%N 2>/dev/null || date +%s%N; }; '
                   'k() { echo @@HVB-KERNEL; cat /proc/uptime /proc/stat; '
                   'echo @@HVB-KERNEL-END; } >&2; '
                   'echo "@@HVB-PID $$ $(t)" >&2; k; "$@"; rc=$?; k; '
                   'echo "@@HVB-END $(t) $rc" >&2; exit $rc')
KERNEL_STAMP = re.compile(r"^@@HVB-KERNEL\n(.*?)^@@HVB-KERNEL-END\n", re.M | re.S)
#: a stamp is nanoseconds, or "<seconds>%N" where date has no %N (busybox): then
#: the time is taken on our side instead
PID_STAMP = re.compile(r"^@@HVB-PID (\d+) (\d+)(%N)?\n", re.M)
END_STAMP = re.compile(r"^@@HVB-END (\d+)(%N)? (-?\d+)\n?", re.M)
#: a directory made on the host with its owner's stamp (hosts/owner.py), its absolute
#: path printed: $1 its parent (relative to $HOME unless absolute), $2 a name prefix,
#: $3 the stamp
MAKE_DIR = ('case $1 in /*) r=$1;; *) r=$HOME/$1;; esac; mkdir -p "$r" && '
            'd=$(mktemp -d "$r/$2-XXXXXX") && printf "%s\\n" "$3" > "$d/.hvbench-owner" && '
            'echo "$d"')
#: the stamped directories in $1, $2, ...: "path<TAB>stamp" lines
OWNED = ('for r; do for d in "$r"/*/; do [ -f "$d.hvbench-owner" ] && printf "%s\\t%s\\n" '
         '"${d%/}" "$(cat "$d.hvbench-owner")"; done; done; true')
CONNECT_TIMEOUT = 20.0
CHANNEL_SECONDS = 60.0  # opening a session on a responsive host takes well under a second
RECONNECT_SECONDS = 30.0  # how long a dropped host may take to accept us again


def kill_group(group: int) -> list[str]:
    """The argv that kills a process group on the host, with its shell's own ``kill``:
    procps-ng 4.0's /bin/kill reads ``kill -9 -PGID`` as ``kill -9 -1`` (every
    process it may signal) wherever a command is exec'd rather than run as a builtin."""
    return ["sh", "-c", 'kill -9 -"$1"', "sh", str(group)]


def in_session(wrapper: str, argv: Sequence[str]) -> str:
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
        self._shell: KeptShell | None = None  # for the harness's own commands

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
        except TimeoutError:  # its message is empty
            raise TrialError(f"cannot reach {self.name}: no SSH handshake within "
                             f"{CONNECT_TIMEOUT:.0f} s (is the host up and its sshd "
                             "answering?)") from None
        except (OSError, asyncssh.Error) as exc:
            raise TrialError(f"cannot reach {self.name}: {exc or type(exc).__name__}"
                             ) from None

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
                self.run(kill_group(group), timeout=15)
        self.live_groups.clear()

    def upload(self, local: Path, remote: str, timeout: float = 1800) -> None:
        """Stream a local file into a remote path, written whole under a name of its
        own and then renamed (several hvbench, or hosts sharing a home, may upload the
        same image at once); gzip-compressed on the way unless told not to (images
        shrink 2-4x)."""
        unpack = "gzip -dc" if self.compress_uploads else "cat"
        command = shlex.join(["sh", "-c", 't=$(mktemp "$1.part.XXXXXX") || exit 1; '
                              + unpack + ' > "$t" && mv -f "$t" "$1" || { rm -f "$t"; '
                              'exit 1; }', "sh", remote])

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
        self._drop_shell()
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

    def run(self, argv: Sequence[str], timeout: float, stdin: bytes | None = None,
            timed: bool = True) -> Completed:
        """Run argv on the host in a session of its own; kill the session on time-out.
        ``timed``: its seconds from the host's clock around the command (a workload's),
        else from ours around the whole trip, through the connection's kept shell
        (hosts/sshshell.py) unless it reads stdin."""
        if not timed and stdin is None:
            return self._in_kept_shell(argv, timeout)
        return self._wrapped(WRAPPER if timed else UNTIMED_WRAPPER, argv, timeout, stdin)

    def _in_kept_shell(self, argv: Sequence[str], timeout: float) -> Completed:
        started = time.perf_counter()
        errors = bytearray()

        async def run() -> tuple[int, bytes]:
            for attempt in range(2):
                if self._shell is None or not self._shell.usable():
                    self._drop_shell()
                    self._shell = await KeptShell.start(self.open_process)
                try:
                    return await self._shell.run(argv, errors)
                except (asyncssh.Error, OSError, ShellGone):
                    # a shell that ended while idle never started the command (no pid
                    # stamp): once more in a new one
                    if attempt or PID_STAMP.search(errors.decode("utf-8", "replace")):
                        raise
                    self._drop_shell()
                    errors.clear()
            raise AssertionError("unreachable")

        try:
            code, out = self.call(asyncio.wait_for(run(), timeout))
        except TimeoutError:
            self._drop_shell()  # it may still be waiting for the command
            self._kill_group(errors)
            raise TrialTimeout(f"{Path(str(argv[0])).name} exceeded its {timeout:.0f} s time "
                               f"limit on {self.name} and was killed") from None
        except (asyncssh.Error, OSError, ShellGone) as exc:
            self._drop_shell()
            found = PID_STAMP.search(errors.decode("utf-8", "replace"))
            if found:  # killed once the host is reached again
                self.live_groups.add(int(found.group(1)))
            raise TrialError(f"the connection to {self.name} broke under "
                             f"{Path(str(argv[0])).name}: {exc}") from None
        stderr = errors.decode("utf-8", "replace")
        if PID_STAMP.search(stderr) is None:  # the kept shell never ran our function
            raise TrialError(f"{self.name} could not start {argv[0]}: {stderr.strip()[:200]}")
        return Completed(tuple(map(str, argv)), out.decode("utf-8", "replace"),
                         PID_STAMP.sub("", stderr, count=1), code,
                         time.perf_counter() - started)

    def _drop_shell(self) -> None:
        shell, self._shell = self._shell, None
        if shell is not None:
            shell.close()

    def _kill_group(self, errors: bytearray) -> None:
        """Kill the process group a command's pid stamp names (after a time-out)."""
        found = PID_STAMP.search(errors.decode("utf-8", "replace"))
        if found:
            with contextlib.suppress(Exception):
                self.call(asyncio.wait_for(self._require().run(
                    shlex.join(kill_group(int(found.group(1)))), check=False), 15))
                self.live_groups.discard(int(found.group(1)))

    def run_counted(self, argv: Sequence[str], timeout: float
                    ) -> tuple[Completed, KernelCounters]:
        """``run``, with the host kernel's counters read just before and after."""
        done = self._wrapped(COUNTED_WRAPPER, argv, timeout, None)
        readings = KERNEL_STAMP.findall(done.stderr)
        counters = KernelCounters(readings[0], readings[-1]) if len(readings) >= 2 else \
            KernelCounters("", "")
        return replace(done, stderr=KERNEL_STAMP.sub("", done.stderr)), counters

    def _wrapped(self, wrapper: str, argv: Sequence[str], timeout: float,
                 stdin: bytes | None) -> Completed:
        command = in_session(wrapper, argv)
        started = time.perf_counter()
        errors = bytearray()
        try:
            code, out = self.call(self._run(command, stdin, timeout, errors))
        except TimeoutError:
            self._kill_group(errors)
            raise TrialTimeout(f"{Path(str(argv[0])).name} exceeded its {timeout:.0f} s time "
                               f"limit on {self.name} and was killed") from None
        except (asyncssh.Error, OSError) as exc:
            raise TrialError(f"the connection to {self.name} broke: {exc}") from None
        stderr = errors.decode("utf-8", "replace")
        seconds = time.perf_counter() - started
        begin, end = PID_STAMP.search(stderr), END_STAMP.search(stderr)
        if begin and end and not begin.group(3) and not end.group(2):
            seconds = (int(end.group(1)) - int(begin.group(2))) / 1e9
        if begin is None:  # the wrapper never started: setsid or sh missing
            raise TrialError(f"{self.name} could not start {argv[0]}: "
                             f"{stderr.strip()[:200]}")
        stderr = END_STAMP.sub("", PID_STAMP.sub("", stderr, count=1), count=1)
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
                    found = PID_STAMP.search(errors.decode("utf-8", "replace"))
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
