"""An SSH host as a hypervisor host: long-lived processes (QEMU) that die with the
connection, UNIX sockets reached through it, files placed in its cache once by
content, and the host itself as a machine."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import asyncssh

from ..appliance.image import Image
from ..errors import TrialError
from ..machine import Completed, Machine
from .base import Host, HostProcess
from .loop import pause, run_quietly
from .owner import parse_stamp, stale, stamp
from .ssh import MAKE_DIR, OWNED, SshConnection, in_session, kill_group
from .sshmachine import SshMachine

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
        command = in_session(_LIFELINE, self.argv)
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
                self.connection.run(kill_group(self.group), timeout=15)
            self.connection.live_groups.discard(self.group)
        with contextlib.suppress(Exception):
            self._process.close()  # the lifeline fires even if the kill above did not run
        for task in self._tasks:
            task.cancel()
        run_quietly(self.connection.loop, _gathered(self._tasks))


#: the SSH hosts this process has swept for a dead hvbench's leftovers
_SWEPT: set[str] = set()


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
        if self.connection.name not in _SWEPT:  # once per host and process
            _SWEPT.add(self.connection.name)
            with contextlib.suppress(TrialError):
                self.sweep()
        return self

    def home(self) -> str:
        if self._home is None:
            done = self.check(["sh", "-c", 'echo "$HOME"'], 30, "finding the home directory")
            self._home = done.stdout.strip() or "/tmp"
        return self._home

    def run(self, argv: Sequence[str], timeout: float, stdin: bytes | None = None
            ) -> Completed:
        # the harness's own commands (xl, collectors, files): no workload is timed here
        return self.connection.run(argv, timeout, stdin, timed=False)

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
        """A directory of its own (stamped with this hvbench, see ``sweep``): a socket
        directory under /tmp (a short path), a guest's under the host's data."""
        parent, prefix = ("/tmp", "hvbench-sock") if purpose == "socket" else \
            (".local/share/hvbench/guests", purpose)
        return self.check(["sh", "-c", MAKE_DIR, "sh", parent, prefix, stamp()], 60,
                          "making a directory").stdout.strip()

    def sweep(self) -> list[str]:
        """Remove what a dead hvbench of this machine left on the host (SIGKILL runs no
        clean-up; its guests died with its connection): the directories stamped with
        its name. The paths removed."""
        data = f"{self.home()}/.local/share/hvbench"
        roots = [f"{data}/guests", f"{data}/scratch", "/tmp"]
        listed = self.run(["sh", "-c", OWNED, "sh", *roots], timeout=60)
        ours = (f"{data}/guests/", f"{data}/scratch/", "/tmp/hvbench-sock-")
        dead = [path for path, _, text in (line.partition("\t")
                                           for line in listed.stdout.splitlines())
                if path.startswith(ours) and "/../" not in path
                and stale(parse_stamp(text))]
        if dead:
            self.run(["rm", "-rf", "--", *dead], timeout=120)
        return dead

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
