"""What a store written with schema 1 must look like once opened by this hvbench: the
checks shared by the SQLite and PostgreSQL migration tests."""

from __future__ import annotations

from hvbench.analysis import analyse
from hvbench.store import SCHEMA_VERSION, Store

#: the run in tests/data/store-v1.*.sql: native, sysbench-cpu, a warm-up and 2 reps
V1_RUN = "20261202-051809-bb22"


def check_upgraded_v1(store: Store) -> None:
    assert store.version() == SCHEMA_VERSION == 2
    [run] = store.list_runs()
    assert (run["id"], run["status"], run["trials"], run["failed"], run["ab"]) == \
        (V1_RUN, "complete", 2, 0, None)
    values = [row.value for row in store.samples(V1_RUN)]
    assert len(values) == 2 and all(v > 0 for v in values)
    [row] = analyse(store, V1_RUN).rows
    assert row.workload == "sysbench-cpu" and row.summaries["native"].n == 2
    # the new schema's columns work on the old history
    store.create_run("after-upgrade", {"platforms": [], "workloads": []}, [], {}, "t",
                     ab=("B", V1_RUN))
    listed = {r["id"]: r for r in store.list_runs(since="2026-12-02T05:18")}
    assert listed["after-upgrade"]["ab"] == {"side": "B", "partner": V1_RUN}
    assert V1_RUN in listed
    assert store.list_runs(since="2100-01-01") == []
