"""Trial: one planned execution of one workload on one platform (frozen, from the plan)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Trial:
    seq: int  # position in the plan: the order trials run in
    platform: str
    workload: str
    workload_index: int  # which of the campaign's workload entries
    repetition: int  # -1 for the warm-up
    warmup: bool
    params: Mapping[str, Any] = field(default_factory=dict)
    #: a warm-up run again because a resumed run measures this pair once more
    resume_warmup: bool = False

    @property
    def label(self) -> str:
        """'native · sysbench-cpu · rep 3' (for progress lines and failures)."""
        which = "warm-up" if self.warmup else f"rep {self.repetition + 1}"
        return f"{self.platform} · {self.workload} · {which}"

    def record(self) -> dict[str, Any]:
        """As stored with the run's plan and its trials."""
        found = {"seq": self.seq, "platform": self.platform, "workload": self.workload,
                 "workload_index": self.workload_index, "params": dict(self.params),
                 "repetition": self.repetition, "warmup": self.warmup}
        if self.resume_warmup:
            found["resume_warmup"] = True
        return found

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Trial:
        return cls(int(record["seq"]), str(record["platform"]), str(record["workload"]),
                   int(record.get("workload_index", 0)), int(record["repetition"]),
                   bool(record["warmup"]), dict(record.get("params") or {}),
                   bool(record.get("resume_warmup", False)))

    def for_resume(self) -> Trial:
        return replace(self, resume_warmup=True)
