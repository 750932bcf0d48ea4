"""The xentrace decoder on a real trace captured in the Xen lab (tests/data/xentrace),
and on the same trace cut short or garbled: refused with a clear error, never half
read. (The collector itself runs in every Xen trial of tests/test_xenlab.py.)"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest

from hvbench.platforms.xentrace import TRC_TRACE_CPU_CHANGE, TraceError, count, records

TRACE = gzip.decompress((Path(__file__).parent / "data" / "xentrace" /
                         "pvh-fio-randread.bin.gz").read_bytes())
PVH_DOMAIN = 3


def test_a_real_trace_splits_into_each_domains_exits_and_hypercalls() -> None:
    every = list(records(TRACE))
    assert {r.cpu for r in every} == {0, 1}
    guest = count(TRACE, PVH_DOMAIN)
    assert guest.records == len(every) and guest.lost == 0
    # a PVH guest exits to Xen; each of its hypercalls is a VMMCALL exit
    assert sum(guest.exits.values()) > 100 and guest.exits["vmmcall"] > 0
    assert sum(guest.hypercalls.values()) == guest.exits["vmmcall"]
    assert not any(name.startswith("reason ") for name in guest.exits)  # all SVM codes known
    # dom0 is a PV guest: hypercalls (iret is PV only), never a VM exit
    dom0 = count(TRACE, 0)
    assert dom0.hypercalls["iret"] > 0 and sum(dom0.exits.values()) == 0
    # a domain that did not run has nothing; records before any CPU's first
    # scheduling record are put down to no domain
    nobody = count(TRACE, 7)
    assert not nobody.exits and not nobody.hypercalls
    assert guest.unattributed == dom0.unattributed < len(every) // 100
    # Intel's names for the same codes are VMX's (the vendor is dom0's CPU)
    assert "cpuid" not in count(TRACE, PVH_DOMAIN, vendor="Intel").exits


def test_a_trace_cut_short_or_garbled_is_refused() -> None:
    with pytest.raises(TraceError, match="cut short"):
        list(records(TRACE[:-8]))  # the last window loses its end
    with pytest.raises(TraceError, match="not whole 32-bit words"):
        count(TRACE[:-3], PVH_DOMAIN)
    with pytest.raises(TraceError, match="not an xentrace file"):
        count(b"\x7fELF" + TRACE[4:], PVH_DOMAIN)
    # a window that claims more bytes than its records fill: garbled
    header, cpu, window = struct.unpack_from("<IiI", TRACE, 0)
    assert header & 0x0FFFFFFF == TRC_TRACE_CPU_CHANGE
    with pytest.raises(TraceError):
        count(struct.pack("<IiI", header, cpu, window + 4) + TRACE[12:], PVH_DOMAIN)
    with pytest.raises(TraceError, match="garbled"):
        count(struct.pack("<IiI", header, 99999, window) + TRACE[12:], PVH_DOMAIN)
    assert list(records(b"")) == []  # nothing recorded: no records, no error
