"""stress-ng stressors: CPU, matrix, page faults, context switches, system calls.

stress-ng logs its metrics to stderr; the "bogo ops/s (real time)" column is the
throughput we compare. Some stressors also print a latency figure in their
"miscellaneous metrics" (e.g. nanoseconds per context switch), recorded too.
"""

from __future__ import annotations

import re

from pydantic import Field

from ..machine import Completed
from .base import Category, Metric, Params, Prepared, Sample, Tool, Workload, WorkRate


class StressParams(Params):
    instances: int = Field(1, ge=1, le=1024)
    seconds: int = Field(5, ge=1, le=3600)


class _StressNg(Workload[StressParams]):
    duration = "seconds"
    tools = (Tool("stress-ng", "stress-ng"),)
    params_model = StressParams
    version_argv = ("stress-ng", "--version")
    stressor: str
    #: (metric name, unit, regex on the misc-metrics text), if the stressor has one
    extra: tuple[str, str, str] | None = None

    def expected_seconds(self, params: StressParams) -> float:
        return params.seconds + 0.3

    def commands(self, params: StressParams, prepared: Prepared) -> list[list[str]]:
        return [["stress-ng", f"--{self.stressor}", str(params.instances),
                 "--timeout", f"{params.seconds}s", "--metrics-brief"]]

    def parse(self, output: Completed, params: StressParams) -> list[Sample]:
        self.check_exit(output)
        text = output.stderr + output.stdout
        if "stress-ng" not in text:
            raise self.fail("no stress-ng log lines: this is not stress-ng output")
        if "unsuccessful run" in text:
            raise self.fail("stress-ng reported an unsuccessful run")
        row = re.search(
            rf"stress-ng: \w+:\s+\[\d+\]\s+{re.escape(self.stressor)}\s+"
            # --metrics adds 'CPU used per instance' and 'RSS Max' after the same six
            r"(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)"
            r"(?:[ \t]+[\d.]+){0,2}[ \t]*\n",
            text, re.MULTILINE,
        )
        if not row:
            raise self.fail(f"no metrics row for the {self.stressor} stressor")
        bogo_ops, real_time, rate = int(row.group(1)), float(row.group(2)), float(row.group(5))
        if bogo_ops <= 0 or real_time <= 0 or rate <= 0:
            raise self.fail("the stressor did no work (zero bogo ops)")
        samples = [self.sample("bogo-ops-per-second", rate, bogo_ops=bogo_ops,
                               real_time=real_time)]
        if self.extra:
            metric, _unit, pattern = self.extra
            samples.append(self.sample(metric, self.number(pattern, text, metric)))
        return samples


def _metrics(extra: tuple[str, str, str] | None) -> tuple[Metric, ...]:
    base = (Metric("bogo-ops-per-second", "ops/s", True),)
    return base + ((Metric(extra[0], extra[1], False),) if extra else ())


class StressNgCpu(_StressNg):
    name = "stress-ng-cpu"
    category = Category.CPU
    description = "stress-ng's mix of CPU methods (integer, float, bit ops)."
    stressor = "cpu"
    metrics = _metrics(None)
    work = WorkRate("bogo-ops-per-second", "bogo op")


class StressNgMatrix(_StressNg):
    name = "stress-ng-matrix"
    category = Category.CPU
    description = "Floating-point matrix operations (FPU and cache)."
    stressor = "matrix"
    metrics = _metrics(None)
    work = WorkRate("bogo-ops-per-second", "bogo op")


class StressNgPagefault(_StressNg):
    name = "stress-ng-pagefault"
    category = Category.MEMORY
    description = "Minor page faults in a loop: nested/shadow paging cost shows here."
    stressor = "fault"
    extra = ("fault-latency", "ns", r"fault\s+([\d.]+) nanosecs per page fault")
    metrics = _metrics(extra)
    work = WorkRate("bogo-ops-per-second", "bogo op")


class StressNgSwitch(_StressNg):
    name = "stress-ng-switch"
    category = Category.MICRO
    description = "Context switches between two processes over a pipe."
    stressor = "switch"
    extra = ("switch-latency", "ns", r"switch\s+([\d.]+) nanosecs per context switch")
    metrics = _metrics(extra)
    work = WorkRate("bogo-ops-per-second", "bogo op")


class StressNgSyscall(_StressNg):
    name = "stress-ng-syscall"
    category = Category.MICRO
    description = "The fastest system calls, exercised in turn: syscall entry/exit cost."
    stressor = "syscall"
    metrics = _metrics(None)
    work = WorkRate("bogo-ops-per-second", "bogo op")
