"""The command line: bad input gives one line and exit code 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .conftest import HVBENCH, cli_env


def hv(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HVBENCH, *args], capture_output=True, text=True, timeout=timeout,
                          env=cli_env(home), check=False)


USAGE_ERRORS = [
    (["run", "--workload", "nope"], "unknown workload 'nope'"),
    (["run", "--platform", "xen-pv9", "--workload", "sysbench-cpu"], "unknown platform"),
    (["run", "--suite", "huge"], "unknown suite 'huge'"),
    (["run", "--workload", "sysbench-cpu", "--param", "sysbench-cpu.events=zero"],
     "invalid parameter for workload 'sysbench-cpu': events"),
    (["run", "--workload", "sysbench-cpu", "--param", "oops"], "WORKLOAD.KEY=VALUE"),
    (["run", "--workload", "sysbench-cpu", "--param", "fio-randread.size=1M"],
     "not in this run"),
    (["run", "--workload", "sysbench-cpu", "--reps", "0"], "--reps"),
    (["run"], "nothing to run"),
    (["run", "/nonexistent/campaign.toml"], "does not exist"),
    (["run", "--bogus"], "No such option '--bogus'"),
    (["export", "latest", "--json"], "no runs yet"),
    (["export", "latest"], "--json or --csv"),
    (["report", "nope"], "no run 'nope'"),
    (["frobnicate"], "No such command"),
]


def test_usage_errors_are_one_line_with_exit_2(tmp_path: Path) -> None:
    """Each a real hvbench process (started side by side: they are independent)."""
    running = [(args, message, subprocess.Popen(
        [*HVBENCH, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=cli_env(tmp_path / str(index))))
        for index, (args, message) in enumerate(USAGE_ERRORS)]
    for args, message, process in running:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 2, (args, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, (args, stderr)
        assert lines[0].startswith("hvbench: error: "), args
        assert message in lines[0], (args, lines[0])
        assert "Traceback" not in stderr


def test_a_home_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("not a directory")
    done = subprocess.run([*HVBENCH, "lab", "stop"], capture_output=True, text=True,
                          env=cli_env(home), timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (f"hvbench: error: {home} (HVBENCH_HOME) is a file, not "
                                   "a directory: point HVBENCH_HOME at a directory")


def test_missing_tool_names_the_debian_package(tmp_path: Path) -> None:
    # A PATH with every tool of /usr/bin except sysbench: the real lookup, one tool gone.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in Path("/usr/bin").iterdir():
        if tool.name != "sysbench":
            (bindir / tool.name).symlink_to(tool)
    env = {**cli_env(tmp_path), "PATH": str(bindir)}
    done = subprocess.run([*HVBENCH, "run", "--platform", "native", "--workload",
                           "sysbench-cpu", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 2
    assert "needs 'sysbench'" in done.stderr
    assert "apt-get install sysbench" in done.stderr
    assert "Traceback" not in done.stderr


def test_list_json_describes_every_workload(tmp_path: Path) -> None:
    done = hv(tmp_path, "list", "--json")
    assert done.returncode == 0
    listing = json.loads(done.stdout)
    names = {w["name"] for w in listing["workloads"]}
    assert {"sysbench-cpu", "fio-randwrite", "sockperf-pingpong", "7zip", "mafft"} <= names
    assert set(listing["suites"]) == {"quick", "standard", "classic", "micro", "io-paths"}
    fio = next(w for w in listing["workloads"] if w["name"] == "fio-randread")
    assert fio["tools"] == [{"binary": "fio", "package": "fio"}]
    assert {m["name"] for m in fio["metrics"]} == {"bandwidth", "iops", "clat-mean",
                                                    "clat-p99"}


def test_doctor_reports_real_tool_versions(tmp_path: Path) -> None:
    done = hv(tmp_path, "doctor")
    assert done.returncode == 0
    assert "sysbench 1.0" in done.stdout
    assert "kvm" in done.stdout


def test_a_reader_that_stops_early_ends_listing_quietly(tmp_path: Path) -> None:
    """'hvbench list | head -c 10': the reader goes away; no error, exit code 0."""
    process = subprocess.Popen([*HVBENCH, "list"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=cli_env(tmp_path))
    assert process.stdout is not None and process.stderr is not None
    assert len(process.stdout.read(10)) == 10
    process.stdout.close()
    errors = process.stderr.read().decode()
    assert process.wait(timeout=60) == 0, errors
    assert errors == ""


def test_a_fleet_run_shows_a_line_per_host_and_a_summary_line() -> None:
    import io

    from rich.console import Console

    from hvbench.progress import RichReporter

    console = Console(file=io.StringIO(), width=160, record=True, force_terminal=True,
                      color_system=None)
    run = RichReporter(console)
    first, second = run.for_host("kvm01"), run.for_host("kvm02")
    first.start(2, 10.0)
    second.start(3, 10.0)
    first.trial_started("native · sysbench-cpu · rep 1")
    first.trial_finished(5.0, None)
    second.trial_finished(5.0, "native · sysbench-cpu · rep 1: sysbench exited 1")
    first.trial_finished(5.0, None)
    first.stop()
    second.stop()
    shown = console.export_text()
    assert "fleet: 0 hosts measuring, 2 done · 3/5 trials · 1 failed" in shown
    assert "[kvm01] native · sysbench-cpu · rep 1 (1/2)" in shown
    assert "[kvm02] trial failed: native · sysbench-cpu · rep 1: sysbench exited 1" in shown
