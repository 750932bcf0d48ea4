"""Interference studies: the campaign's conditions and refusals (fast), an aggressor on
the host itself beside a native victim (real processes, started and stopped around
each trial), and the real study in guests (slow): a sockperf victim in a TCG guest with
CPU-bound neighbour guests is significantly slower, and with its neighbours idle (the
'none' control) it is not."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hvbench.campaign import from_mapping, plan
from hvbench.errors import UsageError

from .conftest import HVBENCH, cli_env, stored_trials, tagged_processes, with_ctrl_c

VICTIM = {"name": "sockperf-pingpong", "params": {"seconds": 1}}


def study(*neighbours: dict[str, object], **extra: object) -> dict[str, object]:
    return {"platforms": ["native", "qemu-tcg"], "reps": 2,
            "interference": {"victim": VICTIM, "neighbours": list(neighbours)}, **extra}


def test_every_platform_gets_its_conditions_and_bad_studies_are_refused() -> None:
    campaign = from_mapping(study({"workload": "stress-ng-cpu", "guests": 2},
                                  {"workload": "none"},
                                  {"workload": "fio-randwrite", "where": "host"}))
    assert [(p.name, p.shares, p.settings.get("neighbours")) for p in campaign.platforms] == [
        ("native", None, None), ("native.with-host-fio-randwrite", "native", None),
        ("qemu-tcg", None, 2), ("qemu-tcg.with-stress-ng-cpu-x2", "qemu-tcg", 2),
        ("qemu-tcg.with-none", "qemu-tcg", 2),
        ("qemu-tcg.with-host-fio-randwrite", "qemu-tcg", 2)]
    assert [w.name for w in campaign.workloads] == ["sockperf-pingpong"]
    assert set(campaign.payload_workloads) == {"sockperf-pingpong", "stress-ng-cpu",
                                               "fio-randwrite"}
    # conditions are interleaved like platforms, every repetition has each once
    trials = plan(campaign)
    for repetition in (0, 1):
        assert sorted(t.platform for t in trials if t.repetition == repetition) == sorted(
            p.name for p in campaign.platforms)
    again = from_mapping(campaign.model_dump(mode="json"))  # as read back from its run
    assert [p.name for p in again.platforms] == [p.name for p in campaign.platforms]
    assert again.platforms[3].aggressor == campaign.platforms[3].aggressor
    for bad, message in (
            (study({"workload": "sysbench-cpu"}), "runs until its work is done"),
            (study({"workload": "no-such"}), "unknown workload 'no-such'"),
            (study({"workload": "stress-ng-cpu", "where": "moon"}), "'guest' or 'host'"),
            (study({"workload": "stress-ng-cpu"}, {"workload": "stress-ng-cpu"}),
             "stress-ng-cpu is given twice"),
            (study({"workload": "stress-ng-cpu", "params": {"bogus": 1}}), "bogus"),
            (study({"workload": "stress-ng-cpu"}, density=[1, 2]), "two studies"),
            (study({"workload": "stress-ng-cpu"}, workloads=["fio-randread"]),
             "measures its victim only"),
            (study({"workload": "stress-ng-cpu"}, host=["local", "lab:kvm"]), "one host"),
            ({**study({"workload": "stress-ng-cpu"}), "platforms": ["native"]},
             "needs a guest platform"),
            ({**study({"workload": "stress-ng-cpu"}), "platforms": [
                {"name": "q", "kind": "qemu-tcg", "settings": {"guests": 2}}]},
             "measures one guest")):
        with pytest.raises(UsageError, match=message):
            from_mapping(bad)


@pytest.mark.slow  # real processes on this host's two cores, about 10 s
def test_a_host_aggressor_runs_beside_every_trial_and_is_stopped(tmp_path: Path) -> None:
    """Natively, stress-ng on both cores beside sysbench-cpu: each trial of the
    condition ran with it (recorded), slower than alone; nothing is left running, also
    after a Ctrl-C while the aggressor runs."""
    home = tmp_path / "home"
    campaign = tmp_path / "host.toml"
    campaign.write_text(
        'platforms = ["native"]\nreps = 3\nwarmup = false\n[interference]\nsettle = 0.5\n'
        'victim = { name = "sysbench-cpu", params = { events = 300, threads = 2 } }\n'
        'neighbours = [{ workload = "stress-ng-cpu", where = "host", '
        'params = { instances = 2 } }]\n')
    done = subprocess.run([*HVBENCH, "run", str(campaign), "--quiet"], env=cli_env(home),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Interference" in done.stdout and "host-stress-ng-cpu" in done.stdout
    exported = json.loads(subprocess.run([*HVBENCH, "export", "latest", "--json"],
                                         env=cli_env(home), capture_output=True, text=True,
                                         check=True).stdout)
    beside = [t["metadata"].get("beside") for t in exported["trials"]
              if t["platform"] == "native.with-host-stress-ng-cpu"]
    assert len(beside) == 3 and all(b["targets"] == ["this host"] and b["seconds"] > 0
                                    and b["argv"][:2] == ["stress-ng", "--cpu"]
                                    for b in beside), beside
    assert all("beside" not in t["metadata"] for t in exported["trials"]
               if t["platform"] == "native")
    subprocess.run([*HVBENCH, "report", "latest", "--json", str(tmp_path / "r.json")],
                   env=cli_env(home), capture_output=True, text=True, check=True)
    report = json.loads((tmp_path / "r.json").read_text())
    rate = next(d for d in report["interference"] if d["metric"] == "events-per-second")
    assert rate["kind"] == "cpu" and rate["where"] == "host"
    assert rate["ratio"] < 0.85, rate  # two busy cores taken from a two-thread victim
    assert tagged_processes("stress-ng", home) == []
    # A second run with one busy core beside the victim, Ctrl-C'd while the aggressor
    # runs after three trials of each: it is stopped with the run, the samples kept
    campaign.write_text(campaign.read_text().replace("reps = 3", "reps = 50")
                        .replace("instances = 2", "instances = 1"))
    process = subprocess.Popen([*HVBENCH, "run", str(campaign), "--quiet"], env=cli_env(home),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=with_ctrl_c)
    assert stored_trials(home / "results.sqlite", 6 + 6, seconds=120) >= 12
    deadline = time.monotonic() + 60
    while not tagged_processes("stress-ng", home) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tagged_processes("stress-ng", home), "the aggressor never started"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "hvbench run --resume" in stderr, stderr
    time.sleep(0.5)
    assert tagged_processes("stress-ng", home) == []
    # compare sets the aggressor's effect in the two runs side by side
    compared = subprocess.run([*HVBENCH, "compare", exported["run"]["id"], "latest"],
                              env=cli_env(home), capture_output=True,
                              text=True, check=False)
    assert compared.returncode in (0, 1), compared.stderr
    row = next(line for line in compared.stdout.splitlines()
               if "beside host-stress-ng-cpu" in line and "events-per-second" in line)
    assert f"{rate['ratio']:.3g}" in row, (row, rate)


@pytest.mark.slow  # three TCG guests: the victim and two neighbours
def test_cpu_bound_neighbours_slow_a_latency_victim_and_idle_ones_do_not(
        tmp_path: Path) -> None:
    """sockperf in a one-vCPU TCG guest beside two neighbours of one vCPU each on this
    2-core host: with stress-ng in both (three busy vCPUs on two cores) the victim now
    and then waits for a core, so its tail latency (p99) is significantly worse; with
    both idle (the 'none' control) it is not. The rank test flags an A/A comparison in
    about 1 run in 20 at the report's 0.05; the assertions ask for 0.01 both ways (six
    samples a side reach it with up to two pairs out of order)."""
    home = tmp_path / "home"
    campaign = tmp_path / "noisy.toml"
    campaign.write_text(
        'platforms = [{ name = "tcg", kind = "qemu-tcg", settings = { memory_mib = 256 } '
        '}]\nreps = 6\nwarmup = false\n[interference]\nsettle = 0.5\n'
        'victim = { name = "sockperf-pingpong", params = { seconds = 1 } }\n'
        'neighbours = [{ workload = "stress-ng-cpu", guests = 2 }, { workload = "none" }]\n')
    done = subprocess.run([*HVBENCH, "run", str(campaign), "--quiet"], env=cli_env(home),
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    html = tmp_path / "r.html"
    subprocess.run([*HVBENCH, "report", "latest", "--json", str(tmp_path / "r.json"),
                    "--html", str(html), "--md", str(tmp_path / "r.md"), "--study",
                    str(tmp_path / "s.html")], env=cli_env(home),
                   capture_output=True, text=True, check=True)
    report = json.loads((tmp_path / "r.json").read_text())
    cells = {(d["aggressor"], d["metric"]): d for d in report["interference"]}
    noisy, quiet = cells["stress-ng-cpu-x2", "latency-p99"], cells["none", "latency-p99"]
    assert noisy["kind"] == "cpu" and quiet["kind"] == "control"
    assert noisy["significant"] and noisy["ratio"] > 1.2 and noisy["p_value"] < 0.01, noisy
    assert not quiet["significant"] or quiet["p_value"] >= 0.01, quiet
    assert noisy["degradation_pct"] > quiet["degradation_pct"]
    assert cells["stress-ng-cpu-x2", "latency-avg"]["ratio"] > 1.0  # the tail lifts it
    markdown = (tmp_path / "r.md").read_text()
    assert "## Interference" in markdown and "| tcg | stress-ng-cpu-x2 | cpu |" in markdown
    study = (tmp_path / "s.html").read_text()
    assert re.search(r"<h3>3\.\d+ Interference</h3>", study) and "stress-ng-cpu-x2" in study
    page = html.read_text()
    assert 'id="interference"' in page and "stress-ng-cpu-x2" in page and "<svg" in page
    exported = json.loads(subprocess.run([*HVBENCH, "export", "latest", "--json"],
                                         env=cli_env(home), capture_output=True, text=True,
                                         check=True).stdout)
    beside = [t["metadata"]["beside"] for t in exported["trials"]
              if t["platform"] == "tcg.with-stress-ng-cpu-x2"]
    assert len(beside) == 6 and all(b["targets"] == ["guest 2 of 3 of tcg",
                                                     "guest 3 of 3 of tcg"] for b in beside)
    assert "neighbours" in exported["platforms"]["tcg"]["machine"]
    assert tagged_processes("qemu-system-x86", home) == []
