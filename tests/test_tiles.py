"""Consolidation tiles: the fairness index, aggregates and scaling efficiency (fast, on
real workload and statistics code), refusals before anything boots (fast), and real
tiles of TCG guests (slow): a density run whose aggregate stops growing at the host's
two cores. (A guest killed in the middle of a tile: on an SSH host, tests/test_hosts.py.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hvbench.campaign import from_mapping
from hvbench.consolidation import Density, consolidation
from hvbench.errors import UsageError
from hvbench.hosts.local import LocalHost
from hvbench.platforms import make_platform
from hvbench.platforms.qemucfg import QemuSettings
from hvbench.platforms.tile import check_fits
from hvbench.stats import MetricRow, summarize
from hvbench.tiles import aggregate, jain
from hvbench.workloads import get_workload
from hvbench.workloads.base import Sample

from .conftest import HVBENCH, cli_env, tagged_processes


def test_jain_index_from_equal_shares_to_one_guest_taking_all() -> None:
    assert jain([5.0, 5.0, 5.0, 5.0]) == pytest.approx(1.0)
    assert jain([8.0, 0.0, 0.0, 0.0]) == pytest.approx(0.25)
    assert jain([3.0, 1.0]) == pytest.approx(16 / 20)


def test_a_tiles_samples_are_the_mean_the_aggregate_and_the_fairness() -> None:
    """sysbench-cpu's parsed samples of three guests: what one guest gets, the sum of
    the throughputs, the worst latency, Jain's index over the work rates."""
    workload = get_workload("sysbench-cpu")
    guests = [[Sample("events-per-second", rate, "events/s", True),
               Sample("latency-p95", latency, "ms", False)]
              for rate, latency in ((300.0, 4.0), (100.0, 9.0), (200.0, 5.0))]
    found = {s.metric: s for s in aggregate(workload, guests)}
    assert found["events-per-second"].value == pytest.approx(200.0)
    assert found["events-per-second-sum"].value == pytest.approx(600.0)
    assert found["latency-p95"].value == pytest.approx(6.0)
    assert found["latency-p95-worst"].value == 9.0
    assert found["fairness"].value == pytest.approx(600**2 / (3 * (300**2 + 100**2 + 200**2)))
    assert found["events-per-second"].metadata["per_guest"] == [300.0, 100.0, 200.0]


def _row(metric: str, values: dict[str, list[float]]) -> MetricRow:
    return MetricRow("sysbench-cpu", "cpu", metric, "events/s", True,
                     {p: summarize(v) for p, v in values.items()},
                     {p: tuple(v) for p, v in values.items()}, {})


def test_scaling_efficiency_against_n_times_one_guest() -> None:
    """Two cores: one guest makes 100/s, two make 200/s, four make 200/s in all: the
    efficiency is 1 at two guests and 1/2 at four, with intervals around them."""
    rng = np.random.default_rng(4)

    def noisy(level: float) -> list[float]:
        return list(level * rng.normal(1, 0.01, 8))

    names = ["q.guests-1", "q.guests-2", "q.guests-4"]
    rows = [_row("events-per-second", {"q.guests-1": noisy(100), "q.guests-2": noisy(100),
                                       "q.guests-4": noisy(50)}),
            _row("events-per-second-sum", {"q.guests-2": noisy(200), "q.guests-4": noisy(200)}),
            _row("fairness", {"q.guests-2": [1.0] * 8, "q.guests-4": [0.9] * 8})]
    platforms = [{"name": "native"}] + [
        {"name": n, "family": "q", "settings": {"guests": int(n[-1])}} for n in names]
    [density] = consolidation(rows, platforms)
    assert (density.family, density.metric) == ("q", "events-per-second")
    assert [p.guests for p in density.points] == [1, 2, 4]
    two, four = density.efficiency_at(2), density.efficiency_at(4)
    assert two is not None and four is not None
    assert two.ratio == pytest.approx(1.0, abs=0.03) and two.ratio_low < 1 < two.ratio_high
    assert four.ratio == pytest.approx(0.5, abs=0.02) and four.ratio_high < 0.55
    assert [p.fairness for p in density.points] == [1.0, 1.0, 0.9]
    from hvbench.report import charts  # the report's chart of it: both panels drawn

    figure = charts.consolidation_figure([density])
    assert figure is not None
    total, efficiency = figure.axes
    assert list(total.lines[0].get_ydata()) == [p.aggregate for p in density.points]
    assert "efficiency" in efficiency.get_ylabel()
    assert "<svg" in charts.to_svg(figure) and charts.consolidation_figure([]) is None


def test_compare_sets_two_runs_efficiency_and_fairness_side_by_side() -> None:
    """Run A scales to 1/2 at four guests, run B to 3/4 (a host with more cores): the
    efficiency moved, its intervals apart; a shift of two noisy runs' efficiency within
    each other's intervals is not called a change."""
    from hvbench.runcompare import consolidation_shifts

    rng = np.random.default_rng(7)

    def run(four: float, noise: float) -> list[Density]:
        def noisy(level: float) -> list[float]:
            return list(level * rng.normal(1, noise, 8))
        rows = [_row("events-per-second", {"q.guests-1": noisy(100), "q.guests-4": noisy(50)}),
                _row("events-per-second-sum", {"q.guests-4": noisy(four)}),
                _row("fairness", {"q.guests-4": [0.9] * 8})]
        return consolidation(rows, [{"name": n, "family": "q", "settings": {"guests": int(
            n[-1])}} for n in ("q.guests-1", "q.guests-4")])

    shifts = {s.figure: s for s in consolidation_shifts(run(200, 0.01), run(300, 0.01))}
    assert set(shifts) == {"efficiency at 4 guests", "fairness at 4 guests"}
    moved = shifts["efficiency at 4 guests"]
    assert moved.before == pytest.approx(0.5, abs=0.02)
    assert moved.after == pytest.approx(0.75, abs=0.03)
    assert moved.apart and moved.change == pytest.approx(50, abs=6)
    assert moved.wording() == "moved (intervals apart)"
    assert shifts["fairness at 4 guests"].apart is None  # a median index: no interval
    [same, _] = consolidation_shifts(run(200, 0.05), run(204, 0.05))
    assert same.apart is False and "no change shown" in same.wording()


def test_each_guest_of_a_tile_as_the_host_saw_it() -> None:
    """Medians per guest of a tile's stored accounting; failed trials, warm-ups and
    trials without a tile are left out; a guest without steal says so (None)."""
    from hvbench.consolidation import guest_shares

    def trial(platform: str, cores: list[float], steal: float | None = None,
              status: str = "ok", warmup: bool = False) -> dict[str, object]:
        kernel = {} if steal is None else {"kernel": {"steal_share": steal}}
        return {"platform": platform, "workload": "sysbench-cpu", "status": status,
                "warmup": warmup, "metadata": {"tile": {"guests": len(cores), "accounting": {
                    f"guest {i}": {"host_threads": {"vcpu_cores": c, "other_cores": 0.01},
                                   **kernel} for i, c in enumerate(cores, 1)}}}}

    shares = guest_shares([trial("q.guests-2", [0.9, 0.5], 0.1),
                           trial("q.guests-2", [1.1, 0.7], 0.3),
                           trial("q.guests-2", [0.95, 0.55], 0.2),
                           trial("q.guests-2", [9.0, 9.0], status="failed"),
                           trial("q.guests-2", [9.0, 9.0], warmup=True),
                           {"platform": "native", "workload": "sysbench-cpu", "status": "ok",
                            "metadata": {"accounting": {}}},
                           *(trial("q.guests-10", [0.2] * 10) for _ in range(2))])
    two = [s for s in shares if s.platform == "q.guests-2"]
    assert [(g.guest, g.trials) for g in two] == [("guest 1", 3), ("guest 2", 3)]
    assert two[0].host_cores == pytest.approx(0.96) and two[1].host_cores == pytest.approx(0.56)
    assert two[0].steal == pytest.approx(0.2)
    ten = [s for s in shares if s.platform == "q.guests-10"]
    assert [g.guest for g in ten][-2:] == ["guest 9", "guest 10"]  # in number order
    assert all(g.steal is None for g in ten)


def test_each_hosts_tiles_are_compared_with_that_hosts_single_guest() -> None:
    """A run over two hosts: h2's two-guest tile against h2's one guest, not h1's."""
    rows = [_row("events-per-second", {"q.guests-1@h1": [100.0] * 6,
                                       "q.guests-1@h2": [50.0] * 6}),
            _row("events-per-second-sum", {"q.guests-2@h1": [200.0] * 6,
                                           "q.guests-2@h2": [100.0] * 6})]
    platforms = [{"name": f"q.guests-{n}@{h}", "family": "q", "settings": {"guests": n}}
                 for h in ("h1", "h2") for n in (1, 2)]
    found = {d.family: d for d in consolidation(rows, platforms)}
    assert set(found) == {"q@h1", "q@h2"}
    for density in found.values():
        two = density.efficiency_at(2)
        assert two is not None and two.ratio == pytest.approx(1.0)


def test_density_expands_guest_platforms_and_bad_tiles_are_refused() -> None:
    campaign = from_mapping({"platforms": ["native", "qemu-tcg"], "density": [1, 2, 4],
                             "workloads": ["sysbench-cpu"]})
    assert [(p.name, p.settings.get("guests")) for p in campaign.platforms] == [
        ("native", None), ("qemu-tcg.guests-1", 1), ("qemu-tcg.guests-2", 2),
        ("qemu-tcg.guests-4", 4)]
    again = from_mapping(campaign.model_dump(mode="json"))  # as read back from its run
    assert [p.name for p in again.platforms] == [p.name for p in campaign.platforms]
    for bad, message in (({"platforms": ["native"], "density": [1, 2]}, "guest platform"),
                         ({"platforms": ["qemu-tcg"], "density": [2, 2]}, "distinct")):
        with pytest.raises(UsageError, match=message):
            from_mapping({**bad, "workloads": ["sysbench-cpu"]})
    # Xen domUs of a tile: a domain name and a vif address each
    from hvbench.platforms.xencfg import XenSettings, vif_for

    auto = XenSettings(network="auto", guests=2)
    addresses = {vif_for(auto, ("xenbr0", "10.231.0.1/24"), "x", member)[1]
                 for member in (1, 2)}
    assert len(addresses) == 2 and all(a.startswith("10.231.0.") for a in addresses)
    make_platform("x", "xen-pvh", {"guests": 2})  # accepted
    with pytest.raises(UsageError, match="same address"):
        make_platform("q", "qemu-tcg", {"guests": 2, "network": "bridge", "bridge": "br0",
                                        "guest_address": "10.0.0.2/24"})


def test_a_tile_the_host_cannot_hold_is_refused_with_the_numbers() -> None:
    host = LocalHost()
    try:
        with pytest.raises(UsageError, match=r"64 guests × \(400000 MiB \+ 96 MiB for QEMU\)"):
            check_fits("q", QemuSettings(memory_mib=400_000), host, 64)
        cpus = os.cpu_count() or 1
        with pytest.raises(UsageError, match=f"vCPUs on {cpus} host CPUs, more than 8"):
            check_fits("q", QemuSettings(vcpus=cpus, memory_mib=256), host, 16)
        check_fits("q", QemuSettings(memory_mib=256), host, 2)  # fits
    finally:
        host.close()


@pytest.mark.slow  # seven TCG guests booted, 1 + 2 + 4
def test_density_run_aggregate_stops_growing_at_the_hosts_cores(tmp_path: Path) -> None:
    """sysbench-cpu in 1, 2 and 4 TCG guests of one vCPU on this 2-core machine: the
    aggregate doubles from one guest to two, then stays (efficiency about 1/2 at four);
    the guests of a tile start within the recorded spread; nothing is left running."""
    home = tmp_path / "home"
    campaign = tmp_path / "density.toml"
    campaign.write_text('platforms = [{ name = "tcg", kind = "qemu-tcg", settings = '
                        '{ memory_mib = 256 } }]\ndensity = [1, 2, 4]\nreps = 2\n'
                        'warmup = false\n[[workloads]]\nname = "sysbench-cpu"\n'
                        'params = { events = 500 }\n')
    done = subprocess.run([*HVBENCH, "run", str(campaign), "--quiet"], env=cli_env(home),
                          capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Consolidation" in done.stdout
    subprocess.run([*HVBENCH, "report", "latest", "--json", str(tmp_path / "r.json"),
                    "--md", str(tmp_path / "r.md"), "--study", str(tmp_path / "s.html")],
                   env=cli_env(home), capture_output=True, text=True, check=True)
    report = json.loads((tmp_path / "r.json").read_text())
    [density] = report["consolidation"]
    points = {p["guests"]: p for p in density["points"]}
    assert set(points) == {1, 2, 4}
    assert 1.6 < points[2]["aggregate"] / points[1]["aggregate"] < 2.3, points
    assert 0.8 < points[4]["aggregate"] / points[2]["aggregate"] < 1.25, points
    assert 0.35 < points[4]["efficiency"]["ratio"] < 0.65, points
    assert points[4]["fairness"] > 0.8
    # the host's view of each guest explains it: four guests, two cores, half a core each
    four = [g for g in report["guest_shares"] if g["platform"] == "tcg.guests-4"]
    assert [g["guest"] for g in four] == ["guest 1", "guest 2", "guest 3", "guest 4"]
    assert all(0.25 < g["host_cores"] < 0.8 for g in four), four
    assert sum(g["host_cores"] for g in four) < 2.3, four
    markdown = (tmp_path / "r.md").read_text()
    assert "## Consolidation" in markdown and "| tcg | 4 | sysbench-cpu |" in markdown
    study = (tmp_path / "s.html").read_text()  # the study has the section, chart and all
    assert re.search(r"<h3>3\.\d+ Consolidation</h3>", study) and "guest 4" in study
    exported = json.loads(subprocess.run([*HVBENCH, "export", "latest", "--json"],
                                         env=cli_env(home), capture_output=True, text=True,
                                         check=True).stdout)
    tiles = [t["metadata"]["tile"] for t in exported["trials"]
             if t["platform"] == "tcg.guests-4" and t["status"] == "ok"]
    assert len(tiles) == 2 and all(t["guests"] == 4 and len(t["starts_ms"]) == 4
                                   and t["start_spread_ms"] <= t["spread_limit_ms"]
                                   for t in tiles)
    assert tagged_processes("qemu-system-x86", home) == []


def test_a_group_restarts_its_broken_guests_or_all_for_a_fresh_trial(tmp_path: Path) -> None:
    """Restart after a crash: only the broken guests; for a fresh guest per trial (none
    broken): every one. Real host machines stand in for guests (their restart is the
    contract's no-op, counted here)."""
    from hvbench.localproc import NativeMachine
    from hvbench.platforms.tile import Tile

    class Counted(NativeMachine):
        def __init__(self, broken: bool):
            super().__init__(tmp_path)
            self.broken, self.restarts = broken, 0

        def healthy(self) -> bool:
            return not self.broken

        def restart(self) -> None:
            self.restarts += 1
            self.broken = False

    members = [Counted(False), Counted(True), Counted(False)]
    tile = Tile(list(members), "t")
    try:
        tile.restart()
        assert [m.restarts for m in members] == [0, 1, 0]
        tile.restart()
        assert [m.restarts for m in members] == [1, 2, 1]
    finally:
        tile.close()
