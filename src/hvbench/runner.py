"""Executes a campaign's plan: opens each platform, runs trials, stores results.

Trials run in plan order. A failing trial (tool error, timeout, unparsable
output) is recorded with its reason and the run goes on. Ctrl-C or SIGTERM
stops the current trial (its process group is killed), marks the run
interrupted and keeps everything stored so far; ``--resume`` continues it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import __version__, sysinfo
from .analysis import analyse
from .campaign import Campaign, PlatformSpec, host_tag, plan
from .errors import HvbenchError, Interrupted, StoreError, TrialError, TrialTimeout
from .machine import Completed, DownMachine
from .platforms import Machine, PlatformContext, make_platform
from .progress import Reporter
from .stats import CONFIDENCE, summarize
from .store import Store, new_run_id, now
from .workloads import get_workload, payload
from .workloads.base import Sample

#: floor for the per-trial time limit, and how much slower than expected a trial may be
MIN_TIMEOUT = 60.0
TIMEOUT_FACTOR = 10.0


@dataclass
class RunOutcome:
    run_id: str
    trials: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)


def trial_timeout(campaign: Campaign, expected: float) -> float:
    return campaign.timeout or max(MIN_TIMEOUT, TIMEOUT_FACTOR * expected)


def execute_trial(machine: Machine, spec: dict[str, Any], timeout: float
                  ) -> tuple[list[Sample], dict[str, Any], float]:
    """Prepare, run and parse one trial; return samples, metadata and wall seconds."""
    workload = get_workload(spec["workload"])
    params = workload.params(spec["params"])
    custom = workload.execute(machine, params, timeout)
    if custom is not None:
        return custom
    with workload.prepare(machine, params) as prepared:
        parts: list[Completed] = []
        for argv in workload.commands(params, prepared):
            parts.append(machine.run(argv, timeout=timeout))
            if parts[-1].exit_code != 0:
                break
        output = Completed.combine(parts)
        measured = workload.parse(output, params)
    for sample in measured:
        sample.metadata.update({k: v for k, v in prepared.metadata.items()
                                if k not in sample.metadata})
    metadata = {"argv": [list(p.argv) for p in parts], **prepared.metadata}
    return measured, metadata, output.seconds


class Runner:
    def __init__(self, store: Store, reporter: Reporter):
        self.store = store
        self.reporter = reporter
        self._dead: dict[str, str] = {}  # platforms that could not be restarted
        self._descriptions: dict[str, dict[str, Any]] = {}  # platform settings as recorded
        self._used: dict[str, bool] = {}
        #: --budget: when the run's time is up (monotonic), and each workload's share
        self._deadline: float | None = None
        self._shares: dict[int, tuple[float, float]] = {}  # workload index -> (start, end)

    def start(self, campaign: Campaign) -> RunOutcome:
        """Create a new run in the store and execute it."""
        run_id = new_run_id()
        trials = plan(campaign)
        host = sysinfo_for_host(campaign, self.reporter.message)
        self.store.create_run(run_id, campaign.model_dump(mode="json"), trials, host,
                              __version__)
        self.reporter.message(f"run {run_id}: {len(trials)} trials "
                              f"({sum(not t['warmup'] for t in trials)} measured) "
                              f"on {', '.join(p.name for p in campaign.platforms)}")
        return self._execute(run_id, campaign, trials, resumed=False)

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
        self.store.set_status(run_id, "running")
        return self._execute(run_id, campaign, record.plan, resumed=True)

    # -- internals ---------------------------------------------------------------
    @contextlib.contextmanager
    def _machines(self, campaign: Campaign, specs: list[PlatformSpec]
                  ) -> Iterator[dict[str, Machine]]:
        with contextlib.ExitStack() as stack:
            machines = {}
            for spec in specs:
                platform = make_platform(spec.name, spec.driver, spec.settings,
                                         platform_context(campaign, spec, self.reporter.message))
                self.reporter.message(f"opening platform {spec.name}")
                try:
                    machines[spec.name] = stack.enter_context(platform.open())
                except TrialError as exc:  # e.g. a guest that panics at boot
                    self._mark_down(machines, spec.name, exc)
                self._descriptions[spec.name] = platform.describe()
            yield machines

    def _preflight(self, campaign: Campaign, machines: dict[str, Machine]) -> None:
        """Fail before the first trial when a tool is missing anywhere."""
        for name, machine in machines.items():
            if isinstance(machine, DownMachine):
                continue
            for spec in campaign.workloads:
                try:
                    workload = get_workload(spec.name)
                    problem = self._restarting_once(name, machine, workload.missing)
                except TrialError as exc:  # a guest that cannot even answer 'which'
                    self._mark_down(machines, name, exc)
                    break
                if problem:
                    raise type(problem)(problem.workload, problem.binary, problem.package,
                                        f"{machine.label} (platform {name})")

    def _execute(self, run_id: str, campaign: Campaign, trials: list[dict[str, Any]],
                 resumed: bool) -> RunOutcome:
        outcome = RunOutcome(run_id)
        done = self.store.done_seqs(run_id)
        pending = [t for t in trials if t["seq"] not in done]
        if resumed:
            pending = self._warmups_for_resume(trials, pending, done)
        expected = {t["seq"]: self._expected(t) for t in pending}
        if campaign.budget is not None:
            self._deadline = time.monotonic() + campaign.budget
        try:
            hosts = campaign.hosts
            if len(hosts) == 1:
                self._run_group(run_id, campaign, campaign.platforms, pending, expected,
                                outcome)
            else:
                self._run_hosts_side_by_side(run_id, campaign, hosts, pending, expected,
                                             outcome)
        except KeyboardInterrupt:
            self.store.set_status(run_id, "interrupted")
            raise Interrupted(
                f"interrupted: {outcome.trials} trials of this session are stored in run "
                f"{run_id}; continue with 'hvbench run --resume {run_id}'") from None
        except StoreError:
            with contextlib.suppress(StoreError):
                self.store.set_status(run_id, "interrupted")
            raise
        except HvbenchError:
            self.store.set_status(run_id, "interrupted")
            raise
        except BaseException:  # a bug: the run is not complete, whatever ends it
            with contextlib.suppress(StoreError):
                self.store.set_status(run_id, "interrupted")
            raise
        self.store.set_status(run_id, "complete")
        return outcome

    def _run_group(self, run_id: str, campaign: Campaign, specs: list[PlatformSpec],
                   pending: list[dict[str, Any]], expected: dict[int, float],
                   outcome: RunOutcome, stop: threading.Event | None = None) -> None:
        """Open these platforms (all on one host) and run their pending trials."""
        with self._machines(campaign, specs) as machines:
            self._preflight(campaign, machines)
            workloads = [get_workload(w.name) for w in campaign.workloads]
            systems = {name: self._system(name, machines, workloads) for name in machines}
            self._save_info(run_id, machines, systems)
            self.reporter.start(len(pending), sum(expected[t["seq"]] for t in pending))
            try:
                settled: dict[int, str] = {}
                started_reps: set[tuple[int, int]] = set()
                for spec in pending:
                    if stop is not None and stop.is_set():
                        break
                    index = spec["workload_index"]
                    block = (index, spec["repetition"])
                    first_of_rep = not spec["warmup"] and block not in started_reps
                    started_reps.add(block)
                    if campaign.adaptive and first_of_rep and index not in settled:
                        verdict = (self._decided(run_id, campaign, spec, specs)
                                   if campaign.budget is not None
                                   else self._settled(run_id, campaign, spec))
                        if verdict:
                            settled[index] = verdict
                            self.reporter.message(f"{spec['workload']}: {verdict}")
                    if index in settled and not spec["warmup"]:
                        self.store.add_trial(run_id, spec, "skipped", settled[index],
                                             now(), None, {}, [])
                        self.reporter.trial_finished(expected[spec["seq"]], None)
                        continue
                    self._run_one(run_id, campaign, machines[spec["platform"]], spec,
                                  expected[spec["seq"]], outcome)
            finally:
                self.reporter.stop()
                with contextlib.suppress(HvbenchError):
                    self._save_info(run_id, machines, systems)  # restarts, boot logs

    def _run_hosts_side_by_side(self, run_id: str, campaign: Campaign, hosts: list[str],
                                pending: list[dict[str, Any]], expected: dict[int, float],
                                outcome: RunOutcome) -> None:
        """One thread per machine, each host with its own progress line; Ctrl-C lets
        every host finish its current trial, then stops them all. This machine and
        the labs nested in it share its CPUs, so they take their turns in one thread
        instead of disturbing each other's measurements."""
        stop = threading.Event()
        errors: list[BaseException] = []
        lock = threading.Lock()

        def work(group: list[str]) -> None:
            for host in group:
                if stop.is_set():
                    return
                specs = [p for p in campaign.platforms if campaign.host_of(p) == host]
                names = {p.name for p in specs}
                mine = [t for t in pending if t["platform"] in names]
                runner = Runner(self.store, self.reporter.for_host(host_tag(host)))
                part = RunOutcome(run_id)
                try:
                    runner._run_group(run_id, campaign, specs, mine, expected, part, stop)
                except BaseException as exc:  # reported by the main thread
                    errors.append(exc)
                    stop.set()
                with lock:
                    outcome.trials += part.trials
                    outcome.failed += part.failed
                    outcome.failures.extend(part.failures)
                if host.startswith("lab:"):  # done with it: free the machine for the next
                    from .hosts import lab

                    if host[4:] in lab.started_here:
                        lab.stop(host[4:])

        here = [h for h in hosts if h == "local" or h.startswith("lab:")]
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

    def _system(self, name: str, machines: dict[str, Machine], workloads: list[Any]
                ) -> dict[str, Any]:
        """A machine's metadata; a guest too slow or broken to give it is marked down
        (its trials fail with the reason) instead of ending the whole run."""
        machine = machines[name]
        if isinstance(machine, DownMachine):
            return {"down": machine.reason}
        try:
            return self._restarting_once(name, machine,
                                         lambda m: sysinfo.collect(m, workloads))
        except TrialError as exc:
            self._mark_down(machines, name, exc)
            return {"down": str(exc)}

    def _mark_down(self, machines: dict[str, Machine], name: str, exc: TrialError) -> None:
        """A platform that cannot be used: its trials fail with this reason."""
        self._dead[name] = str(exc)
        self.reporter.message(f"platform {name} is down: {exc}")
        machines[name] = DownMachine(name, str(exc))

    def _restarting_once(self, name: str, machine: Machine,
                         action: Callable[[Machine], Any]) -> Any:
        """``action(machine)``; a guest that crashed or hung meanwhile is restarted and
        asked once more before it counts as down (nested guests crash now and then)."""
        try:
            return action(machine)
        except TrialError as exc:
            if machine.healthy():
                raise
            self.reporter.message(f"platform {name}: {exc}; restarting it")
            try:
                machine.restart()
            except HvbenchError:
                raise exc from None
            return action(machine)

    def _save_info(self, run_id: str, machines: dict[str, Machine],
                   systems: dict[str, dict[str, Any]]) -> None:
        for name, machine in machines.items():
            self.store.set_platform_info(run_id, name, {
                "platform": self._descriptions.get(name, {}),
                "machine": machine.info(), "system": systems[name]})

    def _settled(self, run_id: str, campaign: Campaign, spec: dict[str, Any]) -> str | None:
        """--reps auto: why this workload needs no more repetitions, or None.

        Checked before each new repetition once min_reps are done: stop when every
        platform's every metric has a 95% CI half-width within ci_target of its
        median, or when the workload's measured trials used up max_seconds.
        """
        if spec["repetition"] < campaign.min_reps:
            return None
        trials = [t for t in self.store.trials(run_id)
                  if t["workload"] == spec["workload"] and not t["warmup"]
                  and t["status"] != "skipped"
                  and t["metadata"].get("workload_index") == spec["workload_index"]]
        spent = sum(t["seconds"] or 0 for t in trials)
        if spent >= campaign.max_seconds:
            return (f"time budget of {campaign.max_seconds:g} s used after "
                    f"{spec['repetition']} repetitions")
        ok_ids = {t["id"] for t in trials if t["status"] == "ok"}
        series: dict[tuple[str, str], list[float]] = {}
        for row in self.store.samples(run_id):
            if row.trial_id in ok_ids:
                series.setdefault((row.platform, row.metric), []).append(row.value)
        platforms = {p.name for p in campaign.platforms}
        if {p for p, _ in series} != platforms:
            return None
        widest = 0.0
        for values in series.values():
            summary = summarize(values)
            if summary.ci_level < CONFIDENCE or summary.n < campaign.min_reps:
                return None
            widest = max(widest, summary.ci_halfwidth_relative)
        if widest <= campaign.ci_target:
            return (f"converged after {spec['repetition']} repetitions (widest 95% CI "
                    f"half-width {widest * 100:.2f}% <= {campaign.ci_target * 100:g}%)")
        return None

    def _decided(self, run_id: str, campaign: Campaign, spec: dict[str, Any],
                 specs: list[PlatformSpec]) -> str | None:
        """--budget: why this workload needs no more repetitions, or None.

        Each workload gets an equal share of the time left when it starts. At each look
        of the campaign's plan, the workload is done when every series of these
        platforms has a verdict (slower, faster or equivalent) at that look's level;
        otherwise it goes on until its share of the budget is spent."""
        assert self._deadline is not None
        index, done_reps = spec["workload_index"], spec["repetition"]
        now_ = time.monotonic()
        if index not in self._shares:
            left = len({s["workload_index"] for s in plan(campaign)
                        if s["workload_index"] >= index})
            self._shares[index] = (now_, now_ + max(0.0, self._deadline - now_) / left)
        start, end = self._shares[index]
        if now_ >= end:
            return (f"its share of the budget ({end - start:.0f} s) is spent after "
                    f"{done_reps} repetitions")
        look_plan = campaign.look_plan
        if done_reps not in look_plan.looks:
            return None
        names = {p.name for p in specs}
        analysis = analyse(self.store, run_id)
        open_, total = 0, 0
        for row in analysis.rows:
            if row.workload != spec["workload"]:
                continue
            for platform, comparison in row.comparisons.items():
                if platform in names:
                    total += 1
                    open_ += not comparison.verdict.decided
        if total and not open_:
            return (f"all {total} series decided at look {look_plan.look_at(done_reps)} "
                    f"(n={done_reps})")
        return None

    @staticmethod
    def _warmups_for_resume(trials: list[dict[str, Any]], pending: list[dict[str, Any]],
                            done: set[int]) -> list[dict[str, Any]]:
        """A resumed run warms each (platform, workload) up again before measuring."""
        needed = {(t["platform"], t["workload_index"]) for t in pending if not t["warmup"]}
        extra = []
        for trial in trials:
            key = (trial["platform"], trial["workload_index"])
            if trial["warmup"] and trial["seq"] in done and key in needed:
                extra.append({**trial, "resume_warmup": True})
        ordered = sorted(extra + pending, key=lambda t: (t["seq"], "resume_warmup" not in t))
        return ordered

    @staticmethod
    def _expected(spec: dict[str, Any]) -> float:
        workload = get_workload(spec["workload"])
        return float(workload.expected_seconds(workload.params(spec["params"])))

    def _run_one(self, run_id: str, campaign: Campaign, machine: Machine,
                 spec: dict[str, Any], expected: float, outcome: RunOutcome) -> None:
        dead = self._dead.get(spec["platform"])
        if dead is None and (not machine.healthy() or
                             (campaign.fresh_guest and self._used.get(spec["platform"]))):
            dead = self._recover(spec["platform"], machine)
        self._used[spec["platform"]] = True
        if dead is not None:
            self._record(run_id, campaign, spec, expected, outcome, "failed",
                         f"platform {spec['platform']} is down: {dead}", [], {}, None, now())
            return
        not_applicable = get_workload(spec["workload"]).applies_to(machine)
        if not_applicable:
            self._record(run_id, campaign, spec, expected, outcome, "skipped", not_applicable,
                         [], {}, None, now())
            return
        self._attempt(run_id, campaign, machine, spec, expected, outcome)

    def _recover(self, platform: str, machine: Machine) -> str | None:
        """Restart a crashed or hung guest; a platform that cannot restart is down."""
        try:
            machine.restart()
        except HvbenchError as exc:
            self._dead[platform] = str(exc)
            self.reporter.message(f"platform {platform} could not be restarted: {exc}")
            return str(exc)
        return None

    def _attempt(self, run_id: str, campaign: Campaign, machine: Machine,
                 spec: dict[str, Any], expected: float, outcome: RunOutcome) -> None:
        label = (f"{spec['platform']} · {spec['workload']} · "
                 + ("warm-up" if spec["warmup"] else f"rep {spec['repetition'] + 1}/"
                    f"{campaign.planned_reps}"))
        self.reporter.trial_started(label)
        started = now()
        status, reason, seconds = "ok", None, None
        measured: list[Sample] = []
        metadata: dict[str, Any] = {}
        try:
            measured, metadata, seconds = execute_trial(
                machine, spec, trial_timeout(campaign, expected))
        except TrialTimeout as exc:
            status, reason = "timeout", str(exc)
        except (TrialError, HvbenchError) as exc:
            if isinstance(exc, StoreError):
                raise
            status, reason = "failed", str(exc)
        self._record(run_id, campaign, spec, expected, outcome, status, reason, measured,
                     metadata, seconds, started)

    def _record(self, run_id: str, campaign: Campaign, spec: dict[str, Any], expected: float,
                outcome: RunOutcome, status: str, reason: str | None, measured: list[Sample],
                metadata: dict[str, Any], seconds: float | None, started: str) -> None:
        label = (f"{spec['platform']} · {spec['workload']} · "
                 + ("warm-up" if spec["warmup"] else f"rep {spec['repetition'] + 1}"))
        metadata["workload_index"] = spec["workload_index"]
        if spec.get("resume_warmup"):
            metadata["resume_warmup"] = True
        self.store.add_trial(run_id, spec, status, reason, started, seconds, metadata,
                             measured)
        if not spec["warmup"] and status != "skipped":
            outcome.trials += 1
        failure = None
        if status not in ("ok", "skipped"):
            failure = f"{label}: {reason}"
            if not spec["warmup"]:
                outcome.failed += 1
                outcome.failures.append(failure)
        self.reporter.trial_finished(expected, failure)


def platform_context(campaign: Campaign, spec: PlatformSpec,
                     say: Callable[[str], None] | None) -> PlatformContext:
    """What a platform of this campaign is built with: its host, how to reach it, and
    what its guest images carry."""
    return PlatformContext(
        host=campaign.host_of(spec), ssh_identity=campaign.ssh_identity,
        accept_new_host_key=campaign.accept_new_host_key,
        payload=payload([w.name for w in campaign.workloads]),
        lab_payload=payload(None), say=say)


def sysinfo_for_host(campaign: Campaign | None = None,
                     say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Metadata of the host the platforms run on, gathered on that host; a run on
    several hosts records each under "hosts" (the first is the run's own)."""
    hosts = campaign.hosts if campaign is not None else ["local"]
    found = {host: _host_info(host, campaign, say) for host in hosts}
    info = dict(found[hosts[0]])
    if len(hosts) > 1:
        info["hosts"] = found
    return info


def _host_info(host: str, campaign: Campaign | None,
               say: Callable[[str], None] | None) -> dict[str, Any]:
    from .platforms.native import NativePlatform

    context = PlatformContext(  # metadata only: no tools needed
        host=host, say=say, bundle_tools=False, lab_payload=payload(None),
        ssh_identity=campaign.ssh_identity if campaign else None,
        accept_new_host_key=campaign.accept_new_host_key if campaign else False)
    platform = NativePlatform("host", context=context)
    try:
        with platform.open() as machine:
            info = sysinfo.collect(machine)
    except TrialError as exc:
        raise HvbenchError(str(exc)) from None
    info["host"] = host
    return info
