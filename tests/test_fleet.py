"""Fleets: Ansible inventories (YAML and INI) and --limit, then six real OpenSSH
servers on loopback run from an inventory with --forks 3 while one host's sshd is
killed, and a second campaign waits for a host's measurement lock."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hvbench.analysis import analyse
from hvbench.campaign import from_mapping
from hvbench.errors import UsageError
from hvbench.fleethistory import fleet_history
from hvbench.hosts.spec import HostSpec
from hvbench.inventory import Inventory, hosts_for_run
from hvbench.siblings import classes_of, standings
from hvbench.stats import MetricRow, summarize
from hvbench.store import Store, now
from hvbench.trend import trend
from hvbench.workloads.base import Sample

from .conftest import HVBENCH, cli_env
from .sshd import Sshd, sshd_processes, start_sshd

YAML = """
all:
  vars:
    ansible_user: root
    hvbench_disk_size: 1G
  children:
    fleet:
      children:
        kvm:
          hosts:
            k1: {ansible_host: 10.0.0.1}
            k2: {ansible_host: 10.0.0.2, ansible_port: 2222}
          vars:
            hvbench_bridge: br0
        xen:
          hosts:
            x1: {ansible_user: admin, ansible_ssh_private_key_file: keys/x1}
            k2:
    spare:
      hosts:
        s1: {hvbench_lock: /srv/hvbench.lock, ansible_connection: local}
"""

INI = """
# the same fleet, as INI
s1 ansible_connection=local hvbench_lock=/srv/hvbench.lock

[kvm]
k1 ansible_host=10.0.0.1
k2 ansible_host=10.0.0.2 ansible_port=2222

[kvm:vars]
hvbench_bridge=br0

[xen]
x1 ansible_user=admin ansible_ssh_private_key_file=keys/x1
k2

[fleet:children]
kvm
xen

[all:vars]
ansible_user=root
hvbench_disk_size="1G"
"""


@pytest.mark.parametrize("form", ["yaml", "ini"])
def test_inventory_groups_children_and_variables(tmp_path: Path, form: str) -> None:
    path = tmp_path / ("hosts.yml" if form == "yaml" else "hosts.ini")
    path.write_text(YAML if form == "yaml" else INI)
    inventory = Inventory(path)
    assert set(inventory.members("fleet")) == {"k1", "k2", "x1"}
    k2 = inventory.host("k2")
    assert k2.variables["ansible_user"] == "root" and k2.variables["ansible_port"] == 2222
    assert k2.settings == {"bridge": "br0", "disk_size": "1G"}  # group vars, widest first
    x1 = inventory.host("x1")
    assert x1.variables["ansible_user"] == "admin"  # the host's own wins over all:vars
    hosts, settings = hosts_for_run(path, "fleet")
    urls = {HostSpec.parse(h).tag: HostSpec.parse(h) for h in hosts}
    assert set(urls) == {"k1", "k2", "x1"}
    assert urls["k2"].target is not None and urls["k2"].target.port == 2222
    x1_target = urls["x1"].target
    assert x1_target is not None and x1_target.user == "admin"
    assert x1_target.identity == str((tmp_path / "keys" / "x1").resolve())
    assert settings[hosts[0]] == {"bridge": "br0", "disk_size": "1G"}
    assert hosts_for_run(path, "s1")[0] == ["local"]


def test_limit_patterns(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text(YAML)
    inventory = Inventory(path)

    def names(pattern: str) -> list[str]:
        return [h.name for h in inventory.select(pattern)]

    assert names("kvm:xen") == ["k1", "k2", "x1"]
    assert names("fleet:!kvm") == ["x1"]
    assert names("fleet:&xen") == ["k2", "x1"]
    assert names("k*,s1") == ["k1", "k2", "s1"]
    assert names("~^x") == ["x1"]
    for pattern, message in (("nosuch", "names no group or host"),
                             ("kvm:&spare", "leaves no host")):
        with pytest.raises(UsageError, match=message):
            inventory.select(pattern)


def test_inventory_mistakes_are_one_line_each(tmp_path: Path) -> None:
    cases = {"cycle.yml": ("all:\n  children:\n    a:\n      children:\n        b:\n"
                           "          children:\n            a:\n", "contains itself"),
             "range.ini": ("[web]\nweb[01:10]\n", "host ranges"),
             "bad.ini": ("[web\nh1\n", "not a section"),
             "pairs.ini": ("[web]\nh1 port\n", "expected KEY=VALUE")}
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(UsageError, match=message):
            Inventory(tmp_path / name)
    # a host variable no platform kind takes is refused when the campaign is checked
    with pytest.raises(UsageError, match="no platform kind has a setting 'brige'"):
        from_mapping({"platforms": ["native"], "workloads": ["sysbench-cpu"],
                      "host": "ssh://root@h1#h1",
                      "host_settings": {"ssh://root@h1#h1": {"brige": "br0"}}}).check()


def test_host_settings_reach_the_guests_of_that_host_only() -> None:
    campaign = from_mapping({
        "platforms": ["native", "qemu-tcg"], "workloads": ["sysbench-cpu"],
        "host": ["local", "ssh://root@h1#h1"],
        "host_settings": {"ssh://root@h1#h1": {"memory_mib": 768}}})
    settings = {p.name: p.settings for p in campaign.platforms}
    assert settings == {"native@local": {}, "native@h1": {}, "qemu-tcg@local": {},
                        "qemu-tcg@h1": {"memory_mib": 768}}


# -- six real hosts -------------------------------------------------------------------
@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[Sshd]]]:
    if os.geteuid() != 0:
        pytest.skip("the test sshd logs in as root")
    base = tmp_path_factory.mktemp("fleet")
    servers = [start_sshd(base / f"h{i}") for i in range(1, 7)]
    hosts = "\n".join(
        f"        h{i}: {{ansible_port: {s.port}, ansible_ssh_private_key_file: "
        f"{s.client_key}, hvbench_lock: {base / f'h{i}.lock'}}}"
        for i, s in enumerate(servers[:4], 1))
    others = "\n".join(
        f"        h{i}: {{ansible_port: {s.port}, ansible_ssh_private_key_file: "
        f"{s.client_key}, hvbench_lock: {base / f'h{i}.lock'}}}"
        for i, s in enumerate(servers[4:], 5))
    (base / "hosts.yml").write_text(
        "all:\n  vars:\n    ansible_host: 127.0.0.1\n    ansible_user: root\n"
        "  children:\n    rack1:\n      hosts:\n" + hosts + "\n"
        "    rack2:\n      hosts:\n" + others + "\n")
    try:
        yield base, servers
    finally:
        for server in servers:
            server.stop()


def _lock_holders(base: Path) -> list[int]:
    """flock processes holding one of this fleet's lock files (a run's, or the test's)."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if entry.name.isdigit() and argv[0].endswith(b"flock") \
                    and any(str(base).encode() in arg for arg in argv):
                found.append(int(entry.name))
    return found


def _run(home: Path, base: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*HVBENCH, "run", "--inventory", str(base / "hosts.yml"), "--accept-new-host-key",
         "--platform", "native", "--no-warmup", "--quiet", *args],
        env=cli_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_fleet_from_an_inventory_with_forks_and_a_host_that_dies(
        fleet: tuple[Path, list[Sshd]], tmp_path: Path) -> None:
    base, servers = fleet
    home = tmp_path / "home"
    run = _run(home, base, "--limit", "rack1:h5", "--forks", "3", "--workload",
               "stress-ng-cpu", "--param", "stress-ng-cpu.seconds=1", "--reps", "2")
    victim = servers[1]  # h2: its sshd and sessions die once it has stored a trial

    def sabotage() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.3)
            with contextlib.suppress(sqlite3.Error):
                with sqlite3.connect(home / "results.sqlite") as connection:
                    stored = connection.execute(
                        "SELECT count(*) FROM trials WHERE platform = 'native@h2'").fetchone()
                if stored[0] >= 1:
                    for pid in sshd_processes(victim):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    return

    saboteur = threading.Thread(target=sabotage, daemon=True)
    saboteur.start()
    _, stderr = run.communicate(timeout=600)
    saboteur.join(5)
    assert run.returncode == 1, stderr  # some trials failed: h2's
    assert "Traceback" not in stderr
    assert _lock_holders(base) == [], "a host's lock outlived the run"
    exported = json.loads(subprocess.run(
        [*HVBENCH, "export", "latest", "--json"], env=cli_env(home), capture_output=True,
        text=True, check=True, timeout=120).stdout)
    by_host: dict[str, list[dict[str, object]]] = {}
    for trial in exported["trials"]:
        by_host.setdefault(str(trial["platform"]), []).append(trial)
    # --limit: rack1 (h1-h4) and h5, not h6
    assert set(by_host) == {f"native@h{i}" for i in range(1, 6)}
    for name, trials in by_host.items():
        if name == "native@h2":
            failed = [t for t in trials if t["status"] != "ok"]
            assert failed and all(t["reason"] for t in failed), trials
        else:
            assert [t["status"] for t in trials] == ["ok"] * 2, (
                name, [(t["status"], t["reason"]) for t in trials], stderr[-2000:])
    # --forks 3: never more than three hosts measured at once
    spans = []
    for trial in exported["trials"]:
        if trial["status"] == "ok":
            start = dt.datetime.fromisoformat(str(trial["started"])).timestamp()
            spans.append((start, start + float(trial["seconds"]), trial["platform"]))
    for start, _, _ in spans:
        busy = {p for s, e, p in spans if s <= start + 0.05 < e}
        assert len(busy) <= 3, busy
    # and hosts did run side by side (how many overlap depends on how fast each host's
    # set-up is: on a fast machine a 1 s trial can end before the third host starts)
    assert len({p for s, e, p in spans for s2, e2, p2 in spans
                if p != p2 and s < e2 and s2 < e}) >= 2, "hosts ran side by side"


@pytest.mark.slow
def test_a_second_campaign_waits_for_the_hosts_lock(fleet: tuple[Path, list[Sshd]],
                                                    tmp_path: Path) -> None:
    base, _ = fleet
    lock = base / "h6.lock"
    # another hvbench: flock's child holds the lock, so the whole group is killed after
    holder = subprocess.Popen(["flock", str(lock), "sleep", "120"], start_new_session=True)
    try:
        time.sleep(0.5)
        quick = ("--limit", "h6", "--workload", "sysbench-cpu", "--param",
                 "sysbench-cpu.events=100", "--reps", "1")
        impatient = _run(tmp_path / "a", base, *quick, "--lock-timeout", "2")
        _, stderr = impatient.communicate(timeout=120)
        assert impatient.returncode != 0
        assert "another hvbench still measures there after 2 s" in stderr, stderr
        assert f"lock {lock}" in stderr
        patient = _run(tmp_path / "b", base, *quick)
        said: list[str] = []
        reader = threading.Thread(target=lambda: said.extend(patient.stderr or []),
                                  daemon=True)
        reader.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and patient.poll() is None:
            if any("another hvbench is measuring there" in line for line in said):
                break
            time.sleep(0.2)
        assert any(f"lock {lock}); waiting" in line for line in said), said
        time.sleep(2)
        assert patient.poll() is None, "the second campaign must wait for the lock"
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(10)
    assert patient.wait(180) == 0, said
    reader.join(10)
    assert "Traceback" not in "".join(said)
    assert _lock_holders(base) == [], "a host's lock outlived the run"


# -- hosts against their siblings ---------------------------------------------------
def _rows(values: dict[str, list[float]]) -> list[MetricRow]:
    return [MetricRow("sysbench-cpu", "cpu", "events-per-second", "events/s", True,
                      {p: summarize(v) for p, v in values.items()},
                      {p: tuple(v) for p, v in values.items()}, {})]


def _fleet_campaign(hosts: dict[str, str]) -> tuple[dict[str, object], dict[str, object]]:
    campaign = {"platforms": [{"name": f"native@{h}", "host": f"ssh://root@{h}#{h}"}
                              for h in hosts]}
    info = {"hosts": {f"ssh://root@{h}#{h}": {"cpu_model": f, "cpu_logical": 8,
                                               "memory_bytes": 64 << 30,
                                               "dmi": {"product_uuid": h}}
                      for h, f in hosts.items()}}  # one uuid each: servers, not models
    return campaign, info


def test_the_host_slower_than_its_siblings_is_flagged_and_only_it() -> None:
    rng = np.random.default_rng(3)
    values = {f"native@h{i}": list(1000 * rng.normal(1, 0.01, 8)) for i in range(1, 6)}
    values["native@h5"] = [0.8 * v for v in values["native@h5"]]  # a host 20% slower
    values["native@o1"] = list(500 * rng.normal(1, 0.01, 8))  # other hardware, alone
    campaign, info = _fleet_campaign({**{f"h{i}": "gen3" for i in range(1, 6)},
                                      "o1": "gen4"})
    found = standings(_rows(values), classes_of(campaign, info))
    assert {s.host for s in found} == {f"h{i}" for i in range(1, 6)}  # o1 has no siblings
    assert [s.host for s in found if s.flagged] == ["h5"]
    assert found[0].host == "h5" and found[0].siblings == 4
    assert 0.75 < found[0].comparison.performance < 0.85
    # two identical hosts: neither can be called the odd one
    pair, pair_info = _fleet_campaign({"h1": "gen3", "h2": "gen3"})
    assert standings(_rows({p: values[p] for p in ("native@h1", "native@h2")}),
                     classes_of(pair, pair_info)) == []


def test_an_identical_fleet_is_not_flagged_by_chance() -> None:
    """A/A: 12 identical hosts, 50 simulated fleets: flags stay rare (q across hosts)."""
    rng = np.random.default_rng(11)
    hosts = {f"h{i}": "gen3" for i in range(12)}
    campaign, info = _fleet_campaign(hosts)
    flagged_fleets = 0
    for _ in range(50):
        values = {f"native@{h}": list(rng.lognormal(0, 0.05, 6)) for h in hosts}
        if any(s.flagged for s in standings(_rows(values), classes_of(campaign, info))):
            flagged_fleets += 1
    assert flagged_fleets <= 3, flagged_fleets  # at most ~5% of fleets with any flag


@pytest.mark.slow
def test_fleet_report_flags_a_host_under_a_cpu_quota(fleet: tuple[Path, list[Sshd]],
                                                     tmp_path: Path) -> None:
    base, servers = fleet
    group = Path("/sys/fs/cgroup/cpu") / f"hvbench-test-{os.getpid()}"
    if not Path("/sys/fs/cgroup/cpu/cgroup.procs").exists():
        pytest.fail("no cgroup cpu controller here: the slow host needs a CPU quota")
    group.mkdir()
    slow = servers[3]  # h4: its sshd, and so every session of it, gets half a CPU
    try:
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text("50000")
        (group / "cgroup.procs").write_text(str(slow.process.pid))
        home = tmp_path / "home"
        # one host after the other (h2 died in an earlier test): no host disturbs another
        run = _run(home, base, "--limit", "h1:h3:h4", "--forks", "1", "--workload",
                   "sysbench-cpu", "--param", "sysbench-cpu.events=200", "--reps", "5")
        _, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, stderr
    finally:
        Path("/sys/fs/cgroup/cpu/cgroup.procs").write_text(str(slow.process.pid))
        group.rmdir()
    report = subprocess.run([*HVBENCH, "report", "latest", "--detail"], env=cli_env(home),
                            capture_output=True, text=True, check=True, timeout=120)
    text = " ".join(report.stdout.split())
    assert "Hosts against their hardware siblings: 1 of 3 hosts flagged" in text, text
    store = Store(home / "results.sqlite")
    fleet_view = analyse(store, store.resolve("latest")).fleet
    assert {s.host for s in fleet_view if s.flagged} == {"h4"}
    assert {s.host for s in fleet_view} == {"h1", "h3", "h4"}
    # the same from the store's history (hvbench fleet): h4 flagged, exit 1
    across = subprocess.run([*HVBENCH, "fleet", "--json"], env=cli_env(home),
                            capture_output=True, text=True, timeout=120)
    assert across.returncode == 1, across.stderr
    assert json.loads(across.stdout)["flagged"] == ["h4"]


def _host_run(store: Store, run_id: str, host: str, values: list[float],
              hardware: str = "gen3") -> None:
    """A stored single-host run of native sysbench-cpu on ``host`` (its own run)."""
    text = f"ssh://root@10.0.0.{host[1:]}#{host}"
    store.create_run(run_id, {"host": text, "platforms": [{"name": "native"}],
                              "workloads": [{"name": "sysbench-cpu"}]}, [],
                     {"host": text, "cpu_model": hardware, "cpu_logical": 8,
                      "memory_bytes": 64 << 30, "dmi": {"product_uuid": host}}, "0")
    for rep, value in enumerate(values):
        store.add_trial(run_id, {"seq": rep, "platform": "native", "workload": "sysbench-cpu",
                                 "repetition": rep, "warmup": False}, "ok", None, now(), 1.0,
                        {}, [Sample("events-per-second", value, "events/s", True)])
    store.set_status(run_id, "complete")


def test_fleet_across_runs_counts_each_hosts_latest_result(tmp_path: Path) -> None:
    """Five identical hosts measured one per run, h5 20% slower, then h5 measured again
    after a repair: flagged from the history up to then, not after; a host of other
    hardware has no siblings; filters and a history without matches."""
    store = Store(tmp_path / "r.sqlite")
    rng = np.random.default_rng(8)
    for index in range(1, 6):
        level = 800.0 if index == 5 else 1000.0
        _host_run(store, f"2026110{index}-000000-0000", f"h{index}",
                  list(level * rng.normal(1, 0.01, 6)))
    _host_run(store, "20261106-000000-0000", "h9", list(500 * rng.normal(1, 0.01, 6)),
              hardware="gen4")
    found = fleet_history(store)
    assert [s.host for s in found.standings if s.flagged] == ["h5"]
    assert {s.host for s in found.standings} == {f"h{i}" for i in range(1, 6)}
    assert found.sources["h5"] == "20261105-000000-0000" and found.hosts == 6
    _host_run(store, "20261107-000000-0000", "h5", list(1000 * rng.normal(1, 0.01, 6)))
    repaired = fleet_history(store)
    assert not [s for s in repaired.standings if s.flagged]
    assert repaired.sources["h5"] == "20261107-000000-0000"
    assert fleet_history(store, workloads=["sysbench-cpu"], platforms=["native"]).hosts == 6
    for nothing in ({"since": "2100-01-01"}, {"workloads": ["sysbench-memory"]},
                    {"platforms": ["qemu-kvm"]}):
        with pytest.raises(UsageError, match="no complete run"):
            fleet_history(store, **nothing)  # type: ignore[arg-type]


def test_results_of_one_host_since_a_date(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.sqlite")
    for run_id, host in (("r1", "ssh://root@10.0.0.1:22#kvm01"), ("r2", "local"),
                         ("r3", "ssh://root@10.0.0.2:2222")):
        store.create_run(run_id, {"host": host, "platforms": [{"name": "native"}],
                                  "workloads": [{"name": "sysbench-cpu"}]}, [], {}, "0")
    assert [r["id"] for r in store.list_runs(host="kvm01")] == ["r1"]
    assert [r["id"] for r in store.list_runs(host="ssh://root@10.0.0.1:22#kvm01")] == ["r1"]
    assert [r["id"] for r in store.list_runs(host="10.0.0.2:2222")] == ["r3"]
    assert store.list_runs(host="kvm01")[0]["hosts"] == ["kvm01"]
    assert store.list_runs(since="2999-01-01") == []
    assert len(store.list_runs(since="2000-01-01")) == 3


@pytest.mark.slow  # a CLI in a subprocess: make test, not test-fast
def test_trend_marks_the_run_where_a_host_changed(tmp_path: Path) -> None:
    """Six stored runs of one host; the fifth is 20% slower (a kernel upgrade, say):
    that run, and only it, is a change point; the CLI prints the series."""
    home = tmp_path / "home"
    store = Store(home / "results.sqlite")
    rng = np.random.default_rng(5)
    host = "ssh://root@10.0.0.1:22#kvm01"
    for index in range(6):
        run_id = f"2026120{index}-000000-000{index}"
        store.create_run(run_id, {"host": [host, "local"], "platforms": [
            {"name": "native@kvm01", "host": host}, {"name": "native@local",
                                                     "host": "local"}],
            "workloads": [{"name": "sysbench-cpu"}]}, [], {}, "0")
        level = 800.0 if index >= 4 else 1000.0
        for rep in range(6):
            for platform, value in (("native@kvm01", level * rng.normal(1, 0.01)),
                                    ("native@local", 500 * rng.normal(1, 0.01))):
                store.add_trial(run_id, {"seq": rep * 2 + (platform == "native@local"),
                                         "platform": platform, "workload": "sysbench-cpu",
                                         "repetition": rep, "warmup": False}, "ok",
                                None, now(), 1.0, {},
                                [Sample("events-per-second", value, "events/s", True)])
    series = trend(store, "kvm01", "native", "sysbench-cpu")["events-per-second"]
    assert len(series) == 6 and series[0].platform == "native@kvm01"
    assert [p.change_point for p in series] == ["", "", "", "", "▼ worse", ""]
    with pytest.raises(UsageError, match="no stored run measured sysbench-cpu on qemu-kvm"):
        trend(store, "kvm01", "qemu-kvm", "sysbench-cpu")
    shown = subprocess.run([*HVBENCH, "trend", "--host", "kvm01", "--platform", "native",
                            "--workload", "sysbench-cpu"], env=cli_env(home),
                           capture_output=True, text=True, timeout=120, check=True).stdout
    assert "▼ worse" in shown and shown.count("2026120") == 6
