"""The workload catalogue: every workload by name."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..appliance.image import Payload
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

CATALOGUE: dict[str, Workload[Any]] = {
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


#: data files per workload beyond those it declares, as glob patterns (configuration the
#: tools read at start; copied into guest images when present on the host)
EXTRA_DATA: dict[str, list[str]] = {
    "john": ["/etc/john/*", "/usr/share/john/*.conf"],
    "povray": ["/etc/povray/3.7/*", "/usr/share/povray-3.7/include/*",
               "/usr/share/doc/povray/examples/advanced/benchmark/benchmark.pov"],
    "mafft": ["/usr/lib/mafft/**"],
    "openssl-speed": ["/usr/lib/ssl/openssl.cnf", "/etc/ssl/openssl.cnf"],
}


def payload(names: Iterable[str] | None) -> Payload:
    """What a guest image must carry to run these workloads (None: every workload, as a
    lab host's image does)."""
    wanted = None if names is None else set(names)  # once: names may be an iterator
    chosen = [w for name, w in CATALOGUE.items() if wanted is None or name in wanted]
    return Payload(
        binaries=tuple(sorted({(t.binary, t.package) for w in chosen for t in w.tools})),
        data=tuple(pattern for w in chosen for pattern in
                   [*EXTRA_DATA.get(w.name, []), *(d.binary for d in w.files)]),
        hvprobe=any(w.name == "hvprobe" for w in chosen))


def get_workload(name: str) -> Workload[Any]:
    """Look a workload up by name; an unknown name is a usage error listing the choices."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise UsageError(
            f"unknown workload {name!r}; choose from: {', '.join(sorted(CATALOGUE))} "
            "(see 'hvbench list')"
        ) from None


__all__ = ["CATALOGUE", "Category", "Metric", "Params", "Prepared", "Sample", "Tool",
           "Workload", "get_workload", "payload"]
