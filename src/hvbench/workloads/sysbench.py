"""sysbench: CPU (primes), memory bandwidth and thread scheduling."""

from __future__ import annotations

import re

from pydantic import Field

from ..machine import Completed
from .base import Category, Metric, P, Params, Prepared, Sample, Tool, Workload, WorkRate

SYSBENCH = Tool("sysbench", "sysbench")
_HEADER = re.compile(r"sysbench \d+\.\d+")


class _Sysbench(Workload[P]):
    tools = (SYSBENCH,)
    version_argv = ("sysbench", "--version")

    def _general(self, text: str) -> tuple[float, float]:
        """(total time in s, total events) from the 'General statistics' block."""
        if not _HEADER.search(text):
            raise self.fail("no sysbench banner: this is not sysbench output")
        total = self.number(r"total time:\s+([\d.]+)s", text, "total time")
        events = self.number(r"total number of events:\s+(\d+)", text, "event count")
        if total <= 0 or events <= 0:
            raise self.fail("zero time or zero events: the test did not run")
        return total, events


class CpuParams(Params):
    max_prime: int = Field(10000, ge=100, le=10_000_000)
    events: int = Field(4000, ge=1)
    threads: int = Field(1, ge=1, le=1024)


class SysbenchCpu(_Sysbench[CpuParams]):
    name = "sysbench-cpu"
    category = Category.CPU
    description = "Prime-number verification by trial division (integer ALU, no memory)."
    params_model = CpuParams
    metrics = (Metric("events-per-second", "events/s", True),)
    work = WorkRate("events-per-second", "event")

    def expected_seconds(self, params: CpuParams) -> float:
        return params.events * (params.max_prime / 10000) ** 1.5 / 3500 / params.threads

    def commands(self, params: CpuParams, prepared: Prepared) -> list[list[str]]:
        return [["sysbench", "cpu", f"--cpu-max-prime={params.max_prime}",
                 f"--threads={params.threads}", f"--events={params.events}",
                 "--time=0", "run"]]

    def parse(self, output: Completed, params: CpuParams) -> list[Sample]:
        self.check_exit(output)
        text = output.stdout
        self._general(text)
        rate = self.number(r"events per second:\s+([\d.]+)", text, "events per second")
        if rate <= 0:
            raise self.fail("events per second is zero")
        return [self.sample("events-per-second", rate)]


class MemoryParams(Params):
    block_size: str = Field("1M", pattern=r"^\d+[KMG]?$")
    total_size: str = Field("8G", pattern=r"^\d+[KMG]?$")
    threads: int = Field(1, ge=1, le=1024)


class SysbenchMemory(_Sysbench[MemoryParams]):
    name = "sysbench-memory"
    category = Category.MEMORY
    description = "Sequential memory read and write bandwidth in blocks."
    params_model = MemoryParams
    metrics = (
        Metric("read-bandwidth", "MiB/s", True),
        Metric("write-bandwidth", "MiB/s", True),
    )

    def expected_seconds(self, params: MemoryParams) -> float:
        return 1.5

    def commands(self, params: MemoryParams, prepared: Prepared) -> list[list[str]]:
        return [
            ["sysbench", "memory", f"--memory-block-size={params.block_size}",
             f"--memory-total-size={params.total_size}", f"--memory-oper={oper}",
             f"--threads={params.threads}", "--time=600", "run"]
            for oper in ("read", "write")
        ]

    def parse(self, output: Completed, params: MemoryParams) -> list[Sample]:
        self.check_exit(output)
        found: dict[str, float] = {}
        # Each command's output starts with the sysbench banner.
        for chunk in _HEADER.split(output.stdout)[1:]:
            oper = re.search(r"operation:\s+(\w+)", chunk)
            if not oper:
                raise self.fail("a memory test without its 'operation:' line")
            self._general(f"sysbench 1.0\n{chunk}")
            found[oper.group(1)] = self.number(
                r"MiB transferred \(([\d.]+) MiB/sec\)", chunk, f"{oper.group(1)} bandwidth"
            )
        missing = {"read", "write"} - set(found)
        if missing:
            raise self.fail(f"no {' and '.join(sorted(missing))} bandwidth in the output")
        return [self.sample("read-bandwidth", found["read"]),
                self.sample("write-bandwidth", found["write"])]


class ThreadsParams(Params):
    threads: int = Field(2, ge=1, le=1024)
    yields: int = Field(100, ge=1)
    locks: int = Field(4, ge=1)
    events: int = Field(20000, ge=1)


class SysbenchThreads(_Sysbench[ThreadsParams]):
    name = "sysbench-threads"
    category = Category.CPU
    description = "Threads contending for mutexes and yielding: scheduler cost."
    params_model = ThreadsParams
    metrics = (
        Metric("events-per-second", "events/s", True),
        Metric("latency-avg", "ms", False),
    )
    work = WorkRate("events-per-second", "event")

    def expected_seconds(self, params: ThreadsParams) -> float:
        return params.events * params.yields / 2_000_000

    def commands(self, params: ThreadsParams, prepared: Prepared) -> list[list[str]]:
        return [["sysbench", "threads", f"--threads={params.threads}",
                 f"--thread-yields={params.yields}", f"--thread-locks={params.locks}",
                 f"--events={params.events}", "--time=0", "run"]]

    def parse(self, output: Completed, params: ThreadsParams) -> list[Sample]:
        self.check_exit(output)
        total, events = self._general(output.stdout)
        latency = self.number(r"Latency \(ms\):.*?avg:\s+([\d.]+)", output.stdout,
                              "average latency", re.DOTALL)
        return [self.sample("events-per-second", events / total),
                self.sample("latency-avg", latency)]
