"""The ``native`` platform: workloads run directly on the host (the baseline)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from ..appliance import image as image_mod
from ..errors import UsageError
from ..localproc import NativeMachine
from ..machine import Machine
from ..paths import scratch_root
from .base import Platform


class NativePlatform(Platform):
    """Bare metal (or whatever the host is): the baseline."""

    def validate(self) -> None:
        unknown = set(self.settings) - {"scratch"}
        if unknown:
            raise UsageError(f"platform {self.name}: unknown setting "
                             f"{', '.join(sorted(unknown))} (native takes: scratch)")

    @contextlib.contextmanager
    def open(self) -> Iterator[Machine]:
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


class LabNativePlatform(NativePlatform):
    """The lab host itself (L1), the baseline inside a nested lab.

    A lab's guests are compared with the lab host, never with the machine the
    lab runs on: both sides share the same emulated CPU.
    """

    def validate(self) -> None:
        super().validate()
        if self.settings.get("scratch"):
            raise UsageError(f"platform {self.name}: lab-native takes no settings")
