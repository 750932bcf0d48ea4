"""Progress display for long steps: a rich progress bar with an ETA, on stderr."""

from __future__ import annotations

import time
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


class RichReporter:
    """One bar for the whole run; it advances by each trial's expected duration,
    so the ETA is the remaining expected time scaled by how fast things really go."""

    def __init__(self, console: Console, progress: Progress | None = None,
                 prefix: str = "", shared: list[int] | None = None):
        self.console = console
        self._progress = progress or Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), BudgetColumn(),
            console=console, transient=False,
        )
        self._prefix = prefix
        self._users = shared if shared is not None else [0]  # lines sharing the display
        self._task: TaskID | None = None
        self._done = 0
        self._total = 0

    def for_host(self, tag: str) -> RichReporter:
        """A progress line of its own for one host of a run that spans several."""
        return RichReporter(self.console, self._progress, f"[{tag}] ", self._users)

    def start(self, total_trials: int, total_seconds: float,
              deadline: float | None = None) -> None:
        self._total = total_trials
        if self._users[0] == 0:
            self._progress.start()
        self._users[0] += 1
        self._task = self._progress.add_task(f"{self._prefix}starting",
                                             total=max(total_seconds, 0.001),
                                             deadline=deadline)

    def trial_started(self, label: str) -> None:
        if self._task is not None:
            self._progress.update(self._task, description=f"{self._prefix}{label} "
                                                          f"({self._done + 1}/{self._total})")

    def trial_finished(self, expected_seconds: float, failure: str | None) -> None:
        self._done += 1
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
        self._users[0] -= 1
        if self._users[0] <= 0:
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
