"""The result store: every run, trial and raw sample, written as it is produced.

SQLite under ``$HVBENCH_HOME`` by default (WAL mode, so a reader never blocks a
writer and two concurrent runs do not corrupt it); any SQLAlchemy URL works.
Each sample is committed in its own transaction: a crash loses nothing. The
schema is versioned; ``MIGRATIONS`` upgrades older stores in place.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from .errors import StoreError, UsageError
from .workloads.base import Sample

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version", metadata, sa.Column("version", sa.Integer, nullable=False)
)
runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("created", sa.String(40), nullable=False),
    sa.Column("finished", sa.String(40)),
    sa.Column("status", sa.String(20), nullable=False),  # running|interrupted|complete
    sa.Column("hvbench_version", sa.String(40), nullable=False),
    sa.Column("fingerprint", sa.String(64)),
    sa.Column("campaign", sa.Text, nullable=False),  # JSON
    sa.Column("plan", sa.Text, nullable=False),  # JSON list of trial specs
    sa.Column("host", sa.Text, nullable=False),  # JSON metadata
)
run_platforms = sa.Table(
    "run_platforms", metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("platform", sa.String(64), primary_key=True),
    sa.Column("info", sa.Text, nullable=False),  # JSON: settings + machine metadata
)
trials = sa.Table(
    "trials", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("platform", sa.String(64), nullable=False),
    sa.Column("workload", sa.String(64), nullable=False),
    sa.Column("repetition", sa.Integer, nullable=False),
    sa.Column("warmup", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # ok|failed|timeout|skipped
    sa.Column("reason", sa.Text),
    sa.Column("started", sa.String(40), nullable=False),
    sa.Column("seconds", sa.Float),
    sa.Column("metadata", sa.Text, nullable=False),  # JSON
)
samples = sa.Table(
    "samples", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("trial_id", sa.Integer, sa.ForeignKey("trials.id"), nullable=False, index=True),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("unit", sa.String(32), nullable=False),
    sa.Column("higher_is_better", sa.Boolean, nullable=False),
    sa.Column("metadata", sa.Text, nullable=False),
)

SCHEMA_VERSION = 1

#: version N -> function upgrading a store from N to N + 1
MIGRATIONS: dict[int, Callable[[Connection], None]] = {}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_run_id() -> str:
    """Sortable, unique, short: 20261125-131204-3fa9."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class RunRecord:
    id: str
    created: str
    finished: str | None
    status: str
    hvbench_version: str
    fingerprint: str | None
    campaign: dict[str, Any]
    plan: list[dict[str, Any]]
    host: dict[str, Any]


@dataclass(frozen=True)
class SampleRow:
    """A sample joined with its trial: the unit the statistics work on."""

    trial_id: int
    seq: int
    platform: str
    workload: str
    repetition: int
    metric: str
    value: float
    unit: str
    higher_is_better: bool
    metadata: dict[str, Any]


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={int(BUSY_SECONDS * 1000)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


#: how long a write waits for another process's transaction (two runs share a store)
BUSY_SECONDS = 30.0
#: free space the store needs to go on (a trial is kilobytes; SQLite's WAL and its
#: checkpoints need room for a few pages more)
NEEDED_FREE = 16 << 20


def _free_space(where: str) -> str:
    folder = Path(where).parent
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return ""
    return (f" ({usage.free / 2**20:.1f} MiB free of {usage.total / 2**20:.0f} MiB in "
            f"{folder}; hvbench needs at least {NEEDED_FREE >> 20} MiB there)")


def _explain(exc: Exception, where: str) -> StoreError:
    """One line naming the store, what is wrong with it and what to do."""
    text = str(getattr(exc, "orig", exc))
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


class Store:
    """Runs, trials and samples in SQLite (default) or any SQLAlchemy URL."""

    def __init__(self, url_or_path: str | Path):
        target = str(url_or_path)
        if "://" not in target:
            path = Path(target)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"cannot create the store directory {path.parent}: "
                                 f"{exc.strerror}; set HVBENCH_HOME to a writable place") from None
            target = f"sqlite:///{path}"
        self.where = target.removeprefix("sqlite:///")
        self.engine: Engine = sa.create_engine(target)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            self._migrate()
        except (OperationalError, DBAPIError) as exc:
            raise _explain(exc, self.where) from None

    # -- schema ---------------------------------------------------------------
    def _migrate(self) -> None:
        with self._connection(write=True) as connection:
            metadata.create_all(connection, checkfirst=True)
            current = connection.execute(sa.select(schema_version.c.version)).scalar()
            if current is None:
                connection.execute(schema_version.insert().values(version=SCHEMA_VERSION))
                return
            if current > SCHEMA_VERSION:
                raise StoreError(f"the result store at {self.where} has schema version "
                                 f"{current}, newer than this hvbench ({SCHEMA_VERSION}); "
                                 "upgrade hvbench")
            while current < SCHEMA_VERSION:
                MIGRATIONS[current](connection)
                current += 1
                connection.execute(schema_version.update().values(version=current))

    def version(self) -> int:
        with self._connection() as connection:
            return int(connection.execute(sa.select(schema_version.c.version)).scalar_one())

    def _write(self, statement: Any) -> Any:
        with self._connection(write=True) as connection:
            return connection.execute(statement)

    @contextlib.contextmanager
    def _connection(self, write: bool = False) -> Iterator[Connection]:
        """A connection (one transaction when writing); a failure of the database or
        its disk becomes one line that names the store and the fix."""
        try:
            with (self.engine.begin() if write else self.engine.connect()) as connection:
                yield connection
        except (OperationalError, DBAPIError) as exc:
            raise _explain(exc, self.where) from None

    # -- runs -----------------------------------------------------------------
    def create_run(self, run_id: str, campaign: dict[str, Any], plan: list[dict[str, Any]],
                   host: dict[str, Any], hvbench_version: str) -> None:
        self._write(runs.insert().values(
            id=run_id, created=now(), status="running", hvbench_version=hvbench_version,
            fingerprint=host.get("fingerprint"), campaign=json.dumps(campaign),
            plan=json.dumps(plan), host=json.dumps(host),
        ))

    def set_status(self, run_id: str, status: str) -> None:
        finished = now() if status != "running" else None
        self._write(runs.update().where(runs.c.id == run_id)
                    .values(status=status, finished=finished))

    def set_platform_info(self, run_id: str, platform: str, info: dict[str, Any]) -> None:
        with self._connection(write=True) as connection:
            connection.execute(run_platforms.delete().where(
                (run_platforms.c.run_id == run_id) & (run_platforms.c.platform == platform)))
            connection.execute(run_platforms.insert().values(
                run_id=run_id, platform=platform, info=json.dumps(info, default=str)))

    def platform_info(self, run_id: str) -> dict[str, dict[str, Any]]:
        with self._connection() as connection:
            rows = connection.execute(sa.select(run_platforms).where(
                run_platforms.c.run_id == run_id)).all()
        return {row.platform: json.loads(row.info) for row in rows}

    def resolve(self, run: str) -> str:
        """A run id from an id, a unique id prefix, or 'latest'."""
        with self._connection() as connection:
            if run == "latest":
                found = connection.execute(
                    sa.select(runs.c.id).order_by(runs.c.created.desc(), runs.c.id.desc())
                    .limit(1)).scalar()
                if found is None:
                    raise UsageError("the store has no runs yet; start one with 'hvbench run'")
                return str(found)
            matches = connection.execute(
                sa.select(runs.c.id).where(runs.c.id.startswith(run, autoescape=True))
            ).scalars().all()
        if len(matches) == 1:
            return str(matches[0])
        if not matches:
            raise UsageError(f"no run {run!r} in the store; list runs with 'hvbench results'")
        raise UsageError(f"run {run!r} is ambiguous ({len(matches)} runs match); "
                         "give more of the id")

    def run(self, run_id: str) -> RunRecord:
        with self._connection() as connection:
            row = connection.execute(sa.select(runs).where(runs.c.id == run_id)).one_or_none()
        if row is None:
            raise UsageError(f"no run {run_id!r} in the store")
        return RunRecord(row.id, row.created, row.finished, row.status, row.hvbench_version,
                         row.fingerprint, json.loads(row.campaign), json.loads(row.plan),
                         json.loads(row.host))

    def list_runs(self) -> list[dict[str, Any]]:
        counts = (
            sa.select(trials.c.run_id,
                      sa.func.count().label("trials"),
                      sa.func.sum(sa.case((trials.c.status != "ok", 1), else_=0))
                      .label("failed"))
            .where(trials.c.warmup.is_(False) & (trials.c.status != "skipped"))
            .group_by(trials.c.run_id).subquery()
        )
        query = (sa.select(runs.c.id, runs.c.created, runs.c.status, runs.c.campaign,
                           counts.c.trials, counts.c.failed)
                 .select_from(runs.outerjoin(counts, counts.c.run_id == runs.c.id))
                 .order_by(runs.c.created, runs.c.id))
        with self._connection() as connection:
            rows = connection.execute(query).all()
        listing = []
        for row in rows:
            campaign = json.loads(row.campaign)
            listing.append({
                "id": row.id, "created": row.created, "status": row.status,
                "platforms": [p["name"] for p in campaign.get("platforms", [])],
                "workloads": [w["name"] for w in campaign.get("workloads", [])],
                "trials": row.trials or 0, "failed": row.failed or 0,
            })
        return listing

    # -- trials and samples -----------------------------------------------------
    def add_trial(self, run_id: str, spec: dict[str, Any], status: str, reason: str | None,
                  started: str, seconds: float | None, trial_metadata: dict[str, Any],
                  measured: list[Sample]) -> int:
        """Record one trial and its samples atomically (all or nothing)."""
        with self._connection(write=True) as connection:
            result = connection.execute(trials.insert().values(
                run_id=run_id, seq=spec["seq"], platform=spec["platform"],
                workload=spec["workload"], repetition=spec["repetition"],
                warmup=spec["warmup"], status=status, reason=reason, started=started,
                seconds=seconds, metadata=json.dumps(trial_metadata, default=str),
            ))
            key = result.inserted_primary_key
            assert key is not None  # an insert into a table with a primary key
            trial_id = int(key[0])
            if measured:
                connection.execute(samples.insert(), [
                    {"trial_id": trial_id, "metric": s.metric, "value": s.value,
                     "unit": s.unit, "higher_is_better": s.higher_is_better,
                     "metadata": json.dumps(s.metadata, default=str)}
                    for s in measured
                ])
        return trial_id

    def done_seqs(self, run_id: str) -> set[int]:
        """Plan positions already executed (ok or failed): skipped on resume."""
        with self._connection() as connection:
            return set(connection.execute(
                sa.select(trials.c.seq).where(trials.c.run_id == run_id)).scalars())

    def trials(self, run_id: str) -> list[dict[str, Any]]:
        with self._connection() as connection:
            rows = connection.execute(sa.select(trials).where(trials.c.run_id == run_id)
                                      .order_by(trials.c.id)).all()
        return [{**row._asdict(), "metadata": json.loads(row.metadata)} for row in rows]

    def samples(self, run_id: str, include_warmup: bool = False) -> list[SampleRow]:
        query = (sa.select(trials.c.id, trials.c.seq, trials.c.platform, trials.c.workload,
                           trials.c.repetition, samples.c.metric, samples.c.value,
                           samples.c.unit, samples.c.higher_is_better, samples.c.metadata)
                 .select_from(samples.join(trials, samples.c.trial_id == trials.c.id))
                 .where(trials.c.run_id == run_id).order_by(trials.c.seq, samples.c.id))
        if not include_warmup:
            query = query.where(trials.c.warmup.is_(False))
        with self._connection() as connection:
            rows = connection.execute(query).all()
        return [SampleRow(r[0], r.seq, r.platform, r.workload, r.repetition, r.metric,
                          r.value, r.unit, bool(r.higher_is_better), json.loads(r.metadata))
                for r in rows]

    def iter_export(self, run_id: str) -> Iterator[dict[str, Any]]:
        for row in self.samples(run_id):
            yield {"run": run_id, "platform": row.platform, "workload": row.workload,
                   "repetition": row.repetition, "metric": row.metric, "value": row.value,
                   "unit": row.unit, "higher_is_better": row.higher_is_better,
                   "metadata": row.metadata}
