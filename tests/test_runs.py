"""Real runs end to end: native workloads, failures, Ctrl-C, resume, disk full."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hvbench.campaign import from_mapping
from hvbench.progress import QuietReporter
from hvbench.runner import Runner
from hvbench.store import Store

from .conftest import HVBENCH, cli_env, stored_trials, tagged_processes, with_ctrl_c

FAST = {"sysbench-cpu": {"events": 300}}


@contextlib.contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A small tmpfs of our own at ``where`` (root only), lazily unmounted at the end:
    a failed assertion may leave a file open on it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                   check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def _processes(name: str, home: Path | None = None) -> list[int]:
    return tagged_processes(name, home)


def test_runner_stores_every_measured_sample(hvbench_home: Path) -> None:
    campaign = from_mapping({"platforms": ["native", {"name": "again", "kind": "native"}],
                             "workloads": [{"name": "sysbench-cpu", "params": FAST[
                                 "sysbench-cpu"]}], "reps": 3, "seed": 5})
    store = Store(hvbench_home / "r.sqlite")
    outcome = Runner(store, QuietReporter()).start(campaign)
    assert outcome.failed == 0 and outcome.trials == 6
    rows = store.samples(outcome.run_id)
    assert len(rows) == 6
    assert {r.platform for r in rows} == {"native", "again"}
    assert all(r.value > 0 for r in rows)
    record = store.run(outcome.run_id)
    assert record.status == "complete"
    assert record.host["fingerprint"] and record.host["kernel"]
    info = store.platform_info(outcome.run_id)["native"]
    assert info["system"]["tool_versions"]["sysbench"].startswith("sysbench 1.0")
    # the kernel, the tools' own versions and their packages' come in one batch
    assert info["system"]["tool_versions"]["deb:sysbench"].startswith("1.0")
    assert info["system"]["kernel"].startswith("Linux ")
    trials = store.trials(outcome.run_id)
    assert sum(t["warmup"] for t in trials) == 2
    assert trials[0]["metadata"]["argv"][0][:2] == ["sysbench", "cpu"]


def test_failed_trial_is_recorded_and_the_run_goes_on(hvbench_home: Path) -> None:
    campaign = from_mapping({
        "platforms": ["native"], "reps": 1, "warmup": False, "timeout": 2,
        "workloads": [{"name": "stress-ng-cpu", "params": {"seconds": 30}},
                      {"name": "sysbench-cpu", "params": FAST["sysbench-cpu"]}]})
    store = Store(hvbench_home / "r.sqlite")
    started = time.monotonic()
    outcome = Runner(store, QuietReporter()).start(campaign)
    assert time.monotonic() - started < 25
    assert outcome.failed == 1
    trials = store.trials(outcome.run_id)
    assert trials[0]["status"] == "timeout" and "time limit" in trials[0]["reason"]
    assert trials[1]["status"] == "ok"
    assert [r.workload for r in store.samples(outcome.run_id)] == ["sysbench-cpu"]
    assert _processes("stress-ng", hvbench_home) == []


def test_fio_on_a_full_disk_fails_the_trial_not_the_run(hvbench_home: Path,
                                                         tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "tiny", "2m") as mountpoint:
        campaign = from_mapping({
            "platforms": [{"name": "native", "settings": {"scratch": str(mountpoint)}}],
            "reps": 1, "warmup": False,
            "workloads": [{"name": "fio-seqwrite", "params": {"size": "64M", "runtime": 1}},
                          {"name": "sysbench-cpu", "params": FAST["sysbench-cpu"]}]})
        store = Store(hvbench_home / "r.sqlite")
        outcome = Runner(store, QuietReporter()).start(campaign)
        trials = store.trials(outcome.run_id)
        assert trials[0]["status"] == "failed"
        assert "fio-seqwrite" in trials[0]["reason"]
        assert trials[1]["status"] == "ok"
        assert os.listdir(mountpoint) == []  # the scratch dir was removed


def test_store_on_a_full_disk_is_one_clear_line(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "home", "1m") as home:
        _fill(home)
        done = subprocess.run([*HVBENCH, "run", "--platform", "native", "--workload",
                               "sysbench-cpu", "--quiet", "--param", "sysbench-cpu.events=300"],
                              capture_output=True, text=True, env=cli_env(home), timeout=120,
                              check=False)
        assert done.returncode in (1, 2), done.stderr
        assert "Traceback" not in done.stderr
        assert "full disk" in done.stderr or "No space left" in done.stderr
        assert len(done.stderr.strip().splitlines()) <= 2


def _fill(folder: Path) -> Path:
    """Fill the file system holding ``folder``; the filler file."""
    filler = folder / "filler"
    with filler.open("wb") as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()
    return filler


def _values(database: Path, run_id: str) -> list[tuple[int, float]]:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)
                            ) as connection:
        return connection.execute(
            "SELECT t.seq, s.value FROM samples s JOIN trials t ON s.trial_id = t.id "
            "WHERE t.run_id = ? AND t.warmup = 0 ORDER BY t.id, s.id", (run_id,)).fetchall()


@pytest.mark.slow
def test_store_disk_full_mid_run_then_read_only_then_resume(tmp_path: Path) -> None:
    """The store's disk fills up during a run: one line naming the file, the free space,
    the need and the resume command (exit 2); a read-only store is refused the same way;
    once fixed, --resume completes the run with the earlier trials untouched."""
    with _tmpfs(tmp_path / "home", "6m") as home:
        env = cli_env(home)
        process = subprocess.Popen(
            [*HVBENCH, "run", "--platform", "native", "--workload", "stress-ng-cpu",
             "--reps", "8", "--quiet", "--param", "stress-ng-cpu.seconds=1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        database = home / "results.sqlite"
        assert stored_trials(database, 2, seconds=90) >= 2, "the run never got going"
        filler = _fill(home)
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 2, stderr
        errors = [line for line in stderr.splitlines() if line.startswith("hvbench: error:")]
        assert "Traceback" not in stderr and len(errors) == 1, stderr
        assert f"the result store {database} is on a full disk" in stderr
        assert "MiB free" in stderr and "needs at least 16 MiB" in stderr
        run_id = stderr.split("hvbench run --resume ")[1].split("'")[0]
        before = _values(database, run_id)
        assert len(before) >= 2

        subprocess.run(["mount", "-o", "remount,ro", str(home)], check=True)
        resume = [*HVBENCH, "run", "--resume", run_id, "--quiet"]
        refused = subprocess.run(resume, capture_output=True, text=True, env=env,
                                 timeout=120, check=False)
        assert refused.returncode == 2, refused.stderr
        error = refused.stderr.strip().splitlines()[-1]
        assert error.startswith("hvbench: error: ") and str(home) in error, error
        assert "read-only" in error.lower(), error
        fresh = subprocess.run([*HVBENCH, "run", "--platform", "native", "--workload",
                                "sysbench-cpu", "--quiet"], capture_output=True, text=True,
                               env=env, timeout=120, check=False)
        assert fresh.returncode == 2, fresh.stderr
        error = fresh.stderr.strip().splitlines()[-1]
        assert "read-only" in error.lower() and str(home) in error, error
        assert "Traceback" not in refused.stderr

        subprocess.run(["mount", "-o", "remount,rw", str(home)], check=True)
        filler.unlink()
        finished = subprocess.run(resume, capture_output=True, text=True, env=env,
                                  timeout=300, check=False)
        assert finished.returncode == 0, finished.stderr
        after = _values(database, run_id)
        assert after[:len(before)] == before
        with contextlib.closing(sqlite3.connect(database)) as connection:
            status, = connection.execute("SELECT status FROM runs WHERE id = ?",
                                         (run_id,)).fetchone()
            measured, = connection.execute(
                "SELECT count(*) FROM trials WHERE run_id = ? AND warmup = 0 AND "
                "status = 'ok'", (run_id,)).fetchone()
        assert status == "complete" and measured == 8


def test_a_guest_scratch_disk_without_room_is_refused_before_boot(tmp_path: Path) -> None:
    """HVBENCH_HOME on a 32 MiB file system: the guest's 2 GiB scratch disk could not
    grow there, so the run stops before QEMU starts, in one line naming the place and
    the fix; nothing is left on it but the store."""
    with _tmpfs(tmp_path / "home", "32m") as home:
        done = subprocess.run([*HVBENCH, "run", "--platform", "qemu-tcg", "--workload",
                               "sysbench-cpu", "--quiet"], capture_output=True, text=True,
                              env=cli_env(home), timeout=600, check=False)
        assert done.returncode == 2, done.stderr
        error = done.stderr.strip().splitlines()[-1]
        assert error.startswith("hvbench: error: the guest's scratch disk needs 2G at "
                                f"{home}/guests/"), error
        assert "MiB are free there" in error and "disk_size" in error
        assert not list((home / "guests").glob("*")), "a guest directory was left"
        assert tagged_processes("qemu-system-x86", home) == []


def test_a_corrupted_store_is_refused_and_left_untouched(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    database = home / "results.sqlite"
    database.write_bytes(b"this was a result store once\n" * 500)
    before = database.read_bytes()
    done = subprocess.run([*HVBENCH, "results"], capture_output=True, text=True,
                          env=cli_env(home), timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert f"the result store {database} is not a readable SQLite database" in done.stderr
    assert "Traceback" not in done.stderr
    assert database.read_bytes() == before


@pytest.mark.slow
def test_ctrl_c_keeps_samples_and_resume_finishes(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    process = subprocess.Popen(
        [*HVBENCH, "run", "--platform", "native", "--workload", "stress-ng-cpu", "--reps", "6",
         "--quiet",
         "--param", "stress-ng-cpu.seconds=1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=with_ctrl_c)
    database = tmp_path / "results.sqlite"
    measured = stored_trials(database, 2, seconds=90)
    assert measured >= 2, "the run never got going"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "hvbench run --resume" in stderr
    assert "Traceback" not in stderr
    time.sleep(0.5)
    assert _processes("stress-ng", tmp_path) == []
    with sqlite3.connect(database) as connection:
        run_id, status = connection.execute("SELECT id, status FROM runs").fetchone()
        kept = connection.execute("SELECT count(*) FROM samples").fetchone()[0]
    assert status == "interrupted"
    assert kept >= 2

    resumed = subprocess.run([*HVBENCH, "run", "--resume", run_id, "--quiet"],
                             capture_output=True, text=True, env=env, timeout=180,
                             check=False)
    assert resumed.returncode == 0, resumed.stderr
    with sqlite3.connect(database) as connection:
        status = connection.execute("SELECT status FROM runs").fetchone()[0]
        reps = connection.execute(
            "SELECT repetition FROM trials WHERE warmup = 0 AND status = 'ok' "
            "ORDER BY repetition").fetchall()
    assert status == "complete"
    assert [r[0] for r in reps] == list(range(6))


@pytest.mark.slow
def test_sigterm_behaves_like_ctrl_c(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [*HVBENCH, "run", "--platform", "native", "--workload", "stress-ng-cpu", "--reps", "3",
         "--quiet",
         "--param", "stress-ng-cpu.seconds=20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(tmp_path))
    deadline = time.monotonic() + 60
    while not _processes("stress-ng", tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    time.sleep(0.5)
    assert _processes("stress-ng", tmp_path) == []


@pytest.mark.slow
def test_cli_run_export_and_results(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    done = subprocess.run([*HVBENCH, "run", "--platform", "native", "--workload",
                           "sysbench-cpu,sysbench-memory",
                           "--reps", "2", "--param", "sysbench-cpu.events=300",
                           "--param", "sysbench-memory.total_size=1G"],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "events-per-second" in done.stdout and "read-bandwidth" in done.stdout
    assert "stored in" in done.stdout
    exported = subprocess.run([*HVBENCH, "export", "latest", "--json"], capture_output=True,
                              text=True, env=env, timeout=60, check=True)
    document = json.loads(exported.stdout)
    metrics = {(s["workload"], s["metric"]) for s in document["samples"]}
    assert metrics == {("sysbench-cpu", "events-per-second"),
                       ("sysbench-memory", "read-bandwidth"),
                       ("sysbench-memory", "write-bandwidth")}
    assert len(document["samples"]) == 6
    csv_text = subprocess.run([*HVBENCH, "export", "latest", "--csv"], capture_output=True,
                              text=True, env=env, timeout=60, check=True).stdout
    assert csv_text.splitlines()[0].startswith("run,platform,workload")
    assert len(csv_text.splitlines()) == 7
    listing = subprocess.run([*HVBENCH, "results", "--json"], capture_output=True, text=True,
                             env=env, timeout=60, check=True)
    assert json.loads(listing.stdout)[0]["status"] == "complete"


def test_reps_auto_stops_when_the_ci_is_tight(hvbench_home: Path) -> None:
    # sysbench-cpu is steady enough: a 25% target is reached at min_reps even on a busy host.
    campaign = from_mapping({
        "platforms": ["native"], "reps": "auto", "ci_target": 0.25, "min_reps": 6,
        "max_reps": 12, "workloads": [{"name": "sysbench-cpu", "params": {"events": 200}}]})
    store = Store(hvbench_home / "r.sqlite")
    outcome = Runner(store, QuietReporter()).start(campaign)
    trials = store.trials(outcome.run_id)
    ok = [t for t in trials if not t["warmup"] and t["status"] == "ok"]
    skipped = [t for t in trials if t["status"] == "skipped"]
    assert len(ok) == 6
    assert len(skipped) == 6
    assert skipped[0]["reason"].startswith("converged after 6 repetitions")
    assert outcome.failed == 0


def test_reps_auto_gives_up_at_max_reps_or_time(hvbench_home: Path) -> None:
    # A 0.01% target cannot be met: the run stops at max_reps...
    campaign = from_mapping({
        "platforms": ["native"], "reps": "auto", "ci_target": 0.0001, "min_reps": 6,
        "max_reps": 7, "workloads": [{"name": "sysbench-cpu", "params": {"events": 200}}]})
    store = Store(hvbench_home / "r.sqlite")
    outcome = Runner(store, QuietReporter()).start(campaign)
    assert len(store.samples(outcome.run_id)) == 7
    # ... or when its time budget is spent.
    campaign = campaign.model_copy(update={"max_reps": 50, "max_seconds": 0.01})
    outcome = Runner(store, QuietReporter()).start(campaign)
    trials = store.trials(outcome.run_id)
    assert len([t for t in trials if t["status"] == "ok" and not t["warmup"]]) == 6
    assert any("time budget" in (t["reason"] or "") for t in trials)


class _Messages(QuietReporter):
    def __init__(self) -> None:
        super().__init__()
        self.said: list[str] = []

    def message(self, text: str) -> None:
        self.said.append(text)


@pytest.mark.slow
def test_budget_left_by_decided_workloads_goes_back_to_paused_ones(
        hvbench_home: Path) -> None:
    """fio (first) spends its half of a small budget before its first look (n < 5) and
    is paused; sysbench-cpu (two identical natives, a 25% margin) is decided at its
    first look and leaves time, which goes back to fio; the run ends near its budget."""
    campaign = from_mapping({
        "platforms": ["native", {"name": "again", "kind": "native"}], "budget": "20s",
        "margin": 0.25,
        "workloads": [{"name": "fio-randread", "params": {"runtime": 1, "size": "16M"}},
                      {"name": "sysbench-cpu", "params": {"events": 1000}}]})
    store = Store(hvbench_home / "r.sqlite")
    reporter = _Messages()
    started = time.monotonic()
    outcome = Runner(store, reporter).start(campaign)
    wall = time.monotonic() - started
    said = "\n".join(reporter.said)
    assert "fio-randread: its share of the budget" in said, said
    assert "sysbench-cpu: all 1 series decided at look 1 (n=5)" in said, said
    assert "back to 1 undecided workloads" in said, said
    trials = store.trials(outcome.run_id)
    first_pass = int(said.split("fio-randread: its share of the budget")[1]
                     .split("spent after ")[1].split()[0])
    fio = [t for t in trials if t["workload"] == "fio-randread" and not t["warmup"]
           and t["status"] == "ok" and t["platform"] == "native"]
    assert len(fio) > first_pass  # measured again with the time sysbench left
    assert all(t["status"] in ("ok", "skipped") for t in trials)
    assert wall < 20 + 15, wall  # the budget, one trial's overrun and the set-up


def test_a_workload_never_overruns_its_share_by_another_repetition(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A budget's share ends a workload before a repetition as long as its last would
    overrun it, so the workloads after it get their whole shares (before: each overran
    by up to a repetition, and the last ones of a tight budget got nothing)."""
    from hvbench import stopping
    from hvbench.trial import Trial

    campaign = from_mapping({"platforms": ["native"], "budget": "100s",
                             "workloads": ["sysbench-cpu", "fio-randread"]})
    clock = [0.0]
    monkeypatch.setattr(stopping.time, "monotonic", lambda: clock[0])
    rules = stopping.Stopping(Store(tmp_path / "r.sqlite"), "r", campaign, {"native"},
                              deadline=100.0)

    def asked(at: float, index: int, repetition: int) -> stopping.Done | None:
        clock[0] = at
        name = campaign.workloads[index].name
        return rules.why_done(Trial(0, "native", name, index, repetition, False))

    # sysbench-cpu: half of 100 s; its repetitions take 20 s
    assert asked(0, 0, 0) is None and asked(20, 0, 1) is None
    paused = asked(40, 0, 2)  # one more would end at 60 s, past its 50
    assert paused is not None and not paused.final
    assert paused.reason == ("its share of the budget (50 s) is spent after 2 repetitions "
                             "(one more takes about 20 s)")
    # fio: all the 60 s left, not 50 less an overrun; its 30 s repetitions fit exactly
    assert asked(40, 1, 0) is None and asked(70, 1, 1) is None
    done = asked(100, 1, 2)
    assert done is not None and done.reason.startswith("its share of the budget (60 s)")
    # a paused workload's second share starts afresh: its first repetition is not
    # measured against the time since it was paused
    rules.deadline = 200.0
    rules.reopen({0})
    assert asked(100, 0, 2) is None


def test_a_spent_budget_runs_not_even_the_warm_ups(hvbench_home: Path) -> None:
    """Nothing starts once the budget is spent (here before the first trial): every
    trial, warm-ups included, is stored as skipped with the reason, and the run is
    complete."""
    campaign = from_mapping({"platforms": ["native"], "budget": 0.001,
                             "workloads": [{"name": "sysbench-cpu",
                                            "params": {"events": 20000}}]})
    store = Store(hvbench_home / "r.sqlite")
    started = time.monotonic()
    outcome = Runner(store, QuietReporter()).start(campaign)
    trials = store.trials(outcome.run_id)
    assert time.monotonic() - started < 20
    assert {t["status"] for t in trials} == {"skipped"}
    warmup, = [t for t in trials if t["warmup"]]
    assert warmup["reason"] == "the budget was spent before its warm-up"
    assert store.run(outcome.run_id).status == "complete"
