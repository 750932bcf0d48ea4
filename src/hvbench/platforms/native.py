"""The ``native`` platform: workloads run directly on the host (the baseline)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..appliance import image as image_mod
from ..errors import UsageError
from ..localproc import NativeMachine
from ..machine import Machine, WrappedMachine
from ..paths import scratch_root
from .base import Platform


class NativePlatform(Platform):
    """Bare metal (or whatever the host is): the baseline."""

    def validate(self) -> None:
        unknown = set(self.settings) - {"scratch", "cpus"}
        if unknown:
            raise UsageError(f"platform {self.name}: unknown setting "
                             f"{', '.join(sorted(unknown))} (native takes: scratch, cpus)")
        cpus = self.settings.get("cpus")
        if cpus is not None and (not isinstance(cpus, list) or not cpus or not all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in cpus)):
            raise UsageError(f"platform {self.name}: cpus must be a list of host CPU "
                             f"numbers, e.g. [0, 1]; got {cpus!r}")

    @contextlib.contextmanager
    def open(self) -> Iterator[Machine]:
        if self.settings.get("cpus") and self.context.host.kind != "local":
            # a remote host's tools run through the bundle's loader, which taskset
            # would hide; binding there is not supported yet
            raise UsageError(f"platform {self.name}: cpus binds commands on this machine "
                             f"only, not on {self.context.host}; leave it out there")
        with self._host_machine() as machine:
            cpus = self.settings.get("cpus")
            yield PinnedMachine(machine, cpus) if cpus else machine

    @contextlib.contextmanager
    def _host_machine(self) -> Iterator[Machine]:
        if self.context.host.kind != "local":
            host = self.context.connect()
            try:
                if self.context.over_ssh and self.context.bundle_tools:  # the guests' binaries
                    host.use_bundle(image_mod.build(payload=self.context.payload,
                                                    progress=self.say), self.say)
                yield host.native()
            finally:
                host.close()
            return
        scratch = Path(self.settings.get("scratch") or scratch_root())
        machine = NativeMachine(scratch)
        try:
            yield machine
        finally:
            machine.close()


class PinnedMachine(WrappedMachine):
    """The host with every command bound to some of its CPUs (``cpus``): a baseline
    with as many CPUs as the guest it is compared with, or a configuration of its own."""

    def __init__(self, inner: Machine, cpus: list[int]):
        super().__init__(inner)
        self.cpus = ",".join(str(c) for c in cpus)
        done = inner.run(["taskset", "--cpu-list", self.cpus, "true"], timeout=30)
        if done.exit_code != 0:  # a CPU the host does not have, or no taskset
            raise UsageError(f"cannot bind commands to CPUs {self.cpus} on {inner.label}: "
                             f"{(done.stderr or done.stdout).strip()[:200]} (see nproc there)")

    def rewrite(self, argv: Sequence[str]) -> list[str]:
        return ["taskset", "--cpu-list", self.cpus, *(str(a) for a in argv)]

    def info(self) -> dict[str, Any]:
        return {**self.inner.info(), "cpus": self.cpus}


class LabNativePlatform(NativePlatform):
    """The lab host itself (L1), the baseline inside a nested lab.

    A lab's guests are compared with the lab host, never with the machine the
    lab runs on: both sides share the same emulated CPU.
    """

    def validate(self) -> None:
        super().validate()
        if self.settings.get("scratch"):
            raise UsageError(f"platform {self.name}: lab-native takes no settings")
