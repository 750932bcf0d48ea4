"""kvmprobe on this machine's real /dev/kvm: every probe loop exits as intended
(counted by KVM itself), a triple fault is reported, and no KVM_RUN can hang."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from hvbench.probes import kvmprobe

from .conftest import HVBENCH, cli_env

needs_kvm = pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK),
                               reason="no read-write /dev/kvm here")


@needs_kvm
def test_each_probe_loop_exits_as_intended() -> None:
    report = kvmprobe.measure(quick=True)
    assert report.api_version == 12
    seen = {(r.name, r.cpl) for r in report.results}
    assert seen == {(n, c) for n in ("pio", "mmio", "hlt", "cpuid", "ioeventfd", "pic")
                    for c in (0, 3)} - {("hlt", 3)}
    for result in report.results:
        # this VMM saw exactly one return per iteration for the userspace exits...
        assert result.userspace_exits_per_iteration == (
            1.0 if result.name in ("pio", "mmio", "hlt") else 0.0), result
        # ...and KVM's own counters moved as this backend handles the instruction
        assert result.exits_ok, result
        assert result.expected in kvmprobe.expected_counts(report.backend, result.name,
                                                           result.cpl)
        for key, value in result.expected.items():  # host interrupts may add a few exits
            slack = 0.12 * value + 0.02 if key == "exits" else 0.02 * max(value, 1)
            assert value - 0.02 <= result.exits_per_iteration[key] <= value + slack, result
    by = {(r.name, r.cpl): r for r in report.results}
    # an exit to userspace costs more than one the kernel handles, at the same CPL
    assert by["pio", 3].ns_per_exit > by["ioeventfd", 3].ns_per_exit
    if report.backend == "kvm_pvm":
        assert any("instruction emulator" in note for note in report.notes)


@needs_kvm
def test_a_triple_fault_is_reported_as_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(kvmprobe.BODIES, "crash", b"\x0f\x0b")  # ud2, and no IDT
    fd = kvmprobe.open_kvm()
    try:
        with pytest.raises(kvmprobe.KvmProbeError, match="KVM_EXIT_SHUTDOWN"):
            kvmprobe._run_probe(fd, "crash", 3, 10)
    finally:
        os.close(fd)


@needs_kvm
def test_every_kvm_run_is_bounded_in_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(kvmprobe.BODIES, "spin", b"\xeb\xfe")  # jmp $: never exits
    monkeypatch.setattr(kvmprobe, "RUN_LIMIT", 1.0)
    fd = kvmprobe.open_kvm()
    started = time.monotonic()
    try:
        with pytest.raises(kvmprobe.KvmProbeError, match="stopped by the timer"):
            kvmprobe._run_probe(fd, "spin", 3, 10)
    finally:
        os.close(fd)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(("error", "message"), [
    (FileNotFoundError, "does not exist"), (PermissionError, "not read-write")])
def test_missing_or_forbidden_kvm_is_a_clear_message(monkeypatch: pytest.MonkeyPatch,
                                                     error: type, message: str) -> None:
    def refuse(path: str, *_args: object, **_kwargs: object) -> int:
        raise error(path)

    monkeypatch.setattr(kvmprobe.os, "open", refuse)
    with pytest.raises(kvmprobe.KvmProbeError, match=message):
        kvmprobe.open_kvm()


@needs_kvm
def test_kvmprobe_platform_end_to_end(hvbench_home: Path) -> None:
    import subprocess

    done = subprocess.run([*HVBENCH, "run", "--platform", "kvmprobe,native", "--workload",
                           "kvm-exits,stress-ng-syscall", "--param", "kvm-exits.quick=true",
                           "--param", "stress-ng-syscall.seconds=1", "--reps", "1",
                           "--no-warmup", "--quiet"], capture_output=True, text=True,
                          env=cli_env(hvbench_home), timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    assert "VM exit costs" in done.stdout.replace("\n", " ") or "VM exit" in done.stdout
    exported = json.loads(subprocess.run(
        [*HVBENCH, "export", "latest", "--json"], capture_output=True, text=True,
        env=cli_env(hvbench_home), timeout=60, check=True).stdout)
    probes = [s for s in exported["samples"] if s["workload"] == "kvm-exits"]
    assert {s["platform"] for s in probes} == {"kvmprobe"} and len(probes) == 11
    assert all(s["metadata"]["exits_ok"] for s in probes)
    skipped = {(t["platform"], t["workload"]) for t in exported["trials"]
               if t["status"] == "skipped"}
    assert skipped == {("kvmprobe", "stress-ng-syscall"), ("native", "kvm-exits")}
