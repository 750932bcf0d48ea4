"""Several guests of one platform on one host: a tile, measured together
(consolidation; a trial runs in every guest at one moment, tiles.py in the runner's
layer), or a measured guest with neighbours that run aggressors beside it
(interference, disturb.py). Either is a Machine for everything but a trial: its first
guest speaks for all."""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from ..hosts.base import Host
from ..machine import Machine, WrappedMachine
from .guestcfg import GuestSettings

#: what QEMU (or the hypervisor) takes beside a guest's memory, per guest
OVERHEAD_MIB = 96
#: vCPUs per host CPU a tile may ask for at most: denser than this measures nothing
#: but the scheduler's time slices
MAX_CPU_OVERCOMMIT = 8


class GuestGroup(WrappedMachine):
    """Several guests of one platform on one host, the first one standing for them
    outside trials (metadata, tools: the others are the same)."""

    def __init__(self, members: list[Machine]):
        super().__init__(members[0])
        self.members = members

    def healthy(self) -> bool:
        return all(member.healthy() for member in self.members)

    def restart(self) -> None:
        """Restart the guests that crashed or hung, the others running on; when none
        did (a fresh guest for every trial was asked for), all of them."""
        broken = [member for member in self.members if not member.healthy()]
        for member in broken or self.members:
            member.restart()

    def close(self) -> None:
        for member in reversed(self.members):
            member.close()


class Tile(GuestGroup):
    """The guests of a tile: every trial runs in all of them."""

    def __init__(self, members: list[Machine], platform: str):
        super().__init__(members)
        self.label = f"the {len(members)} {platform} guests"

    def tile(self) -> list[Machine]:
        return list(self.members)

    def info(self) -> dict[str, Any]:
        """The first guest's description (they are the same), with every guest's."""
        return {**self.members[0].info(), "guests": len(self.members),
                "members": [member.info() for member in self.members]}


class Neighbourhood(GuestGroup):
    """A measured guest with neighbours beside it (an interference study): the first
    runs the trials, the neighbours only aggressors."""

    def neighbours(self) -> list[Machine]:
        return self.members[1:]

    def info(self) -> dict[str, Any]:
        return {**self.members[0].info(),
                "neighbours": [member.info() for member in self.members[1:]]}


def check_fits(platform: str, settings: GuestSettings, host: Host, count: int) -> None:
    """Refuse a tile the host cannot hold (one line with the numbers, exit 2): memory
    (the guests' and QEMU's against what the host has available) and vCPUs (at most
    MAX_CPU_OVERCOMMIT per host CPU)."""
    native = host.native()
    meminfo = native.read_file("/proc/meminfo") or ""
    available = next((int(line.split()[1]) // 1024 for line in meminfo.splitlines()
                      if line.startswith("MemAvailable:")), None)
    needed = count * (settings.memory_mib + OVERHEAD_MIB)
    if available is not None and needed > available:
        raise UsageError(f"platform {platform}: {count} guests × ({settings.memory_mib} MiB "
                         f"+ {OVERHEAD_MIB} MiB for QEMU) = {needed} MiB, but "
                         f"{host.label} has {available} MiB available; use fewer guests "
                         "or less memory_mib")
    cpus = len([line for line in (native.read_file("/proc/cpuinfo") or "").splitlines()
                if line.startswith("processor")])
    if cpus and count * settings.vcpus > MAX_CPU_OVERCOMMIT * cpus:
        raise UsageError(f"platform {platform}: {count} guests × {settings.vcpus} vCPUs = "
                         f"{count * settings.vcpus} vCPUs on {cpus} host CPUs, more than "
                         f"{MAX_CPU_OVERCOMMIT} per CPU; use fewer guests or vCPUs")
