"""Where the result store is, and what to say when it fails.

The store is SQLite under ``$HVBENCH_HOME`` unless ``--store``, ``HVBENCH_STORE`` or
a campaign's ``store`` names another: a path, or a database URL such as
``postgresql://hvbench@db.example/hvbench`` (psycopg 3; the password comes from
libpq's usual places: ``~/.pgpass``, ``PGPASSWORD``, a service file). A password
written into the URL is accepted but never shown: every message and record uses
the URL with the password masked.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError

from .errors import StoreError, UsageError
from .paths import database_path

#: how long a write waits for another process's transaction (two runs share a store)
BUSY_SECONDS = 30.0
#: free space a SQLite store needs to go on (a trial is kilobytes; SQLite's WAL and
#: its checkpoints need room for a few pages more)
NEEDED_FREE = 16 << 20


def configured(explicit: str | None = None) -> str:
    """The store to use: ``explicit`` (--store, a campaign's), else HVBENCH_STORE, else
    the SQLite file under HVBENCH_HOME."""
    return explicit or os.environ.get("HVBENCH_STORE") or str(database_path())


def engine_url(target: str) -> sa.URL:
    """A SQLAlchemy URL for a path or a URL; PostgreSQL goes through psycopg 3."""
    if "://" not in target:
        return sa.URL.create("sqlite", database=str(Path(target)))
    try:
        url = sa.make_url(target)
    except ArgumentError:
        raise UsageError(f"the store {masked(target)} is not a database URL (e.g. "
                         "postgresql://user@host/db) or a file path") from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if not url.drivername.startswith(("sqlite", "postgresql")):
        raise UsageError(f"the store {masked(target)}: only SQLite files and PostgreSQL "
                         "(postgresql://...) are supported")
    return url


def masked(target: str) -> str:
    """The store as it may be shown and recorded: a password replaced by ***."""
    if "://" not in target:
        return target
    try:
        return sa.make_url(target).render_as_string(hide_password=True)
    except ArgumentError:
        return target.split("://", 1)[0] + "://..."


def _free_space(where: str) -> str:
    folder = Path(where).parent
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return ""
    return (f" ({usage.free / 2**20:.1f} MiB free of {usage.total / 2**20:.0f} MiB in "
            f"{folder}; hvbench needs at least {NEEDED_FREE >> 20} MiB there)")


def explain(exc: Exception, where: str, server: bool) -> StoreError:
    """One line naming the store, what is wrong with it and what to do."""
    text = " ".join(str(getattr(exc, "orig", exc)).split())
    if server:
        if "password" in text or "authentication" in text:
            return StoreError(f"the result store {where} refused the login ({text[:200]}): "
                              "put the password in ~/.pgpass or PGPASSWORD")
        return StoreError(f"the result store {where} is unreachable or failed: {text[:300]}")
    if "disk is full" in text or "No space left" in text:
        return StoreError(f"the result store {where} is on a full disk{_free_space(where)}: "
                          "free space (or point HVBENCH_HOME elsewhere)")
    if "readonly" in text or "read-only" in text or (
            "unable to open" in text and not os.access(Path(where).parent, os.W_OK)):
        return StoreError(f"the result store {where} is read-only (the file or its file "
                          "system): make it writable, or point HVBENCH_HOME elsewhere")
    if "not a database" in text or "malformed" in text:
        return StoreError(f"the result store {where} is not a readable SQLite database "
                          f"({text}); hvbench leaves it untouched: move it away to start "
                          "a new store, or restore it from a backup")
    if "locked" in text:
        return StoreError(f"the result store {where} stayed locked for {BUSY_SECONDS:g} s "
                          "by another process: wait for it (another hvbench?) or use "
                          "another HVBENCH_HOME")
    return StoreError(f"result store error at {where}: {text}")
