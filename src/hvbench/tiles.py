"""One trial on a tile: the workload in every guest of a consolidation tile at once.

Each guest is prepared, then one thread per guest waits at a barrier and runs the
workload's commands through that guest's own agent connection, so all start at one
moment. When each actually started is estimated on the host's clock: the moment its
reply arrived minus the time the guest measured the command took. The spread of
those starts is recorded; a trial whose guests started too far apart (more than
SPREAD_FLOOR or SPREAD_SHARE of the workload's expected time) is run again, up to
ATTEMPTS times, then failed with the spread.

Samples: each metric's mean over the guests (what one guest gets: compared with the
baseline like any platform), the aggregate (``METRIC-sum`` of a throughput over the
guests, ``METRIC-worst`` of a latency) and Jain's fairness index over the guests'
work rates (``fairness``: 1 when all get the same, 1/N when one gets everything);
every guest's own values ride along in the samples' metadata. A guest that fails
fails the trial with its reason, and the other guests' values are kept in the
trial's metadata.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .collect import started, stopped
from .errors import TrialError
from .integrity import clock_check
from .machine import Completed, Machine, run_in_order
from .trial import Trial
from .workloads import get_workload
from .workloads.base import Prepared, Sample, Workload

#: guests may start this far apart (seconds) whatever the workload's length...
SPREAD_FLOOR = 0.5
#: ...or this share of the time the workload is expected to take
SPREAD_SHARE = 0.05
ATTEMPTS = 3
#: how long a guest's thread waits at the start barrier for the others
BARRIER_SECONDS = 120.0


class TileFailed(TrialError):
    """A guest of the tile failed: the trial fails with its reason; ``metadata`` keeps
    what the other guests measured."""

    def __init__(self, message: str, metadata: dict[str, Any]):
        super().__init__(message)
        self.metadata = metadata


@dataclass
class _GuestRun:
    parts: list[Completed]
    started: float  # host monotonic clock, estimated (see the module's docstring)
    accounting: dict[str, Any]


def jain(values: Sequence[float]) -> float:
    """Jain's fairness index: (sum x)^2 / (n * sum x^2), from 1/n to 1."""
    squares = sum(v * v for v in values)
    return (sum(values) ** 2) / (len(values) * squares) if squares else 1.0


def execute_tile(members: list[Machine], trial: Trial, timeout: float
                 ) -> tuple[list[Sample], dict[str, Any], float]:
    """The trial in every guest at once; samples, metadata and the slowest guest's
    seconds."""
    workload = get_workload(trial.workload)
    params = workload.params(trial.params)
    limit = max(SPREAD_FLOOR, SPREAD_SHARE * float(workload.expected_seconds(params)))
    spreads: list[float] = []
    while True:
        runs = _together(members, workload, params, timeout, collect=not trial.warmup)
        starts = [run.started for run in runs]
        spreads.append(max(starts) - min(starts))
        if spreads[-1] <= limit:
            break
        if len(spreads) == ATTEMPTS:
            raise TrialError(f"the {len(members)} guests started "
                             f"{', '.join(f'{s * 1000:.0f}' for s in spreads)} ms apart in "
                             f"{ATTEMPTS} attempts (at most {limit * 1000:.0f} ms): the "
                             "host is too busy to start them together")
    first = min(starts)
    tile: dict[str, Any] = {
        "guests": len(members), "start_spread_ms": round(spreads[-1] * 1000, 1),
        "starts_ms": [round((s - first) * 1000, 1) for s in starts],
        "attempts": len(spreads), "spread_limit_ms": round(limit * 1000, 1)}
    outputs = [Completed.combine(run.parts) for run in runs]
    measured = [workload.parse(output, params) for output in outputs]
    metadata: dict[str, Any] = {"tile": tile, "argv": [list(p.argv) for p in runs[0].parts]}
    if not trial.warmup:  # where the time goes: the first guest's, as for one guest;
        # every guest's beside it, so unfairness can be explained
        metadata["accounting"] = runs[0].accounting
        tile["accounting"] = {f"guest {i}": run.accounting for i, run in enumerate(runs, 1)}
    clocks = [c for c in map(clock_check, outputs) if c]
    if clocks:
        metadata["clock"] = clocks[0]
    return aggregate(workload, measured), metadata, max(o.seconds for o in outputs)


def aggregate(workload: Workload[Any], measured: list[list[Sample]]) -> list[Sample]:
    """Per-guest samples -> what one guest gets (the mean), the aggregate over the
    guests and the fairness of their shares; each guest's value in the metadata."""
    found: list[Sample] = []
    names = [s.metric for s in measured[0]]
    for name in names:
        values = [next(s for s in guest if s.metric == name) for guest in measured]
        numbers = [s.value for s in values]
        first = values[0]
        meta = {**first.metadata, "per_guest": numbers}
        found.append(Sample(name, sum(numbers) / len(numbers), first.unit,
                            first.higher_is_better, {**meta, "aggregate": "mean per guest"}))
        if first.higher_is_better:
            found.append(Sample(f"{name}-sum", sum(numbers), first.unit, True,
                                {**meta, "aggregate": "sum over the guests"}))
        else:
            found.append(Sample(f"{name}-worst", max(numbers), first.unit, False,
                                {**meta, "aggregate": "worst guest"}))
    work = workload.work.metric if workload.work and workload.work.metric in names else \
        next((s.metric for s in measured[0] if s.higher_is_better), None)
    if work is not None:
        shares = [next(s.value for s in guest if s.metric == work) for guest in measured]
        found.append(Sample("fairness", jain(shares), "index", True,
                            {"per_guest": shares, "of": work,
                             "aggregate": "Jain's index over the guests"}))
    return found


def _together(members: list[Machine], workload: Workload[Any], params: Any, timeout: float,
              collect: bool) -> list[_GuestRun]:
    """Prepare every guest, run the commands in all of them from one barrier, and
    collect each guest's accounting around its own commands."""
    with contextlib.ExitStack() as stack:
        prepared: list[Prepared] = [stack.enter_context(workload.prepare(member, params))
                                    for member in members]
        barrier = threading.Barrier(len(members))
        results: list[_GuestRun | BaseException | None] = [None] * len(members)

        def one(index: int) -> None:
            member = members[index]
            collectors = started(member.collectors() if collect else [])
            try:
                barrier.wait(BARRIER_SECONDS)
                parts = run_in_order(member, workload.commands(params, prepared[index]),
                                     timeout)
                arrived = time.monotonic()
                results[index] = _GuestRun(parts, arrived - sum(p.seconds for p in parts),
                                           {})
            except BaseException as exc:  # reported by the calling thread
                barrier.abort()
                results[index] = exc
            finally:
                figures = stopped(collectors)
                found = results[index]
                if isinstance(found, _GuestRun):
                    found.accounting = figures

        threads = [threading.Thread(target=one, args=(i,), daemon=True,
                                    name=f"tile-guest-{i + 1}") for i in range(len(members))]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
    return _checked(members, workload, params, results)


def _checked(members: list[Machine], workload: Workload[Any], params: Any,
             results: list[_GuestRun | BaseException | None]) -> list[_GuestRun]:
    """Every guest's run, or TileFailed naming the first guest that failed, with what
    the others measured."""
    runs = [r for r in results if isinstance(r, _GuestRun)]
    if len(runs) == len(results):
        return runs
    failed = [(i, r) for i, r in enumerate(results, 1)
              if not isinstance(r, _GuestRun | threading.BrokenBarrierError)]
    if not failed:  # nobody failed, but not all arrived at the barrier in time
        raise TrialError(f"the {len(members)} guests did not all reach the start barrier "
                         f"within {BARRIER_SECONDS:.0f} s")
    index, problem = failed[0]
    kept: dict[str, Any] = {}
    for number, result in enumerate(results, 1):
        if isinstance(result, _GuestRun):
            with contextlib.suppress(TrialError):
                kept[f"guest {number}"] = {
                    s.metric: s.value
                    for s in workload.parse(Completed.combine(result.parts), params)}
    reason = str(problem) if problem is not None else "no result"
    raise TileFailed(f"{members[index - 1].label}: {reason}",
                     {"tile": {"guests": len(members), "failed_guest": index,
                               "kept": kept}})
