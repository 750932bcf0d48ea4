"""Campaign validation and the trial plan."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from hvbench.campaign import from_mapping, from_toml, plan
from hvbench.errors import UsageError


def test_plan_has_one_warmup_per_platform_and_interleaves_reps() -> None:
    campaign = from_mapping({"platforms": ["native", {"name": "n2", "kind": "native"}],
                             "workloads": ["sysbench-cpu", "stress-ng-cpu"], "reps": 4,
                             "seed": 3})
    trials = plan(campaign)
    assert [t.seq for t in trials] == list(range(len(trials)))
    warmups = [(t.platform, t.workload) for t in trials if t.warmup]
    assert Counter(warmups) == {("native", "sysbench-cpu"): 1, ("n2", "sysbench-cpu"): 1,
                                ("native", "stress-ng-cpu"): 1, ("n2", "stress-ng-cpu"): 1}
    for workload in ("sysbench-cpu", "stress-ng-cpu"):
        mine = [t for t in trials if t.workload == workload]
        assert all(t.warmup for t in mine[:2])  # warm-ups come first
        measured = mine[2:]
        # Every repetition contains each platform exactly once, in consecutive slots.
        for rep in range(4):
            block = measured[2 * rep:2 * rep + 2]
            assert {t.platform for t in block} == {"native", "n2"}
            assert {t.repetition for t in block} == {rep}


def test_plan_order_is_seeded() -> None:
    def order(seed: int) -> list[str]:
        campaign = from_mapping({"platforms": ["native", {"name": "b", "kind": "native"},
                                               {"name": "c", "kind": "native"}],
                                 "workloads": ["sysbench-cpu"], "reps": 8, "seed": seed})
        return [t.platform for t in plan(campaign)]

    assert order(1) == order(1)
    assert order(1) != order(2)


def test_suite_expands_with_its_parameters() -> None:
    campaign = from_mapping({"platforms": ["native"], "suite": "quick"})
    names = [w.name for w in campaign.workloads]
    assert "sysbench-cpu" in names
    assert campaign.workloads[names.index("stress-ng-syscall")].params == {"seconds": 2}
    assert campaign.workloads[names.index("sysbench-cpu")].params == {}  # its defaults


@pytest.mark.parametrize(("data", "message"), [
    ({"platforms": ["nope"], "workloads": ["sysbench-cpu"]}, "unknown platform 'nope'"),
    ({"platforms": ["native"], "workloads": ["nope"]}, "unknown workload 'nope'"),
    ({"platforms": ["native"], "suite": "nope"}, "unknown suite 'nope'"),
    ({"platforms": ["native"], "workloads": [{"name": "sysbench-cpu",
                                               "params": {"events": -5}}]},
     "invalid parameter for workload 'sysbench-cpu': events"),
    ({"platforms": ["native"], "workloads": [{"name": "fio-randread",
                                               "params": {"colour": "red"}}]},
     "colour: Extra inputs are not permitted"),
    ({"platforms": ["native"], "workloads": ["sysbench-cpu"], "reps": 0}, "reps"),
    ({"platforms": ["native", "native"], "workloads": ["sysbench-cpu"]}, "unique"),
    ({"platforms": [], "workloads": ["sysbench-cpu"]}, "platforms"),
])
def test_bad_campaigns_name_the_problem(data: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        from_mapping(data)


def test_toml_file_errors_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "c.toml"
    broken.write_text("platforms = [native")
    with pytest.raises(UsageError, match=r"c.toml is not valid TOML"):
        from_toml(broken)
    with pytest.raises(UsageError, match="does not exist"):
        from_toml(tmp_path / "missing.toml")
    wrong = tmp_path / "w.toml"
    wrong.write_text('platforms = ["native"]\nworkloads = ["sysbench-cpu"]\nreps = "many"\n')
    with pytest.raises(UsageError, match=r"w.toml: reps"):
        from_toml(wrong)


def test_several_hosts_put_every_platform_on_each_host() -> None:
    campaign = from_mapping({"platforms": ["native", "qemu-kvm"], "workloads": ["sysbench-cpu"],
                             "host": ["local", "ssh://root@kvm1", "lab:kvm", "local"]}, "t")
    assert [(p.name, p.driver, p.host) for p in campaign.platforms] == [
        ("native@local", "native", "local"),
        ("native@kvm1", "native", "ssh://root@kvm1"),
        ("lab-native@lab-kvm", "lab-native", "lab:kvm"),  # a lab's baseline is L1
        ("qemu-kvm@local", "qemu-kvm", "local"),
        ("qemu-kvm@kvm1", "qemu-kvm", "ssh://root@kvm1"),
        ("qemu-kvm@lab-kvm", "qemu-kvm", "lab:kvm")]
    assert [str(h) for h in campaign.hosts] == ["local", "ssh://root@kvm1", "lab:kvm"]
    # stored and reloaded (--resume): the expansion is not applied twice
    again = from_mapping(campaign.model_dump(mode="json"), "stored")
    assert [p.name for p in again.platforms] == [p.name for p in campaign.platforms]
    assert {t.platform for t in plan(campaign)} == {p.name for p in campaign.platforms}


@pytest.mark.parametrize(("data", "message"), [
    ({"host": "lab:kvm", "platforms": ["native"]}, "name it 'lab-native'"),
    ({"platforms": ["lab-native"]}, "runs only in a lab"),
    ({"host": ["local", "ftp://x"]}, "is not a host"),
    ({"host": "lab:vmware"}, "host"),
    ({"host": "ssh://root:pw@h"}, "no password"),
])
def test_bad_hosts_are_usage_errors(data: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        from_mapping({"platforms": ["native"], "workloads": ["sysbench-cpu"], **data}, "t")


def test_a_matrix_expands_into_named_variants_with_their_settings() -> None:
    # nvme takes no queues: refused up front, naming both settings
    with pytest.raises(UsageError, match=re.escape(
            "platform kvm.nvme.iothread-off.queues-2: queues = 2 needs disk_bus virtio-blk "
            "or virtio-scsi, not 'nvme'")):
        from_mapping({"platforms": [{"name": "kvm", "kind": "qemu-tcg", "matrix": {
            "disk_bus": ["virtio-scsi", "nvme"], "iothread": [False], "queues": [1, 2]}}],
            "workloads": ["sysbench-cpu"]})
    campaign = from_mapping({
        "platforms": ["native", {"name": "kvm", "kind": "qemu-tcg", "settings": {"vcpus": 2},
                                 "matrix": {"disk_bus": ["virtio-blk", "nvme"],
                                            "disk_cache": ["none", "writeback"]}}],
        "workloads": ["sysbench-cpu"]})
    variants = campaign.platforms[1:]
    assert [v.name for v in variants] == ["kvm.virtio-blk.none", "kvm.virtio-blk.writeback",
                                          "kvm.nvme.none", "kvm.nvme.writeback"]
    assert variants[3].settings == {"vcpus": 2, "disk_bus": "nvme", "disk_cache": "writeback"}
    assert variants[3].family == "kvm" and variants[3].levels == {
        "disk_bus": "nvme", "disk_cache": "writeback"}


@pytest.mark.parametrize(("matrix", "message"), [
    ({"vhost": [True]}, "vhost = true needs network = 'bridge' (a tap): user networking"),
    ({"machine": ["microvm"], "disk_bus": ["nvme"]}, "machine = 'microvm' has no PCI bus"),
    ({"disk_buss": ["nvme"]}, "setting disk_buss: Extra inputs are not permitted"),
    ({"disk_bus": ["nvme", "nvme"]}, "matrix setting 'disk_bus' repeats a value"),
    ({"disk_bus": []}, "matrix setting 'disk_bus' has no values"),
    ({"vcpus": [1, 2]}, "'vcpus' is both a setting and a matrix setting"),
])
def test_bad_matrices_are_refused_up_front(matrix: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(UsageError, match=re.escape(message)):
        from_mapping({"platforms": [{"name": "kvm", "kind": "qemu-tcg", "matrix": matrix,
                                     "settings": {"vcpus": 2}}],
                      "workloads": ["sysbench-cpu"]})


def test_matrix_on_the_command_line(tmp_path: Path) -> None:
    import subprocess

    from .conftest import HVBENCH, cli_env

    done = subprocess.run([*HVBENCH, "run", "--platform", "native,qemu-tcg", "--workload",
                           "sysbench-cpu", "--matrix", "qemu-tcg.iothread=true,false",
                           "--matrix", "qemu-tcg.disk_bus=nvme"], capture_output=True,
                          text=True, env=cli_env(tmp_path), timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "hvbench: error: platform qemu-tcg.iothread-on.nvme: iothread = true needs disk_bus "
        "virtio-blk or virtio-scsi, not 'nvme'")
    done = subprocess.run([*HVBENCH, "run", "--platform", "native", "--workload",
                           "sysbench-cpu", "--matrix", "qemu-tcg"], capture_output=True,
                          text=True, env=cli_env(tmp_path), timeout=60, check=False)
    assert done.returncode == 2 and "is not PLATFORM.SETTING=V1,V2" in done.stderr
