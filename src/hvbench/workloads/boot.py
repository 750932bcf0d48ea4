"""``boot``: how long a guest takes to come up, measured like any workload.

Each trial boots a fresh guest and reports QEMU start -> first kernel output ->
init -> agent ready, in milliseconds, timed on the host. On native there is
nothing to boot: the trial fails with that reason.
"""

from __future__ import annotations

from typing import Any

from ..errors import TrialError
from ..machine import Completed, Machine
from .base import Category, Metric, Params, Prepared, Sample, Workload

_STAGES = {"first-output": "first_output_ms", "init": "init_ms",
           "agent-ready": "agent_ready_ms"}


class BootParams(Params):
    pass


class Boot(Workload[BootParams]):
    name = "boot"
    category = Category.MICRO
    description = "Guest boot: QEMU start to first kernel output, init and agent ready."
    tools = ()
    params_model = BootParams
    metrics = tuple(Metric(name, "ms", False) for name in _STAGES)

    def expected_seconds(self, params: BootParams) -> float:
        return 10.0

    def applies_to(self, machine: Machine) -> str | None:
        if machine.tile():
            return "boot measures one guest at a time, not a tile of guests"
        if machine.boot_timings is None:
            return f"boot measures guests; {machine.label} has nothing to boot"
        return None

    def execute(self, machine: Machine, params: Params, timeout: float
                ) -> tuple[list[Sample], dict[str, Any], float] | None:
        timings = machine.boot_timings
        if timings is None:
            raise TrialError(f"boot measures guests; {machine.label} has nothing to boot")
        machine.restart()
        timings = machine.boot_timings or timings
        samples = [self.sample(metric, timings[key]) for metric, key in _STAGES.items()]
        return samples, {"boot_timings_ms": timings}, timings["agent_ready_ms"] / 1000

    def commands(self, params: BootParams, prepared: Prepared) -> list[list[str]]:
        return []

    def parse(self, output: Completed, params: BootParams) -> list[Sample]:
        raise self.fail("boot is measured by the platform, not parsed from output")
