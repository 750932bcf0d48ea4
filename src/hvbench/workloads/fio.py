"""fio: sequential and 4k random reads and writes on a scratch file.

Direct I/O (O_DIRECT) is used where the scratch filesystem allows it, so the
guest's page cache does not hide the virtual disk; whether it was used is
recorded in every sample's metadata.
"""

from __future__ import annotations

import contextlib
import json
import threading
import weakref
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from ..errors import TrialError
from ..machine import Completed, Machine
from .base import Category, Metric, Params, Prepared, Sample, Tool, Workload, WorkRate

#: whether O_DIRECT works in each machine's scratch directory, asked once per machine:
#: the probe starts fio, which takes a second or more in a nested guest
_DIRECT_IO: weakref.WeakKeyDictionary[Machine, bool] = weakref.WeakKeyDictionary()
_DIRECT_IO_LOCK = threading.Lock()


class FioParams(Params):
    size: str = Field("256M", pattern=r"^\d+[KMG]?$")
    runtime: int = Field(5, ge=1, le=3600)
    block_size: str | None = Field(None, pattern=r"^\d+[kKmM]?$")
    ioengine: Literal["psync", "sync", "libaio", "io_uring"] = "psync"
    iodepth: int = Field(1, ge=1, le=1024)
    direct: Literal["auto", "on", "off"] = "auto"
    #: I/O per second at most (fio's rate_iops): latency under a given load, or a disk
    #: workload that mostly waits
    rate_iops: int | None = Field(None, ge=1, le=10_000_000)


class _Fio(Workload[FioParams]):
    duration = "runtime"
    category = Category.DISK
    tools = (Tool("fio", "fio"),)
    params_model = FioParams
    version_argv = ("fio", "--version")
    rw: str
    default_block_size: str
    direction: Literal["read", "write"]
    metrics = (
        Metric("bandwidth", "MiB/s", True),
        Metric("iops", "IO/s", True),
        Metric("clat-mean", "us", False),
        Metric("clat-p99", "us", False),
    )
    work = WorkRate("iops", "I/O")

    def expected_seconds(self, params: FioParams) -> float:
        return params.runtime + 1.5  # plus laying out the file

    @contextlib.contextmanager
    def prepare(self, machine: Machine, params: FioParams) -> Iterator[Prepared]:
        scratch = machine.scratch_dir()
        path = f"{scratch}/fio-{self.name}.dat"
        direct = {"on": True, "off": False}.get(params.direct)
        if direct is None:
            direct = self._direct_io_works(machine, scratch)
        try:
            yield Prepared(scratch=scratch, values={"file": path, "direct": direct},
                           metadata={"direct_io": direct, "file": path})
        finally:
            with contextlib.suppress(TrialError):
                machine.run(["rm", "-f", path, f"{path}.probe"], timeout=30)

    @staticmethod
    def _direct_io_works(machine: Machine, scratch: str) -> bool:
        """Whether O_DIRECT works on the scratch filesystem (asked once per machine:
        a restarted guest gets the same kind of scratch disk)."""
        with _DIRECT_IO_LOCK:
            known = _DIRECT_IO.get(machine)
        if known is None:
            known = _Fio._probe_direct_io(machine, scratch)
            with _DIRECT_IO_LOCK:
                _DIRECT_IO[machine] = known
        return known

    @staticmethod
    def _probe_direct_io(machine: Machine, scratch: str) -> bool:
        """Ask fio itself whether O_DIRECT works on the scratch filesystem."""
        probe = machine.run(
            ["fio", "--name=probe", f"--filename={scratch}/fio-direct.probe", "--size=64k",
             "--bs=4k", "--rw=write", "--direct=1", "--ioengine=psync",
             "--output-format=terse"],
            timeout=60,
        )
        machine.run(["rm", "-f", f"{scratch}/fio-direct.probe"], timeout=30)
        return probe.exit_code == 0

    def commands(self, params: FioParams, prepared: Prepared) -> list[list[str]]:
        return [[
            "fio", f"--name={self.name}", f"--filename={prepared.values['file']}",
            f"--size={params.size}", f"--rw={self.rw}",
            f"--bs={params.block_size or self.default_block_size}",
            f"--ioengine={params.ioengine}", f"--iodepth={params.iodepth}",
            f"--direct={int(prepared.values['direct'])}",
            f"--runtime={params.runtime}", "--time_based", "--randrepeat=1",
            *([f"--rate_iops={params.rate_iops}"] if params.rate_iops else []),
            "--output-format=json",
        ]]

    def parse(self, output: Completed, params: FioParams) -> list[Sample]:
        self.check_exit(output)
        # fio may print warnings before the JSON document.
        start = output.stdout.find("{")
        if start < 0:
            raise self.fail("no JSON document in the output")
        try:
            document = json.loads(output.stdout[start:])
            jobs: list[dict[str, Any]] = document["jobs"]
            if len(jobs) != 1:  # per-job numbers: one of them is not the whole
                raise self.fail(f"fio reported {len(jobs)} jobs separately; hvbench reads "
                                "one job or one group (add --group_reporting)")
            job = jobs[0]
            stats: dict[str, Any] = job[self.direction]
            bandwidth = float(stats["bw_bytes"]) / (1024 * 1024)
            iops = float(stats["iops"])
            clat = stats["clat_ns"]
            mean_us = float(clat["mean"]) / 1000
            p99_us = float(clat["percentile"]["99.000000"]) / 1000
            total_ios = int(stats["total_ios"])
            error = int(job.get("error", 0))
            options = job.get("job options", {})
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise self.fail(f"unexpected JSON structure ({type(exc).__name__}: {exc})") from None
        if error:
            raise self.fail(f"fio reported error {error}")
        if options.get("rw", self.rw) != self.rw:
            raise self.fail(f"this fio job ran rw={options['rw']}, not rw={self.rw}: its "
                            f"{self.direction} numbers describe another workload")
        if total_ios <= 0 or bandwidth <= 0:
            raise self.fail(f"no {self.direction} I/O was done")
        meta = {"direct_io": options.get("direct") == "1", "block_size": options.get("bs"),
                "ioengine": options.get("ioengine")}
        return [
            self.sample("bandwidth", bandwidth, **meta),
            self.sample("iops", iops, **meta),
            self.sample("clat-mean", mean_us, **meta),
            self.sample("clat-p99", p99_us, **meta),
        ]


class FioSeqRead(_Fio):
    name = "fio-seqread"
    description = "Sequential 1 MiB reads."
    rw, default_block_size, direction = "read", "1M", "read"


class FioSeqWrite(_Fio):
    name = "fio-seqwrite"
    description = "Sequential 1 MiB writes."
    rw, default_block_size, direction = "write", "1M", "write"


class FioRandRead(_Fio):
    name = "fio-randread"
    description = "Random 4 KiB reads (IOPS and latency)."
    rw, default_block_size, direction = "randread", "4k", "read"


class FioRandWrite(_Fio):
    name = "fio-randwrite"
    description = "Random 4 KiB writes (IOPS and latency)."
    rw, default_block_size, direction = "randwrite", "4k", "write"
