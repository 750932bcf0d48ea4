"""What every ``hvbench`` command shares: its two consoles (results on stdout, messages
and errors on stderr), the one-line error exit, and the store it was pointed at."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from typing import NoReturn

import click
from rich.console import Console

from .errors import UsageError
from .store import Store
from .storeurl import configured


class PipeBroken(Exception):
    """A console write met a broken pipe. Not an OSError: click would make that exit 1."""


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """Rich would exit 1 here; main() decides (0 when the reader just went away)."""
        self.quiet = True
        raise PipeBroken("a write to a closed pipe")


def _console(stderr: bool = False) -> Console:
    """A terminal gets its own width; pipes and files get $COLUMNS, else 160."""
    console = _Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) if columns.isdigit() and int(columns) >= 40 else 160
        console = _Console(stderr=stderr, highlight=False, width=width)
    return console


out = _console()
err = _console(stderr=True)


def fail(message: str, code: int) -> NoReturn:
    err.print(f"hvbench: error: {message}", markup=False, soft_wrap=True)
    sys.exit(code)


def store(campaign_store: str | None = None) -> Store:
    """The store: --store, else a campaign's own, else HVBENCH_STORE, else the SQLite
    file under HVBENCH_HOME."""
    context = click.get_current_context(silent=True)
    explicit = (context.find_root().obj or {}).get("store") if context else None
    return Store(configured(explicit or campaign_store))


def iso_date(since: str | None) -> str | None:
    """A --since date or time as the store compares it (ISO), or a one-line error."""
    if since is None:
        return None
    try:
        return datetime.fromisoformat(since).isoformat()
    except ValueError:
        raise UsageError(f"--since {since!r}: give a date, e.g. 2026-11-30 or "
                         "2026-11-30T14:00") from None
