"""Effects of matrix settings, simulated against known truth: a 2x3 factorial whose
main effects and interactions are set, measured with lognormal noise, many times."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from hvbench.effects import family_effects

A = {"a1": 0.10, "a2": -0.10}  # true main effects, log scale (they sum to zero)
B = {"b1": 0.0, "b2": 0.06, "b3": -0.06}


@dataclass(frozen=True)
class Row:
    workload: str
    category: str
    higher_is_better: bool
    values: dict[str, tuple[float, ...]]


def _simulate(rng: np.random.Generator, extra: dict[tuple[str, str], float], n: int = 8,
              sigma: float = 0.05) -> tuple[dict[str, dict[str, object]], list[Row]]:
    levels = {f"vm.{a}.{b}": {"bus": a, "cache": b} for a in A for b in B}
    rows = []
    for workload, higher in (("fio-randread", True), ("fio-seqwrite", False)):
        values = {"native": tuple(np.exp(rng.normal(math.log(100), sigma, n)))}
        for name, level in levels.items():
            true = math.log(0.8) + A[str(level["bus"])] + B[str(level["cache"])] \
                + extra.get((str(level["bus"]), str(level["cache"])), 0.0)
            sign = 1 if higher else -1  # lower-is-better: better means smaller numbers
            values[name] = tuple(np.exp(rng.normal(math.log(100) + sign * true, sigma, n)))
        rows.append(Row(workload, "disk", higher, values))
    return levels, rows


def test_main_effects_are_estimated_and_covered() -> None:
    rng = np.random.default_rng(7)
    covered = total = 0
    zero_interactions_called_zero = interactions = 0
    for seed in range(60):
        levels, rows = _simulate(rng, {})
        found = family_effects("vm", levels, rows, {v: "native" for v in levels}, seed=seed)
        assert found is not None and found.factorial and found.settings == ["bus", "cache"]
        overall = found.scopes[0]
        assert overall.name == "overall" and [s.name for s in found.scopes] == [
            "overall", "disk"]
        truth = {("bus", k): v for k, v in A.items()} | {("cache", k): v for k, v in B.items()}
        for effect in overall.main:
            true = math.exp(truth[effect.setting, effect.level])
            assert abs(math.log(effect.estimate.value / true)) < 0.05
            covered += effect.estimate.low <= true <= effect.estimate.high
            total += 1
        for effect in overall.interactions:
            interactions += 1
            zero_interactions_called_zero += \
                effect.estimate.verdict == "no significant difference"
        best, _ = overall.ranking[0]
        assert best == "vm.a1.b2"  # the truly best combination ranks first
    assert covered / total >= 0.88, covered / total
    assert zero_interactions_called_zero / interactions >= 0.88


def test_a_real_interaction_is_found_and_a_null_setting_is_not_significant() -> None:
    rng = np.random.default_rng(11)
    detected = 0
    for seed in range(30):
        levels, rows = _simulate(rng, {("a1", "b3"): 0.15})
        found = family_effects("vm", levels, rows, {v: "native" for v in levels}, seed=seed)
        assert found is not None
        pair = next(e for e in found.scopes[0].interactions
                    if (e.level, e.with_level) == ("a1", "b3"))
        detected += pair.estimate.verdict == "better"
    assert detected >= 25


def test_an_incomplete_matrix_gives_a_ranking_but_no_effects() -> None:
    levels, rows = _simulate(np.random.default_rng(3), {})
    del levels["vm.a2.b3"]
    found = family_effects("vm", levels, rows, {v: "native" for v in levels})
    assert found is not None and not found.factorial
    assert found.scopes[0].main == [] and len(found.scopes[0].ranking) == 5


@pytest.mark.slow
def test_a_synthetic_matrix_run_reports_its_effects(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Known effects written into a real store as a matrix run: the analysis finds them,
    and the terminal, HTML and JSON reports show them."""
    import json as json_mod

    from rich.console import Console

    from hvbench.analysis import analyse
    from hvbench.campaign import from_mapping
    from hvbench.report import formats, html, term
    from hvbench.store import Store
    from hvbench.workloads.base import Sample

    campaign = from_mapping({
        "platforms": ["native", {"name": "vm", "kind": "qemu-tcg",
                                 "matrix": {"disk_bus": ["virtio-blk", "nvme", "ide"],
                                            "disk_cache": ["none", "writeback"]}}],
        "workloads": [{"name": "fio-randread"}], "reps": 8})
    names = [p.name for p in campaign.platforms]
    assert names == ["native", "vm.virtio-blk.none", "vm.virtio-blk.writeback",
                     "vm.nvme.none", "vm.nvme.writeback", "vm.ide.none", "vm.ide.writeback"]
    truth = {"virtio-blk": 0.1, "nvme": 0.05, "ide": -0.15, "none": 0.0, "writeback": 0.0}
    store = Store(tmp_path / "r.sqlite")
    store.create_run("synthetic", campaign.model_dump(mode="json"), [], {}, "test")
    rng = np.random.default_rng(5)
    seq = 0
    for spec in campaign.platforms:
        true = 0.0 if spec.levels is None else math.log(0.7) + sum(
            truth[str(v)] for v in spec.levels.values())
        for rep in range(8):
            value = float(np.exp(rng.normal(math.log(200) + true, 0.03)))
            store.add_trial("synthetic", {"seq": seq, "platform": spec.name,
                                          "workload": "fio-randread", "repetition": rep,
                                          "warmup": False}, "ok", None, "2026-12-01T00:00:00",
                            1.0, {}, [Sample("bandwidth", value, "MiB/s", True, {})])
            seq += 1
    analysis = analyse(store, "synthetic")
    family, = analysis.effects
    assert family.family == "vm" and family.factorial
    overall = family.scopes[0]
    bus = {e.level: e.estimate for e in overall.main if e.setting == "disk_bus"}
    assert bus["ide"].verdict == "worse" and bus["virtio-blk"].verdict == "better"
    mean = (0.1 + 0.05 - 0.15) / 3
    assert abs(math.log(bus["ide"].value) - (-0.15 - mean)) < 0.03
    cache = {e.level: e.estimate for e in overall.main if e.setting == "disk_cache"}
    assert cache["none"].verdict == "no significant difference"
    assert overall.ranking[0][0].startswith("vm.virtio-blk.")
    console = Console(width=160, record=True)
    console.print(term.render(analysis))
    text = console.export_text()
    assert "Which setting matters: matrix of vm over disk_bus, disk_cache" in text
    assert "disk_bus=ide: ×" in text and "worse" in text
    page = html.render(analysis)
    assert 'id="effects-1"' in page and "<svg" in page.split('id="effects-1"')[1]
    exported = json_mod.loads(formats.to_json(analysis))
    assert exported["effects"][0]["settings"] == ["disk_bus", "disk_cache"]
