"""VM exits and hypercalls of a Xen domain, decoded from ``xentrace``'s binary records.

Debian ships ``xentrace`` but neither ``xenalyze`` nor ``xentrace_format``, so the
records are decoded here, from the format in Xen's public ``trace.h``: each record is
a 32-bit header (event id in bits 0-27, the number of 32-bit data words in bits
28-30, bit 31 when a 64-bit cycle count follows), then the data. xentrace writes each
physical CPU's buffer as windows, each opened by a ``TRC_TRACE_CPU_CHANGE`` record
giving the CPU and the window's length in bytes; records tile the window exactly, so
a file cut short or garbled is detected, never half-read.

Records carry no domain: the scheduler's records (a switch, a runstate change to
running, a vCPU that keeps running) say which domain runs on each physical CPU, and
every other record on that CPU until the next one belongs to it. Counted for the
guest's domain: HVM/PVH VM exits by exit reason (SVM exit codes on AMD, VMX basic
exit reasons on Intel) and hypercalls by name (PV: the hypercall records; PVH/HVM:
the VMMCALL/VMCALL handler's record with the hypercall number).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..collect import Collector
from ..errors import TrialError
from ..hosts.base import Host
from ..machine import Background

TRC_LOST_RECORDS = 0x0001F001
TRC_TRACE_CPU_CHANGE = 0x0001F003
TRC_SCHED_RUNSTATE_CHANGE = 0x00021001  # | old state << 8 | new state << 4
TRC_SCHED_CONTINUE_RUNNING = 0x00021002
TRC_SCHED_SWITCH = 0x0002800A
#: VM exits: Xen 4.17 traces VMX and SVM exits as 0x2 (later Xens: SVM as 0x3);
#: +0x100 with a 64-bit guest address, +0x400 for an exit of a nested guest
HVM_EXITS = {0x00081002, 0x00081102, 0x00081003, 0x00081103}
TRC_HVM_VMMCALL = 0x00082012
TRC_PV_HYPERCALL = {0x00201001: 1, 0x00201101: 2}  # -> words of guest IP before eax
TRC_PV_HYPERCALL_V2 = 0x0020100D
#: what the collector asks Xen to record: scheduling, HVM and PV classes
EVENT_MASK = 0x0002F000 | 0x0008F000 | 0x0020F000
DOMID_IDLE = 0x7FFF
_RUNNING = 0  # RUNSTATE_running

#: __HYPERVISOR_* numbers of Xen's public xen.h
HYPERCALLS = {
    0: "set_trap_table", 1: "mmu_update", 2: "set_gdt", 3: "stack_switch",
    4: "set_callbacks", 5: "fpu_taskswitch", 6: "sched_op_compat", 7: "platform_op",
    8: "set_debugreg", 9: "get_debugreg", 10: "update_descriptor", 12: "memory_op",
    13: "multicall", 14: "update_va_mapping", 15: "set_timer_op",
    16: "event_channel_op_compat", 17: "xen_version", 18: "console_io",
    19: "physdev_op_compat", 20: "grant_table_op", 21: "vm_assist",
    22: "update_va_mapping_otherdomain", 23: "iret", 24: "vcpu_op", 25: "set_segment_base",
    26: "mmuext_op", 27: "xsm_op", 28: "nmi_op", 29: "sched_op", 30: "callback_op",
    31: "xenoprof_op", 32: "event_channel_op", 33: "physdev_op", 34: "hvm_op",
    35: "sysctl", 36: "domctl", 37: "kexec_op", 38: "tmem_op", 39: "argo_op",
    40: "xenpmu_op", 41: "dm_op", 42: "hypfs_op"}

#: AMD SVM exit codes (AMD64 APM vol. 2, appendix C), named as KVM's tracepoint does
SVM_EXITS = {
    **{i: f"read_cr{i}" for i in range(16)}, **{0x10 + i: f"write_cr{i}" for i in range(16)},
    **{0x20 + i: f"read_dr{i}" for i in range(16)}, **{0x30 + i: f"write_dr{i}" for i in range(16)},
    **{0x40 + i: f"excp_{i}" for i in range(32)},
    0x60: "interrupt", 0x61: "nmi", 0x62: "smi", 0x63: "init", 0x64: "vintr",
    0x65: "cr0_sel_write", 0x66: "read_idtr", 0x67: "read_gdtr", 0x68: "read_ldtr",
    0x69: "read_tr", 0x6A: "write_idtr", 0x6B: "write_gdtr", 0x6C: "write_ldtr",
    0x6D: "write_tr", 0x6E: "rdtsc", 0x6F: "rdpmc", 0x70: "pushf", 0x71: "popf",
    0x72: "cpuid", 0x73: "rsm", 0x74: "iret", 0x75: "swint", 0x76: "invd", 0x77: "pause",
    0x78: "hlt", 0x79: "invlpg", 0x7A: "invlpga", 0x7B: "io", 0x7C: "msr",
    0x7D: "task_switch", 0x7E: "ferr_freeze", 0x7F: "shutdown", 0x80: "vmrun",
    0x81: "vmmcall", 0x82: "vmload", 0x83: "vmsave", 0x84: "stgi", 0x85: "clgi",
    0x86: "skinit", 0x87: "rdtscp", 0x88: "icebp", 0x89: "wbinvd", 0x8A: "monitor",
    0x8B: "mwait", 0x8C: "mwait_cond", 0x8D: "xsetbv", 0x8E: "rdpru", 0x8F: "efer_write_trap",
    0x400: "npf", 0x401: "avic_incomplete_ipi", 0x402: "avic_unaccelerated_access",
    0x403: "vmgexit"}

#: Intel VMX basic exit reasons (SDM vol. 3, appendix C)
VMX_EXITS = {
    0: "exception_nmi", 1: "external_interrupt", 2: "triple_fault", 3: "init_signal",
    4: "sipi", 7: "interrupt_window", 8: "nmi_window", 9: "task_switch", 10: "cpuid",
    12: "hlt", 13: "invd", 14: "invlpg", 15: "rdpmc", 16: "rdtsc", 18: "vmcall",
    28: "cr_access", 29: "dr_access", 30: "io_instruction", 31: "msr_read", 32: "msr_write",
    33: "invalid_state", 36: "mwait_instruction", 37: "monitor_trap_flag",
    39: "monitor_instruction", 40: "pause_instruction", 43: "tpr_below_threshold",
    44: "apic_access", 45: "eoi_induced", 46: "gdtr_idtr", 47: "ldtr_tr",
    48: "ept_violation", 49: "ept_misconfig", 51: "rdtscp", 52: "preemption_timer",
    54: "wbinvd", 55: "xsetbv", 56: "apic_write", 57: "rdrand", 58: "invpcid",
    61: "rdseed", 62: "pml_full", 63: "xsaves", 64: "xrstors"}


class TraceError(ValueError):
    """Trace data that is not a whole xentrace file."""


class Record(NamedTuple):  # for reading a trace record by record (count() reads in place)
    cpu: int
    event: int
    data: tuple[int, ...]


def records(data: bytes) -> Iterator[Record]:
    """Every record of an xentrace file, with the physical CPU it was recorded on."""
    for cpu, at, end in windows(data):
        while at < end:
            event, size, words = _parse(data, at, end)
            yield Record(cpu, event, words)
            at += size


def windows(data: bytes) -> Iterator[tuple[int, int, int]]:
    """Each CPU window of an xentrace file: (CPU, first record's byte, end byte)."""
    if len(data) % 4:
        raise TraceError(f"trace data of {len(data)} bytes is not whole 32-bit words: cut "
                         "short")
    offset = 0
    while offset < len(data):
        cpu, window = _window_at(data, offset)
        start = offset + _WINDOW_RECORD
        end = start + window
        if end > len(data):
            raise TraceError(f"the window of CPU {cpu} at byte {offset} needs {window} bytes, "
                             f"{len(data) - start} are left: the trace was cut short")
        yield cpu, start, end
        offset = end


#: xentrace's CPU-change record: header, CPU, window length (no cycle count)
_WINDOW_RECORD = 12
_WINDOW_HEADER = TRC_TRACE_CPU_CHANGE | 2 << 28


def _window_at(data: bytes, offset: int) -> tuple[int, int]:
    """The CPU and length in bytes of the window whose record starts at ``offset``."""
    (header,) = struct.unpack_from("<I", data, offset)
    if header != _WINDOW_HEADER or offset + _WINDOW_RECORD > len(data):
        raise TraceError(f"no CPU window at byte {offset} (header {header:#010x}): not an "
                         "xentrace file, garbled, or cut short")
    cpu, window = struct.unpack_from("<iI", data, offset + 4)
    if not 0 <= cpu < 4096 or window % 4 or window == 0:
        raise TraceError(f"a CPU window at byte {offset} names CPU {cpu} and {window} bytes: "
                         "garbled")
    return cpu, window


def _parse(data: bytes, at: int, end: int) -> tuple[int, int, tuple[int, ...]]:
    (header,) = struct.unpack_from("<I", data, at)
    extra, cycles = (header >> 28) & 7, header >> 31
    size = 4 + 8 * cycles + 4 * extra
    if at + size > end:
        raise TraceError(f"a record at byte {at} runs past its CPU window: garbled")
    words = struct.unpack_from(f"<{extra}I", data, at + 4 + 8 * cycles)
    return header & 0x0FFFFFFF, size, words


@dataclass
class DomainCounts:
    """What one domain did in a trace."""

    exits: Counter[str] = field(default_factory=Counter)
    hypercalls: Counter[str] = field(default_factory=Counter)
    records: int = 0  # records of the whole trace
    lost: int = 0  # records Xen could not write (full buffers): counts are lower bounds
    unattributed: int = 0  # exits and hypercalls before any CPU's first scheduling record


def count(data: bytes, domid: int, vendor: str = "AMD") -> DomainCounts:
    """The exits and hypercalls of domain ``domid`` in an xentrace file; ``vendor``
    (AMD or Intel) names the exit reasons. (One pass, reading only the data words of
    the records it needs: a long trial has millions.)"""
    names = SVM_EXITS if vendor == "AMD" else VMX_EXITS
    running: dict[int, int] = {}  # physical CPU -> the domain running on it
    found = DomainCounts()
    unpack = struct.unpack_from
    for cpu, at, end in windows(data):
        while at < end:
            (header,) = unpack("<I", data, at)
            extra, cycles = (header >> 28) & 7, header >> 31
            size = 4 + 8 * cycles + 4 * extra
            if at + size > end:
                raise TraceError(f"a record at byte {at} runs past its CPU window: garbled")
            found.records += 1
            event = header & 0x0FFFFFFF
            if event >> 16 in _WANTED_CLASSES and extra:
                words = unpack(f"<{extra}I", data, at + 4 + 8 * cycles)
                _account(found, running, cpu, event, words, domid, names)
            at += size
    return found


#: the classes (event >> 16) of the records count() reads: GEN (lost), SCHED, HVM, PV
_WANTED_CLASSES = {0x0001, 0x0002, 0x0008, 0x0020}


def _account(found: DomainCounts, running: dict[int, int], cpu: int, event: int,
             words: tuple[int, ...], domid: int, names: dict[int, str]) -> None:
    """One record's part: whose CPU it is now, or an exit or hypercall of its owner."""
    if event == TRC_SCHED_SWITCH and len(words) >= 3:
        running[cpu] = words[2]
    elif event & 0xFFFF000F == TRC_SCHED_RUNSTATE_CHANGE:
        if (event >> 4) & 3 == _RUNNING:
            running[cpu] = words[0] >> 16
    elif event == TRC_SCHED_CONTINUE_RUNNING:
        running[cpu] = words[0] >> 16
    elif event == TRC_LOST_RECORDS:
        found.lost += words[0]
    else:
        kind, name = _classify(event, words, names)
        if kind is None:
            return
        owner = running.get(cpu)
        if owner is None:
            found.unattributed += 1
        elif owner == domid:
            (found.exits if kind == "exit" else found.hypercalls)[name] += 1


def _classify(event: int, words: tuple[int, ...], names: dict[int, str]
              ) -> tuple[str | None, str]:
    if event & ~0x400 in HVM_EXITS and words:
        reason = words[0]
        return "exit", names.get(reason, f"reason {reason:#x}")
    if event == TRC_PV_HYPERCALL_V2 and words:
        return "hypercall", _hypercall(words[0] & 0xFFFFF)
    if event in TRC_PV_HYPERCALL and len(words) > TRC_PV_HYPERCALL[event]:
        return "hypercall", _hypercall(words[TRC_PV_HYPERCALL[event]])
    if event == TRC_HVM_VMMCALL and words:
        return "hypercall", _hypercall(words[0])
    return None, ""


def _hypercall(number: int) -> str:
    return HYPERCALLS.get(number, f"hypercall {number}")


#: runs in dom0 with $1 = its directory, $2 = buffer pages, $3 = event mask (fixed
#: text: no guest or config text is ever part of it): xentrace in the background,
#: ready once it has written its first records (then tracing runs)
_START = r"""
mkdir -p "$1" || exit 3
xentrace -D -S "$2" -e "$3" "$1/trace.bin" > "$1/xentrace.log" 2>&1 &
p=$!
echo "$p" > "$1/xentrace.pid"
i=0
while [ ! -s "$1/trace.bin" ]; do
    kill -0 "$p" 2>/dev/null || { echo "xentrace failed: $(tail -n 3 "$1/xentrace.log")"; exit 3; }
    i=$((i + 1))
    [ "$i" -gt 300 ] && { kill -INT "$p"; echo "xentrace wrote nothing in 15 s"; exit 3; }
    sleep 0.05
done
echo "@@XT-READY"
wait "$p"
"""
#: $1 = the directory. SIGINT: xentrace disables tracing, reads every buffer once
#: more and exits; then its records, base64-encoded
_STOP = r"""
read -r p < "$1/xentrace.pid" || exit 3
kill -INT "$p" 2>/dev/null
i=0
while kill -0 "$p" 2>/dev/null; do
    i=$((i + 1)); [ "$i" -gt 300 ] && { echo "xentrace did not stop in 15 s"; exit 3; }
    sleep 0.05
done
base64 "$1/trace.bin" || exit 3
rm -rf "$1"
"""

#: trace buffer pages per CPU (Xen sizes them once per boot; the default 32 lose
#: records under a nested hypervisor's slow polls)
BUFFER_PAGES = 256


#: hosts whose trace buffers one of our collectors reads now: Xen has one set of
#: buffers, and two readers would each get part of the records (the guests of a tile
#: trace one at a time; another run on the same host waits for the host's lock)
_TRACING: set[str] = set()
_GUARD = threading.Lock()


class XenTrace(Collector):
    """The domain's VM exits by reason and hypercalls by name during the trial."""

    name = "xen_trace"

    def __init__(self, host: Host, domid: int, vendor: str):
        self.host = host
        self.domid = domid
        self.vendor = vendor  # AMD or Intel: which exit codes the trace holds
        self._directory = ""
        self._background: Background | None = None
        self._started = 0.0

    def start(self) -> None:
        with _GUARD:
            if self.host.label in _TRACING:
                raise TrialError(f"xentrace already records another guest's trial on "
                                 f"{self.host.label} (Xen has one set of trace buffers)")
            _TRACING.add(self.host.label)
        try:
            self._start()
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        with _GUARD:
            _TRACING.discard(self.host.label)

    def _start(self) -> None:
        machine = self.host.native()
        self._directory = f"{machine.scratch_dir()}/xentrace-{secrets.token_hex(4)}"
        self._background = machine.spawn(["sh", "-c", _START, "sh", self._directory,
                                          str(BUFFER_PAGES), f"{EVENT_MASK:#x}"])
        try:
            self._background.wait_for_output("@@XT-READY", 30)
        except TrialError as exc:
            self._background.stop()
            self._background = None
            raise TrialError(f"xentrace on {self.host.label}: {exc}") from None
        self._started = time.monotonic()

    def stop(self) -> dict[str, Any]:
        if self._background is None:
            raise ValueError("stopped before it was started")
        seconds = time.monotonic() - self._started
        try:
            done = self.host.run(["sh", "-c", _STOP, "sh", self._directory], timeout=180)
            if done.exit_code != 0:
                raise TrialError(f"xentrace on {self.host.label}: "
                                 f"{(done.stdout or done.stderr).strip()[-200:] or 'failed'}")
            encoded = done.stdout
        finally:
            self._background.stop()
            self._background = None
            self._release()
        try:
            counts = count(base64.b64decode(encoded), self.domid, self.vendor)
        except (TraceError, binascii.Error) as exc:
            raise TrialError(f"xentrace's records could not be read: {exc}") from None
        found: dict[str, Any] = {
            "seconds": round(seconds, 4), "domid": self.domid, "records": counts.records,
            "exits": dict(counts.exits.most_common()),
            "hypercalls": dict(counts.hypercalls.most_common())}
        if counts.lost:
            found["lost"] = counts.lost
        if counts.unattributed:
            found["unattributed"] = counts.unattributed
        return found
