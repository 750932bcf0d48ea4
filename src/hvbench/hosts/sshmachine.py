"""The SSH host itself as a machine (the ``native`` platform on an ``ssh://`` host):
commands with their own start and end stamps, background processes, files read in
one round trip, a scratch directory of its own."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from typing import Any

import asyncssh

from ..collect import Collector, CountedKernel
from ..errors import TrialError, TrialTimeout
from ..machine import Background, Completed, Machine, look_up, read_many, run_together
from ..scripts import Reply
from .agent import KernelCounters
from .owner import stamp
from .ssh import END_STAMP, MAKE_DIR, PID_STAMP, WRAPPER, SshConnection, in_session, kill_group


class SshBackground(Background):
    """A long-running process on the host (a network server for a workload)."""

    def __init__(self, connection: SshConnection, argv: Sequence[str]):
        self.connection = connection
        self.argv = tuple(map(str, argv))
        command = in_session(WRAPPER, self.argv)
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
            match = PID_STAMP.search(self._output)
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
                self.connection.run(kill_group(self._pgid), timeout=15, timed=False)
        with contextlib.suppress(Exception):
            self._process.close()
        return Completed(self.argv, END_STAMP.sub("", PID_STAMP.sub("", self._output)), "", 0,
                         time.perf_counter() - self._started)


#: each argument's absolute path on $PATH (and the sbin directories), or '-'
_WHICH_ALL = ('for b; do f=-; IFS=:; for d in $PATH /usr/sbin /sbin; do '
              '[ -f "$d/$b" ] && [ -x "$d/$b" ] && { f=$d/$b; break; }; done; '
              'unset IFS; printf "%s\\n" "$f"; done')


class _Untimed:
    """The host as hvbench's own commands use it (files, lookups, metadata): timed from
    here, not by two reads of the host's clock (a process each: ~30 ms in a nested
    lab); its workloads are timed by ``SshMachine.run``."""

    def __init__(self, connection: SshConnection):
        self.connection = connection

    @property
    def label(self) -> str:
        return self.connection.name

    def run(self, argv: Sequence[str], timeout: float, stdin: bytes | None = None
            ) -> Completed:
        return self.connection.run(argv, timeout, stdin, timed=False)


class SshMachine(Machine):
    """The SSH host itself, as the ``native`` platform sees it."""

    def __init__(self, connection: SshConnection, shared: bool = False):
        self.connection = connection
        self._harness = _Untimed(connection)
        self.shared = shared  # the connection belongs to an SshHost: never close it here
        self.label = connection.name
        self._scratch: str | None = None
        self._stale: list[str] = []  # scratch dirs a broken connection could not remove
        self._backgrounds: list[SshBackground] = []
        self.nested = ""
        #: the kernel counters read around each command since count_kernel()
        self._counted: list[KernelCounters] | None = None
        self._which: dict[str, str | None] = {}  # programs looked up, for this session

    def open(self) -> None:
        if not self.connection.alive():
            self.connection.connect()
        made = self._harness.run(  # an absolute path in one round trip
            ["sh", "-c", MAKE_DIR, "sh", ".local/share/hvbench/scratch", "hvbench", stamp()],
            timeout=60)
        path = made.stdout.strip()
        if made.exit_code != 0 or not path.startswith("/"):
            raise TrialError(f"cannot make a scratch directory on {self.label}: "
                             f"{(made.stderr or made.stdout).strip()[:200]}")
        self._scratch = path

    def run(self, argv: Sequence[str], timeout: float, stdin: bytes | None = None) -> Completed:
        if self._counted is None or stdin is not None:
            return self.connection.run(argv, timeout, stdin)
        done, counters = self.connection.run_counted(argv, timeout)
        self._counted.append(counters)
        return done

    def count_kernel(self) -> None:
        """From now on, read the kernel's counters around each command, in its own trip
        (each SSH command of its own costs a round trip and a process on the host)."""
        self._counted = []

    def kernel_counted(self) -> list[KernelCounters]:
        """The counters read around each command since ``count_kernel``; stops counting."""
        counted, self._counted = self._counted or [], None
        return counted

    def collectors(self) -> list[Collector]:
        return [CountedKernel(self)]

    def spawn(self, argv: Sequence[str]) -> Background:
        background = SshBackground(self.connection, argv)
        self._backgrounds.append(background)
        return background

    def which(self, binary: str) -> str | None:
        """The program's absolute path (never a shell builtin or busybox applet name)."""
        return self.which_all([binary])[binary]

    def run_each(self, commands: Sequence[Sequence[str]], timeout: float) -> list[Reply]:
        return run_together(self._harness, commands, timeout)

    def which_all(self, binaries: Sequence[str]) -> dict[str, str | None]:
        """In one command (a line per program, its path or '-'), remembered for the
        session: each command costs an SSH round trip."""
        return look_up(self._harness, _WHICH_ALL, binaries, self._which, 30)

    def read_file(self, path: str) -> str | None:
        done = self._harness.run(["cat", path], timeout=60)
        return done.stdout if done.exit_code == 0 else None

    def read_files(self, paths: Sequence[str]) -> dict[str, str | None]:
        """All in one command; one by one where the host has no base64."""
        found = read_many(self._harness, paths)
        return super().read_files(paths) if found is None else found

    def write_file(self, path: str, data: bytes) -> None:
        done = self._harness.run(["sh", "-c", 'cat > "$1"', "sh", path], timeout=120,
                                 stdin=data)
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
            done = self._harness.run(["sh", "-c", 'if command -v ss >/dev/null; then '
                                      'ss -Htln "sport = :$1"; else netstat -tln | '
                                      'grep ":$1 "; fi | wc -l', "sh", str(port)],
                                     timeout=30)
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
                self._harness.run(["rm", "-rf", "--", stale], timeout=120)
        self._stale.clear()

    def close(self) -> None:
        for background in self._backgrounds:
            with contextlib.suppress(Exception):
                background.stop()
        self._backgrounds.clear()
        if self._scratch and self.connection.alive():
            with contextlib.suppress(TrialError):
                self._harness.run(["rm", "-rf", "--", self._scratch], timeout=120)
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
