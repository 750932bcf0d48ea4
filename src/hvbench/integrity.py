"""Measurement integrity: is a number what it claims to be?

Two checks. Per trial, the workload's duration by the guest's clock against the host's
clock for the same commands: rates are work over guest time, so a guest clock that
runs fast or slow (TSC trouble, emulation drift, a slewed clock) makes every rate
wrong. The guest's duration lies inside the host's round trip, so with agreeing
clocks ``guest <= host`` and ``host - guest`` is the agent's transport. Per series, a
guest that beats bare metal by far on memory or disk is implausible: the host's own
memory bounds a guest's, and a guest disk faster than the host's usually means writes
that were never made durable (a cache mode that ignores fsync).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from .machine import Completed
from .stats import MetricRow

#: the guest clock may run ahead of the host's by this fraction (a guest kernel's TSC
#: calibration may be off by a little), plus a rounding step
FAST_TOLERANCE = (0.01, 0.05)
#: and behind it (after the agent's transport time) by this fraction, plus seconds
SLOW_TOLERANCE = (0.10, 1.0)
#: how much faster than bare metal a guest's memory or disk result may be
IMPLAUSIBLE_FACTOR = 1.5
IMPLAUSIBLE_CATEGORIES = ("memory", "disk")


def clock_check(output: Completed) -> dict[str, Any]:
    """The guest's and the host's seconds for a trial's commands, and a 'flag' saying
    why they disagree (absent when they agree or there is no guest clock)."""
    if output.observed is None:
        return {}
    guest, host = output.seconds, output.observed
    found: dict[str, Any] = {"guest_s": round(guest, 4), "host_s": round(host, 4)}
    fast_share, fast_step = FAST_TOLERANCE
    slow_share, slow_slack = SLOW_TOLERANCE
    if guest > host * (1 + fast_share) + fast_step:
        found["flag"] = (f"the guest's clock ran fast: {guest:.2f} s by the guest for "
                         f"{host:.2f} s by the host")
    elif guest < host * (1 - slow_share) - slow_slack:
        found["flag"] = (f"the guest's clock ran slow: {guest:.2f} s by the guest for "
                         f"{host:.2f} s by the host")
    return found


def clock_warnings(trials: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per platform whose guest clock disagreed with the host's in a trial."""
    flagged: dict[str, list[str]] = defaultdict(list)
    counted: dict[str, int] = defaultdict(int)
    for trial in trials:
        clock = (trial.get("metadata") or {}).get("clock") or {}
        if not clock or trial.get("warmup"):
            continue
        counted[trial["platform"]] += 1
        if "flag" in clock:
            flagged[trial["platform"]].append(f"{trial['workload']}: {clock['flag']}")
    return [f"{platform}: {len(reasons)} of {counted[platform]} trials measured with a "
            f"wrong clock, so their rates are wrong (e.g. {reasons[0]})"
            for platform, reasons in flagged.items()]


def implausible(rows: Sequence[MetricRow], baseline_of: Mapping[str, str]) -> list[str]:
    """Memory and disk series where a platform beats its bare-metal baseline by more
    than IMPLAUSIBLE_FACTOR (medians compared)."""
    found = []
    for row in rows:
        if row.category not in IMPLAUSIBLE_CATEGORIES:
            continue
        for platform, reference in baseline_of.items():
            if platform not in row.summaries or reference not in row.summaries:
                continue
            mine, base = row.summaries[platform].median, row.summaries[reference].median
            if mine <= 0 or base <= 0:
                continue
            better = mine / base if row.higher_is_better else base / mine
            if better > IMPLAUSIBLE_FACTOR:
                cause = ("writes that never reached the disk (a cache mode that ignores "
                         "fsync)" if row.category == "disk" else "a wrong guest clock")
                found.append(f"{platform}: {row.workload}/{row.metric} is {better:.1f}x "
                             f"better than on {reference}, implausible for a guest; "
                             f"suspect {cause}")
    return found
