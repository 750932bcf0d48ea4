"""The ``kvmprobe`` platform: this host's /dev/kvm, measured by kvmprobe's tiny VMM.

It runs one workload, ``kvm-exits``; everything else is skipped on it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from ..errors import UsageError
from ..localproc import NativeMachine
from ..machine import Machine
from ..paths import scratch_root
from .base import Platform


class KvmprobeMachine(NativeMachine):
    kvmprobe = True  # the only machine kvm-exits runs on
    label = "kvmprobe (/dev/kvm on this host)"

    def info(self) -> dict[str, Any]:
        from ..probes.kvmprobe import backend

        return {**super().info(), "device": "/dev/kvm", "backend": backend()}


class KvmprobePlatform(Platform):
    """VM exit costs through this host's /dev/kvm (local only)."""

    def validate(self) -> None:
        if self.settings:
            raise UsageError(f"platform {self.name}: kvmprobe takes no settings")

    @contextlib.contextmanager
    def open(self) -> Iterator[Machine]:
        from ..probes.kvmprobe import KvmProbeError, open_kvm

        if self.context.host.kind != "local":
            raise UsageError(f"platform {self.name}: kvmprobe runs on this machine only "
                             "(drop --host, or run hvbench on that host)")
        try:
            os.close(open_kvm())
        except KvmProbeError as exc:
            raise UsageError(f"platform {self.name}: {exc}") from None
        machine = KvmprobeMachine(scratch_root())
        try:
            yield machine
        finally:
            machine.close()
