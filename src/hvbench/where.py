"""Where the time goes: the collectors' figures of a run, per platform and workload.

Each measured trial carries its collectors' figures (``accounting`` in its metadata,
see collect.py and platforms/accounting.py); this reduces them to the median over
a series' trials, per second and per unit of the workload's work (its ``WorkRate``:
exits per I/O, host CPU per event), with an efficiency figure (work per host core
used, as Firecracker's specification states throughput), and says in one line what
they mean.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .platforms.accounting import KINDS
from .workloads import CATALOGUE

#: host-side CPU by thread kind, as shown (cores: 1.0 = one host core busy)
THREAD_LABELS = {"vcpu": "vCPU", "main_loop": "main loop", "iothread": "I/O thread",
                 "io_workers": "I/O workers", "vhost": "vhost", "other": "other"}
#: KVM exit counters shown per unit of work, in this order
EXIT_KINDS = ("exits", "io_exits", "mmio_exits", "halt_exits", "irq_exits",
              "insn_emulation", "hypercalls")


@dataclass(frozen=True)
class TimeSplit:
    platform: str
    workload: str
    trials: int
    #: host cores used by the guest's threads, by kind (QEMU) or by the domain (Xen)
    host_cores: dict[str, float] = field(default_factory=dict)
    #: the machine's own kernel: shares of its CPU time (steal: waiting for a host CPU)
    kernel: dict[str, float] = field(default_factory=dict)
    #: the host's or dom0's kernel during the trial
    host_kernel: dict[str, float] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # collectors that could not read
    #: the workload's unit of work ("I/O", "event"...) and how many per second
    work_unit: str | None = None
    work_rate: float | None = None
    #: per unit of work: "host_cpu_us" (host CPU for the guest, or the machine's own
    #: busy CPU natively) and KVM's exit counters by kind
    per_unit: dict[str, float] = field(default_factory=dict)
    #: units of work per second per host core used
    efficiency: float | None = None

    def reading(self) -> str:
        """One line: the host CPU split, the guest's steal and interrupts, and the
        figures per unit of work."""
        parts = []
        if self.host_cores:
            total = sum(self.host_cores.values())
            split = ", ".join(f"{THREAD_LABELS.get(k, k)} {v:.2f}" for k, v in
                              sorted(self.host_cores.items(), key=lambda kv: -kv[1]) if v >= 0.01)
            parts.append(f"host CPU {total:.2f} cores ({split or 'idle'})")
        if "steal_share" in self.kernel:
            parts.append(f"steal {self.kernel['steal_share'] * 100:.1f}%")
        if "intr_per_s" in self.kernel:
            parts.append(f"{self.kernel['intr_per_s']:,.0f} interrupts/s")
        parts += self.unit_words()
        if self.missing:
            parts.append("not collected: " + "; ".join(self.missing))
        return f"{self.workload} on {self.platform}: " + ("; ".join(parts) or "no figures")

    def unit_words(self) -> list[str]:
        """The figures per unit of work, in words ([] when the workload has no unit)."""
        unit = self.work_unit
        if not unit or not self.per_unit:
            return []
        found = []
        traced = any(":" in k for k in self.per_unit)  # Xen: by reason and by name
        exits = {k: v for k, v in self.per_unit.items() if k in EXIT_KINDS}
        if "exits" in exits:
            kinds = self._top("exit") if traced else ", ".join(
                f"{k.removesuffix('_exits')} {v:.3g}" for k, v in exits.items()
                if k != "exits" and v >= 0.01)
            found.append(f"{exits['exits']:.3g} exits per {unit}"
                         + (f" ({kinds})" if kinds else ""))
        if traced and "hypercalls" in self.per_unit:
            top = self._top("hypercall")
            found.append(f"{self.per_unit['hypercalls']:.3g} hypercalls per {unit}"
                         + (f" ({top})" if top else ""))
        if "host_cpu_us" in self.per_unit:
            found.append(f"{_short(self.per_unit['host_cpu_us'])} µs of host CPU per {unit}")
        if self.efficiency is not None:
            found.append(f"{_short(self.efficiency)} {unit}/s per host core")
        return found


    def _top(self, prefix: str, count: int = 3) -> str:
        """The most frequent exit reasons or hypercalls per unit, in words."""
        named = sorted(((k.partition(":")[2], v) for k, v in self.per_unit.items()
                        if k.startswith(f"{prefix}:") and v >= 0.01), key=lambda kv: -kv[1])
        return ", ".join(f"{name} {value:.3g}" for name, value in named[:count])


def _short(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def host_cores_of(accounting: Mapping[str, Any]) -> float | None:
    """Host cores a trial kept busy: a guest's threads (QEMU, libvirt) or domain (Xen),
    else (natively) the machine's own kernel."""
    for name in ("host_threads", "libvirt"):
        part = accounting.get(name) or {}
        if "error" not in part and any(k.endswith("_cores") for k in part):
            return sum(v for k, v in part.items() if k.endswith("_cores"))
    domain = accounting.get("domain_cpu") or {}
    if "domain_cores" in domain:
        return float(domain["domain_cores"])
    own = accounting.get("kernel") or {}
    if "busy_cores" in own and "host_kernel" not in accounting:  # native: itself
        return float(own["busy_cores"])
    return None


def _per_unit(accounting: Mapping[str, Any], rate: float, seconds: float | None = None
              ) -> dict[str, float]:
    """One trial's figures per unit of work at ``rate`` units per second: counts over
    the units its workload did in ``seconds``, the trial's own time (else in the
    counter's window): a counter's window also spans its own start and stop, and every
    count in it is put down to the work the trial did, for KVM and Xen alike."""
    found: dict[str, float] = {}
    cores = host_cores_of(accounting)
    if cores is not None:
        found["host_cpu_us"] = cores / rate * 1e6
    kvm = accounting.get("kvm") or {}
    if kvm.get("seconds") and "counts" in kvm:
        units = rate * (seconds or kvm["seconds"])
        for kind in EXIT_KINDS:
            if kind in kvm["counts"]:
                found[kind] = kvm["counts"][kind] / units
    xen = accounting.get("xen_trace") or {}
    if xen.get("seconds"):  # Xen: exits by reason, hypercalls by name ("exit:npf")
        units = rate * (seconds or xen["seconds"])
        for group, prefix in (("exits", "exit"), ("hypercalls", "hypercall")):
            counts = xen.get(group) or {}
            if counts:
                found[group] = sum(counts.values()) / units
                found.update({f"{prefix}:{name}": n / units for name, n in counts.items()})
    return found


def time_splits(trials: Sequence[Mapping[str, Any]],
                rates: Mapping[int, float] | None = None) -> list[TimeSplit]:
    """Per (platform, workload), the medians of the figures of its measured trials;
    ``rates`` (trial id -> the workload's work metric in that trial) adds the figures
    per unit of work."""
    series: dict[tuple[str, str], list[tuple[int, dict[str, Any], float | None]]] = {}
    for trial in trials:
        accounting = (trial.get("metadata") or {}).get("accounting")
        if accounting and not trial.get("warmup") and trial.get("status") == "ok":
            series.setdefault((trial["platform"], trial["workload"]), []).append(
                (int(trial.get("id", 0)), accounting, trial.get("seconds")))
    found = []
    for (platform, workload), entries in series.items():
        figures = [accounting for _id, accounting, _seconds in entries]
        missing = sorted({f"{name}: {part['error']}" for one in figures
                          for name, part in one.items() if "error" in part})
        found.append(TimeSplit(
            platform, workload, len(figures),
            host_cores=_cores(figures),
            kernel=_medians(figures, "kernel"),
            host_kernel=_medians(figures, "host_kernel") or _medians(figures, "dom0_kernel"),
            missing=missing[:3], **_work(workload, entries, rates or {})))
    return found


def _work(workload: str, entries: list[tuple[int, dict[str, Any], float | None]],
          rates: Mapping[int, float]) -> dict[str, Any]:
    """The work rate, figures per unit and efficiency of one series (medians)."""
    definition = CATALOGUE.get(workload)
    work = definition.work if definition is not None else None
    if work is None:
        return {}
    per_trial, efficiency, measured = [], [], []
    for trial_id, accounting, seconds in entries:
        if trial_id not in rates:
            continue
        rate = work.per_second(rates[trial_id])
        if rate <= 0:
            continue
        measured.append(rate)
        per_trial.append(_per_unit(accounting, rate, seconds))
        cores = host_cores_of(accounting)
        if cores:
            efficiency.append(rate / cores)
    if not measured:
        return {"work_unit": work.unit}
    keys = {k for one in per_trial for k in one}
    return {"work_unit": work.unit, "work_rate": _median(measured),
            # a reason missing from a trial's trace happened 0 times in it
            "per_unit": {k: _median([one.get(k, 0.0) if ":" in k else one[k]
                                     for one in per_trial if ":" in k or k in one])
                         for k in sorted(keys)},
            "efficiency": _median(efficiency) if efficiency else None}


def work_metric(workload: str) -> str | None:
    """The metric a workload's work rate is read from."""
    definition = CATALOGUE.get(workload)
    return definition.work.metric if definition is not None and definition.work else None


def _medians(figures: list[dict[str, Any]], name: str) -> dict[str, float]:
    parts = [one[name] for one in figures if name in one and "error" not in one[name]]
    keys = {k for part in parts for k in part if k != "seconds"}
    return {k: _median([p[k] for p in parts if k in p]) for k in sorted(keys)}


def _cores(figures: list[dict[str, Any]]) -> dict[str, float]:
    threads = _medians(figures, "host_threads") or _medians(figures, "libvirt")
    if threads:
        return {kind: threads[f"{kind}_cores"] for kind in KINDS
                if f"{kind}_cores" in threads}
    domain = _medians(figures, "domain_cpu")
    return {"domain": domain["domain_cores"]} if "domain_cores" in domain else {}
