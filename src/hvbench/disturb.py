"""An interference condition: the victim's machine with an aggressor running beside
every trial (specs.py expands the study; interference.py reads the results).

Before the victim's trial is prepared, the aggressor is prepared and started in
the background on each of its targets (neighbour guests, or the host), and given
``settle`` seconds to get going; after the trial it is stopped and its files
removed. An aggressor that ended before the trial did (it failed, or finished its
work) did not disturb the whole trial: the trial fails with the reason instead of
passing for a quiet one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from .errors import MissingToolError, TrialError
from .machine import Background, Completed, Machine, WrappedMachine
from .specs import AggressorSpec
from .workloads import get_workload


class Disturbed(WrappedMachine):
    """``inner`` (a victim guest with its neighbours, or the host) with ``aggressor``
    beside each of its trials."""

    def __init__(self, inner: Machine, aggressor: AggressorSpec, settle: float):
        super().__init__(inner)
        self.aggressor = aggressor
        self.settle = settle

    def beside_trial(self) -> contextlib.AbstractContextManager[dict[str, Any]]:
        return self._disturbing()

    def targets(self) -> list[Machine]:
        """Where the aggressor runs."""
        if self.aggressor.where == "host":
            return [self.inner.hardware_host()]
        neighbours = self.inner.neighbours()
        if len(neighbours) < self.aggressor.guests:
            raise TrialError(f"{self.label} has {len(neighbours)} neighbour guests, the "
                             f"aggressor {self.aggressor.label} needs "
                             f"{self.aggressor.guests}")
        return neighbours[:self.aggressor.guests]

    def missing(self) -> MissingToolError | None:
        """The aggressor's tool missing where it runs (checked before the first trial)."""
        if self.aggressor.workload == "none":
            return None
        workload = get_workload(self.aggressor.workload)
        return next(filter(None, map(workload.missing, self.targets())), None)

    @contextlib.contextmanager
    def _disturbing(self) -> Iterator[dict[str, Any]]:
        record: dict[str, Any] = {"aggressor": self.aggressor.label,
                                  "workload": self.aggressor.workload,
                                  "where": self.aggressor.where}
        if self.aggressor.workload == "none":  # the control: nothing runs beside
            yield record
            return
        workload = get_workload(self.aggressor.workload)
        params = self.aggressor.checked_params()
        problem = self.missing()
        if problem is not None:
            raise TrialError(f"aggressor: {problem}")
        with contextlib.ExitStack() as stack:
            running: list[_Aggressor] = []
            for target in self.targets():
                prepared = stack.enter_context(workload.prepare(target, params))
                *setup, main = workload.commands(params, prepared)
                for argv in setup:
                    done = target.run(argv, timeout=120)
                    if done.exit_code != 0:
                        raise TrialError(f"aggressor {self.aggressor.label} on "
                                         f"{target.label}: {argv[0]} failed: "
                                         f"{done.stderr.strip()[-200:]}")
                running.append(_Aggressor(target, target.spawn(main)))
                stack.callback(running[-1].stop)  # however the trial ends
            time.sleep(self.settle)
            record.update(targets=[a.target.label for a in running], settle_s=self.settle,
                          argv=list(main))
            started = time.monotonic()
            yield record
            record["seconds"] = round(time.monotonic() - started, 3)
            for aggressor in running:  # it must have run all along (one check, after:
                if not aggressor.background.running():  # each costs a busy guest a lot)
                    raise self._ended(aggressor)

    def _ended(self, aggressor: _Aggressor) -> TrialError:
        said = aggressor.stop().stdout.strip().splitlines()  # its last word, on one line
        return TrialError(f"the aggressor {self.aggressor.label} on {aggressor.target.label} "
                          "ended before the trial did" + (f": {said[-1][-200:]}" if said else ""))

    def info(self) -> dict[str, Any]:
        return {**self.inner.info(), "aggressor": self.aggressor.model_dump()}


class _Aggressor:
    """One aggressor process and where it runs, stopped once (what it said kept)."""

    def __init__(self, target: Machine, background: Background):
        self.target = target
        self.background = background
        self._stopped: Completed | None = None

    def stop(self) -> Completed:
        """Stop it (once)."""
        if self._stopped is None:
            self._stopped = self.background.stop()
        return self._stopped
