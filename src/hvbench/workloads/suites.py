"""Named suites: lists of workloads with parameters.

- ``quick``: a native run finishes in under two minutes on 2 cores (3 reps).
- ``standard``: every category with default parameters.
- ``classic``: what the published KVM-vs-Xen studies ran that Debian packages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError


@dataclass(frozen=True)
class SuiteEntry:
    workload: str
    params: dict[str, Any] = field(default_factory=dict)


def _entries(*items: str | tuple[str, dict[str, Any]]) -> tuple[SuiteEntry, ...]:
    return tuple(SuiteEntry(i) if isinstance(i, str) else SuiteEntry(*i) for i in items)


SUITES: dict[str, tuple[SuiteEntry, ...]] = {
    # sysbench at its default sizes: at a quarter of them sysbench-memory ran 0.1 s
    # natively, and a trial's fixed cost (~0.3 s in a lab) outweighed short workloads
    "quick": _entries(
        "sysbench-cpu",
        "sysbench-memory",
        ("stress-ng-syscall", {"seconds": 2}),
        ("stress-ng-pagefault", {"seconds": 2}),
        ("fio-randread", {"size": "64M", "runtime": 2}),
        ("sockperf-pingpong", {"seconds": 2}),
    ),
    "standard": _entries(
        "sysbench-cpu", "sysbench-memory", "sysbench-threads",
        "stress-ng-cpu", "stress-ng-matrix", "stress-ng-pagefault", "stress-ng-switch",
        "stress-ng-syscall",
        "fio-seqread", "fio-seqwrite", "fio-randread", "fio-randwrite",
        "iperf3-tcp", "sockperf-pingpong", "openssl-speed", "7zip",
    ),
    "classic": _entries(
        "john", "povray", "7zip", "openssl-speed", "postmark", "mafft",
    ),
    "micro": _entries("hvprobe", "kvm-exits", "stress-ng-syscall", "stress-ng-switch"),
    "io-paths": _entries(
        ("fio-randread", {"runtime": 5}), ("fio-randwrite", {"runtime": 5}),
        ("fio-seqread", {"runtime": 5}), ("fio-seqwrite", {"runtime": 5}),
        ("sockperf-pingpong", {"seconds": 5}), ("iperf3-tcp", {"seconds": 5}),
    ),
}

SUITE_DESCRIPTIONS = {
    "quick": "a taste of each category; native run under 2 minutes",
    "standard": "CPU, memory, disk, network and micro workloads with default parameters",
    "classic": "the tests of the published KVM-vs-Xen studies that Debian packages",
    "micro": "what each operation costs: exits, syscalls, time calls, faults, switches, memory",
    "io-paths": "the disk and network paths of a guest: fio random and sequential, sockperf, "
                "iperf3 (with a matrix over disk_bus, nic_model, vhost, iothread...)",
}


def get_suite(name: str) -> tuple[SuiteEntry, ...]:
    try:
        return SUITES[name]
    except KeyError:
        raise UsageError(
            f"unknown suite {name!r}; choose from: {', '.join(SUITES)}"
        ) from None
