"""Executes a campaign's plan: opens its platforms, runs trials, stores results.

Trials run in plan order. A failing trial (tool error, timeout, unparsable
output) is recorded with its reason and the run goes on. Ctrl-C or SIGTERM
stops the current trial (its process group is killed), marks the run
interrupted and keeps everything stored so far; ``--resume`` continues it.
Labs a run had to boot are stopped when the run is done with them, however it ends.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import __version__, leftovers
from .campaign import Campaign, PlatformSpec, plan
from .errors import HvbenchError, Interrupted, StoreError
from .execution import TrialResult, expected_seconds, measure, trial_timeout
from .hostinfo import run_labs, sysinfo_for_hosts
from .hosts import HostSpec
from .hosts.lab import Labs
from .platforms import Machine
from .platformsession import PlatformSession
from .progress import Reporter
from .stopping import Done, Stopping
from .store import Store, new_run_id, now
from .trial import Trial
from .workloads import get_workload


@dataclass
class RunOutcome:
    run_id: str
    trials: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, other: RunOutcome) -> None:
        self.trials += other.trials
        self.failed += other.failed
        self.failures.extend(other.failures)


class Runner:
    def __init__(self, store: Store, reporter: Reporter):
        self.store = store
        self.reporter = reporter
        self.platforms = PlatformSession(store, reporter)
        self._used: dict[str, bool] = {}

    def start(self, campaign: Campaign) -> RunOutcome:
        """Create a new run in the store and execute it."""
        run_id = new_run_id()
        trials = plan(campaign)
        for leftover in leftovers.find():
            if not leftover.intended:  # it takes CPU and memory from what is measured
                self.reporter.message(f"warning: {leftover.what} still runs and will "
                                      f"disturb this run; stop it with '{leftover.stop}' "
                                      "or 'hvbench doctor --clean'")
        deadline = _deadline(campaign)  # the budget counts from here: lab boots included
        with run_labs(self.reporter.message) as labs:
            host = sysinfo_for_hosts(campaign, labs, self.reporter.message)
            self.create(run_id, campaign, trials, host)
            with leftovers.executing(run_id):
                return self._execute(run_id, campaign, trials, labs, deadline,
                                     resumed=False)

    def create(self, run_id: str, campaign: Campaign, trials: list[Trial],
               host: dict[str, Any], ab: tuple[str, str] | None = None) -> None:
        """Store a new run with its campaign, plan and host metadata (and its side and
        partner when it is half of an 'hvbench ab')."""
        self.store.create_run(run_id, campaign.model_dump(mode="json", context={"record": True}),
                              [t.record() for t in trials], host, __version__, ab)
        self.reporter.message(f"run {run_id}: {len(trials)} trials "
                              f"({sum(not t.warmup for t in trials)} measured) "
                              f"on {', '.join(p.name for p in campaign.platforms)}")

    def resume(self, run: str) -> RunOutcome:
        """Continue an interrupted run: trials already stored are not repeated."""
        run_id = self.store.resolve(run)
        record = self.store.run(run_id)
        if record.status == "complete":
            raise HvbenchError(f"run {run_id} is already complete; nothing to resume")
        campaign = Campaign.model_validate(record.campaign).check()
        pending = len(record.plan) - len(self.store.done_seqs(run_id))
        self.reporter.message(f"resuming run {run_id}: {pending} of {len(record.plan)} "
                              "trials left")
        with leftovers.executing(run_id), run_labs(self.reporter.message) as labs:
            self.store.set_status(run_id, "running")
            return self._execute(run_id, campaign, [Trial.from_record(t) for t in record.plan],
                                 labs, _deadline(campaign), resumed=True)

    # -- internals ---------------------------------------------------------------
    def _execute(self, run_id: str, campaign: Campaign, trials: list[Trial], labs: Labs,
                 deadline: float | None, resumed: bool) -> RunOutcome:
        outcome = RunOutcome(run_id)
        done = self.store.done_seqs(run_id)
        pending = [t for t in trials if t.seq not in done]
        if resumed:
            pending = _warmups_for_resume(trials, pending, done)
        expected = {t.seq: expected_seconds(t) for t in pending}
        try:
            hosts = campaign.hosts
            if len(hosts) == 1:
                self._run_group(run_id, campaign, campaign.platforms, pending, expected,
                                outcome, labs, Stopping(self.store, run_id, campaign, {
                                    p.name for p in campaign.platforms}, deadline))
            else:
                self._run_hosts_side_by_side(run_id, campaign, hosts, pending, expected,
                                             outcome, labs, deadline)
        except KeyboardInterrupt:
            self.store.set_status(run_id, "interrupted")
            raise Interrupted(
                f"interrupted: {outcome.trials} trials of this session are stored in run "
                f"{run_id}; continue with 'hvbench run --resume {run_id}'") from None
        except StoreError as exc:  # what was committed before is kept: say how to go on
            with contextlib.suppress(StoreError):
                self.store.set_status(run_id, "interrupted")
            raise StoreError(f"{exc}; trials stored before are kept in run {run_id}: once "
                             f"fixed, continue with 'hvbench run --resume {run_id}'") from None
        except BaseException:  # a usage problem, a lost store, or a bug: not complete
            with contextlib.suppress(StoreError):
                self.store.set_status(run_id, "interrupted")
            raise
        self.store.set_status(run_id, "complete")
        if self.store.spool is not None and self.store.spool.waiting():
            self.reporter.message(
                f"warning: {self.store.spool.waiting()} writes of run {run_id} still wait in "
                f"{self.store.spool.path}: the store {self.store.where} is unreachable; "
                "once it is back, 'hvbench store flush' writes them")
        return outcome

    def _run_group(self, run_id: str, campaign: Campaign, specs: list[PlatformSpec],
                   pending: list[Trial], expected: dict[int, float], outcome: RunOutcome,
                   labs: Labs, stopping: Stopping, stop: threading.Event | None = None
                   ) -> None:
        """Open these platforms (all on one host) and run their pending trials, holding
        the host's measurement lock (a remote host) all the while."""
        with self.platforms.open(run_id, campaign, specs, labs, stop) as machines:
            self.reporter.start(len(pending), sum(expected[t.seq] for t in pending),
                                stopping.deadline)
            try:
                settled: dict[int, Done] = {}
                paused = self._pass(run_id, campaign, machines, pending, expected, outcome,
                                    stopping, stop, settled)
                if paused and stopping.time_left() > 0 and not (stop and stop.is_set()):
                    # time the decided workloads left goes back to the paused ones
                    reopened = {t.workload_index for t in paused}
                    self.reporter.message(f"{stopping.time_left():.0f} s of the budget left:"
                                          f" back to {len(reopened)} undecided workloads")
                    stopping.reopen(reopened)
                    for index in reopened:
                        del settled[index]
                    paused = self._pass(run_id, campaign, machines, paused, expected,
                                        outcome, stopping, stop, settled)
                for trial in paused if not (stop and stop.is_set()) else ():
                    self.skip(run_id, trial, settled[trial.workload_index].reason,
                               expected)
            finally:
                self.reporter.stop()

    def _pass(self, run_id: str, campaign: Campaign, machines: dict[str, Machine],
              trials: list[Trial], expected: dict[int, float], outcome: RunOutcome,
              stopping: Stopping, stop: threading.Event | None, settled: dict[int, Done]
              ) -> list[Trial]:
        """Run ``trials`` in order, asking the stopping rule before each repetition; the
        trials of workloads paused by their share of the budget (to retry if time is
        left), the others it stopped stored as skipped."""
        paused: list[Trial] = []
        started_reps: set[tuple[int, int]] = set()
        for trial in trials:
            if stop is not None and stop.is_set():
                break
            index = trial.workload_index
            block = (index, trial.repetition)
            first_of_rep = not trial.warmup and block not in started_reps
            started_reps.add(block)
            if campaign.adaptive and first_of_rep and index not in settled:
                why = stopping.why_done(trial)
                if why:
                    settled[index] = why
                    self.reporter.message(f"{trial.workload}: {why.reason}")
            if trial.warmup and campaign.budget is not None and stopping.time_left() <= 0:
                self.skip(run_id, trial, "the budget was spent before its warm-up", expected)
                continue
            if index in settled and not trial.warmup:
                if settled[index].final:
                    self.skip(run_id, trial, settled[index].reason, expected)
                else:
                    paused.append(trial)
                continue
            self.run_trial(run_id, campaign, machines[trial.platform], trial,
                           expected[trial.seq], outcome)
        return paused

    def _host_down(self, run_id: str, host: HostSpec, exc: HvbenchError,
                   trials: list[Trial], outcome: RunOutcome) -> None:
        """A host of a fleet that cannot be reached, locked or kept: its trials not yet
        stored fail with the reason; the other hosts go on."""
        reason = f"host {host.tag} is down: {exc}"
        self.reporter.message(reason)
        done = self.store.done_seqs(run_id)
        for trial in trials:
            if trial.seq not in done:
                self.store.add_trial(run_id, trial.record(), "failed", reason, now(), None,
                                     {}, [])
                outcome.trials += 1
                outcome.failed += 1
        outcome.failures.append(reason)

    def skip(self, run_id: str, trial: Trial, reason: str, expected: dict[int, float]
             ) -> None:
        """Store a trial that will not run, with the reason."""
        self.store.add_trial(run_id, trial.record(), "skipped", reason, now(), None, {}, [])
        self.reporter.trial_finished(expected[trial.seq], None)

    def _run_hosts_side_by_side(self, run_id: str, campaign: Campaign, hosts: list[HostSpec],
                                pending: list[Trial], expected: dict[int, float],
                                outcome: RunOutcome, labs: Labs, deadline: float | None
                                ) -> None:
        """One thread per machine, at most ``forks`` at once, each host with its own
        progress line; a host that cannot be reached, locked or kept is marked down
        (its trials failed with the reason) while the others go on; Ctrl-C lets every
        host finish its current trial, then stops them all. This machine and the labs
        nested in it share its CPUs, so they take their turns in one thread instead of
        disturbing each other's measurements."""
        stop = threading.Event()
        errors: list[BaseException] = []
        lock = threading.Lock()
        slots = threading.BoundedSemaphore(campaign.forks)

        def work(group: list[HostSpec]) -> None:
            for position, host in enumerate(group):
                with slots:
                    if stop.is_set():
                        return
                    one_host(position, host, len(group))

        def one_host(position: int, host: HostSpec, hosts_in_group: int) -> None:
            specs = [p for p in campaign.platforms if campaign.host_of(p) == host]
            names = {p.name for p in specs}
            mine = [t for t in pending if t.platform in names]
            runner = Runner(self.store, self.reporter.for_host(host.tag))
            part = RunOutcome(run_id)
            stopping = Stopping(self.store, run_id, campaign, names, deadline,
                                hosts_after=hosts_in_group - position - 1)
            if deadline is not None and stopping.time_left() <= 0:
                # the budget is spent before this host's turn: do not even boot it
                runner.reporter.message(f"{host.tag}: the budget was spent before its "
                                        "turn; its trials are skipped")
                for trial in mine:
                    runner.skip(run_id, trial, "the budget was spent before this "
                                 "host's turn", expected)
                return
            try:
                runner._run_group(run_id, campaign, specs, mine, expected, part, labs,
                                  stopping, stop)
            except HvbenchError as exc:
                if isinstance(exc, StoreError | Interrupted):
                    errors.append(exc)
                    stop.set()
                else:  # this host is down: the others go on
                    runner._host_down(run_id, host, exc, mine, part)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
                stop.set()
            with lock:
                outcome.add(part)
            if host.lab is not None:  # done with it: free the machine for the next
                labs.release(host.lab)

        here = [h for h in hosts if h.shares_this_machine]
        groups = ([here] if here else []) + [[h] for h in hosts if h not in here]
        threads = [threading.Thread(target=work, args=(group,), name=f"hosts-{group[0]}")
                   for group in groups]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
        except KeyboardInterrupt:
            stop.set()
            self.reporter.message("stopping: each host finishes its current trial")
            for thread in threads:
                thread.join()
            raise
        if errors:
            raise errors[0]

    def run_trial(self, run_id: str, campaign: Campaign, machine: Machine, trial: Trial,
                  expected: float, outcome: RunOutcome) -> None:
        """Measure one trial (restarting a crashed guest first) and store its result."""
        dead = self.platforms.dead.get(trial.platform)
        if dead is None and (not machine.healthy() or
                             (campaign.fresh_guest and self._used.get(trial.platform))):
            dead = self.platforms.recover(trial.platform, machine)
        self._used[trial.platform] = True
        if dead is not None:
            self._record(run_id, trial, expected, outcome, TrialResult(
                "failed", f"platform {trial.platform} is down: {dead}"))
            return
        not_applicable = get_workload(trial.workload).applies_to(machine)
        if not_applicable:
            self._record(run_id, trial, expected, outcome,
                         TrialResult("skipped", not_applicable))
            return
        of = "" if trial.warmup else f"/{campaign.planned_reps}"
        self.reporter.trial_started(trial.label + of)
        result = measure(machine, trial, trial_timeout(campaign.timeout, expected))
        self._record(run_id, trial, expected, outcome, result)

    def _record(self, run_id: str, trial: Trial, expected: float, outcome: RunOutcome,
                result: TrialResult) -> None:
        result.metadata["workload_index"] = trial.workload_index
        if trial.resume_warmup:
            result.metadata["resume_warmup"] = True
        stored = self.store.add_trial(run_id, trial.record(), result.status, result.reason,
                                      result.started, result.seconds, result.metadata,
                                      result.samples)
        if stored is None and self.store.spool is not None:
            self.reporter.message(
                f"warning: the store {self.store.where} is unreachable: {trial.label} is "
                f"kept in {self.store.spool.path} ({self.store.spool.waiting()} writes "
                "waiting) and written when the store is back")
        if not trial.warmup and result.status != "skipped":
            outcome.trials += 1
        failure = None
        if result.status not in ("ok", "skipped"):
            failure = f"{trial.label}: {result.reason}"
            if not trial.warmup:
                outcome.failed += 1
                outcome.failures.append(failure)
        self.reporter.trial_finished(expected, failure)


def _deadline(campaign: Campaign) -> float | None:
    """When a budgeted run's time is up (monotonic clock)."""
    return time.monotonic() + campaign.budget if campaign.budget else None


def _warmups_for_resume(trials: list[Trial], pending: list[Trial], done: set[int]
                        ) -> list[Trial]:
    """A resumed run warms each (platform, workload) up again before measuring."""
    needed = {(t.platform, t.workload_index) for t in pending if not t.warmup}
    extra = [t.for_resume() for t in trials
             if t.warmup and t.seq in done and (t.platform, t.workload_index) in needed]
    return sorted(extra + pending, key=lambda t: (t.seq, not t.resume_warmup))
