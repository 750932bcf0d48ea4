"""kvmprobe: what a VM exit costs, measured through /dev/kvm by a tiny VMM.

A guest of a few bytes runs in 64-bit long mode (page tables and GDT built
here), at CPL0 or CPL3, and loops N times over one instruction that leaves the
guest: a port write or an MMIO write handled by this process (an exit to
userspace), HLT, or exits the kernel handles itself (``cpuid``, a port write
bound to an ioeventfd, a read of the in-kernel PIC's mask register). An empty
loop of the same shape is timed too and subtracted. KVM's binary statistics
(KVM_GET_STATS_FD) are read before and after each probe, so the report says how
many exits each iteration really caused instead of assuming it.

Every KVM_RUN is bounded: an interval timer interrupts it (the ioctl is called
through libc, so EINTR is not retried) and sets ``immediate_exit`` against the
race. A guest that triple-faults ends in KVM_EXIT_SHUTDOWN, reported as such.

Standard library only (ctypes, fcntl, mmap, os, signal), so it runs wherever
/dev/kvm does. Usage: ``python -m hvbench.probes.kvmprobe [--quick] [--json]``.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import signal
import statistics
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

# ioctl numbers (linux/kvm.h)
KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_GET_VCPU_MMAP_SIZE = 0xAE04
KVM_CREATE_VCPU = 0xAE41
KVM_SET_USER_MEMORY_REGION = 0x4020AE46
KVM_CREATE_IRQCHIP = 0xAE60
KVM_IOEVENTFD = 0x4040AE79
KVM_RUN = 0xAE80
KVM_GET_REGS = 0x8090AE81
KVM_SET_REGS = 0x4090AE82
KVM_GET_SREGS = 0x8138AE83
KVM_SET_SREGS = 0x4138AE84
KVM_GET_STATS_FD = 0xAECE
KVM_IOEVENTFD_FLAG_PIO = 1 << 1

EXIT_NAMES = {0: "UNKNOWN", 2: "IO", 5: "HLT", 6: "MMIO", 8: "SHUTDOWN", 9: "FAIL_ENTRY",
              10: "INTR", 17: "INTERNAL_ERROR"}
EXIT_IO, EXIT_HLT, EXIT_MMIO, EXIT_SHUTDOWN, EXIT_INTR = 2, 5, 6, 8, 10

MEMORY = 2 << 20  # guest RAM at GPA 0, one 2 MiB page
PML4, PDPT, PD, GDT, CODE, STACK = 0x1000, 0x2000, 0x3000, 0x500, 0x8000, 0x7000
MMIO_ADDRESS = MEMORY  # mapped by the page tables, but no memory slot: every access exits
DONE_PORT, PIO_PORT, EVENTFD_PORT, PIC_MASK_PORT = 0xF1, 0x80, 0x81, 0x21
RUN_LIMIT = 10.0  # seconds any single KVM_RUN may take


class KvmProbeError(Exception):
    """/dev/kvm is missing or refused us, or a probe guest misbehaved."""


_libc = ctypes.CDLL(None, use_errno=True)
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_libc.ioctl.restype = ctypes.c_int


def _ioctl(fd: int, request: int, arg: ctypes.Array[ctypes.c_char] | int | None = None) -> int:
    """ioctl through libc: an EINTR comes back to us instead of being retried."""
    if isinstance(arg, int) or arg is None:
        result = _libc.ioctl(fd, request, ctypes.c_void_p(arg or 0))
    else:
        result = _libc.ioctl(fd, request, ctypes.cast(arg, ctypes.c_void_p))
    if result < 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))
    return result


# -- guest code: hand-encoded x86-64, one comment per instruction ---------------------
def _loop(body: bytes, iterations: int, cpl: int) -> bytes:
    """mov r15d, N; loop: BODY; dec r15d; jnz loop; out DONE, al; then park."""
    head = b"\x41\xbf" + struct.pack("<I", iterations)  # mov r15d, imm32
    tail = b"\x41\xff\xcf"  # dec r15d
    back = -(len(body) + len(tail) + 2)
    tail += b"\x75" + struct.pack("<b", back)  # jnz loop (rel8)
    tail += bytes([0xE6, DONE_PORT])  # out DONE_PORT, al: tells the VMM "finished"
    tail += b"\xf4" if cpl == 0 else b"\xeb\xfe"  # hlt (CPL0) / jmp $ (CPL3)
    return head + body + tail


BODIES: dict[str, bytes] = {
    "empty": b"\x90",  # nop
    "pio": bytes([0xE6, PIO_PORT]),  # out PIO_PORT, al -> exit to userspace
    "mmio": b"\x89\x03",  # mov [rbx], eax (rbx = MMIO_ADDRESS) -> exit to userspace
    "hlt": b"\xf4",  # hlt -> exit to userspace (no in-kernel irqchip)
    "cpuid": b"\x31\xc0\x0f\xa2",  # xor eax, eax; cpuid -> handled in the kernel
    "ioeventfd": bytes([0xE6, EVENTFD_PORT]),  # out EVENTFD_PORT, al -> eventfd, in kernel
    "pic": bytes([0xE4, PIC_MASK_PORT]),  # in al, 0x21 -> the in-kernel PIC answers
}
#: instructions in each body (the loop adds dec and jnz)
BODY_INSTRUCTIONS = {"empty": 1, "pio": 1, "mmio": 1, "hlt": 1, "cpuid": 2, "ioeventfd": 1,
                     "pic": 1}
USERSPACE = ("pio", "mmio", "hlt")
HANDLED_BY = {"pio": "userspace", "mmio": "userspace", "hlt": "userspace",
              "cpuid": "kernel", "ioeventfd": "kernel", "pic": "kernel"}


# -- page tables, GDT, registers ---------------------------------------------------
def _segment(selector: int, code: bool, dpl: int) -> bytes:
    """struct kvm_segment: base, limit, selector, type, present, dpl, db, s, l, g, avl,
    unusable, padding."""
    kind = 0xB if code else 0x3  # execute/read accessed; read/write accessed
    return struct.pack("<QIHBBBBBBBBBx", 0, 0xFFFFFFFF, selector, kind, 1, dpl,
                       0 if code else 1, 1, 1 if code else 0, 1, 0, 0)


def _prepare_memory(memory: mmap.mmap, code: bytes) -> None:
    memory[PML4:PML4 + 8] = struct.pack("<Q", PDPT | 0x7)  # present, writable, user
    memory[PDPT:PDPT + 8] = struct.pack("<Q", PD | 0x7)
    memory[PD:PD + 16] = struct.pack("<2Q", 0x0 | 0x87,  # a 2 MiB page at 0 (PS bit): RAM
                                     MMIO_ADDRESS | 0x87)  # the next 2 MiB: MMIO
    descriptors = [0, 0x00AF9A000000FFFF, 0x00CF92000000FFFF,  # null, kernel code, data
                   0x00AFFA000000FFFF, 0x00CFF2000000FFFF]  # user code, user data
    memory[GDT:GDT + 8 * len(descriptors)] = struct.pack(f"<{len(descriptors)}Q",
                                                         *descriptors)
    memory[CODE:CODE + len(code)] = code


def _sregs(raw: bytearray, cpl: int) -> bytes:
    code = _segment(0x08, True, 0) if cpl == 0 else _segment(0x1B, True, 3)
    data = _segment(0x10, False, 0) if cpl == 0 else _segment(0x23, False, 3)
    segments = code + data * 5  # cs, ds, es, fs, gs, ss
    tr = struct.pack("<QIHBBBBBBBBBx", 0, 0xFFFF, 0x28, 0xB, 1, 0, 0, 0, 0, 0, 0, 0)
    ldt = struct.pack("<QIHBBBBBBBBBx", 0, 0, 0, 0x2, 1, 0, 0, 0, 0, 0, 0, 1)
    tables = struct.pack("<QH6x", GDT, 5 * 8 - 1) + struct.pack("<QH6x", 0, 0)
    apic_base = struct.unpack_from("<Q", raw, 272)[0]  # keep what KVM set
    # cr0: PG|AM|WP|NE|ET|MP|PE, cr2, cr3: the PML4, cr4: PAE, cr8, efer: LME|LMA
    control = struct.pack("<7Q", 0x80050033, 0, PML4, 0x20, 0, 0x500, apic_base)
    return segments + tr + ldt + tables + control + bytes(raw[280:312])


def _regs(cpl: int) -> bytes:
    values = [0] * 18  # rax rbx rcx rdx rsi rdi rsp rbp r8..r15 rip rflags
    values[1] = MMIO_ADDRESS  # rbx
    values[6] = STACK  # rsp
    values[16] = CODE  # rip
    values[17] = 0x2 | (0x3000 if cpl == 3 else 0)  # IOPL 3: CPL3 may do port I/O
    return struct.pack("<18Q", *values)


# -- KVM's binary statistics ----------------------------------------------------------
class Stats:
    """A vCPU's counters from KVM_GET_STATS_FD, read by name."""

    def __init__(self, vcpu_fd: int):
        self.fd = _ioctl(vcpu_fd, KVM_GET_STATS_FD)
        header = os.pread(self.fd, 24, 0)
        _flags, name_size, count, _id, desc_offset, data_offset = struct.unpack("<6I", header)
        self.offsets: dict[str, int] = {}
        size = 16 + name_size
        table = os.pread(self.fd, size * count, desc_offset)
        for index in range(count):
            entry = table[index * size:(index + 1) * size]
            _f, _exp, _sz, offset, _bucket = struct.unpack_from("<IhHII", entry)
            name = entry[16:].split(b"\0", 1)[0].decode()
            self.offsets[name] = data_offset + offset

    def read(self) -> dict[str, int]:
        return {name: struct.unpack("<Q", os.pread(self.fd, 8, offset))[0]
                for name, offset in self.offsets.items()}

    def close(self) -> None:
        os.close(self.fd)


# -- the VMM ------------------------------------------------------------------------------
class _Deadline:
    """An interval timer that interrupts a KVM_RUN that takes too long (SIGALRM
    without SA_RESTART: the ioctl returns EINTR)."""

    def __init__(self, run: mmap.mmap):
        self.run = run

    def _fire(self, _signum: int, _frame: object) -> None:
        self.run[1] = 1  # kvm_run.immediate_exit: even a KVM_RUN about to start returns

    def __enter__(self) -> _Deadline:
        self._previous = signal.signal(signal.SIGALRM, self._fire)
        signal.setitimer(signal.ITIMER_REAL, RUN_LIMIT)
        return self

    def __exit__(self, *_exc: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._previous)
        self.run[1] = 0


class Vm:
    """One VM with one vCPU running a probe loop."""

    def __init__(self, kvm: int, code: bytes, cpl: int, irqchip: bool = False):
        self.fds: list[int] = []
        self.vm = _ioctl(kvm, KVM_CREATE_VM, 0)
        self.fds.append(self.vm)
        if irqchip:
            _ioctl(self.vm, KVM_CREATE_IRQCHIP)
        self.memory = mmap.mmap(-1, MEMORY, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        _prepare_memory(self.memory, code)
        address = ctypes.addressof(ctypes.c_char.from_buffer(self.memory))
        region = ctypes.create_string_buffer(struct.pack("<IIQQQ", 0, 0, 0, MEMORY, address))
        _ioctl(self.vm, KVM_SET_USER_MEMORY_REGION, region)
        self.vcpu = _ioctl(self.vm, KVM_CREATE_VCPU, 0)
        self.fds.append(self.vcpu)
        size = _ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE)
        self.run = mmap.mmap(self.vcpu, size, mmap.MAP_SHARED,
                             mmap.PROT_READ | mmap.PROT_WRITE)
        sregs = ctypes.create_string_buffer(312)
        _ioctl(self.vcpu, KVM_GET_SREGS, sregs)
        _ioctl(self.vcpu, KVM_SET_SREGS,
               ctypes.create_string_buffer(_sregs(bytearray(sregs.raw), cpl), 312))
        _ioctl(self.vcpu, KVM_SET_REGS, ctypes.create_string_buffer(_regs(cpl), 144))
        self.stats = Stats(self.vcpu)
        self.fds.append(self.stats.fd)
        self.eventfd: int | None = None

    def bind_eventfd(self, port: int) -> None:
        self.eventfd = os.eventfd(0, os.EFD_NONBLOCK)
        self.fds.append(self.eventfd)
        request = struct.pack("<QQIiI36x", 0, port, 1, self.eventfd, KVM_IOEVENTFD_FLAG_PIO)
        _ioctl(self.vm, KVM_IOEVENTFD, ctypes.create_string_buffer(request, 64))

    def enter(self) -> int:
        """One KVM_RUN (under a running _Deadline); the exit reason."""
        try:
            _ioctl(self.vcpu, KVM_RUN)
        except OSError as exc:
            if exc.errno == 4:  # EINTR: the deadline's timer
                raise KvmProbeError(f"the probe guest ran over {RUN_LIMIT:g} s (stopped "
                                    "by the timer)") from None
            raise KvmProbeError(f"KVM_RUN failed: {exc.strerror}") from None
        return int(struct.unpack_from("<I", self.run, 8)[0])

    def io_port(self) -> int:
        return int(struct.unpack_from("<H", self.run, 34)[0])

    def close(self) -> None:
        self.stats.fd = -1
        self.run.close()
        self.memory.close()
        for fd in reversed(self.fds):
            os.close(fd)


def expected_counts(backend_name: str, name: str, cpl: int) -> list[dict[str, int]]:
    """KVM statistics each iteration must raise, by how the backend handles the probe:
    one set of counts, or the sets the backend's versions are known to give.

    On VT-x/AMD-V every probe instruction is one VM exit, counted in ``exits`` (and
    in the exit type's own counter). kvm_pvm runs guest CPL0 code through KVM's
    instruction emulator: a CPL0 loop exits only to reach userspace, and emulates
    every instruction of the loop instead; at CPL3 port I/O exits, and ``cpuid`` is
    handled without a counted exit (seen on 6.1-era hosts) or as one exit whose
    instruction is emulated (seen on a 6.18 host).
    """
    per_type = {"mmio": "mmio_exits", "hlt": "halt_exits"}
    if backend_name != "kvm_pvm":
        counts = {"exits": 1}
        counts[per_type.get(name, "io_exits" if name == "pio" else "exits")] = 1
        return [counts]
    if cpl == 3 and name == "cpuid":
        return [{"exits": 0}, {"exits": 1, "insn_emulation": 1}]
    counts = {"exits": 1 if name in USERSPACE or cpl == 3 else 0}
    if name in per_type:
        counts[per_type[name]] = 1
    if cpl == 0:
        counts["insn_emulation"] = BODY_INSTRUCTIONS[name] + 2
    return [counts]


@dataclass
class ProbeResult:
    name: str
    cpl: int
    handled_by: str
    ns_per_exit: float  # median over batches, empty loop subtracted
    spread_ns: tuple[float, float]  # min and max over batches
    exits_per_iteration: dict[str, float]  # KVM stats counted per loop iteration
    userspace_exits_per_iteration: float  # KVM_RUN returns this VMM saw, per iteration
    expected: dict[str, int]  # what the counters must show, for this backend
    exits_ok: bool
    iterations: int
    batches: int


@dataclass
class Report:
    backend: str  # what /dev/kvm is here (kvm_intel, kvm_amd, kvm_pvm, ...)
    api_version: int
    results: list[ProbeResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _run_probe(kvm: int, name: str, cpl: int, iterations: int
               ) -> tuple[float, dict[str, int], int]:
    """Run one loop to completion: wall time, the counters' increase, and how many
    times the guest came back to this process before it finished."""
    vm = Vm(kvm, _loop(BODIES[name], iterations, cpl), cpl,
            irqchip=name in ("pic", "ioeventfd"))
    try:
        if name == "ioeventfd":
            vm.bind_eventfd(EVENTFD_PORT)
        before = vm.stats.read()
        returns = 0
        # one timer bounds the whole loop, so every KVM_RUN in it; arming it per
        # KVM_RUN would add four system calls to each exit measured
        with _Deadline(vm.run):
            started = time.perf_counter_ns()
            while True:
                reason = vm.enter()
                returns += 1
                if reason == EXIT_IO and vm.io_port() == DONE_PORT:
                    break
                if reason in (EXIT_IO, EXIT_MMIO, EXIT_HLT) and name in USERSPACE:
                    continue  # the exit this probe is about: straight back in
                if reason == EXIT_SHUTDOWN:
                    raise KvmProbeError(f"the {name} probe guest triple-faulted "
                                        "(KVM_EXIT_SHUTDOWN)")
                raise KvmProbeError(f"the {name} probe guest exited unexpectedly: "
                                    f"{EXIT_NAMES.get(reason, reason)}")
            elapsed = time.perf_counter_ns() - started
        after = vm.stats.read()
    finally:
        vm.close()
    return elapsed, {k: after[k] - before.get(k, 0) for k in after}, returns - 1


def _agrees(key: str, measured: float, expected: int) -> bool:
    """Typed counters must match to 2%; the total may run up to 10% over, since
    host interrupts and preemption add exits of their own (a busy host shows them)."""
    if key == "exits":
        return expected - 0.02 <= measured <= expected * 1.1 + 0.02
    return abs(measured - expected) <= 0.02 * max(expected, 1)


def _calibrate(kvm: int, name: str, cpl: int, target_ns: float) -> int:
    """Iterations for one batch to last about target_ns (CPL0 may be emulated: slow)."""
    iterations = 16
    while iterations < 1 << 22:
        elapsed, _, _ = _run_probe(kvm, name, cpl, iterations)
        if elapsed >= target_ns / 4:
            return max(16, int(iterations * target_ns / max(elapsed, 1)))
        iterations *= 4
    return iterations


def backend() -> str:
    """Which KVM module backs /dev/kvm."""
    for module in ("kvm_intel", "kvm_amd", "kvm_pvm"):
        if os.path.isdir(f"/sys/module/{module}"):
            return module
    return "unknown"


def open_kvm() -> int:
    try:
        return os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KvmProbeError("/dev/kvm does not exist: load kvm_intel or kvm_amd (or run in "
                            "the KVM lab: hvbench run --host lab:kvm)") from None
    except PermissionError:
        raise KvmProbeError("/dev/kvm is not read-write for this user: add yourself to "
                            "the 'kvm' group or run as root") from None


def measure(quick: bool = False, say: Callable[[str], None] | None = None) -> Report:
    """Every probe at CPL0 and CPL3 (HLT at CPL0 only: it is privileged)."""
    kvm = open_kvm()
    try:
        report = Report(backend(), _ioctl(kvm, KVM_GET_API_VERSION))
        if report.api_version != 12:
            raise KvmProbeError(f"/dev/kvm speaks API {report.api_version}, not 12")
        target = 20e6 if quick else 100e6
        batches = 3 if quick else 7
        for cpl in (0, 3):
            empty_iterations = _calibrate(kvm, "empty", cpl, target)
            empty = statistics.median(_run_probe(kvm, "empty", cpl, empty_iterations)[0]
                                      / empty_iterations for _ in range(batches))
            for name in ("pio", "mmio", "hlt", "cpuid", "ioeventfd", "pic"):
                if name == "hlt" and cpl == 3:
                    continue
                if say:
                    say(f"kvmprobe: {name} at CPL{cpl}")
                iterations = _calibrate(kvm, name, cpl, target)
                costs, counts, returns = [], [], []
                for _ in range(batches):
                    elapsed, delta, back = _run_probe(kvm, name, cpl, iterations)
                    costs.append(elapsed / iterations - empty)
                    counts.append(delta)
                    returns.append(back / iterations)
                keys: tuple[str, ...] = ("exits", "io_exits", "mmio_exits", "halt_exits",
                                         "insn_emulation")
                per = {key: round(statistics.median(c.get(key, 0) for c in counts)
                                  / iterations, 3) for key in keys if key in counts[0]}
                userspace = statistics.median(returns)
                known = expected_counts(report.backend, name, cpl)
                # the set of counts this host's backend gave, if it is one of them
                matched = next((option for option in known if all(
                    _agrees(key, per.get(key, -1.0), value) for key, value in option.items())),
                    None)
                expected = matched or known[0]
                ok = matched is not None and userspace == (1.0 if name in USERSPACE else 0.0)
                report.results.append(ProbeResult(
                    name, cpl, HANDLED_BY[name], round(statistics.median(costs), 1),
                    (round(min(costs), 1), round(max(costs), 1)), per, userspace,
                    expected, ok, iterations, batches))
        if report.backend == "kvm_pvm":
            report.notes.append("kvm_pvm is a paravirtual KVM backend: guest CPL0 code runs "
                                "through KVM's instruction emulator, so CPL0 costs are not "
                                "those of VT-x/AMD-V hardware; CPL3 runs natively")
        return report
    finally:
        os.close(kvm)


def main(argv: list[str]) -> int:
    try:
        report = measure(quick="--quick" in argv)
    except KvmProbeError as exc:
        print(f"kvmprobe: {exc}", file=sys.stderr)
        return 2
    if "--json" in argv:
        print(json.dumps(asdict(report)))
        return 0
    print(f"kvmprobe on /dev/kvm ({report.backend}, API {report.api_version})")
    for result in report.results:
        print(f"  {result.name:10} CPL{result.cpl} {result.handled_by:9} "
              f"{result.ns_per_exit:10.1f} ns  exits/iter {result.exits_per_iteration}"
              f"{'' if result.exits_ok else '  (UNEXPECTED)'}")
    for note in report.notes:
        print(f"  note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
