"""``hvbench ab A B``: two configurations of the same platforms on one host, measured in
alternating order (A B, B A, A B, ...), with repetitions added only while the
regression gate's verdict is uncertain.

Why alternate: a host drifts (thermal state, page cache, background work); running
all of A and then all of B turns that drift into a difference between them, while the
A B B A order spreads it over both sides. Both configurations' guests stay up all run
long, so the one that waits idles while the other is measured, in both orders alike.

Why sequential looks are safe: the gate (``gate.py``: a permutation test per metric,
Benjamini-Hochberg across them, noise thresholds) looks at the data at scheduled
repetition counts (``verdicts.LookPlan``) and look k may spend only its share alpha_k
of alpha; the shares add up to alpha, so looking several times does not raise the
chance of a false alarm (union bound; checked by simulation in tests/test_ab.py). A
metric is decided at the first look where it is significant, or where its interval
lies within the noise threshold (it cannot be a regression worth the name); the run
stops once every metric is decided, or at the last look.

Each configuration is stored as a run of its own, so either can be reported, and
``hvbench compare A_RUN B_RUN`` gives the same table from the stored samples.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass, field, replace

from . import leftovers
from .campaign import Campaign, plan
from .errors import Interrupted, StoreError, UsageError
from .execution import expected_seconds
from .gate import GateRules, Judged, judge
from .hostinfo import run_labs, sysinfo_for_hosts
from .platforms import Machine
from .progress import Reporter
from .runcompare import Change, with_ratio
from .runner import Runner, RunOutcome
from .stats import Series, compare, group
from .store import Store, new_run_id
from .trial import Trial
from .verdicts import ALPHA, FIRST_LOOK, SPENDING_POWER, LookPlan, ratio_interval

Key = tuple[str, str, str]  # platform, workload, metric


@dataclass(frozen=True)
class Decided:
    """A metric's verdict and the look that reached it (0: never decided)."""

    change: Change
    look: int
    n: int  # repetitions per side at that look

    @property
    def verdict(self) -> str:
        judged = self.change.judged
        if judged.significant:
            return judged.wording()
        if not self.look:
            return "inconclusive"
        return "no change beyond the noise threshold"


@dataclass
class SequentialGate:
    """The gate applied at each look of ``plan``, keeping each metric's first decision."""

    plan: LookPlan
    rules: GateRules
    decided: dict[Key, Decided] = field(default_factory=dict)
    #: metrics left out, and why (A's median is 0: no ratio; runcompare.with_ratio)
    not_compared: list[str] = field(default_factory=list)
    #: metrics still open: their series and judgement at the latest look
    _open: dict[Key, tuple[Series, Series, Judged, int]] = field(default_factory=dict)

    def look(self, n: int, pairs: list[tuple[Series, Series]]) -> bool:
        """Judge the series at n repetitions a side (a scheduled look); True once every
        metric is decided."""
        number = self.plan.look_at(n)
        pairs, left_out = with_ratio(pairs)
        self.not_compared.extend(note for note in left_out if note not in self.not_compared)
        judged = judge([(a.values, b.values, a.higher_is_better, a.metric) for a, b in pairs],
                       replace(self.rules, alpha=self.plan.alpha_at(number)))
        for (a, b), verdict in zip(pairs, judged, strict=True):
            key = (a.platform, a.workload, a.metric)
            if key in self.decided:
                continue
            if verdict.significant or self._within_noise(a, b):
                self.decided[key] = Decided(_change(a, b, verdict), number, n)
                self._open.pop(key, None)
            else:
                self._open[key] = (a, b, verdict, n)
        return not self._open

    def _within_noise(self, a: Series, b: Series) -> bool:
        """B/A's 95% interval inside +/- the noise threshold: whatever the truth, no
        regression beyond it."""
        if min(a.values + b.values) <= 0:
            return False
        found = ratio_interval(b.values, a.values, ALPHA)
        limit = self.rules.threshold / 100
        return found is not None and 1 - limit <= found[1] and found[2] <= 1 + limit

    def verdicts(self) -> list[Decided]:
        """Every metric: its decision, or its state at the last look (open)."""
        still_open = [Decided(_change(a, b, verdict), 0, n)
                      for a, b, verdict, n in self._open.values()]
        return [*self.decided.values(), *still_open]

    @property
    def regressions(self) -> list[Decided]:
        return [d for d in self.decided.values() if d.change.judged.regression]


def _change(a: Series, b: Series, judged: Judged) -> Change:
    return Change(a.platform, a.workload, a.metric, a.unit,
                  compare(b.values, a.values, a.higher_is_better), judged)


@dataclass
class AbResult:
    a_run: str
    b_run: str
    repetitions: int  # per side, when the run stopped
    looks: int
    gate: SequentialGate
    outcome: RunOutcome


def check_pair(a: Campaign, b: Campaign) -> list[str]:
    """The platforms both configurations have; a one-line error when they cannot be
    compared by alternation (other hosts, other workloads, no platform in common)."""
    if len(a.hosts) != 1 or a.hosts != b.hosts:
        raise UsageError("ab measures two configurations on one host: A runs on "
                         f"{', '.join(map(str, a.hosts))}, B on {', '.join(map(str, b.hosts))};"
                         " compare runs of different hosts with 'hvbench compare'")
    workloads_a = [w.model_dump() for w in a.workloads]
    if workloads_a != [w.model_dump() for w in b.workloads]:
        raise UsageError("ab needs the same workloads with the same parameters in A and B: "
                         f"A has {', '.join(w.name for w in a.workloads)}, B has "
                         f"{', '.join(w.name for w in b.workloads)}")
    common = [p.name for p in a.platforms if p.name in {q.name for q in b.platforms}]
    if not common:
        raise UsageError("A and B have no platform name in common: name the platform "
                         "whose configuration differs the same in both files")
    return common


def look_plan(min_reps: int, max_reps: int, alpha: float) -> LookPlan:
    """Looks from min_reps (at least the first count that can conclude) to max_reps."""
    if min_reps > max_reps:
        raise UsageError(f"--min-reps ({min_reps}) exceeds --max-reps ({max_reps})")
    return LookPlan.geometric(min(max(min_reps, FIRST_LOOK), max_reps), max_reps,
                              alpha=alpha, power=SPENDING_POWER)


class AbRun:
    """Executes A and B side by side on their host and stores each as a run."""

    def __init__(self, store: Store, reporter: Reporter):
        self.store = store
        self.reporter = reporter

    def run(self, a: Campaign, b: Campaign, rules: GateRules, looks: LookPlan) -> AbResult:
        common = set(check_pair(a, b))
        # each side keeps only the platforms both have; all repetitions planned, the
        # ones a decision makes unnecessary are stored as skipped
        sides = [side.model_copy(update={
            "platforms": [p for p in side.platforms if p.name in common],
            "reps": looks.n_max, "budget": None}) for side in (a, b)]
        runners = [Runner(self.store, self.reporter) for _ in sides]
        plans = [plan(side) for side in sides]
        ids = [new_run_id(), new_run_id()]
        while ids[1] == ids[0]:
            ids[1] = new_run_id()
        gate = SequentialGate(looks, rules)
        outcome = RunOutcome(ids[0])
        with run_labs(self.reporter.message) as labs, contextlib.ExitStack() as stack:
            host = sysinfo_for_hosts(sides[0], labs, self.reporter.message)
            for index, (runner, run_id, side, trials) in enumerate(
                    zip(runners, ids, sides, plans, strict=True)):
                runner.create(run_id, side, trials, host, ("AB"[index], ids[1 - index]))
                stack.enter_context(leftovers.executing(run_id))
            try:
                machines = [stack.enter_context(runner.platforms.open(run_id, side, side.platforms,
                                                               labs, lock=index == 0))
                            for index, (runner, run_id, side)
                            in enumerate(zip(runners, ids, sides, strict=True))]
                n = self._alternate(runners, ids, sides, plans, machines, gate, outcome)
            except KeyboardInterrupt:
                self._interrupted(ids)
                raise Interrupted(f"interrupted: the samples so far are kept in runs "
                                  f"{ids[0]} (A) and {ids[1]} (B); compare them with "
                                  f"'hvbench compare {ids[0]} {ids[1]}'") from None
            except BaseException:
                self._interrupted(ids)
                raise
        for run_id in ids:
            self.store.set_status(run_id, "complete")
        return AbResult(ids[0], ids[1], n, looks.look_at(n), gate, outcome)

    def _alternate(self, runners: list[Runner], ids: list[str], sides: list[Campaign],
                   plans: list[list[Trial]], machines: list[dict[str, Machine]],
                   gate: SequentialGate, outcome: RunOutcome) -> int:
        """Warm-ups, then repetition r of A and B in the order A B when r is even and
        B A when odd, looking at the scheduled counts; the repetitions per side done."""
        by_rep: list[dict[int, list[Trial]]] = []
        for trials in plans:
            reps: dict[int, list[Trial]] = defaultdict(list)
            for trial in trials:
                reps[trial.repetition].append(trial)
            by_rep.append(reps)
        expected = [{t.seq: expected_seconds(t) for t in trials} for trials in plans]
        self.reporter.start(sum(len(t) for t in plans),
                            sum(sum(e.values()) for e in expected), None)
        looks = gate.plan

        def run(side: int, repetition: int) -> None:
            for trial in by_rep[side].get(repetition, []):
                runners[side].run_trial(ids[side], sides[side], machines[side][trial.platform],
                                        trial, expected[side][trial.seq], outcome)

        try:
            run(0, -1)
            run(1, -1)
            done = 0
            for repetition in range(looks.n_max):
                for side in (0, 1) if repetition % 2 == 0 else (1, 0):
                    run(side, repetition)
                done = repetition + 1
                if done in looks.looks and self._look(ids, gate, done):
                    break
            reason = (f"every metric decided at look {looks.look_at(done)} (n={done})")
            for side in (0, 1):
                for repetition in range(done, looks.n_max):
                    for trial in by_rep[side][repetition]:
                        runners[side].skip(ids[side], trial, reason, expected[side])
            return done
        finally:
            self.reporter.stop()

    def _look(self, ids: list[str], gate: SequentialGate, n: int) -> bool:
        series = [{(s.platform, s.workload, s.metric): s for s in group(self.store.samples(i))}
                  for i in ids]
        pairs = [(series[0][key], series[1][key]) for key in series[0] if key in series[1]]
        if not pairs:
            raise UsageError(f"runs {ids[0]} and {ids[1]} have no sample of a common metric "
                             "after the first look: every trial failed (see 'hvbench report')")
        said = len(gate.not_compared)
        finished = gate.look(n, pairs)
        for note in gate.not_compared[said:]:
            self.reporter.message(note)
        self.reporter.message(f"look {gate.plan.look_at(n)} at n={n}: "
                              f"{len(gate.decided)} of {len(pairs)} metrics decided")
        return finished

    def _interrupted(self, ids: list[str]) -> None:
        for run_id in ids:
            with contextlib.suppress(StoreError):
                self.store.set_status(run_id, "interrupted")

