"""When a workload has been measured enough: the adaptive stopping rules.

- ``--reps auto``: every series' 95% CI half-width within ``ci_target`` of its median,
  or the workload's measured time past ``max_seconds``.
- ``--budget``: each workload gets an equal share of the time left when it starts; at
  each look of the campaign's plan (verdicts.LookPlan) it is done once every series of
  the platforms measuring it has a verdict (slower, faster or equivalent) at that
  look's level, else it goes on until its share is spent, or until one more
  repetition (as long as its last) would overrun it: a workload that overran its
  share would take the time of those after it, and the last ones would get none. A
  workload stopped by its share is only paused: time the others did not use goes
  back to the paused ones in a second pass (``reopen``), shared equally again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .analysis import analyse
from .campaign import Campaign
from .stats import CONFIDENCE, summarize
from .store import Store, StoreUnreachable
from .trial import Trial


@dataclass(frozen=True)
class Done:
    """Why a workload needs no more repetitions; ``final`` False when only its share of
    the budget is spent (it may go on if time is left at the end)."""

    reason: str
    final: bool = True


class Stopping:
    """Asked before each repetition of a workload: why it needs no more, or None."""

    def __init__(self, store: Store, run_id: str, campaign: Campaign, platforms: set[str],
                 deadline: float | None = None, hosts_after: int = 0):
        self.store = store
        self.run_id = run_id
        self.campaign = campaign
        self.platforms = platforms  # the platforms this part of the run measures
        #: --budget: when the whole run's time is up (monotonic), and how many hosts this
        #: thread measures after this one (they share what is left)
        self.deadline = deadline
        self._hosts_after = hosts_after
        self._shares: dict[int, tuple[float, float]] = {}  # workload index -> (start, end)
        self._workloads = len(campaign.workloads)
        self._reopened: set[int] = set()  # paused workloads whose second share is to come
        #: when each workload was last asked about (its last repetition's start)
        self._asked: dict[int, float] = {}

    def why_done(self, trial: Trial) -> Done | None:
        if self.campaign.budget is not None:
            return self._decided(trial)
        if self.campaign.reps == "auto":
            try:
                why = self._converged(trial)
            except StoreUnreachable:  # no look while the server is away (max_reps holds)
                return None
            return Done(why) if why else None
        return None

    def time_left(self) -> float:
        """Seconds of the budget left for this part of the run (0 without a budget)."""
        return max(0.0, self.deadline - time.monotonic()) if self.deadline else 0.0

    def reopen(self, indexes: set[int]) -> None:
        """Give workloads paused by their share a new equal share of what is left."""
        self._reopened = set(indexes)
        for index in indexes:
            self._shares.pop(index, None)
            self._asked.pop(index, None)  # its last repetition is long past

    def _decided(self, trial: Trial) -> Done | None:
        assert self.deadline is not None
        index, done_reps = trial.workload_index, trial.repetition
        now = time.monotonic()
        # how long its last repetition took (all platforms, interleaved): 0 at the first
        last = now - self._asked[index] if index in self._asked else 0.0
        self._asked[index] = now
        if index not in self._shares:
            # shared with the workloads still to start here, and the later hosts' ones
            ahead = len(self._reopened) if index in self._reopened \
                else self._workloads - index
            left = ahead + self._hosts_after * self._workloads
            self._shares[index] = (now, now + max(0.0, self.deadline - now) / left)
            self._reopened.discard(index)
        start, end = self._shares[index]
        plan = self.campaign.look_plan
        if done_reps in plan.looks:  # a look first: a verdict reached is never paused
            total = undecided = 0
            try:
                rows = analyse(self.store, self.run_id, verdicts_only=True).rows
            except StoreUnreachable:  # no look while the server is away; the budget holds
                rows = []
            for row in rows:
                if row.workload != trial.workload:
                    continue
                for platform, comparison in row.comparisons.items():
                    if platform in self.platforms:
                        total += 1
                        undecided += not comparison.verdict.decided
            if total and not undecided:
                return Done(f"all {total} series decided at look {plan.look_at(done_reps)} "
                            f"(n={done_reps})")
        if now >= end or now + last > end:
            more = f" (one more takes about {last:.0f} s)" if now < end else ""
            return Done(f"its share of the budget ({end - start:.0f} s) is spent after "
                        f"{done_reps} repetitions{more}", final=False)
        return None

    def _converged(self, trial: Trial) -> str | None:
        campaign = self.campaign
        if trial.repetition < campaign.min_reps:
            return None
        trials = [t for t in self.store.trials(self.run_id)
                  if t["workload"] == trial.workload and not t["warmup"]
                  and t["status"] != "skipped"
                  and t["metadata"].get("workload_index") == trial.workload_index]
        spent = sum(t["seconds"] or 0 for t in trials)
        if spent >= campaign.max_seconds:
            return (f"time budget of {campaign.max_seconds:g} s used after "
                    f"{trial.repetition} repetitions")
        ok_ids = {t["id"] for t in trials if t["status"] == "ok"}
        series: dict[tuple[str, str], list[float]] = {}
        for row in self.store.samples(self.run_id):
            if row.trial_id in ok_ids:
                series.setdefault((row.platform, row.metric), []).append(row.value)
        if {p for p, _ in series} != {p.name for p in campaign.platforms}:
            return None
        widest = 0.0
        for values in series.values():
            summary = summarize(values)
            if summary.ci_level < CONFIDENCE or summary.n < campaign.min_reps:
                return None
            widest = max(widest, summary.ci_halfwidth_relative)
        if widest <= campaign.ci_target:
            return (f"converged after {trial.repetition} repetitions (widest 95% CI "
                    f"half-width {widest * 100:.2f}% <= {campaign.ci_target * 100:g}%)")
        return None
