"""Progress display for long steps: a rich progress bar with an ETA, on stderr."""

from __future__ import annotations

from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Reporter(Protocol):
    def start(self, total_trials: int, total_seconds: float) -> None: ...
    def trial_started(self, label: str) -> None: ...
    def trial_finished(self, expected_seconds: float, failure: str | None) -> None: ...
    def message(self, text: str) -> None: ...
    def stop(self) -> None: ...


class RichReporter:
    """One bar for the whole run; it advances by each trial's expected duration,
    so the ETA is the remaining expected time scaled by how fast things really go."""

    def __init__(self, console: Console):
        self.console = console
        self._progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(),
            console=console, transient=False,
        )
        self._task: TaskID | None = None
        self._done = 0
        self._total = 0

    def start(self, total_trials: int, total_seconds: float) -> None:
        self._total = total_trials
        self._progress.start()
        self._task = self._progress.add_task("starting", total=max(total_seconds, 0.001))

    def trial_started(self, label: str) -> None:
        if self._task is not None:
            self._progress.update(self._task, description=f"{label} ({self._done + 1}/"
                                                          f"{self._total})")

    def trial_finished(self, expected_seconds: float, failure: str | None) -> None:
        self._done += 1
        if failure:
            self._progress.console.print(f"[red]trial failed:[/red] {failure}",
                                         markup=True, highlight=False)
        if self._task is not None:
            self._progress.advance(self._task, expected_seconds)

    def message(self, text: str) -> None:
        self._progress.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def stop(self) -> None:
        self._progress.stop()


class QuietReporter:
    """For tests and --quiet: failures only, on stderr."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)

    def start(self, total_trials: int, total_seconds: float) -> None:
        pass

    def trial_started(self, label: str) -> None:
        pass

    def trial_finished(self, expected_seconds: float, failure: str | None) -> None:
        if failure:
            self.console.print(f"trial failed: {failure}", highlight=False, markup=False)

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def stop(self) -> None:
        pass
