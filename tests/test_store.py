"""The SQLite store: round trips, migrations, concurrent writers, bad places."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from hvbench import store as store_mod
from hvbench import storeurl
from hvbench.errors import StoreError, UsageError
from hvbench.store import Store
from hvbench.workloads.base import Sample

from .v1store import check_upgraded_v1

DATA = Path(__file__).parent / "data"


def _spec(seq: int, warmup: bool = False) -> dict:
    return {"seq": seq, "platform": "native", "workload": "sysbench-cpu",
            "repetition": -1 if warmup else seq, "warmup": warmup}


def _fill(path: str, run_id: str, count: int) -> None:
    store = Store(path)
    store.create_run(run_id, {"platforms": [{"name": "native"}], "workloads": []}, [], {}, "t")
    for seq in range(count):
        store.add_trial(run_id, _spec(seq), "ok", None, store_mod.now(), 0.1, {},
                        [Sample("events-per-second", float(seq), "events/s", True)])
    store.set_status(run_id, "complete")


def test_round_trip_keeps_every_sample(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.sqlite")
    store.create_run("r1", {"platforms": [{"name": "native"}], "workloads": [
        {"name": "sysbench-cpu"}]}, [_spec(0, True), _spec(1)], {"fingerprint": "f"}, "t")
    store.add_trial("r1", _spec(0, True), "ok", None, store_mod.now(), 0.1, {},
                    [Sample("events-per-second", 1.0, "events/s", True)])
    store.add_trial("r1", _spec(1), "ok", None, store_mod.now(), 0.1, {"argv": ["x"]},
                    [Sample("events-per-second", 2.5, "events/s", True, {"k": 1})])
    store.add_trial("r1", _spec(2), "failed", "boom", store_mod.now(), None, {}, [])
    assert [r.value for r in store.samples("r1")] == [2.5]
    assert [r.value for r in store.samples("r1", include_warmup=True)] == [1.0, 2.5]
    assert store.samples("r1")[0].metadata == {"k": 1}
    assert store.done_seqs("r1") == {0, 1, 2}
    listing = store.list_runs()
    assert listing[0]["trials"] == 2 and listing[0]["failed"] == 1
    assert store.resolve("latest") == "r1"
    assert store.resolve("r") == "r1"
    with pytest.raises(UsageError, match="no run"):
        store.resolve("zzz")


def test_two_concurrent_writers_do_not_corrupt(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    Store(path)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_fill, args=(path, f"run{i}", 200)) for i in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    store = Store(path)
    for i in range(2):
        assert sorted(r.value for r in store.samples(f"run{i}")) == [float(x) for x in
                                                                      range(200)]
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"


def test_a_version_1_store_is_upgraded_in_place(tmp_path: Path) -> None:
    """A store written by hvbench with schema 1 (a real run, dumped): opened, it is
    upgraded to the current schema with its history intact and usable."""
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as old:
        old.executescript((DATA / "store-v1.sqlite.sql").read_text())
    check_upgraded_v1(Store(path))
    with sqlite3.connect(path) as upgraded:
        indexes = [row[1] for row in upgraded.execute("PRAGMA index_list(runs)")]
    assert "ix_runs_created" in indexes


def test_newer_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    store = Store(path)
    with store.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="newer than this hvbench"):
        Store(path)


def test_unwritable_home_is_a_usage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(UsageError, match="HVBENCH_HOME"):
        Store(blocker / "sub" / "r.sqlite")


def test_a_store_locked_by_another_process_is_one_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process holds a write transaction past the busy timeout: the write
    fails with a message naming the store; nothing it committed before is lost."""
    import contextlib
    import sqlite3

    monkeypatch.setattr(storeurl, "BUSY_SECONDS", 0.5)
    path = tmp_path / "results.sqlite"
    store = Store(path)
    store.create_run("run-1", {"platforms": []}, [], {}, "test")
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreError, match=f"the result store {path} stayed locked for "
                                             "0.5 s by another process"):
            store.set_status("run-1", "complete")
        other.execute("ROLLBACK")
    assert store.run("run-1").status == "running"
