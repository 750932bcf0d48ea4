"""Progress display for long steps: a rich progress bar with an ETA, on stderr."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class Reporter(Protocol):
    def start(self, total_trials: int, total_seconds: float,
              deadline: float | None = None) -> None: ...
    def trial_started(self, label: str) -> None: ...
    def trial_finished(self, expected_seconds: float, failure: str | None) -> None: ...
    def message(self, text: str) -> None: ...
    def stop(self) -> None: ...
    def for_host(self, tag: str) -> Reporter: ...


class BudgetColumn(ProgressColumn):
    """What is left of a --budget run's time (repetitions stop where verdicts are reached
    or the budget is spent, so the run ends by then whatever the ETA says)."""

    def render(self, task: Task) -> Text:
        deadline = task.fields.get("deadline")
        if deadline is None:
            return Text("")
        left = max(0, int(deadline - time.monotonic()))
        return Text(f"budget {left // 60}:{left % 60:02d} left", style="cyan")


@dataclass
class _Display:
    """What the progress lines of one run share: how many are shown, and for a run
    over several hosts the fleet's summary line and its counts."""

    users: int = 0
    summary: TaskID | None = None
    hosts: int = 0  # hosts whose line has started
    finished: int = 0  # hosts whose line has stopped
    trials: int = 0  # trials planned on the started hosts
    done: int = 0
    failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def text(self) -> str:
        active = self.hosts - self.finished
        return (f"fleet: {active} host{'s' * (active != 1)} measuring, {self.finished} "
                f"done · {self.done}/{self.trials} trials · {self.failed} failed")


class RichReporter:
    """One bar for the whole run; it advances by each trial's expected duration,
    so the ETA is the remaining expected time scaled by how fast things really go.
    A run over several hosts gets a line per host and a summary line for the fleet."""

    def __init__(self, console: Console, progress: Progress | None = None,
                 prefix: str = "", display: _Display | None = None, host: bool = False):
        self.console = console
        self._progress = progress or Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), BudgetColumn(),
            console=console, transient=False,
        )
        self._prefix = prefix
        self._display = display or _Display()
        self._host = host  # one host's line of a fleet: counts in the summary
        self._task: TaskID | None = None
        self._done = 0
        self._total = 0

    def for_host(self, tag: str) -> RichReporter:
        """A progress line of its own for one host of a run that spans several."""
        return RichReporter(self.console, self._progress, f"[{tag}] ", self._display,
                            host=True)

    def start(self, total_trials: int, total_seconds: float,
              deadline: float | None = None) -> None:
        self._total = total_trials
        shown = self._display
        with shown.lock:
            if shown.users == 0:
                self._progress.start()
            shown.users += 1
            if self._host:
                shown.hosts += 1
                shown.trials += total_trials
                if shown.summary is None:
                    shown.summary = self._progress.add_task(shown.text(), total=None)
                self._summarise()
        self._task = self._progress.add_task(f"{escape(self._prefix)}starting",
                                             total=max(total_seconds, 0.001),
                                             deadline=deadline)

    def _summarise(self) -> None:
        if self._display.summary is not None:
            self._progress.update(self._display.summary, description=self._display.text())

    def trial_started(self, label: str) -> None:
        if self._task is not None:
            # descriptions are rich markup: "[kvm01]" would vanish as a tag
            self._progress.update(self._task, description=escape(
                f"{self._prefix}{label} ({self._done + 1}/{self._total})"))

    def trial_finished(self, expected_seconds: float, failure: str | None) -> None:
        self._done += 1
        if self._host:
            with self._display.lock:
                self._display.done += 1
                self._display.failed += failure is not None
                self._summarise()
        if failure:
            self._progress.console.print(f"{escape(self._prefix)}[red]trial failed:[/red] "
                                         f"{escape(failure)}", markup=True, highlight=False)
        if self._task is not None:
            self._progress.advance(self._task, expected_seconds)

    def message(self, text: str) -> None:
        self._progress.console.print(self._prefix + text, highlight=False, markup=False,
                                     soft_wrap=True)

    def stop(self) -> None:
        if self._task is None:
            return
        self._task = None
        shown = self._display
        with shown.lock:
            if self._host:
                shown.finished += 1
                self._summarise()
            shown.users -= 1
            if shown.users <= 0:
                self._progress.stop()


class QuietReporter:
    """For tests and --quiet: failures only, on stderr."""

    def __init__(self, console: Console | None = None, prefix: str = ""):
        self.console = console or Console(stderr=True)
        self.prefix = prefix

    def for_host(self, tag: str) -> QuietReporter:
        return QuietReporter(self.console, f"[{tag}] ")

    def start(self, total_trials: int, total_seconds: float,
              deadline: float | None = None) -> None:
        pass

    def trial_started(self, label: str) -> None:
        pass

    def trial_finished(self, expected_seconds: float, failure: str | None) -> None:
        if failure:
            self.console.print(f"{self.prefix}trial failed: {failure}", highlight=False,
                               markup=False)

    def message(self, text: str) -> None:
        self.console.print(self.prefix + text, highlight=False, markup=False, soft_wrap=True)

    def stop(self) -> None:
        pass
