"""hvprobe: micro-benchmarks of the operations virtualization makes expensive.

cpuid (always a VM exit under VT-x/AMD-V), rdtsc/rdtscp, a trivial system call,
clock_gettime/gettimeofday (vDSO or not: the clocksource effect), first-touch
page faults, mmap+munmap, pipe context switches, fork+wait, thread create+join,
futex wake-ups, STREAM-like bandwidth and pointer-chasing latency from L1 to
DRAM (TLB and nested paging). The C source ships with hvbench; it is compiled on
the host and the same binary runs natively and in guests.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from pydantic import Field

from ..errors import MissingToolError
from ..machine import Completed, Machine
from .base import Category, Metric, Params, Prepared, Sample, Workload

GUEST_PATH = "/usr/local/bin/hvprobe"
OPERATIONS = ("cpuid", "rdtsc", "rdtscp", "syscall", "clock_gettime", "gettimeofday",
              "page_fault", "mmap_munmap", "context_switch", "fork_wait",
              "thread_create_join", "futex_wake")
BANDWIDTH = ("mem_copy", "mem_scale", "mem_add", "mem_triad")
CHASE_KIB = (16, 256, 4096, 65536, 262144, 1048576)
_LINE = re.compile(r"^hvprobe (\w+) (\d+(?:\.\d+)?) (ns|MB/s)\n", re.M)
_SKIP = re.compile(r"^hvprobe-skip (mem_latency_\d+k) ", re.M)


class HvprobeParams(Params):
    scale: float = Field(1.0, gt=0, le=100)  # multiplies every probe's iteration count
    max_chase_mib: int = Field(256, ge=1, le=1024)
    array_mib: int = Field(32, ge=1, le=4096)


class Hvprobe(Workload[HvprobeParams]):
    name = "hvprobe"
    category = Category.MICRO
    description = "Cost of exits, syscalls, time calls, faults, switches; memory latency."
    tools = ()
    params_model = HvprobeParams
    metrics = (
        *(Metric(op, "ns", False) for op in OPERATIONS),
        *(Metric(kernel, "MB/s", True) for kernel in BANDWIDTH),
        *(Metric(f"mem_latency_{kib}k", "ns", False) for kib in CHASE_KIB),
    )

    def expected_seconds(self, params: HvprobeParams) -> float:
        return 3.0 + 12.0 * params.scale + params.max_chase_mib / 64

    def missing(self, machine: Machine) -> MissingToolError | None:
        from ..probes.build import compiler

        if machine.which("hvprobe") or machine.read_file(GUEST_PATH) is not None:
            return None
        if machine.local and compiler():
            return None  # built on demand
        return MissingToolError(self.name, "cc", "gcc", machine.label)

    @contextlib.contextmanager
    def prepare(self, machine: Machine, params: HvprobeParams) -> Iterator[Prepared]:
        binary = machine.which("hvprobe")
        if binary is None and machine.local:
            from ..appliance.image import cache_root
            from ..probes.build import build

            binary = str(build(cache_root()))
        yield Prepared(scratch=machine.scratch_dir(), values={"binary": binary or GUEST_PATH})

    def commands(self, params: HvprobeParams, prepared: Prepared) -> list[list[str]]:
        return [[prepared.values["binary"], "--scale", f"{params.scale:g}",
                 "--max-chase-mib", str(params.max_chase_mib),
                 "--array-mib", str(params.array_mib)]]

    def parse(self, output: Completed, params: HvprobeParams) -> list[Sample]:
        self.check_exit(output)
        text = output.stdout
        if not text.startswith("hvprobe-begin") or "\nhvprobe-end" not in text:
            raise self.fail("the probe run is incomplete (no hvprobe-begin/-end markers)")
        found = {m.group(1): (float(m.group(2)), m.group(3)) for m in _LINE.finditer(text)}
        # latency sizes the machine has no free memory for (a small guest) are skipped
        skipped = set(_SKIP.findall(text))
        expected = [*OPERATIONS, *BANDWIDTH,
                    *(f"mem_latency_{kib}k" for kib in CHASE_KIB
                      if kib <= params.max_chase_mib * 1024
                      and f"mem_latency_{kib}k" not in skipped)]
        units = {m.name: m.unit for m in self.metrics}
        samples = []
        for name in expected:
            if name not in found:
                raise self.fail(f"no result for probe {name}")
            value, unit = found[name]
            if unit != units[name]:
                raise self.fail(f"probe {name} reported {unit}, expected {units[name]}")
            samples.append(self.sample(name, value))
        return samples
