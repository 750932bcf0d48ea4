"""The result store: every run, trial and raw sample, written as it is produced.

SQLite under ``$HVBENCH_HOME`` by default (WAL mode, so a reader never blocks a
writer and two concurrent runs do not corrupt it), or a shared PostgreSQL database
that many hvbench processes write at once (``storeurl.py``). Each trial and its
samples are committed in one transaction: a crash loses nothing, and writes a
server could not take wait in a local spool (``spool.py``). The schema is
versioned; ``MIGRATIONS`` upgrades older stores in place.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from . import storeurl
from .errors import StoreError, UsageError
from .hosts.spec import HostSpec, recorded_host
from .spool import Spool
from .storeurl import engine_url, explain, masked
from .workloads.base import Sample

metadata = sa.MetaData()

#: the PostgreSQL advisory lock that serialises schema creation and migrations
_SCHEMA_LOCK = 0x68766265  # "hvbe"
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
    # schema 2: a run measured by 'hvbench ab' is side A or B of a pair
    sa.Column("ab_side", sa.String(1)),
    sa.Column("ab_partner", sa.String(64)),
    sa.Index("ix_runs_created", "created"),  # 'results --since', 'trend' on long histories
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

SCHEMA_VERSION = 2
#: seconds to wait for a database server to accept a connection
CONNECT_SECONDS = 10


class StoreUnreachable(StoreError):
    """A database server cannot be reached (down, restarting, network): writes go to
    the spool until it is back."""



def _v1_to_v2(connection: Connection) -> None:
    """The pair of an 'hvbench ab', and an index for histories listed by date."""
    connection.exec_driver_sql("ALTER TABLE runs ADD COLUMN ab_side VARCHAR(1)")
    connection.exec_driver_sql("ALTER TABLE runs ADD COLUMN ab_partner VARCHAR(64)")
    connection.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_runs_created ON runs (created)")


#: version N -> function upgrading a store from N to N + 1 (plain SQL that SQLite and
#: PostgreSQL both take)
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _v1_to_v2}


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
    cursor.execute(f"PRAGMA busy_timeout={int(storeurl.BUSY_SECONDS * 1000)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _hosts_of(campaign: dict[str, Any]) -> dict[str, str]:
    """Every name a run's hosts go by (as written, and short) -> the short name."""
    found: dict[str, str] = {}
    for platform in campaign.get("platforms", []):
        text = recorded_host(campaign, platform)
        try:
            tag = HostSpec.parse(text).tag
        except UsageError:  # recorded by an older hvbench in another form
            tag = text
        found[text] = found[tag] = tag
    return found


class Store:
    """Runs, trials and samples in SQLite (default) or any SQLAlchemy URL."""

    def __init__(self, url_or_path: str | Path):
        target = str(url_or_path)
        url = engine_url(target)
        self.server = url.get_backend_name() == "postgresql"
        self.where = masked(target)
        if not self.server:
            path = Path(url.database or "")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"cannot create the store directory {path.parent}: "
                                 f"{exc.strerror}; set HVBENCH_HOME to a writable place") from None
        # a server's connections are checked before use: one that died with a restart of
        # the server is replaced instead of failing the next write
        self.engine: Engine = sa.create_engine(
            url, pool_pre_ping=self.server,
            connect_args={"connect_timeout": CONNECT_SECONDS} if self.server else {})
        if not self.server:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        #: writes a server could not take, until it is back (None: a local file)
        self.spool = Spool(self.where) if self.server else None
        try:
            self._migrate()
        except (OperationalError, DBAPIError) as exc:
            raise explain(exc, self.where, self.server) from None

    # -- schema ---------------------------------------------------------------
    def _migrate(self) -> None:
        with self.connection(write=True) as connection:
            if self.server:  # two hvbench starting at once on an empty database: one
                # creates the tables, the other waits for it (else both CREATE and one fails)
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                                   {"key": _SCHEMA_LOCK})
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
        with self.connection() as connection:
            return int(connection.execute(sa.select(schema_version.c.version)).scalar_one())

    def _write(self, statement: Any) -> Any:
        with self.connection(write=True) as connection:
            return connection.execute(statement)

    @contextlib.contextmanager
    def connection(self, write: bool = False) -> Iterator[Connection]:
        """A connection (one transaction when writing); a failure of the database or
        its disk becomes one line that names the store and the fix."""
        try:
            with (self.engine.begin() if write else self.engine.connect()) as connection:
                yield connection
        except OperationalError as exc:
            problem = explain(exc, self.where, self.server)
            raise (StoreUnreachable(str(problem)) if self.server else problem) from None
        except DBAPIError as exc:
            raise explain(exc, self.where, self.server) from None

    # -- runs -----------------------------------------------------------------
    def create_run(self, run_id: str, campaign: dict[str, Any], plan: list[dict[str, Any]],
                   host: dict[str, Any], hvbench_version: str,
                   ab: tuple[str, str] | None = None) -> None:
        """A new run; ``ab``: (its side, the other side's run) when 'hvbench ab' made it."""
        self._write(runs.insert().values(
            id=run_id, created=now(), status="running", hvbench_version=hvbench_version,
            fingerprint=host.get("fingerprint"), campaign=json.dumps(campaign),
            plan=json.dumps(plan), host=json.dumps(host),
            ab_side=ab[0] if ab else None, ab_partner=ab[1] if ab else None,
        ))

    def set_status(self, run_id: str, status: str) -> None:
        finished = now() if status != "running" else None
        self._write_or_spool({"op": "status", "run_id": run_id, "status": status,
                              "finished": finished})

    def set_platform_info(self, run_id: str, platform: str, info: dict[str, Any]) -> None:
        self._write_or_spool({"op": "platform_info", "run_id": run_id, "platform": platform,
                              "info": json.dumps(info, default=str)})

    def platform_info(self, run_id: str) -> dict[str, dict[str, Any]]:
        with self.connection() as connection:
            rows = connection.execute(sa.select(run_platforms).where(
                run_platforms.c.run_id == run_id)).all()
        return {row.platform: json.loads(row.info) for row in rows}

    def resolve(self, run: str) -> str:
        """A run id from an id, a unique id prefix, or 'latest'."""
        with self.connection() as connection:
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
        with self.connection() as connection:
            row = connection.execute(sa.select(runs).where(runs.c.id == run_id)).one_or_none()
        if row is None:
            raise UsageError(f"no run {run_id!r} in the store")
        return RunRecord(row.id, row.created, row.finished, row.status, row.hvbench_version,
                         row.fingerprint, json.loads(row.campaign), json.loads(row.plan),
                         json.loads(row.host))

    def list_runs(self, host: str | None = None, since: str | None = None
                  ) -> list[dict[str, Any]]:
        """Every run (oldest first), or those measured on ``host`` (as written, or its
        short name: an inventory name, a host:port) created at or after ``since``."""
        counts = (
            sa.select(trials.c.run_id,
                      sa.func.count().label("trials"),
                      sa.func.sum(sa.case((trials.c.status != "ok", 1), else_=0))
                      .label("failed"))
            .where(trials.c.warmup.is_(False) & (trials.c.status != "skipped"))
            .group_by(trials.c.run_id).subquery()
        )
        query = (sa.select(runs.c.id, runs.c.created, runs.c.status, runs.c.campaign,
                           runs.c.ab_side, runs.c.ab_partner, counts.c.trials, counts.c.failed)
                 .select_from(runs.outerjoin(counts, counts.c.run_id == runs.c.id))
                 .order_by(runs.c.created, runs.c.id))
        if since is not None:
            query = query.where(runs.c.created >= since)
        with self.connection() as connection:
            rows = connection.execute(query).all()
        listing = []
        for row in rows:
            campaign = json.loads(row.campaign)
            hosts = _hosts_of(campaign)
            if host is not None and host not in hosts:
                continue
            listing.append({
                "id": row.id, "created": row.created, "status": row.status,
                "platforms": [p["name"] for p in campaign.get("platforms", [])],
                "workloads": [w["name"] for w in campaign.get("workloads", [])],
                "trials": row.trials or 0, "failed": row.failed or 0,
                "hosts": sorted(set(hosts.values())),
                "ab": {"side": row.ab_side, "partner": row.ab_partner} if row.ab_side else None,
            })
        return listing

    # -- trials and samples -----------------------------------------------------
    def add_trial(self, run_id: str, spec: dict[str, Any], status: str, reason: str | None,
                  started: str, seconds: float | None, trial_metadata: dict[str, Any],
                  measured: list[Sample]) -> int | None:
        """Record one trial and its samples atomically (all or nothing); its id, or None
        when an unreachable server's spool keeps it for now."""
        return self._write_or_spool({
            "op": "trial", "run_id": run_id, "seq": spec["seq"], "platform": spec["platform"],
            "workload": spec["workload"], "repetition": spec["repetition"],
            "warmup": spec["warmup"], "status": status, "reason": reason,
            "started": started, "seconds": seconds,
            "metadata": json.dumps(trial_metadata, default=str),
            "samples": [{"metric": s.metric, "value": s.value, "unit": s.unit,
                         "higher_is_better": s.higher_is_better,
                         "metadata": json.dumps(s.metadata, default=str)} for s in measured]})

    # -- writes, and the spool that keeps them while a server is away -------------------
    def _write_or_spool(self, entry: dict[str, Any]) -> Any:
        """Apply one write; on a server that cannot be reached, keep it in the spool
        (with everything still waiting there before it, so the order holds)."""
        if self.spool is None:
            with self.connection(write=True) as connection:
                return _apply(connection, entry)
        try:
            self.flush()
            with self.connection(write=True) as connection:
                return _apply(connection, entry)
        except StoreUnreachable:
            self.spool.add(entry)
            return None

    def flush(self) -> int:
        """Write what the spool kept while the server was away; how many writes."""
        if self.spool is None or not self.spool.waiting():
            return 0

        def one(entry: dict[str, Any]) -> None:
            with self.connection(write=True) as connection:
                _apply(connection, entry)

        return self.spool.drain(one)

    def done_seqs(self, run_id: str) -> set[int]:
        """Plan positions already executed (ok or failed): skipped on resume."""
        with self.connection() as connection:
            return set(connection.execute(
                sa.select(trials.c.seq).where(trials.c.run_id == run_id)).scalars())

    def trials(self, run_id: str) -> list[dict[str, Any]]:
        with self.connection() as connection:
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
        with self.connection() as connection:
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


def _apply(connection: Connection, entry: dict[str, Any]) -> Any:
    """One write, the same whether made at once or replayed from the spool: a trial
    already stored (a first attempt that did reach the server) is not stored again."""
    op = entry["op"]
    if op == "status":
        connection.execute(runs.update().where(runs.c.id == entry["run_id"]).values(
            status=entry["status"], finished=entry["finished"]))
        return None
    if op == "platform_info":
        where = (run_platforms.c.run_id == entry["run_id"]) & (
            run_platforms.c.platform == entry["platform"])
        connection.execute(run_platforms.delete().where(where))
        connection.execute(run_platforms.insert().values(
            run_id=entry["run_id"], platform=entry["platform"], info=entry["info"]))
        return None
    assert op == "trial", op
    existing = connection.execute(sa.select(trials.c.id).where(
        (trials.c.run_id == entry["run_id"]) & (trials.c.seq == entry["seq"])
        & (trials.c.started == entry["started"]))).scalar()
    if existing is not None:
        return int(existing)
    columns = ("run_id", "seq", "platform", "workload", "repetition", "warmup", "status",
               "reason", "started", "seconds", "metadata")
    result = connection.execute(trials.insert().values(**{k: entry[k] for k in columns}))
    key = result.inserted_primary_key
    assert key is not None  # an insert into a table with a primary key
    trial_id = int(key[0])
    if entry["samples"]:
        connection.execute(samples.insert(), [{"trial_id": trial_id, **sample}
                                              for sample in entry["samples"]])
    return trial_id
