"""Writes a database server could not take, kept on local disk until it is back.

When a shared store (PostgreSQL) becomes unreachable in the middle of a run, the
run goes on: each write it could not make (a trial with its samples, a run's status,
a platform's records) is appended to a spool file under ``$HVBENCH_HOME/spool`` and
written, in order, by the next write that reaches the server, or by
``hvbench store flush``. Every entry is applied idempotently, so an entry whose
first attempt did reach the server is never written twice. The file is locked
(``flock``) while it is read or changed: two hvbench processes may share it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from typing import IO, Any

from .errors import UsageError
from .paths import home


class Spool:
    """One store's spool file."""

    def __init__(self, store: str):
        digest = hashlib.sha256(store.encode()).hexdigest()[:16]
        self.path = home() / "spool" / f"{digest}.jsonl"
        self.store = store  # masked: the file names it for whoever finds it

    @contextlib.contextmanager
    def _locked(self) -> Iterator[IO[str]]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = self.path.open("a+", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot keep writes for {self.store} in {self.path} "
                             f"({exc.strerror}): make {self.path.parent} writable") from None
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            yield handle

    def add(self, entry: dict[str, Any]) -> int:
        """Keep one write (synced to disk before returning); how many are waiting."""
        with self._locked() as handle:
            waiting = sum(1 for line in handle if line.strip())
            handle.write(json.dumps({**entry, "store": self.store}, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return waiting + 1

    def waiting(self) -> int:
        """How many writes wait; asked before every write to a server, so an empty or
        absent spool is told by its size alone (no lock, no read)."""
        try:
            if self.path.stat().st_size == 0:
                return 0
        except FileNotFoundError:
            return 0
        with self._locked() as handle:
            return sum(1 for line in handle if line.strip())

    def drain(self, apply: Callable[[dict[str, Any]], None]) -> int:
        """Apply the waiting writes in order; those after a failure stay (the failure is
        raised). How many were applied."""
        if not self.path.exists():
            return 0
        with self._locked() as handle:
            entries = [json.loads(line) for line in handle if line.strip()]
            applied = 0
            try:
                for entry in entries:
                    apply(entry)
                    applied += 1
            finally:
                handle.seek(0)
                handle.truncate()
                for entry in entries[applied:]:
                    handle.write(json.dumps(entry, default=str) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        return applied
