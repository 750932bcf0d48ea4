"""The workload catalogue: every workload by name."""

from __future__ import annotations

from ..errors import UsageError
from .base import Category, Metric, Params, Prepared, Sample, Tool, Workload
from .boot import Boot
from .fio import FioRandRead, FioRandWrite, FioSeqRead, FioSeqWrite
from .hvprobe import Hvprobe
from .iperf3 import Iperf3Tcp
from .john import John
from .kvmexits import KvmExits
from .mafft import Mafft
from .openssl import OpensslSpeed
from .postmark import Postmark
from .povray import Povray
from .sevenzip import SevenZip
from .sockperf import SockperfPingPong
from .stressng import (
    StressNgCpu,
    StressNgMatrix,
    StressNgPagefault,
    StressNgSwitch,
    StressNgSyscall,
)
from .sysbench import SysbenchCpu, SysbenchMemory, SysbenchThreads

CATALOGUE: dict[str, Workload] = {
    workload.name: workload
    for workload in (
        SysbenchCpu(), SysbenchMemory(), SysbenchThreads(),
        StressNgCpu(), StressNgMatrix(), StressNgPagefault(), StressNgSwitch(),
        StressNgSyscall(),
        FioSeqRead(), FioSeqWrite(), FioRandRead(), FioRandWrite(),
        Iperf3Tcp(), SockperfPingPong(),
        OpensslSpeed(), SevenZip(), John(), Povray(), Postmark(), Mafft(), Boot(),
        Hvprobe(), KvmExits(),
    )
}


def get_workload(name: str) -> Workload:
    """Look a workload up by name; an unknown name is a usage error listing the choices."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise UsageError(
            f"unknown workload {name!r}; choose from: {', '.join(sorted(CATALOGUE))} "
            "(see 'hvbench list')"
        ) from None


__all__ = ["CATALOGUE", "Category", "Metric", "Params", "Prepared", "Sample", "Tool",
           "Workload", "get_workload"]
