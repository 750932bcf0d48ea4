"""The Host interface: where a platform's host-side commands (qemu, xl) run.

A guest driver uses only this interface, so the same code boots a guest on this
machine, on a server over SSH, or inside a nested lab. Everything a driver
needs is here: run a command, start a long-lived process whose output lands in
local files, reach a UNIX socket on the host, place files (the guest image) in
the host's cache, and view the host itself as a :class:`Machine`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..appliance.image import Image
from ..errors import TrialError, UsageError
from ..machine import Completed, Machine
from .loop import pause


class HostProcess(ABC):
    """A long-running process on a host (QEMU) in a session of its own."""

    @abstractmethod
    def poll(self) -> int | None:
        """The exit code once the process has ended, else None."""

    @abstractmethod
    def kill(self) -> None:
        """Kill the whole session, whatever state it is in."""

    @abstractmethod
    def wait(self, seconds: float) -> int | None:
        """Wait up to ``seconds`` for the end; the exit code or None."""


class Host(ABC):
    """A machine whose hypervisor hvbench drives."""

    label: str = "this host"
    #: True when the host is reached over the network (its paths are not ours)
    remote: bool = False
    #: how this host is nested, for reports ("" on a real host)
    nested: str = ""
    #: a bridge this host offers its guests, with the host's address on it
    #: ("xenbr0", "10.231.0.1/24"): the Xen lab has one; real hosts are configured
    guest_bridge: tuple[str, str] | None = None
    #: a directory of this machine that the host sees too, and where: (here, there) (a
    #: lab mounts the image cache), so files under it need no copy
    shared_images: tuple[Path, str] | None = None
    #: True when hvbench stops the whole host, and everything left in it, as soon as it
    #: closes what runs there (a lab this run booted): nothing in it needs tearing down
    disposable: bool = False

    def libvirt_uri(self) -> str | None:
        """The URI of a libvirt daemon hvbench itself runs on this host (a lab's, started
        on first use); None where the user says which (a platform's ``uri``)."""
        return None

    @property
    @abstractmethod
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop every stream to this host lives on."""

    @abstractmethod
    def run(self, argv: Sequence[str], timeout: float, stdin: bytes | None = None
            ) -> Completed:
        """Run argv on the host in a session of its own (killed on time-out)."""

    def check(self, argv: Sequence[str], timeout: float, what: str) -> Completed:
        """run(), raising a TrialError that names the host when the command fails."""
        done = self.run(argv, timeout)
        if done.exit_code != 0:
            raise TrialError(f"{what} failed on {self.label}: "
                             f"{(done.stderr or done.stdout).strip()[:200]}")
        return done

    def make_scratch_disk(self, path: str, size: str) -> None:
        """A sparse raw disk image of ``size`` ('2G') at ``path``, formatted ext4 here when
        the host has mke2fs (fast; the guest's init formats it otherwise). Here, the
        room it may grow to is checked first: a disk filling up under a guest would
        stall it or fail its workloads with errors that hide the cause."""
        if not self.remote:
            needed = int(size[:-1]) << (30 if size.endswith("G") else 20)
            free = shutil.disk_usage(Path(path).parent).free
            if free < needed:
                raise UsageError(f"the guest's scratch disk needs {size} at "
                                 f"{Path(path).parent}, but only {free / 2**20:.0f} MiB are "
                                 "free there: free space (or point HVBENCH_HOME elsewhere) "
                                 "or lower the platform's disk_size")
        self.check(["truncate", "-s", size, path], 120, "creating the scratch disk")
        mkfs = self.native().which("mke2fs")
        if mkfs:
            self.check([mkfs, "-q", "-F", "-t", "ext4", "-E",
                        "lazy_itable_init=1,lazy_journal_init=1", path], 300,
                       "formatting the scratch disk")

    def make_tap(self, bridge: str) -> str:
        """A new tap device enslaved to ``bridge`` (needs root on the host); remove it with
        ``remove_tap``."""
        if self.run(["id", "-u"], timeout=30).stdout.strip() != "0":
            raise UsageError(f"bridge networking needs root on {self.label} (tap devices); "
                             "use network = 'user' otherwise")
        tap = f"hvb{os.urandom(4).hex()}"
        ip = self._iproute2()
        for argv in ([ip, "tuntap", "add", "dev", tap, "mode", "tap"],
                     [ip, "link", "set", tap, "master", bridge],
                     [ip, "link", "set", tap, "up"]):
            done = self.run(argv, timeout=30)
            if done.exit_code != 0:
                self.remove_tap(tap)
                raise TrialError(f"cannot set up tap {tap} on {self.label}: "
                                 f"{done.stderr.strip()[:200]}")
        return tap

    def remove_tap(self, tap: str) -> None:
        with contextlib.suppress(TrialError):
            self.run([self._iproute2(), "link", "del", tap], timeout=30)

    def _iproute2(self) -> str:
        """iproute2's ``ip`` by its path: a busybox shell (a lab host's) prefers its own
        applet, which has neither ``tuntap`` nor JSON output."""
        return self.native().which("ip") or "ip"

    def pause(self, seconds: float) -> None:
        """Let ``seconds`` pass while this host's streams flow (output copied from its
        processes, keep-alives)."""
        pause(self.loop, seconds)

    def bridge_address(self, bridge: str) -> str | None:
        """This host's first IPv4 address on ``bridge``, or None (no such bridge or no
        address)."""
        done = self.run([self._iproute2(), "-j", "-4", "addr", "show", "dev", bridge], timeout=30)
        try:
            found = [a["local"] for link in json.loads(done.stdout or "[]")
                     for a in link.get("addr_info", [])]
        except (ValueError, KeyError, TypeError):
            found = []
        return str(found[0]) if done.exit_code == 0 and found else None

    @abstractmethod
    def start(self, argv: Sequence[str], stdout: Path, stderr: Path) -> HostProcess:
        """Start a long-lived process; its output is copied into the local files."""

    @abstractmethod
    async def open_unix(self, path: str) -> tuple[Any, Any]:
        """(reader, writer) streams to a UNIX socket on the host."""

    @abstractmethod
    async def open_stream(self, argv: Sequence[str], tty: bool = False
                          ) -> tuple[Any, Any, Any]:
        """(reader, writer, handle) on a host command's stdout and stdin (a console
        client such as ``xl console``, which reads its input only from a terminal:
        ``tty=True`` gives it one); ``handle.close()`` ends the command."""

    @abstractmethod
    def make_dir(self, purpose: str) -> str:
        """A new private directory on the host: 'guest' (roomy) or 'socket' (short path)."""

    @abstractmethod
    def remove(self, path: str) -> None:
        """Remove a directory made by make_dir (best effort)."""

    @abstractmethod
    def place(self, files: dict[str, Path], key: str,
              say: Callable[[str], None] | None = None) -> dict[str, str]:
        """Make local files available on the host under a content key; their host paths."""

    @abstractmethod
    def native(self) -> Machine:
        """The host itself as a Machine (servers for guest network workloads run here)."""

    def use_bundle(self, image: Image, say: Callable[[str], None]) -> None:
        """Run workload tools from this appliance's bundle rather than the host's own
        (an SSH host's tools may be missing or other versions); other hosts ignore it."""
        return None

    def alive(self) -> bool:
        return True

    @abstractmethod
    def reconnect(self) -> None:
        """Reach the host again after a dropped link."""

    @abstractmethod
    def close(self) -> None:
        """Release the host (connections, event loop)."""
