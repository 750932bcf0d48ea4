"""Measurement integrity: the clock check's arithmetic and the implausibility rule, on
real Completed records and real summaries (the wrong guest clock itself is made and
caught in test_qemu)."""

from __future__ import annotations

from dataclasses import dataclass

from hvbench.integrity import clock_check, clock_warnings, implausible
from hvbench.machine import Completed
from hvbench.stats import Summary, summarize


def _done(guest: float, host: float | None) -> Completed:
    return Completed(("stress-ng",), "", "", 0, guest, host)


def test_agreeing_clocks_pass_and_the_native_machine_is_not_checked() -> None:
    assert clock_check(_done(2.0, None)) == {}
    assert clock_check(_done(2.0, 2.4)) == {"guest_s": 2.0, "host_s": 2.4}
    assert "flag" not in clock_check(_done(0.2, 1.1))  # a short command: transport time
    combined = Completed.combine([_done(1.0, 1.2), _done(2.0, 2.3)])
    assert (combined.seconds, combined.observed) == (3.0, 3.5)
    assert Completed.combine([_done(1.0, 1.2), _done(2.0, None)]).observed is None


def test_a_fast_or_slow_guest_clock_is_flagged() -> None:
    assert "ran fast: 2.20 s by the guest for 2.00 s" in clock_check(_done(2.2, 2.0))["flag"]
    assert "ran slow: 2.00 s by the guest for 10.00 s" in clock_check(_done(2.0, 10.0))["flag"]
    trials = [{"platform": "tcg", "workload": "stress-ng-cpu", "warmup": False,
               "metadata": {"clock": clock_check(_done(2.2, 2.0))}},
              {"platform": "tcg", "workload": "stress-ng-cpu", "warmup": False,
               "metadata": {"clock": clock_check(_done(2.0, 2.1))}},
              {"platform": "native", "workload": "stress-ng-cpu", "warmup": False,
               "metadata": {}}]
    warning, = clock_warnings(trials)
    assert warning.startswith("tcg: 1 of 2 trials measured with a wrong clock")


@dataclass(frozen=True)
class Row:
    workload: str
    category: str
    metric: str
    higher_is_better: bool
    summaries: dict[str, Summary]


def test_a_guest_disk_far_faster_than_bare_metal_is_implausible() -> None:
    native, guest = summarize((100.0, 104.0, 98.0)), summarize((400.0, 380.0, 410.0))
    rows = [Row("fio-seqwrite", "disk", "bandwidth", True, {"native": native, "vm": guest}),
            Row("fio-seqwrite", "disk", "clat-mean", False, {"native": guest, "vm": native}),
            Row("sysbench-cpu", "cpu", "events", True, {"native": native, "vm": guest}),
            Row("fio-seqread", "disk", "bandwidth", True, {"native": native, "vm": native})]
    found = implausible(rows, {"vm": "native"})
    assert len(found) == 2
    assert found[0].startswith("vm: fio-seqwrite/bandwidth is 4.0x better than on native")
    assert "ignores fsync" in found[0] and "clat-mean is 4.0x" in found[1]
