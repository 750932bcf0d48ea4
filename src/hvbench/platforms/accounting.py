"""The hypervisor's side of a trial: where the host's CPU went for a guest.

For a QEMU guest, the CPU time of each of QEMU's threads on its host, by kind (the
names come from ``-name ...,debug-threads=on``): vCPU threads ("CPU 0/KVM"), the
main loop (device emulation in userspace), I/O threads ("IO io0"), the thread
pool's workers (disk I/O with aio=threads) and the guest's vhost kernel threads
("vhost-PID", outside QEMU's process). For a Xen guest, the domain's CPU time from
``xl list``; dom0's own CPU time (its backends) comes from its kernel's view. For a
libvirt guest, what libvirt accounts for the domain.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from defusedxml import ElementTree as SafeET

from ..collect import USER_HZ, Sampling, ScriptedSampling
from ..errors import TrialError
from ..hosts.base import Host
from ..hosts.qmp import QmpChannel
from ..hosts.virt import binding, failure
from ..scripts import Reply, Script

if TYPE_CHECKING:
    from libvirt import virDomain

#: one line per thread of the process whose pid is in $1, and per vhost kernel thread
#: of it: "tid<TAB>comm<TAB>utime+stime ticks" (a fixed script; $1 is a path)
_THREADS = r"""
read -r p < "$1" || [ -n "$p" ] || exit 1
for t in /proc/$p/task/*; do
    read -r s < "$t/stat" 2>/dev/null || continue
    read -r c < "$t/comm" 2>/dev/null
    set -- ${s##*) }
    printf '%s\t%s\t%s\n' "${t##*/}" "$c" "$(( ${12} + ${13} ))"
done
for t in /proc/[0-9]*; do
    read -r c < "$t/comm" 2>/dev/null || continue
    [ "$c" = "vhost-$p" ] || continue
    read -r s < "$t/stat" 2>/dev/null || continue
    set -- ${s##*) }
    printf '%s\t%s\t%s\n' "${t##*/}" "$c" "$(( ${12} + ${13} ))"
done
exit 0
"""
KINDS = ("vcpu", "main_loop", "iothread", "io_workers", "vhost", "other")


def thread_kind(comm: str) -> str:
    """The kind of one of QEMU's threads, from its name."""
    if comm.startswith("CPU ") and "/" in comm:
        return "vcpu"
    if comm.startswith("IO "):
        return "iothread"
    if comm.startswith("qemu-system"):
        return "main_loop"
    if comm == "worker":
        return "io_workers"
    if comm.startswith("vhost-"):
        return "vhost"
    return "other"


def parse_threads(text: str) -> dict[str, tuple[str, int]]:
    """tid -> (name, CPU ticks) from _THREADS' output."""
    found = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[0].isdigit() and parts[2].isdigit():
            found[parts[0]] = (parts[1], int(parts[2]))
    return found


class QemuThreads(ScriptedSampling[dict[str, tuple[str, int]]]):
    """CPU seconds of a QEMU guest's threads on its host during the trial, by kind,
    and as a share of the trial's wall time (1.0 = one host core busy)."""

    name = "host_threads"

    def __init__(self, host: Host, pidfile: str):
        super().__init__()
        self.host = host
        self.pidfile = pidfile

    def script(self) -> Script:
        return Script(_THREADS, (self.pidfile,))

    def parse(self, reply: Reply) -> dict[str, tuple[str, int]]:
        if reply.exit_code != 0:
            raise TrialError(f"cannot read QEMU's threads on {self.host.label}: "
                             f"{reply.output.strip()[:200]}")
        return parse_threads(reply.output)

    def difference(self, before: dict[str, tuple[str, int]],
                   after: dict[str, tuple[str, int]], seconds: float) -> dict[str, Any]:
        spent = dict.fromkeys(KINDS, 0.0)
        for tid, (comm, ticks) in after.items():
            earlier = before.get(tid, (comm, 0))[1]  # 0: a thread born in the trial
            spent[thread_kind(comm)] += max(0, ticks - earlier) / USER_HZ
        found: dict[str, Any] = {"host_cpu_s": round(sum(spent.values()), 3)}
        for kind, cpu in spent.items():
            found[f"{kind}_cores"] = round(cpu / seconds, 4)
        return found


def parse_xl_time(text: str, domain: str) -> float:
    """The CPU seconds ``xl list DOMAIN`` gives for the domain."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == domain and len(parts) >= 6:
            return float(parts[5])
    raise ValueError(f"'xl list' does not list {domain}")


class XenDomainCpu(ScriptedSampling[float]):
    """The domain's CPU time during the trial (all its vCPUs), per second."""

    name = "domain_cpu"

    def __init__(self, host: Host, domain: str):
        super().__init__()
        self.host = host
        self.domain = domain

    def script(self) -> Script:
        return Script('xl list "$1"', (self.domain,))

    def parse(self, reply: Reply) -> float:
        if reply.exit_code != 0:
            raise TrialError(f"'xl list {self.domain}' failed: {reply.output.strip()[:200]}")
        return parse_xl_time(reply.output, self.domain)

    def difference(self, before: float, after: float, seconds: float) -> dict[str, Any]:
        return {"domain_cpu_s": round(after - before, 2),
                "domain_cores": round((after - before) / seconds, 4)}


def cumulative_names(schemas: list[dict[str, Any]]) -> set[str]:
    """The counters (not instant values or peaks) of a query-stats-schemas answer."""
    return {stat["name"] for provider in schemas for stat in provider.get("stats", [])
            if stat.get("type") == "cumulative"}


def sum_stats(results: list[dict[str, Any]], wanted: set[str]) -> dict[str, int]:
    """query-stats results (one per VM or vCPU) summed per counter name."""
    found: dict[str, int] = {}
    for result in results:
        for stat in result.get("stats", []):
            value = stat.get("value")
            if stat.get("name") in wanted and isinstance(value, int):
                found[stat["name"]] = found.get(stat["name"], 0) + value
    return found


class KvmStats(Sampling[dict[str, int]]):
    """KVM's own counters for the guest's VM and all its vCPUs, through QMP's
    query-stats (QEMU 7.1+): VM exits by kind (io, mmio, halt, irq...), instructions
    emulated, hypercalls, page faults; counts in the trial and per second."""

    name = "kvm"

    def __init__(self, qmp: QmpChannel):
        super().__init__()
        self.qmp = qmp
        self._wanted: set[str] = set()

    def read(self) -> dict[str, int]:
        found: dict[str, int] = {}
        targets = ("vm", "vcpu")
        answers = self.qmp.execute_all([("query-stats", {"target": t}) for t in targets])
        for target, results in zip(targets, answers, strict=True):
            for name, value in sum_stats(results, self._wanted).items():
                found[f"{target}.{name}" if target == "vm" else name] = value
        return found

    def start(self) -> None:
        if not self._wanted:  # once per QEMU: its driver keeps this collector
            self._wanted = cumulative_names(self.qmp.execute("query-stats-schemas"))
        if not self._wanted:
            raise TrialError("QEMU offers no KVM statistics (query-stats-schemas is empty)")
        super().start()

    def difference(self, before: dict[str, int], after: dict[str, int], seconds: float
                   ) -> dict[str, Any]:
        counts = {k: v - before.get(k, 0) for k, v in sorted(after.items())}
        found: dict[str, Any] = {"counts": counts}
        if "exits" in counts:
            found["exits_per_s"] = round(counts["exits"] / seconds, 1)
        return found


#: the cumulative counters of libvirt's domain stats that a trial's figures use
_LIBVIRT_COUNTERS = re.compile(r"^(cpu\.time|vcpu\.\d+\.(time|wait)|"
                               r"block\.\d+\.(rd|wr|fl)\.(reqs|bytes)|"
                               r"net\.\d+\.(rx|tx)\.(bytes|pkts))$")


class LibvirtStats(Sampling[dict[str, int]]):
    """What libvirt accounts for the domain (``virConnectGetAllDomainStats``): host CPU
    of the whole domain and of its vCPUs (the rest is QEMU's other threads), the time
    its vCPUs waited for a host CPU, and its disk and network requests."""

    name = "libvirt"

    def __init__(self, domain: virDomain, xen: bool = False):
        super().__init__()
        self.domain = domain
        #: a Xen domain's CPU time is its vCPUs' (its backends run in dom0, counted
        #: there), which libxl does not split per vCPU
        self.xen = xen

    def read(self) -> dict[str, int]:
        lib = binding()
        try:
            [(_domain, stats)] = self.domain.connect().domainListGetStats([self.domain], 0)
        except lib.libvirtError as exc:
            if exc.get_error_code() != lib.VIR_ERR_NO_SUPPORT:
                raise failure("read the domain's statistics", exc) from None
            stats = self._one_by_one()
        return {k: int(v) for k, v in stats.items() if _LIBVIRT_COUNTERS.match(k)}

    def _one_by_one(self) -> dict[str, int]:
        """The same counters through the per-domain calls, for drivers without the bulk
        one (libxl): the domain's and each vCPU's CPU time, each disk's requests."""
        lib = binding()
        try:
            found = {"cpu.time": int(self.domain.info()[4])}
            if self.xen:
                found["vcpu.0.time"] = found["cpu.time"]
            else:
                for number, _state, cpu_time, _cpu in self.domain.vcpus()[0]:
                    found[f"vcpu.{number}.time"] = int(cpu_time)
            targets = SafeET.fromstring(self.domain.XMLDesc(0)).findall("devices/disk/target")
            for index, target in enumerate(targets):
                rd_reqs, rd_bytes, wr_reqs, wr_bytes, _errors = \
                    self.domain.blockStats(target.get("dev", ""))
                found.update({f"block.{index}.rd.reqs": rd_reqs, f"block.{index}.wr.reqs":
                              wr_reqs, f"block.{index}.rd.bytes": rd_bytes,
                              f"block.{index}.wr.bytes": wr_bytes})
        except lib.libvirtError as exc:
            raise failure("read the domain's statistics", exc) from None
        return found

    def difference(self, before: dict[str, int], after: dict[str, int], seconds: float
                   ) -> dict[str, Any]:
        delta = {k: v - before.get(k, 0) for k, v in after.items()}

        def total(pattern: str) -> int:
            return sum(v for k, v in delta.items() if re.fullmatch(pattern, k))

        cpu, vcpu = delta.get("cpu.time", 0) / 1e9, total(r"vcpu\.\d+\.time") / 1e9
        return {"host_cpu_s": round(cpu, 3),
                "vcpu_cores": round(vcpu / seconds, 4),
                "other_cores": round(max(0.0, cpu - vcpu) / seconds, 4),
                "vcpu_wait_share": round(total(r"vcpu\.\d+\.wait") / 1e9 / max(vcpu, 1e-9), 5),
                "disk_requests": total(r"block\.\d+\.(rd|wr|fl)\.reqs"),
                "disk_bytes": total(r"block\.\d+\.(rd|wr)\.bytes"),
                "net_packets": total(r"net\.\d+\.(rx|tx)\.pkts"),
                "net_bytes": total(r"net\.\d+\.(rx|tx)\.bytes")}
