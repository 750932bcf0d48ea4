"""Collectors: their readers on real /proc text, and a real native run that stores them
(the QEMU thread split and guest steal are checked on real guests in test_qemu)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from hvbench.campaign import from_mapping
from hvbench.collect import ProcStat, parse_proc_stat
from hvbench.localproc import NativeMachine
from hvbench.platforms.accounting import QemuThreads, parse_threads, parse_xl_time, thread_kind
from hvbench.progress import QuietReporter
from hvbench.runner import Runner
from hvbench.store import Store

from .conftest import DATA


def test_proc_stat_of_this_machine_and_a_busy_second(tmp_path: Path) -> None:
    figures = parse_proc_stat(Path("/proc/stat").read_text())
    assert {"user", "system", "idle", "steal", "intr", "ctxt"} <= set(figures)
    with pytest.raises(ValueError, match="steal"):
        parse_proc_stat("intr 5\n")
    collector = ProcStat(NativeMachine(tmp_path))
    collector.start()
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:  # keep one CPU busy in user space
        pass
    found = collector.stop()
    assert 0.4 < found["seconds"] < 2
    shares = [v for k, v in found.items() if k.endswith("_share")]
    assert abs(sum(shares) - 1) < 0.05 and found["user_share"] > 0.2
    assert found["ctxt_per_s"] > 0


def test_thread_kinds_and_the_thread_reader_on_a_real_process(tmp_path: Path) -> None:
    assert [thread_kind(n) for n in ("CPU 0/KVM", "CPU 1/TCG", "IO io0", "qemu-system-x86",
                                     "worker", "vhost-4242", "call_rcu")] == [
        "vcpu", "vcpu", "iothread", "main_loop", "io_workers", "vhost", "other"]
    # a real process with a busy thread named like a vCPU: its time lands under vcpu
    code = ("import threading, time, ctypes\n"
            "def spin():\n"
            "    ctypes.CDLL(None).prctl(15, b'CPU 0/KVM', 0, 0, 0)\n"
            "    end = time.monotonic() + 30\n"
            "    while time.monotonic() < end: pass\n"
            "threading.Thread(target=spin, daemon=True).start()\n"
            "time.sleep(30)\n")
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        pidfile = tmp_path / "qemu.pid"
        pidfile.write_text(str(process.pid))
        from hvbench.hosts.local import LocalHost

        host = LocalHost()
        try:
            time.sleep(0.3)
            threads = QemuThreads(host, str(pidfile))
            threads.start()
            time.sleep(1.0)
            found = threads.stop()
        finally:
            host.close()
        assert found["vcpu_cores"] > 0.5, found
        assert found["host_cpu_s"] >= found["vcpu_cores"] * 0.9
        listing = parse_threads(f"{process.pid}\tpython3\t12\nnoise\n1\tx\tnan\n")
        assert listing == {str(process.pid): ("python3", 12)}
    finally:
        process.kill()
        process.wait(10)


def test_xl_list_time_column() -> None:
    text = ("Name                                        ID   Mem VCPUs\tState\tTime(s)\n"
            "hvbench-xen-pvh                              3   512     1     -b----      12.4\n")
    assert parse_xl_time(text, "hvbench-xen-pvh") == 12.4
    with pytest.raises(ValueError, match="does not list"):
        parse_xl_time(text, "other")


def test_a_native_run_stores_its_kernel_figures_and_reports_them(hvbench_home: Path) -> None:
    from rich.console import Console

    from hvbench.analysis import analyse
    from hvbench.report import term

    campaign = from_mapping({"platforms": ["native"], "reps": 2, "warmup": False,
                             "workloads": [{"name": "sysbench-cpu",
                                            "params": {"events": 500}}]})
    store = Store(hvbench_home / "r.sqlite")
    outcome = Runner(store, QuietReporter()).start(campaign)
    for trial in store.trials(outcome.run_id):
        kernel = trial["metadata"]["accounting"]["kernel"]
        assert kernel["user_share"] > 0 and "steal_share" in kernel
    analysis = analyse(store, outcome.run_id)
    split, = analysis.where
    assert split.platform == "native" and split.trials == 2
    assert split.reading().startswith("sysbench-cpu on native: steal ")
    # per unit of work, from the real counters: the machine's own busy CPU per event
    assert split.work_unit == "event" and split.work_rate and split.work_rate > 100
    assert 0 < split.per_unit["host_cpu_us"] < 1e6 and split.efficiency
    assert "µs of host CPU per event" in split.reading()
    console = Console(width=160, record=True)
    console.print(term.render(analysis))
    assert "Where the time goes" in console.export_text()


def test_figures_per_unit_of_work_and_efficiency() -> None:
    """Known counters and a known rate give known figures per unit (fio: per I/O)."""
    from hvbench.where import time_splits

    accounting = {"host_threads": {"seconds": 2.0, "vcpu_cores": 0.8, "main_loop_cores": 0.2},
                  "kvm": {"seconds": 2.0, "counts": {"exits": 4000, "io_exits": 1000}},
                  "kernel": {"steal_share": 0.0, "busy_cores": 0.9}, "host_kernel": {}}
    trials = [{"id": 7, "platform": "qemu-kvm", "workload": "fio-randread", "warmup": False,
               "status": "ok", "metadata": {"accounting": accounting}}]
    split, = time_splits(trials, {7: 1000.0})  # 1000 IOPS
    assert split.work_unit == "I/O" and split.work_rate == 1000.0
    assert split.per_unit["host_cpu_us"] == 1000.0  # one core for 1000 I/O per second
    assert split.per_unit["exits"] == 2.0 and split.per_unit["io_exits"] == 0.5
    assert split.efficiency == 1000.0
    assert "2 exits per I/O (io 0.5)" in split.reading()
    # the counts are put down to the work of the trial's own time (the counter's window
    # also spans its start and stop): 4000 exits over 1.6 s of 1000 I/O per second
    timed, = time_splits([{**trials[0], "seconds": 1.6}], {7: 1000.0})
    assert timed.per_unit["exits"] == 2.5 and timed.per_unit["io_exits"] == 0.625
    assert "1,000 I/O/s per host core" in split.reading()
    no_rate, = time_splits(trials)
    assert no_rate.per_unit == {} and no_rate.unit_words() == []


def test_compare_shows_how_where_the_time_goes_moved() -> None:
    from hvbench.runcompare import where_changes
    from hvbench.where import TimeSplit

    before = TimeSplit("qemu-kvm", "fio-randread", 5, {"vcpu": 0.5, "main_loop": 0.5},
                       work_unit="I/O", per_unit={"exits": 2.0, "host_cpu_us": 400.0},
                       efficiency=2500.0)
    after = TimeSplit("qemu-kvm", "fio-randread", 5, {"vcpu": 0.5, "iothread": 0.25},
                      work_unit="I/O", per_unit={"exits": 1.0, "host_cpu_us": 300.0},
                      efficiency=3333.0)
    moved = {c.figure: c for c in where_changes([before], [after])}
    assert moved["exits per I/O"].change == -50.0
    assert moved["host CPU µs per I/O"].after == 300.0
    assert round(moved["I/O/s per host core"].change) == 33
    assert moved["host cores (iothread, vcpu)"].before == 1.0
    assert where_changes([before], []) == []


def test_exit_reason_names_come_from_the_kernels_own_format() -> None:
    """The kvm_exit format of a real kernel (6.18) names VMX and SVM reasons; a
    histogram trigger's lines and the buffer's counted lines both become counts."""
    from hvbench.platforms.kvmtrace import parse_counts, reason_names

    names = reason_names((DATA / "kvm_exit.format").read_text())
    assert names[(1, 30)] == "IO_INSTRUCTION" and names[(1, 48)] == "EPT_VIOLATION"
    assert names[(2, 0x7B)] == "io" and names[(2, 0x400)] == "npf"
    assert names[(2, 0x40 + 14)] == "PF excp" and names[(2, 0x78)] == "hlt"
    hist = ("# event histogram\n#\n{ exit_reason:        123, isa:          2 } hitcount:"
            "        900\n{ exit_reason:       1024, isa:          2 } hitcount:         40\n"
            "{ exit_reason:         30, isa:          1 } hitcount:          5\n\nTotals:\n")
    assert parse_counts(hist, names) == ({"io": 900, "npf": 40, "IO_INSTRUCTION": 5}, 0)
    counted = "count 12 hlt\ncount 3 PF excp\noverrun 0\noverrun 7\n"
    assert parse_counts(counted, names) == ({"hlt": 12, "PF excp": 3}, 7)


def test_exit_reason_tracing_keeps_one_instance_per_guest_and_releases_it(tmp_path: Path
                                                                        ) -> None:
    """The tracing on this machine's real tracefs (the kvm module is loaded; kvm_pvm
    emits no kvm_exit events, so the counts are empty but real): a guest's trials work
    in one instance of its own, made at the first, kept between trials with nothing
    left triggered or enabled, removed on release; one left by a process that is gone
    is swept."""
    from hvbench.hosts.local import LocalHost
    from hvbench.platforms.kvmtrace import ExitTracing

    tracing = Path("/sys/kernel/tracing")
    if os.geteuid() != 0 or not Path("/sys/module/kvm").exists():
        pytest.skip("needs root and the kvm module")
    mounted = subprocess.run(["mountpoint", "-q", str(tracing)]).returncode == 0
    if not mounted:
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(tracing)], check=True)
    host = LocalHost()
    exits = ExitTracing(host)
    try:
        dead = subprocess.Popen(["true"])
        dead.wait()
        stale = tracing / "instances" / f"hvbench-{dead.pid}-old"
        stale.mkdir()
        pidfile = tmp_path / "pid"
        pidfile.write_text(str(os.getpid()))  # no newline: read as written by QEMU too
        mine = tracing / "instances" / f"hvbench-{os.getpid()}-{exits.token}"
        event = mine / "events" / "kvm" / "kvm_exit"
        for trial in range(2):
            collector = exits.collector(str(pidfile))
            collector.start()
            assert not stale.exists() and mine.is_dir()
            found = collector.stop()
            assert found["method"] in ("trace buffer", "histogram trigger")
            assert found["counts"] == {}  # this process ran no guest
            assert mine.is_dir(), f"trial {trial}: the instance is kept for the next"
            assert "hist:" not in (event / "trigger").read_text()
            assert (event / "enable").read_text().strip() == "0"
        exits.release()
        assert not mine.exists()
    finally:
        exits.release()
        host.close()
        if not mounted:
            subprocess.run(["umount", str(tracing)], check=True)


def test_scripts_share_one_command_each_with_its_own_arguments_and_exit() -> None:
    """run_scripts: replies in order, each script's own arguments (taken as data, never
    as shell text), its own exit status (an ``exit`` ends only it), stderr kept,
    output without a final newline and empty output intact."""
    from hvbench.hosts.local import LocalHost
    from hvbench.scripts import Script, run_scripts

    host = LocalHost()
    try:
        hostile = "$(touch /nonexistent-hvbench); `id`; \"'"
        replies = run_scripts(host, [
            Script('printf "%s|%s\\n" "$1" "$2"', ("a b", hostile)),
            Script('echo broken >&2; exit 3; echo never'),
            Script('printf "no newline"'),
            Script(':'),
            Script('set -- x; echo "$#:$1"', ("p", "q", "r")),
        ])
    finally:
        host.close()
    assert [r.exit_code for r in replies] == [0, 3, 0, 0, 0]
    assert replies[0].output == f"a b|{hostile}\n"
    assert replies[1].output == "broken\n"
    assert replies[2].output == "no newline"
    assert replies[3].output == ""
    assert replies[4].output == "1:x\n"


def test_a_hosts_collectors_take_each_reading_in_one_command(tmp_path: Path) -> None:
    """QEMU's threads, the host's kernel and (with root and kvm) exit-reason tracing
    on one host: one command to start them all and one to stop them, each with its
    own figures; a collector whose script fails says why without failing the others."""
    from hvbench.collect import Collector, HostKernel, Unavailable, started, stopped
    from hvbench.hosts.local import LocalHost
    from hvbench.machine import Completed
    from hvbench.platforms.accounting import XenDomainCpu
    from hvbench.platforms.kvmtrace import ExitTracing

    class CountingHost(LocalHost):
        """This machine, counting the commands run on it."""

        commands = 0

        def run(self, argv: Sequence[str], timeout: float, stdin: bytes | None = None
                ) -> Completed:
            CountingHost.commands += 1
            return super().run(argv, timeout, stdin)

    host = CountingHost()
    pidfile = tmp_path / "qemu.pid"
    pidfile.write_text(str(os.getpid()))
    try:
        # xl is not installed here: that collector's script fails
        collectors: list[Collector] = [QemuThreads(host, str(pidfile)),
                                       HostKernel(host, "host_kernel"),
                                       XenDomainCpu(host, "hvbench-no-such-domain")]
        exits = ExitTracing(host)
        tracer = exits.collector(str(pidfile))
        traced = not isinstance(tracer, Unavailable) \
            and Path("/sys/kernel/tracing/events/kvm").exists()
        if traced:
            collectors.append(tracer)
        CountingHost.commands = 0
        running = started(collectors)
        assert CountingHost.commands == 1
        time.sleep(0.2)
        figures = stopped(running)
        assert CountingHost.commands == 2
        exits.release()
    finally:
        host.close()
    assert figures["host_threads"]["host_cpu_s"] >= 0
    assert figures["host_kernel"]["busy_cores"] >= 0
    assert "'xl list hvbench-no-such-domain' failed" in figures["domain_cpu"]["error"]
    if traced:
        assert figures["kvm_exit_reasons"]["counts"] == {}
        assert list(Path("/sys/kernel/tracing/instances").glob(f"hvbench-{os.getpid()}-*")) == []
