"""kvm-exits: the cost of each kind of VM exit, measured by kvmprobe on /dev/kvm.

Runs only on the ``kvmprobe`` platform (this host's /dev/kvm, driven by a tiny
VMM written in Python); the probe runs in a child process so a misbehaving
probe guest can never take hvbench down, and every KVM_RUN is time-bounded.
"""

from __future__ import annotations

import json
import sys

from pydantic import Field

from ..machine import Completed, Machine
from .base import Category, Metric, Params, Prepared, Sample, Workload

#: probes and the CPLs they run at (HLT is privileged: CPL0 only)
PROBES = (("pio", 0), ("mmio", 0), ("hlt", 0), ("cpuid", 0), ("ioeventfd", 0), ("pic", 0),
          ("pio", 3), ("mmio", 3), ("cpuid", 3), ("ioeventfd", 3), ("pic", 3))


class KvmExitsParams(Params):
    quick: bool = Field(False)  # 3 batches of ~20 ms instead of 7 of ~100 ms


class KvmExits(Workload[KvmExitsParams]):
    name = "kvm-exits"
    category = Category.MICRO
    description = "VM exit round trips through /dev/kvm (kvmprobe platform only)."
    tools = ()
    params_model = KvmExitsParams
    metrics = tuple(Metric(f"{probe}_cpl{cpl}", "ns", False) for probe, cpl in PROBES)

    def expected_seconds(self, params: KvmExitsParams) -> float:
        return 15.0 if params.quick else 60.0

    def applies_to(self, machine: Machine) -> str | None:
        if not machine.kvmprobe:
            return f"kvm-exits runs on the kvmprobe platform, not on {machine.label}"
        return None

    def commands(self, params: KvmExitsParams, prepared: Prepared) -> list[list[str]]:
        return [[sys.executable, "-m", "hvbench.probes.kvmprobe", "--json",
                 *(["--quick"] if params.quick else [])]]

    def parse(self, output: Completed, params: KvmExitsParams) -> list[Sample]:
        self.check_exit(output)
        try:
            report = json.loads(output.stdout)
            samples = self._samples(report)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise self.fail("kvmprobe printed no complete JSON report") from None
        if not samples:
            raise self.fail("kvmprobe reported no probe")
        wrong = [s.metric for s in samples if not s.metadata["exits_ok"]]
        if wrong:
            raise self.fail(f"the probe loops did not exit as intended: {', '.join(wrong)} "
                            "(see the exit counts in 'hvbench export')")
        return samples

    @staticmethod
    def _samples(report: dict) -> list[Sample]:
        samples = []
        for result in report["results"]:
            samples.append(Sample(
                f"{result['name']}_cpl{result['cpl']}", float(result["ns_per_exit"]), "ns",
                False, {"backend": report["backend"], "handled_by": result["handled_by"],
                        "exits_per_iteration": result["exits_per_iteration"],
                        "userspace_exits_per_iteration":
                            result["userspace_exits_per_iteration"],
                        "expected": result["expected"], "exits_ok": result["exits_ok"],
                        "iterations": result["iterations"], "batches": result["batches"]}))
        return samples
