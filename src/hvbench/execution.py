"""One trial on one machine: prepare, run, parse (the workload contract, PKB-style)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .collect import started, stopped
from .errors import HvbenchError, StoreError, TrialError, TrialTimeout
from .integrity import clock_check
from .machine import Completed, Machine, run_in_order
from .store import now
from .tiles import TileFailed, execute_tile
from .trial import Trial
from .workloads import get_workload
from .workloads.base import Sample

#: floor for the per-trial time limit, and how much slower than expected a trial may be
MIN_TIMEOUT = 60.0
TIMEOUT_FACTOR = 10.0


def trial_timeout(limit: float | None, expected: float) -> float:
    """The campaign's per-trial limit, else ten times what the workload expects."""
    return limit or max(MIN_TIMEOUT, TIMEOUT_FACTOR * expected)


def expected_seconds(trial: Trial) -> float:
    workload = get_workload(trial.workload)
    return float(workload.expected_seconds(workload.params(trial.params)))


@dataclass
class TrialResult:
    """What one trial came to, as stored."""

    status: str  # ok | failed | timeout | skipped
    reason: str | None = None
    started: str = field(default_factory=now)
    seconds: float | None = None
    samples: list[Sample] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


def measure(machine: Machine, trial: Trial, timeout: float) -> TrialResult:
    """Run the trial; a failure of the trial (tool error, time-out, unparsable output)
    is its result, never an exception (the store failing is one)."""
    result = TrialResult("ok")
    try:
        result.samples, result.metadata, result.seconds = execute_trial(machine, trial,
                                                                        timeout)
    except TrialTimeout as exc:
        result.status, result.reason = "timeout", str(exc)
    except (TrialError, HvbenchError) as exc:
        if isinstance(exc, StoreError):
            raise
        result.status, result.reason = "failed", str(exc)
        if isinstance(exc, TileFailed):  # the other guests' samples are kept
            result.metadata = exc.metadata
    return result


def execute_trial(machine: Machine, trial: Trial, timeout: float
                  ) -> tuple[list[Sample], dict[str, Any], float]:
    """Prepare, run and parse one trial, with what the machine runs beside it (an
    interference condition's aggressors); return samples, metadata and wall seconds."""
    with machine.beside_trial() as beside:
        samples, metadata, seconds = _execute(machine, trial, timeout)
    if beside:
        metadata["beside"] = beside
    return samples, metadata, seconds


def _execute(machine: Machine, trial: Trial, timeout: float
             ) -> tuple[list[Sample], dict[str, Any], float]:
    members = machine.tile()
    if members:
        return execute_tile(members, trial, timeout)
    workload = get_workload(trial.workload)
    params = workload.params(trial.params)
    custom = workload.execute(machine, params, timeout)
    if custom is not None:
        return custom
    with workload.prepare(machine, params) as prepared:
        parts: list[Completed] = []
        # around the commands, not in them; a warm-up is not analysed, so not accounted
        collectors = started([] if trial.warmup else machine.collectors())
        try:
            parts = run_in_order(machine, workload.commands(params, prepared), timeout)
        finally:  # stopped even when the trial fails: a collector may hold host state
            accounting = stopped(collectors)
        output = Completed.combine(parts)
        measured = workload.parse(output, params)
    for sample in measured:
        sample.metadata.update({k: v for k, v in prepared.metadata.items()
                                if k not in sample.metadata})
    metadata = {"argv": [list(p.argv) for p in parts], **prepared.metadata}
    clock = clock_check(output)
    if clock:
        metadata["clock"] = clock
    if accounting:
        metadata["accounting"] = accounting
    return measured, metadata, output.seconds
