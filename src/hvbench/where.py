"""Where the time goes: the collectors' figures of a run, per platform and workload.

Each measured trial carries its collectors' figures (``accounting`` in its metadata,
see collect.py and platforms/accounting.py); this reduces them to the median over
a series' trials, and says in one line what they mean.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .platforms.accounting import KINDS

#: host-side CPU by thread kind, as shown (cores: 1.0 = one host core busy)
THREAD_LABELS = {"vcpu": "vCPU", "main_loop": "main loop", "iothread": "I/O thread",
                 "io_workers": "I/O workers", "vhost": "vhost", "other": "other"}


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

    def reading(self) -> str:
        """One line: the host CPU split and the guest's steal and interrupts."""
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
        if self.missing:
            parts.append("not collected: " + "; ".join(self.missing))
        return f"{self.workload} on {self.platform}: " + ("; ".join(parts) or "no figures")


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def time_splits(trials: Sequence[Mapping[str, Any]]) -> list[TimeSplit]:
    """Per (platform, workload), the medians of the figures of its measured trials."""
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for trial in trials:
        accounting = (trial.get("metadata") or {}).get("accounting")
        if accounting and not trial.get("warmup") and trial.get("status") == "ok":
            series.setdefault((trial["platform"], trial["workload"]), []).append(accounting)
    found = []
    for (platform, workload), figures in series.items():
        missing = sorted({f"{name}: {part['error']}" for one in figures
                          for name, part in one.items() if "error" in part})
        found.append(TimeSplit(
            platform, workload, len(figures),
            host_cores=_cores(figures),
            kernel=_medians(figures, "kernel"),
            host_kernel=_medians(figures, "host_kernel") or _medians(figures, "dom0_kernel"),
            missing=missing[:3]))
    return found


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
