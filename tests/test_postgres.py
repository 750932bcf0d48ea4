"""A shared PostgreSQL store, on a real server of the tests' own: two campaigns writing
at once, the server stopped and restarted in the middle of a run (every sample
arrives, none twice), history copied from SQLite, and no password in any record,
message or log."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import HVBENCH, cli_env
from .postgres import Server, _bin, env_for, postgres
from .v1store import check_upgraded_v1

pytestmark = pytest.mark.slow

NATIVE = ["run", "--platform", "native", "--quiet", "--param", "sysbench-cpu.events=200"]


@pytest.fixture
def server() -> Iterator[Server]:
    with postgres() as started:
        yield started


def hvbench(server: Server, home: Path, *argv: str, timeout: float = 300
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HVBENCH, "--store", server.url, *argv], capture_output=True,
                          text=True, timeout=timeout,
                          env={**env_for(server), **_home(home)})


def _home(home: Path) -> dict[str, str]:
    return {k: v for k, v in cli_env(home).items() if k.startswith(("HVBENCH", "COLUMNS"))}


def test_two_campaigns_write_one_database_at_once(server: Server, hvbench_home: Path,
                                                  tmp_path: Path) -> None:
    runs = [subprocess.Popen(
        [*HVBENCH, "--store", server.url, *NATIVE, "--workload", "sysbench-cpu",
         "--reps", "3", "--no-warmup"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**env_for(server), **_home(tmp_path / f"home{i}")}) for i in range(2)]
    for process in runs:
        _out, errors = process.communicate(timeout=300)
        assert process.returncode == 0, errors
    assert server.sql("SELECT count(*) FROM runs WHERE status = 'complete'") == "2"
    per_run = server.sql("SELECT string_agg(n::text, ',') FROM (SELECT count(*) AS n FROM "
                         "trials WHERE NOT warmup GROUP BY run_id) c")
    assert per_run == "3,3"
    info = hvbench(server, hvbench_home, "store", "info")
    assert info.returncode == 0 and "runs: 2" in info.stdout
    assert server.password not in info.stdout + info.stderr


def test_server_stopped_mid_run_every_sample_arrives_once(server: Server,
                                                          hvbench_home: Path) -> None:
    reps = 6
    process = subprocess.Popen(
        [*HVBENCH, "--store", server.url, "run", "--platform", "native", "--quiet",
         "--workload", "stress-ng-syscall", "--param", "stress-ng-syscall.seconds=1",
         "--reps", str(reps)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**env_for(server), **_home(hvbench_home)})
    deadline = time.monotonic() + 120
    while server.sql("SELECT count(*) FROM trials WHERE NOT warmup", check=False) in (
            "", "0", "1"):  # nothing stored yet (or no tables yet)
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.2)
    server.stop()
    time.sleep(3.5)  # trials go on meanwhile, into the spool
    server.start()
    output, errors = process.communicate(timeout=300)
    assert process.returncode == 0, errors
    assert "is unreachable" in errors and server.password not in errors + output
    assert server.sql("SELECT count(*) FROM runs") == "1"
    counts = server.sql("SELECT count(*), count(DISTINCT seq) FROM trials WHERE NOT warmup")
    assert counts == f"{reps}|{reps}"  # every trial, none twice
    # each trial's samples arrived with it, once: every trial has the same number
    per_trial = server.sql("SELECT string_agg(DISTINCT n::text, ',') FROM (SELECT "
                           "count(s.id) AS n FROM trials t LEFT JOIN samples s ON "
                           "s.trial_id = t.id WHERE NOT t.warmup GROUP BY t.id) c")
    assert per_trial.isdigit() and int(per_trial) > 0, per_trial
    assert server.sql("SELECT status FROM runs") == "complete"
    assert all(not p.read_text().strip() for p in (hvbench_home / "spool").glob("*.jsonl"))


def test_history_copied_from_sqlite_and_passwords_never_recorded(
        server: Server, hvbench_home: Path, tmp_path: Path) -> None:
    env = {**env_for(server), **_home(hvbench_home)}
    local = subprocess.run([*HVBENCH, *NATIVE, "--workload", "sysbench-cpu", "--reps", "2"],
                           capture_output=True, text=True, env=env, timeout=300)
    assert local.returncode == 0, local.stderr
    sqlite_file = hvbench_home / "results.sqlite"
    copied = subprocess.run([*HVBENCH, "store", "copy", str(sqlite_file), server.url],
                            capture_output=True, text=True, env=env, timeout=120)
    assert copied.returncode == 0 and "copied 1 runs" in copied.stdout, copied.stderr
    again = subprocess.run([*HVBENCH, "store", "copy", str(sqlite_file), server.url],
                           capture_output=True, text=True, env=env, timeout=120)
    assert "copied 0 runs" in again.stdout and "1 already there" in again.stdout

    def samples(*store: str) -> list[tuple[str, float]]:
        exported = json.loads(subprocess.run(
            [*HVBENCH, *store, "export", "latest", "--json"], capture_output=True, text=True,
            env=env, check=True, timeout=120).stdout)
        return sorted((s["metric"], s["value"]) for s in exported["samples"])

    assert samples() == samples("--store", server.url) and samples()

    # a password written into the URL works, and is never kept or shown
    with_password = server.url.replace("hvb@", f"hvb:{server.password}@")
    campaign = tmp_path / "c.toml"
    campaign.write_text(f'store = "{with_password}"\nreps = 1\nplatforms = ["native"]\n'
                        '[[workloads]]\nname = "sysbench-cpu"\nparams = { events = 200 }\n')
    done = subprocess.run([*HVBENCH, "run", str(campaign), "--quiet"], capture_output=True,
                          text=True, env={**_home(hvbench_home)}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert server.password not in done.stdout + done.stderr
    recorded = server.sql("SELECT campaign || host FROM runs ORDER BY created DESC LIMIT 1")
    assert "hvb:***@127.0.0.1" in recorded and server.password not in recorded

    wrong = subprocess.run([*HVBENCH, "--store", server.url, "results"], capture_output=True,
                           text=True, env={**_home(hvbench_home), "PGPASSWORD": "wrong"},
                           timeout=60)
    assert wrong.returncode == 2 and "~/.pgpass or PGPASSWORD" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1
    server.stop()
    gone = hvbench(server, hvbench_home, "results", timeout=60)
    assert gone.returncode == 2 and "is unreachable" in gone.stderr
    assert len(gone.stderr.strip().splitlines()) == 1
    server.start()  # the fixture stops it


def test_a_version_1_database_is_upgraded_in_place(server: Server,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A database written by hvbench with schema 1 (pg_dump of a real run), loaded as the
    store's own user: opened, it is upgraded with its history intact and usable."""
    from hvbench.store import Store
    from hvbench.storeurl import configured

    server.sql("CREATE DATABASE old OWNER hvb")
    url = server.url.rsplit("/", 1)[0] + "/old"
    subprocess.run([_bin("psql"), "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f",
                    str(Path(__file__).parent / "data" / "store-v1.postgresql.sql")],
                   check=True, capture_output=True, env=env_for(server), timeout=60)
    monkeypatch.setenv("PGPASSWORD", server.password)
    check_upgraded_v1(Store(configured(url)))
    assert server.sql("SELECT indexname FROM pg_indexes WHERE tablename = 'runs' "
                      "AND indexname = 'ix_runs_created'", database="old") == "ix_runs_created"


def test_spool_entries_replay_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replaying an entry whose first attempt did reach the server writes nothing."""
    from hvbench.store import Store

    monkeypatch.setenv("HVBENCH_HOME", str(tmp_path))
    with postgres() as db:
        monkeypatch.setenv("PGPASSWORD", db.password)
        store = Store(db.url)
        store.create_run("r", {"platforms": []}, [], {}, "t")
        spec = {"seq": 0, "platform": "p", "workload": "w", "repetition": 1, "warmup": False}
        assert store.add_trial("r", spec, "ok", None, "2026-12-01T00:00:00", 1.0, {}, [])
        assert store.spool is not None
        store.spool.add({"op": "trial", "run_id": "r", "seq": 0, "platform": "p",
                         "workload": "w", "repetition": 1, "warmup": False, "status": "ok",
                         "reason": None, "started": "2026-12-01T00:00:00", "seconds": 1.0,
                         "metadata": "{}", "samples": []})
        assert store.flush() == 1 and store.spool.waiting() == 0
        assert db.sql("SELECT count(*) FROM trials") == "1"
