"""The Machine contract, the ground floor every other layer builds on.

A Machine runs argv lists (never shell strings), moves small files and describes
itself, so workloads and the runner never care what kind of machine they are on:
the host itself, a guest reached through its agent, a host over SSH. What a
Machine can do beyond that is declared here (``local``, ``kvmprobe``,
``boot_timings``), never discovered by probing attributes.
"""

from __future__ import annotations

import binascii
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .collect import Collector, ProcStat
from .errors import TrialError
from .scripts import Reply, Runs, Script, run_scripts


@dataclass(frozen=True)
class Completed:
    """The result of one finished command on a Machine."""

    argv: tuple[str, ...]
    stdout: str
    stderr: str
    exit_code: int
    seconds: float  # wall time measured on the machine that ran the command
    #: the same command's wall time seen from the host that drove it (None when that is
    #: the machine itself): a guest clock that disagrees makes every rate wrong
    observed: float | None = None

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
            observed=None if any(p.observed is None for p in parts)
            else sum(p.observed or 0.0 for p in parts),
        )


class Background(ABC):
    """A process left running during a trial (e.g. an iperf3 server)."""

    @abstractmethod
    def wait_for_output(self, needle: str, timeout: float) -> None:
        """Block until ``needle`` appears in the process output, or raise TrialError."""

    @abstractmethod
    def running(self) -> bool:
        """Whether the process is still running (an aggressor that ended early did not
        disturb the whole trial)."""

    @abstractmethod
    def stop(self) -> Completed:
        """Stop the process (and its children) and return what it printed."""


class Machine(ABC):
    """Somewhere commands run: the host itself or a guest reached by a transport."""

    #: shown in messages, e.g. "native" or "qemu-tcg guest"
    label: str = "machine"
    #: hvbench itself runs here, so tools it builds on the spot (hvprobe) run directly
    local: bool = False
    #: this machine measures VM exits through /dev/kvm (the kvm-exits workload)
    kvmprobe: bool = False
    #: a guest's boot phases in seconds (QEMU start to kernel, to agent...); None when
    #: the machine did not boot for this run (the host itself)
    boot_timings: dict[str, float] | None = None

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

    def which_all(self, binaries: Sequence[str]) -> dict[str, str | None]:
        """Each program's path (None where absent); a remote machine or a guest looks
        them all up in one round trip and remembers them for ``which``."""
        return {binary: self.which(binary) for binary in binaries}

    def run_each(self, commands: Sequence[Sequence[str]], timeout: float) -> list[Reply]:
        """Several short commands' outputs (stdout, then stderr) and exit codes; a
        remote machine or a guest runs them all in one round trip. A wrapper that
        rewrites commands (bundled tools, pinning) runs each through ``run``."""
        replies = []
        for argv in commands:
            done = self.run(argv, timeout=timeout)
            replies.append(Reply(done.stdout + done.stderr, done.exit_code))
        return replies

    @abstractmethod
    def read_file(self, path: str) -> str | None:
        """Text of a small file on the machine, or None when absent/unreadable."""

    def read_files(self, paths: Sequence[str]) -> dict[str, str | None]:
        """Several small files (None where absent); a remote machine reads them all in
        one round trip."""
        return {path: self.read_file(path) for path in paths}

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

    def collectors(self) -> list[Collector]:
        """What to record around each trial on this machine (collect.py): its own
        kernel's view; guests add their hypervisor's."""
        return [ProcStat(self)]

    def tile(self) -> list[Machine]:
        """The guests that run each trial together, at one moment (a consolidation
        tile); [] for a single machine."""
        return []

    def neighbours(self) -> list[Machine]:
        """Guests booted beside this one on its host for an interference study (they
        run aggressors while this one is measured); [] when there are none."""
        return []

    def hardware_host(self) -> Machine:
        """The machine whose hardware this one runs on: a guest's host (natively, the
        machine itself). Aggressors with ``where = "host"`` run there."""
        return self

    def beside_trial(self) -> contextlib.AbstractContextManager[dict[str, Any]]:
        """What runs beside every trial on this machine (an interference condition's
        aggressors), entered before the trial is prepared and left after it; its value
        is recorded with the trial. Nothing for a plain machine."""
        return contextlib.nullcontext({})

    def healthy(self) -> bool:
        """False once the machine needs a restart (a guest that crashed or hung)."""
        return True

    def restart(self) -> None:
        """Bring a fresh machine up in place (guests reboot; the host has nothing to do)."""
        return None

    def close(self) -> None:
        """Release what the machine holds (scratch files, servers, a guest); idempotent."""
        return None



class WrappedMachine(Machine):
    """A machine that runs every command of ``inner`` through ``rewrite`` (another
    loader, a CPU affinity) and is ``inner`` in everything else."""

    def __init__(self, inner: Machine):
        self.inner = inner
        self.label = inner.label
        self.local = inner.local
        self.kvmprobe = inner.kvmprobe

    def rewrite(self, argv: Sequence[str]) -> list[str]:
        return [str(a) for a in argv]

    def run(self, argv: Sequence[str], timeout: float, stdin: bytes | None = None) -> Completed:
        done = self.inner.run(self.rewrite(argv), timeout, stdin)
        return Completed(tuple(str(a) for a in argv), done.stdout, done.stderr, done.exit_code,
                         done.seconds)

    def spawn(self, argv: Sequence[str]) -> Background:
        return self.inner.spawn(self.rewrite(argv))

    def which(self, binary: str) -> str | None:
        return self.inner.which(binary)

    def which_all(self, binaries: Sequence[str]) -> dict[str, str | None]:
        return self.inner.which_all(binaries)

    def read_file(self, path: str) -> str | None:
        return self.inner.read_file(path)

    def read_files(self, paths: Sequence[str]) -> dict[str, str | None]:
        return self.inner.read_files(paths)

    def write_file(self, path: str, data: bytes) -> None:
        self.inner.write_file(path, data)

    def scratch_dir(self) -> str:
        return self.inner.scratch_dir()

    def free_port(self) -> int:
        return self.inner.free_port()

    def healthy(self) -> bool:
        return self.inner.healthy()

    def restart(self) -> None:
        self.inner.restart()

    def neighbours(self) -> list[Machine]:
        return self.inner.neighbours()

    def hardware_host(self) -> Machine:
        return self.inner.hardware_host()

    def collectors(self) -> list[Collector]:
        """The inner machine's: its commands are this machine's, run through it."""
        return self.inner.collectors()

    def close(self) -> None:
        self.inner.close()

    def info(self) -> dict[str, Any]:
        return dict(self.inner.info())


#: several files in one command (a fixed script; the paths are its arguments): a line
#: per file, '+' and its base64 or '-' where it cannot be read
READ_MANY = ('command -v base64 >/dev/null || exit 3; '
             'for f; do if c=$(base64 -w0 < "$f" 2>/dev/null); then echo "+$c"; '
             'else echo "-"; fi; done')


def read_many(machine: Runs, paths: Sequence[str]) -> dict[str, str | None] | None:
    """Small files of a POSIX machine read in one command (each command costs a round
    trip to a remote host or through a guest's agent); None where that machine has no
    ``base64`` to send them with."""
    if not paths:
        return {}
    done = machine.run(["sh", "-c", READ_MANY, "sh", *paths], timeout=60)
    lines = done.stdout.splitlines()
    if done.exit_code != 0 or len(lines) != len(paths):
        return None
    try:
        return {path: binascii.a2b_base64(line[1:]).decode("utf-8", "replace")
                if line.startswith("+") else None
                for path, line in zip(paths, lines, strict=True)}
    except binascii.Error:
        return None


def look_up(machine: Runs, script: str, binaries: Sequence[str],
            known: dict[str, str | None], timeout: float) -> dict[str, str | None]:
    """Programs' paths, those not in ``known`` looked up with one command (``script``
    prints a line per argument: its absolute path, or anything else when absent) and
    remembered there."""
    unknown = [b for b in dict.fromkeys(binaries) if b not in known]
    if unknown:
        done = machine.run(["sh", "-c", script, "sh", *unknown], timeout=timeout)
        lines = done.stdout.splitlines()
        if len(lines) != len(unknown):
            raise TrialError(f"cannot look up programs on {machine.label}: "
                             f"{(done.stderr or done.stdout).strip()[:200]}")
        known.update({b: line if line.startswith("/") else None
                      for b, line in zip(unknown, lines, strict=True)})
    return {b: known[b] for b in binaries}


def run_together(machine: Runs, commands: Sequence[Sequence[str]], timeout: float
                 ) -> list[Reply]:
    """``run_each`` for a machine whose commands are run as given (a guest, an SSH
    host): all of them in one command."""
    return run_scripts(machine, [Script('"$@"', tuple(argv)) for argv in commands],
                       timeout=timeout * max(1, len(commands)))


def run_in_order(machine: Machine, commands: Sequence[Sequence[str]], timeout: float
                 ) -> list[Completed]:
    """A workload's commands one after the other, stopping at the first that fails."""
    parts: list[Completed] = []
    for argv in commands:
        parts.append(machine.run(argv, timeout=timeout))
        if parts[-1].exit_code != 0:
            break
    return parts

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

    def collectors(self) -> list[Collector]:
        return []

    def healthy(self) -> bool:
        return False

    def restart(self) -> None:
        raise self._fail()

    def info(self) -> dict[str, Any]:
        return {"down": self.reason}
