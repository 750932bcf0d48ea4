"""GuestMachine: what every appliance guest answers the same way, whatever boots it
(QEMU or Xen): queries go through its agent's ``run``, background servers stay on
the host, and ``boot``/``close`` bracket its life."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

from ..errors import TrialError
from ..hosts.base import Host
from ..machine import Background, Machine

#: where the appliance's init mounts the scratch disk (or a tmpfs)
GUEST_SCRATCH = "/scratch/hvbench"


class GuestMachine(Machine):
    """A guest driven through the appliance's agent; drivers provide ``boot``, ``run``
    and ``close``."""

    host: Host
    #: seconds for small queries (which, cat); nested guests can stall for a while
    query_seconds: float = 60
    _which: dict[str, str | None]

    @abstractmethod
    def boot(self) -> None:
        """Start the guest on its host and wait for its agent."""

    def spawn(self, argv: Sequence[str]) -> Background:
        raise TrialError("background servers run on the host, not in guests")

    def which(self, binary: str) -> str | None:
        if binary not in self._which:
            done = self.run(["which", binary], timeout=self.query_seconds)
            self._which[binary] = done.stdout.strip() if done.exit_code == 0 else None
        return self._which[binary]

    def read_file(self, path: str) -> str | None:
        done = self.run(["cat", path], timeout=self.query_seconds)
        return done.stdout if done.exit_code == 0 else None

    def scratch_dir(self) -> str:
        return GUEST_SCRATCH

    def free_port(self) -> int:
        return self.host.native().free_port()
