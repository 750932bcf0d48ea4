"""Collectors: what the machine and its hypervisor did during a trial.

A collector is started just before a trial's measured commands and read just after
(never inside them); what it returns is stored as the trial's ``accounting``. Each
kind of Machine declares the collectors it supports (``Machine.collectors``): every
machine has its own kernel's view (``ProcStat``: CPU time by kind, steal,
interrupts), a QEMU guest adds its host's view of QEMU's threads
(``platforms/accounting.py``).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar

from .errors import HvbenchError, TrialError
from .scripts import Reply, Runs, Script, run_scripts

#: /proc/stat's cpu line: user nice system idle iowait irq softirq steal (USER_HZ ticks)
_CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
USER_HZ = 100  # what /proc/stat counts in on Linux, whatever the kernel's HZ
R = TypeVar("R")


class _Reads(Protocol):
    def read_file(self, path: str) -> str | None: ...


class _Snapshot(Protocol):
    @property
    def before(self) -> str:
        """/proc/uptime then /proc/stat, just before a command."""

    @property
    def after(self) -> str:
        """The same just after it."""


class _Counts(Protocol):
    """A machine whose agent reads its kernel's counters around each command."""

    def count_kernel(self) -> None: ...

    def kernel_counted(self) -> Sequence[_Snapshot]: ...


class Collector(ABC):
    """Counters around one trial."""

    name: str

    @abstractmethod
    def start(self) -> None:
        """Take the 'before' reading."""

    @abstractmethod
    def stop(self) -> dict[str, Any]:
        """Take the 'after' reading; what happened in between."""


class Sampling(Collector, Generic[R]):
    """A collector that reads the same counters before and after the trial."""

    def __init__(self) -> None:
        self._before: R | None = None
        self._started = 0.0

    @abstractmethod
    def read(self) -> R:
        """The counters now."""

    @abstractmethod
    def difference(self, before: R, after: R, seconds: float) -> dict[str, Any]:
        """What happened in ``seconds`` between the two readings."""

    def start(self) -> None:
        self._before = self.read()
        self._started = time.monotonic()

    def stop(self) -> dict[str, Any]:
        after = self.read()
        seconds = max(time.monotonic() - self._started, 1e-9)
        if self._before is None:
            raise ValueError("stopped before it was started")
        return {"seconds": round(seconds, 4), **self.difference(self._before, after, seconds)}


def parse_proc_stat(text: str) -> dict[str, float]:
    """The machine-wide cpu line (seconds) and the interrupt and context-switch totals
    of a /proc/stat."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            for key, value in zip(_CPU_FIELDS, parts[1:], strict=False):
                found[key] = int(value) / USER_HZ
        elif parts and parts[0] in ("intr", "ctxt") and len(parts) > 1:
            found[parts[0]] = float(parts[1])
    if "steal" not in found:
        raise ValueError("no cpu line with a steal column in /proc/stat")
    return found


class ProcStat(Sampling[dict[str, float]]):
    """The machine's own kernel: where its CPUs' time went (user, system, irq, idle,
    steal: time a guest's vCPUs waited for a physical CPU), and interrupts and
    context switches per second."""

    def __init__(self, machine: _Reads, name: str = "kernel"):
        super().__init__()
        self.machine = machine
        self.name = name

    def read(self) -> dict[str, float]:
        return parse_proc_stat(self.machine.read_file("/proc/stat") or "")

    def difference(self, before: dict[str, float], after: dict[str, float], seconds: float
                   ) -> dict[str, Any]:
        return kernel_difference(before, after, seconds)


def kernel_difference(before: dict[str, float], after: dict[str, float], seconds: float
                      ) -> dict[str, Any]:
    """What a kernel's CPUs did between two readings of /proc/stat ``seconds`` apart."""
    delta = {k: after[k] - before.get(k, 0.0) for k in after}
    busy = sum(delta.get(k, 0.0) for k in _CPU_FIELDS)
    found: dict[str, Any] = {}
    if busy > 0:  # shares of all CPU time the kernel accounted in the window
        for key in ("user", "system", "irq", "softirq", "iowait", "idle", "steal"):
            found[f"{key}_share"] = round(delta.get(key, 0.0) / busy, 5)
    for key in ("intr", "ctxt"):
        if key in delta:
            found[f"{key}_per_s"] = round(delta[key] / seconds, 1)
    # cores this kernel kept busy (its own work: steal and idle are not)
    found["busy_cores"] = round(sum(delta.get(k, 0.0) for k in (
        "user", "nice", "system", "irq", "softirq")) / seconds, 4)
    return found


def parse_snapshot(text: str) -> tuple[float, dict[str, float]]:
    """A guest agent's reading: the uptime (seconds) and the /proc/stat figures."""
    first, _, rest = text.lstrip().partition("\n")
    try:
        uptime = float(first.split()[0])
    except (IndexError, ValueError):
        raise ValueError(f"no /proc/uptime line in the guest's counters: {first[:80]!r}"
                         ) from None
    return uptime, parse_proc_stat(rest)


class CountedKernel(Collector):
    """A machine's own kernel, as ``ProcStat`` sees it, but read just before and after
    each of the trial's commands and sent back with their results (by a guest's agent,
    or around a command on an SSH host): no request of its own (each costs a round
    trip through a busy guest's agent, or an SSH session)."""

    def __init__(self, machine: _Counts, name: str = "kernel"):
        self.machine = machine
        self.name = name

    def start(self) -> None:
        self.machine.count_kernel()

    def stop(self) -> dict[str, Any]:
        counted = self.machine.kernel_counted()
        if not counted:
            raise ValueError("no command ran on the machine during the trial")
        began, before = parse_snapshot(counted[0].before)
        ended, after = parse_snapshot(counted[-1].after)
        # /proc/uptime counts in hundredths: a window shorter than that is one tick
        seconds = max(ended - began, 0.01)
        return {"seconds": round(seconds, 4), **kernel_difference(before, after, seconds)}


class Unavailable(Collector):
    """A collector the machine would have but cannot run: its figures say why."""

    def __init__(self, name: str, reason: str):
        self.name = name
        self.reason = reason

    def start(self) -> None:
        raise ValueError(self.reason)

    def stop(self) -> dict[str, Any]:
        raise ValueError(self.reason)


class Scripted(Collector):
    """A collector whose readings are scripts run on a host. The scripts of several
    such collectors on one host run in one command per reading (``started`` and
    ``stopped`` batch them): on an SSH host, and most in a nested lab, each command
    costs a session (~90 ms there) whatever it runs."""

    host: Runs

    @abstractmethod
    def begin(self) -> Script:
        """The script that takes the 'before' reading."""

    @abstractmethod
    def began(self, reply: Reply) -> None:
        """Keep the 'before' reading (raise when the script failed)."""

    @abstractmethod
    def end(self) -> Script:
        """The script that takes the 'after' reading."""

    @abstractmethod
    def ended(self, reply: Reply) -> dict[str, Any]:
        """What happened in between."""

    def start(self) -> None:
        self.began(run_scripts(self.host, [self.begin()])[0])

    def stop(self) -> dict[str, Any]:
        return self.ended(run_scripts(self.host, [self.end()])[0])


class ScriptedSampling(Scripted, Generic[R]):
    """A scripted collector that reads the same counters before and after the trial."""

    def __init__(self) -> None:
        self._before: R | None = None
        self._started = 0.0

    @abstractmethod
    def script(self) -> Script:
        """The script that reads the counters."""

    @abstractmethod
    def parse(self, reply: Reply) -> R:
        """The counters from the script's reply (raise when it failed)."""

    @abstractmethod
    def difference(self, before: R, after: R, seconds: float) -> dict[str, Any]:
        """What happened in ``seconds`` between the two readings."""

    def begin(self) -> Script:
        return self.script()

    def end(self) -> Script:
        return self.script()

    def began(self, reply: Reply) -> None:
        self._before = self.parse(reply)
        self._started = time.monotonic()

    def ended(self, reply: Reply) -> dict[str, Any]:
        after = self.parse(reply)
        seconds = max(time.monotonic() - self._started, 1e-9)
        if self._before is None:
            raise ValueError("stopped before it was started")
        return {"seconds": round(seconds, 4), **self.difference(self._before, after, seconds)}


class HostKernel(ScriptedSampling[dict[str, float]]):
    """A host's kernel as ``ProcStat`` sees it, read by a script so that its readings
    share a command with the host's other collectors."""

    def __init__(self, host: Runs, name: str):
        super().__init__()
        self.host = host
        self.name = name

    def script(self) -> Script:
        return Script("cat /proc/stat")

    def parse(self, reply: Reply) -> dict[str, float]:
        if reply.exit_code != 0:
            raise TrialError(f"cannot read /proc/stat on {self.host.label}: "
                             f"{reply.output.strip()[:200]}")
        return parse_proc_stat(reply.output)

    def difference(self, before: dict[str, float], after: dict[str, float], seconds: float
                   ) -> dict[str, Any]:
        return kernel_difference(before, after, seconds)


def started(collectors: list[Collector]) -> list[tuple[Collector, str | None]]:
    """Start each collector; one that cannot start is kept with the reason, so the
    trial records why its figures are missing (a collector never fails a trial).
    Scripted collectors on one host start together, at the first one's place."""
    found: list[tuple[Collector, str | None]] = []
    for group in _grouped(collectors):
        if isinstance(group, Collector):
            try:
                group.start()
                found.append((group, None))
            except (HvbenchError, OSError, ValueError) as exc:
                found.append((group, str(exc)))
            continue
        found.extend(_batch(group, begin=True))
    return found


def stopped(collectors: list[tuple[Collector, str | None]]) -> dict[str, Any]:
    """Each started collector's figures, or why it has none. The last started stops
    first, so the costlier ones (tracers, listed last) bracket the trial tightest."""
    figures: dict[str, Any] = {}
    running = [c for c, problem in reversed(collectors) if problem is None]
    for group in _grouped(running):
        if isinstance(group, Collector):
            try:
                figures[group.name] = group.stop()
            except (HvbenchError, OSError, ValueError) as exc:
                figures[group.name] = {"error": str(exc)[:300]}
            continue
        for member, result in _batch(group, begin=False):
            figures[member.name] = result
    for collector, problem in collectors:
        if problem is not None:
            figures[collector.name] = {"error": problem[:300]}
    return {collector.name: figures[collector.name] for collector, _ in collectors}


def _grouped(collectors: Sequence[Collector]) -> list[Collector | list[Scripted]]:
    """The collectors in order, the scripted ones of each host gathered where the
    host's first one stands."""
    order: list[Collector | list[Scripted]] = []
    by_host: dict[int, list[Scripted]] = {}
    for collector in collectors:
        if not isinstance(collector, Scripted):
            order.append(collector)
        elif id(collector.host) in by_host:
            by_host[id(collector.host)].append(collector)
        else:
            by_host[id(collector.host)] = [collector]
            order.append(by_host[id(collector.host)])
    return order


def _batch(group: list[Scripted], begin: bool) -> list[tuple[Scripted, Any]]:
    """One reading of each collector of the group in one command: when starting,
    (collector, problem or None); when stopping, (collector, figures)."""
    try:
        scripts = [c.begin() if begin else c.end() for c in group]
        replies = run_scripts(group[0].host, scripts)
    except (HvbenchError, OSError, ValueError) as exc:
        return [(c, str(exc) if begin else {"error": str(exc)[:300]}) for c in group]
    found: list[tuple[Scripted, Any]] = []
    for collector, reply in zip(group, replies, strict=True):
        try:
            if begin:
                collector.began(reply)
                found.append((collector, None))
            else:
                found.append((collector, collector.ended(reply)))
        except (HvbenchError, OSError, ValueError) as exc:
            found.append((collector, str(exc) if begin else {"error": str(exc)[:300]}))
    return found
