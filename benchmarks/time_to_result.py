#!/usr/bin/env python3
"""Where a run's wall time goes: set-up (image builds, lab boots, image copies, guest
boots, metadata), time inside workloads, the harness between and around trials, and
the rest, measured side by side in one run.

    .venv/bin/python benchmarks/time_to_result.py          # as make run: budget 12m, both labs
    .venv/bin/python benchmarks/time_to_result.py --budget 4m --local   # this machine only

Run it with warm caches (after one make run) to see what a returning user waits for.
The goal (issue 14): at least 80% of the wall time inside workloads.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console

from hvbench.options import RunOptions, campaign_from_options
from hvbench.paths import database_path
from hvbench.runner import Runner
from hvbench.store import Store


class TimingReporter:
    """Timestamps what the runner reports: when each host's measuring starts and ends,
    and each trial's start and end."""

    def __init__(self, started: float, console: Console, prefix: str = ""):
        self.started = started
        self.console = console
        self.prefix = prefix
        self.windows: list[tuple[float, float]] = []  # (start, end) of measuring phases
        self.trials: list[tuple[float, float]] = []
        self._open: float | None = None
        self._trial: float | None = None
        self._children: list[TimingReporter] = []

    def for_host(self, tag: str) -> TimingReporter:
        child = TimingReporter(self.started, self.console, f"[{tag}] ")
        self._children.append(child)
        return child

    def start(self, total_trials: int, total_seconds: float,
              deadline: float | None = None) -> None:
        self._open = time.monotonic()

    def trial_started(self, label: str) -> None:
        self._trial = time.monotonic()

    def trial_finished(self, expected_seconds: float, failure: str | None) -> None:
        if self._trial is not None:
            self.trials.append((self._trial, time.monotonic()))
        self._trial = None

    def message(self, text: str) -> None:
        self.console.print(f"{time.monotonic() - self.started:7.1f} s  {self.prefix}{text}",
                           markup=False, highlight=False)

    def stop(self) -> None:
        if self._open is not None:
            self.windows.append((self._open, time.monotonic()))
        self._open = None

    def all(self) -> list[TimingReporter]:
        return [self, *(c for child in self._children for c in child.all())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="12m")
    parser.add_argument("--suite", default="quick")
    parser.add_argument("--local", action="store_true", help="this machine's platforms only")
    parser.add_argument("--scratch", action="store_true",
                        help="keep the run in a throw-away store, not the user's")
    args = parser.parse_args()
    console = Console(stderr=True)
    started = time.monotonic()
    reporter = TimingReporter(started, console)
    with tempfile.TemporaryDirectory(prefix="hvbench-ttr-") as scratch:
        # the user's own store (as make run), so 'hvbench report RUN' shows the run
        store = Store(Path(scratch) / "results.sqlite" if args.scratch else database_path())
        options = RunOptions(suite=args.suite, budget=args.budget,
                             hypervisors=not args.local)
        campaign = campaign_from_options(options, reporter.message)
        run_id = Runner(store, reporter).start(campaign).run_id
        wall = time.monotonic() - started
        inside = sum(t["seconds"] or 0 for t in store.trials(run_id)
                     if t["status"] == "ok")
        trial_seconds = sum(end - begin for r in reporter.all() for begin, end in r.trials)
        measuring = sum(end - begin for r in reporter.all() for begin, end in r.windows)
        done = [t for t in store.trials(run_id) if t["status"] != "skipped"]
    parts = {
        "inside workloads (the tools' own time)": inside,
        "around trials (prepare, agent, parse, store)": trial_seconds - inside,
        "between trials while measuring (stopping checks)": measuring - trial_seconds,
        "set-up (images, labs, copies, guest boots, metadata)": wall - measuring,
    }
    print(f"run {run_id}: {len(done)} trials, wall {wall:.0f} s (budget {args.budget})")
    for name, seconds in parts.items():
        print(f"  {name:<55} {seconds:7.1f} s  {seconds / wall * 100:5.1f}%")


if __name__ == "__main__":
    main()
