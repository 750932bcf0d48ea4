"""``hvbench ab``: two configurations alternated on one host, repetitions added only
while a verdict is open. The sequential gate's error rates by simulation (slow), its
refusals (fast), and real A/B and A/A runs from the CLI (slow)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hvbench.ab import SequentialGate, check_pair, look_plan
from hvbench.campaign import Campaign, from_mapping
from hvbench.errors import UsageError
from hvbench.gate import GateRules
from hvbench.stats import Series

from .conftest import HVBENCH, cli_env


def _campaign(**changes: object) -> Campaign:
    data: dict[str, object] = {"platforms": [{"name": "x", "kind": "native"}],
                               "workloads": [{"name": "sysbench-cpu"}]}
    data.update(changes)
    return from_mapping(data)


def test_pairs_that_cannot_be_alternated_are_refused() -> None:
    a = _campaign()
    with pytest.raises(UsageError, match="same workloads"):
        check_pair(a, _campaign(workloads=[{"name": "sysbench-memory"}]))
    with pytest.raises(UsageError, match="same workloads"):
        check_pair(a, _campaign(workloads=[{"name": "sysbench-cpu",
                                            "params": {"events": 10}}]))
    with pytest.raises(UsageError, match="one host"):
        check_pair(a, _campaign(host="ssh://root@example.net"))
    with pytest.raises(UsageError, match="no platform name in common"):
        check_pair(a, _campaign(platforms=[{"name": "y", "kind": "native"}]))
    assert check_pair(a, _campaign(platforms=[
        {"name": "x", "kind": "native", "settings": {"cpus": [0]}}])) == ["x"]
    with pytest.raises(UsageError, match="--min-reps"):
        look_plan(12, 10, 0.05)
    plan = look_plan(5, 20, 0.05)
    assert plan.looks[0] == 5 and plan.looks[-1] == 20
    assert sum(plan.alpha_at(k) for k in range(1, len(plan.looks) + 1)) == pytest.approx(0.05)


def _sequential(rng: np.random.Generator, effect: float, sigma: float, metrics: int = 50
                ) -> tuple[SequentialGate, int]:
    """One simulated ab run: samples arrive a repetition at a time, the gate looks at the
    plan's counts; the first metric changed by ``effect``."""
    plan = look_plan(5, 20, 0.05)
    gate = SequentialGate(plan, GateRules())
    a = rng.lognormal(0, sigma, (metrics, plan.n_max))
    b = rng.lognormal(0, sigma, (metrics, plan.n_max))
    b[0] *= effect
    for n in plan.looks:
        pairs = [(Series("x", "w", f"m{i}", "u", True, tuple(a[i, :n])),
                  Series("x", "w", f"m{i}", "u", True, tuple(b[i, :n])))
                 for i in range(metrics)]
        if gate.look(n, pairs):
            return gate, n
    return gate, plan.n_max


@pytest.mark.slow  # 120 simulated runs of 50 metrics, up to 5 looks each
def test_sequential_gate_false_alarms_and_power() -> None:
    """A/A across 50 metrics with noisy samples (so that several looks are taken): a
    regression in at most 5% of whole comparisons; a true 10% slowdown of one metric
    is caught nearly always, usually before the last look."""
    rng = np.random.default_rng(11)
    runs = 120
    alarms = looks_taken = 0
    for _ in range(runs):
        gate, n = _sequential(rng, 1.0, 0.04)
        alarms += bool(gate.regressions)
        looks_taken += gate.plan.look_at(n)
    assert alarms / runs <= 0.05, alarms
    assert looks_taken / runs > 1.5  # the test exercises repeated looks, not one
    caught = early = 0
    for _ in range(100):
        gate, n = _sequential(rng, 0.90, 0.02, metrics=10)
        found = [d for d in gate.regressions if d.change.metric == "m0"]
        caught += bool(found)
        early += bool(found) and found[0].n < 20
    assert caught >= 90, caught
    assert early >= 80, early


def _write(path: Path, settings: str) -> Path:
    path.write_text('platforms = [{ name = "x", kind = "native"' + settings + ' }]\n'
                    'workloads = [{ name = "sysbench-cpu", '
                    'params = { events = 3000, threads = 2 } }]\n')
    return path


@pytest.mark.slow
def test_ab_end_to_end_finds_a_real_regression_and_stays_quiet_on_a_a(tmp_path: Path
                                                                       ) -> None:
    """B binds the same two-thread work to one CPU: half the throughput, decided at the
    first look, exit 1; A against itself: no regression, exit 0. The two sides ran in
    the order A B B A ..., and the stored runs give the same verdict to compare."""
    env = cli_env(tmp_path / "home")
    both = _write(tmp_path / "a.toml", "")
    one_cpu = _write(tmp_path / "b.toml", ', settings = { cpus = [0] }')
    found = subprocess.run([*HVBENCH, "ab", str(both), str(one_cpu), "--quiet"], env=env,
                           capture_output=True, text=True, timeout=300, check=False)
    assert found.returncode == 1, found.stdout + found.stderr
    assert "REGRESSION" in found.stdout and "look 1, n=5" in found.stdout
    assert "1 of " in found.stdout and "planned looks taken" in found.stdout
    runs = json.loads(subprocess.run([*HVBENCH, "results", "--json"], env=env, check=True,
                                     capture_output=True, text=True).stdout)
    assert len(runs) == 2
    ids = {}
    for run in runs:
        ids[run["id"]] = json.loads(subprocess.run(
            [*HVBENCH, "export", run["id"], "--json"], env=env, check=True,
            capture_output=True, text=True).stdout)
    a_id = next(i for i, d in ids.items() if not d["run"]["campaign"]["platforms"][0]
                ["settings"])
    b_id = next(i for i in ids if i != a_id)
    assert f"{a_id} (A) and {b_id} (B)" in found.stdout
    assert {r["id"]: r["ab"] for r in runs} == {a_id: {"side": "A", "partner": b_id},
                                                b_id: {"side": "B", "partner": a_id}}
    measured = sorted(((t["started"], side, t["repetition"]) for side, run_id in
                       (("A", a_id), ("B", b_id)) for t in ids[run_id]["trials"]
                       if t["status"] == "ok" and not t["warmup"]))
    assert "".join(side for *_, side, _rep in measured) == "ABBAABBAAB"
    ratios = [s["value"] for s in ids[b_id]["samples"]]
    assert len(ratios) == 5  # stopped at the first look
    skipped = [t for t in ids[b_id]["trials"] if t["status"] == "skipped"]
    assert skipped and all("decided at look 1" in t["reason"] for t in skipped)
    # the stored runs, compared as any two runs: the same verdict, and its reverse
    worse = subprocess.run([*HVBENCH, "compare", a_id, b_id], env=env, capture_output=True,
                           text=True, timeout=120, check=False)
    assert worse.returncode == 1 and "REGRESSION" in worse.stdout, worse.stderr
    assert "host CPU µs per event" in worse.stdout  # where the time goes, A -> B
    better = subprocess.run([*HVBENCH, "compare", b_id, a_id], env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert better.returncode == 0 and "improvement" in better.stdout, better.stderr
    lenient = subprocess.run([*HVBENCH, "compare", a_id, b_id, "--threshold", "1000"],
                             env=env, capture_output=True, text=True, timeout=120,
                             check=False)
    assert lenient.returncode == 0
    same = subprocess.run([*HVBENCH, "ab", str(both), str(both), "--quiet", "--max-reps",
                           "7"], env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "REGRESSION" not in same.stdout
    assert ("no change beyond the noise threshold" in same.stdout
            or "inconclusive" in same.stdout)
