"""The Platform / Machine contract every driver implements.

A Platform is where workloads run (native, a QEMU guest, a Xen domU, ...), with
its settings. ``Platform.open()`` yields a Machine and always cleans up. A Machine
runs argv lists (never shell strings), moves small files and describes itself, so
workloads and the runner never care what kind of machine they are on.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..errors import TrialError, UsageError

SettingsT = TypeVar("SettingsT", bound=BaseModel)


@dataclass(frozen=True)
class Completed:
    """The result of one finished command on a Machine."""

    argv: tuple[str, ...]
    stdout: str
    stderr: str
    exit_code: int
    seconds: float  # wall time measured on the machine that ran the command

    @classmethod
    def combine(cls, parts: Sequence[Completed]) -> Completed:
        """Join several commands of one workload into one output to parse."""
        if not parts:
            raise ValueError("nothing to combine")
        argv: tuple[str, ...] = ()
        for index, part in enumerate(parts):
            argv += (("&&",) if index else ()) + part.argv
        return cls(
            argv=argv,
            stdout="".join(p.stdout for p in parts),
            stderr="".join(p.stderr for p in parts),
            exit_code=next((p.exit_code for p in parts if p.exit_code != 0), 0),
            seconds=sum(p.seconds for p in parts),
        )


class Background(ABC):
    """A process left running during a trial (e.g. an iperf3 server)."""

    @abstractmethod
    def wait_for_output(self, needle: str, timeout: float) -> None:
        """Block until ``needle`` appears in the process output, or raise TrialError."""

    @abstractmethod
    def stop(self) -> Completed:
        """Stop the process (and its children) and return what it printed."""


class Machine(ABC):
    """Somewhere commands run: the host itself or a guest reached by a transport."""

    #: shown in messages, e.g. "native" or "qemu-tcg guest"
    label: str = "machine"

    @abstractmethod
    def run(
        self, argv: Sequence[str], timeout: float, stdin: bytes | None = None
    ) -> Completed:
        """Run argv with a time limit; raise TrialTimeout when it is exceeded."""

    @abstractmethod
    def spawn(self, argv: Sequence[str]) -> Background:
        """Start argv in the background; the caller must ``stop()`` it."""

    @abstractmethod
    def which(self, binary: str) -> str | None:
        """Path of ``binary`` on this machine, or None."""

    @abstractmethod
    def read_file(self, path: str) -> str | None:
        """Text of a small file on the machine, or None when absent/unreadable."""

    @abstractmethod
    def write_file(self, path: str, data: bytes) -> None:
        """Create or replace a small file on the machine."""

    @abstractmethod
    def scratch_dir(self) -> str:
        """A private directory for workload files, removed when the machine closes."""

    @abstractmethod
    def free_port(self) -> int:
        """A TCP port that is free on the machine's loopback."""

    def info(self) -> dict[str, Any]:
        """Platform-specific description (QEMU command line, xl.cfg, ...)."""
        return {}

    def network_absent(self) -> str | None:
        """Why this machine has no network to measure (network workloads are then
        skipped, not failed), or None."""
        return None

    def network_peer(self) -> tuple[Machine, str, str]:
        """Where a workload's network server runs: (machine, bind address, address
        the client connects to). Natively the server shares the loopback."""
        return self, "127.0.0.1", "127.0.0.1"

    def healthy(self) -> bool:
        """False once the machine needs a restart (a guest that crashed or hung)."""
        return True

    def restart(self) -> None:
        """Bring a fresh machine up in place (guests reboot; the host has nothing to do)."""
        return None


@dataclass
class Platform(ABC):
    """A named place to run workloads, with its settings."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    #: workloads the campaign runs (guest images carry only their tools)
    workloads: list[str] | None = None
    #: where long set-up steps report progress
    say: Callable[[str], None] | None = None
    #: set by the runner: where this platform runs, and how to reach it
    host: str = "local"
    ssh_identity: str | None = None
    accept_new_host_key: bool = False

    def parse_settings(self, model: type[SettingsT]) -> SettingsT:
        """The settings as ``model``; a bad one is a usage error naming it."""
        try:
            return model(**self.settings)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise UsageError(f"platform {self.name}: setting "
                             f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
                             ) from None

    @contextlib.contextmanager
    def guest_on_host(self, appliance: Any, make: Callable[[Any], Machine]
                      ) -> Iterator[Machine]:
        """Connect to this platform's host, boot the guest ``make(host)`` returns on it,
        and always tear both down. On an SSH host the host's own workload tools (the
        servers for guest network workloads) come from the guest's appliance."""
        from ..hosts import connect

        host = connect(self.host, self.ssh_identity, self.accept_new_host_key, self.say)
        if self.host.startswith("ssh:"):
            host.bundle, host.say = appliance, self.say
        try:
            machine = make(host)
            try:
                machine.boot()  # type: ignore[attr-defined]
                yield machine
            finally:
                machine.close()  # type: ignore[attr-defined]
        finally:
            host.close()

    def validate(self) -> None:
        """Reject bad settings before anything starts (UsageError)."""
        return None

    @abstractmethod
    def open(self) -> contextlib.AbstractContextManager[Machine]:
        """Bring the machine up; the context manager always tears it down."""

    def describe(self) -> dict[str, Any]:
        """Settings as recorded in the run metadata."""
        return {"name": self.name, "kind": type(self).__name__, **self.settings}


@contextlib.contextmanager
def stopping(background: Background) -> Iterator[Background]:
    """Context manager that always stops a background process."""
    try:
        yield background
    finally:
        background.stop()


class DownMachine(Machine):
    """Stands in for a platform that could not start: every trial on it fails with
    the reason, while the other platforms of the run go on."""

    def __init__(self, name: str, reason: str):
        self.label = f"platform {name}"
        self.reason = reason

    def _fail(self) -> TrialError:
        return TrialError(f"{self.label} is down: {self.reason}")

    def run(self, argv: Sequence[str], timeout: float, stdin: bytes | None = None) -> Completed:
        raise self._fail()

    def spawn(self, argv: Sequence[str]) -> Background:
        raise self._fail()

    def which(self, binary: str) -> str | None:
        raise self._fail()

    def read_file(self, path: str) -> str | None:
        raise self._fail()

    def write_file(self, path: str, data: bytes) -> None:
        raise self._fail()

    def scratch_dir(self) -> str:
        raise self._fail()

    def free_port(self) -> int:
        raise self._fail()

    def healthy(self) -> bool:
        return False

    def restart(self) -> None:
        raise self._fail()

    def info(self) -> dict[str, Any]:
        return {"down": self.reason}
