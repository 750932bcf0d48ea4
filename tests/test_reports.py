"""Reports from real runs: terminal, HTML in headless Chromium, Markdown, CSV, JSON, PNG."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image
from rich.console import Console

from hvbench.analysis import analyse
from hvbench.campaign import from_mapping
from hvbench.gate import GateRules, judge
from hvbench.progress import QuietReporter
from hvbench.report import charts, formats, html, term
from hvbench.runcompare import compare_runs
from hvbench.runner import Runner
from hvbench.store import Store, now
from hvbench.where import TimeSplit

ARTIFACTS = Path(__file__).parent / "artifacts"
HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, str]:
    """Two native platforms measured for real, plus hostile strings in the metadata."""
    home = tmp_path_factory.mktemp("home")
    store = Store(home / "r.sqlite")
    campaign = from_mapping({
        "platforms": ["native", {"name": "native-again", "kind": "native"}],
        "workloads": [{"name": "sysbench-cpu", "params": {"events": 300}},
                      {"name": "sysbench-threads", "params": {"events": 2000}}],
        "reps": 6, "seed": 2})
    run_id = Runner(store, QuietReporter()).start(campaign).run_id
    with store.engine.begin() as connection:
        record = store.run(run_id)
        host = {**record.host, "hostname": HOSTILE}
        connection.exec_driver_sql("UPDATE runs SET host = ? WHERE id = ?",
                                   (json.dumps(host), run_id))
    store.add_trial(run_id, {"seq": 999, "platform": "native", "workload": "sysbench-cpu",
                             "repetition": 99, "warmup": False}, "failed",
                    '<img src=x onerror="alert(2)"> tool said so', now(), None, {}, [])
    return store, run_id


def test_analysis_compares_against_the_baseline(real_run: tuple[Store, str]) -> None:
    store, run_id = real_run
    analysis = analyse(store, run_id)
    assert analysis.baseline == "native"
    assert analysis.platforms == ["native", "native-again"]
    row = next(r for r in analysis.rows if r.metric == "events-per-second"
               and r.workload == "sysbench-cpu")
    comparison = row.comparisons["native-again"]
    assert comparison.ratio_low <= comparison.ratio <= comparison.ratio_high
    assert 0.5 < comparison.ratio < 2  # the same machine measured twice
    assert set(analysis.category_scores["native-again"]) == {"cpu"}
    assert any("trials failed" in w for w in analysis.warnings)


def test_baseline_from_another_run(real_run: tuple[Store, str]) -> None:
    store, run_id = real_run
    analysis = analyse(store, run_id, baseline=f"{run_id}:native-again")
    assert analysis.baseline == f"native-again@{run_id}"
    assert analysis.platforms[0] == analysis.baseline
    assert "native" in analysis.rows[0].comparisons
    # Same run, same machine: no hardware warning.
    assert not any("different hardware" in w for w in analysis.warnings)


def test_html_escapes_hostile_metadata(real_run: tuple[Store, str]) -> None:
    store, run_id = real_run
    text = html.render(analyse(store, run_id))
    assert HOSTILE not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert '<img src=x onerror="alert(2)">' not in text
    assert "<script" not in text.lower()
    # Offline: no URL that a browser would fetch (SVG namespaces are not fetched).
    for attribute in ("src=", "href="):
        for chunk in text.split(attribute)[1:]:
            assert not chunk.lstrip("\"'").startswith(("http:", "https:", "//")), chunk[:80]


def test_html_renders_in_headless_chromium_without_network(
        real_run: tuple[Store, str], tmp_path: Path) -> None:
    browser = shutil.which("chromium")
    if browser is None:
        pytest.fail("chromium is not installed: make setup installs it (packages/debian.txt)")
    store, run_id = real_run
    report = tmp_path / "report.html"
    # where the time goes, as a QEMU guest under KVM would show it: its chart is drawn
    guest = TimeSplit("native-again", "sysbench-cpu", 6, {"vcpu": 0.9, "main_loop": 0.1},
                      work_unit="event", work_rate=2000.0,
                      per_unit={"exits": 0.2, "io_exits": 0.05, "halt_exits": 0.1,
                                "host_cpu_us": 500.0}, efficiency=2000.0)
    analysis = dataclasses.replace(analyse(store, run_id), where=[guest])
    html.write(analysis, report)
    page = report.read_text()
    assert "VM exits per unit of work, by kind" in page and "host cores busy" in page
    assert "0.2 exits per event (io 0.05, halt 0.1)" in page

    # Every request the page might make is routed to this proxy, which counts them.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    connections: list[bytes] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    connections.append(conn.recv(4096))
                except OSError:
                    connections.append(b"")

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "report-screenshot.png"
    screenshot.unlink(missing_ok=True)
    port = listener.getsockname()[1]
    try:
        subprocess.run([
            browser, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic", "--no-pings",
            "--disable-domain-reliability", "--disable-client-side-phishing-detection",
            "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter,"
            "Translate,AutofillServerCommunication,CertificateTransparencyComponentUpdater",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--proxy-server=http://127.0.0.1:{port}", "--proxy-bypass-list=<-loopback>",
            "--hide-scrollbars", "--window-size=1280,2600", f"--screenshot={screenshot}",
            report.as_uri(),
        ], check=True, capture_output=True, timeout=120)
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    # Chromium's own service pings (Google hosts) are not the page's doing.
    from_page = [c for c in connections if not _chromium_service(c)]
    assert from_page == [], from_page
    pixels = image.imread(screenshot)[:, :, :3]
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1200
    # The charts are visible: the two platform colours cover a real area of the page.
    for hex_colour in charts.PALETTE[:2]:
        rgb = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
        close = np.all(np.abs(pixels - rgb) < 0.12, axis=2)
        assert close.sum() > 2000, f"chart colour {hex_colour} barely visible"


def _chromium_service(request: bytes) -> bool:
    first_line = request.split(b"\r\n", 1)[0].decode("latin-1")
    parts = first_line.split()
    target = parts[1] if len(parts) > 1 else ""
    host = target.split("//", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    return host.endswith((".google.com", ".googleapis.com", ".gstatic.com", ".gvt1.com"))


def test_markdown_csv_json_agree(real_run: tuple[Store, str]) -> None:
    store, run_id = real_run
    analysis = analyse(store, run_id)
    records = list(csv.DictReader(io.StringIO(formats.to_csv(analysis))))
    document = json.loads(formats.to_json(analysis))
    assert len(records) == len(document["results"]) == sum(len(r.summaries)
                                                             for r in analysis.rows)
    first = document["results"][0]
    assert float(records[0]["median"]) == pytest.approx(first["median"])
    markdown = formats.markdown(analysis)
    assert "| workload | metric |" in markdown
    assert "&lt;" not in markdown or HOSTILE not in markdown


def test_png_charts_are_written(real_run: tuple[Store, str], tmp_path: Path) -> None:
    store, run_id = real_run
    written = charts.write_pngs(analyse(store, run_id), tmp_path / "png")
    assert {p.name for p in written} == {"overview.png", "sysbench-cpu.png",
                                         "sysbench-threads.png"}
    for path in written:
        assert image.imread(path).shape[0] > 100


def test_baseline_from_other_hardware_is_flagged(real_run: tuple[Store, str]) -> None:
    store, run_id = real_run
    record = store.run(run_id)
    # A run stored from another machine: same samples, another hardware fingerprint.
    store.create_run("other-machine", record.campaign, record.plan,
                     {**record.host, "fingerprint": "0123456789abcdef"}, "test")
    for row in store.samples(run_id):
        if row.platform == "native":
            from hvbench.workloads.base import Sample

            store.add_trial("other-machine", {"seq": row.seq, "platform": "native",
                                              "workload": row.workload,
                                              "repetition": row.repetition,
                                              "warmup": False},
                            "ok", None, now(), 1.0, {},
                            [Sample(row.metric, row.value, row.unit, row.higher_is_better)])
    analysis = analyse(store, run_id, baseline="other-machine:native")
    assert any("different hardware" in w and "0123456789abcdef" in w
               for w in analysis.warnings)


def test_a_run_on_several_hosts_compares_each_with_its_own_baseline(tmp_path: Path) -> None:
    # PLATFORM@HOST names as a multi-host run makes them (here all on this machine)
    campaign = from_mapping({
        "platforms": [{"name": n, "kind": "native"}
                      for n in ("native@a", "other@a", "lab-native@b", "other@b")],
        "workloads": [{"name": "sysbench-cpu", "params": {"events": 200}}],
        "reps": 2, "warmup": False}, "test")
    store = Store(tmp_path / "r.sqlite")
    outcome = Runner(store, QuietReporter()).start(campaign)
    analysis = analyse(store, outcome.run_id)
    assert analysis.baseline_of == {"other@a": "native@a", "other@b": "lab-native@b"}
    assert analysis.per_host and analysis.compared() == ["other@a", "other@b"]
    row = analysis.rows[0]
    assert set(row.comparisons) == {"other@a", "other@b"}
    assert set(analysis.overall) == {"other@a", "other@b"}
    console = Console(width=250, record=True)
    console.print(term.render(analysis, detail=True))
    text = " ".join(console.export_text().split())
    assert "other@b vs lab-native@b" in text and "other@a vs native@a" in text
    assert "Scores vs each host's baseline" in text


def _three_host_run(store: Store, run_id: str) -> str:
    """Seven platforms on three hosts, as --hypervisors with both labs makes them, from
    this module's real samples: each platform gets the real native series scaled by its
    own factor (the layout is under test here, not the numbers)."""
    factors = {"native@local": 1.0, "qemu-tcg@local": 0.12, "lab-native@lab-kvm": 1.0,
               "qemu-kvm@lab-kvm": 0.93, "lab-native@lab-xen": 1.0, "xen-pv@lab-xen": 1.0,
               "xen-pvh@lab-xen": 1.6}
    record = store.run(run_id)
    campaign = {**record.campaign, "platforms": [
        {"name": name, "kind": "native"} for name in factors]}
    new_id = f"{run_id}-hosts"
    if new_id in {r["id"] for r in store.list_runs()}:
        return new_id
    store.create_run(new_id, campaign, record.plan, record.host, "test")
    from hvbench.workloads.base import Sample

    # the same real series also stand for one workload of every other category, so the
    # answer has all six category columns
    stand_ins = {("sysbench-cpu", "events-per-second"): [
        ("sysbench-cpu", "events-per-second", True), ("sysbench-memory", "read-bandwidth", True),
        ("fio-randread", "bandwidth", True), ("sockperf-pingpong", "latency-avg", False),
        ("stress-ng-syscall", "bogo-ops-per-second", True), ("mafft", "alignment-time", False)]}
    seq = 0
    for row in store.samples(run_id):
        if row.platform != "native":
            continue
        for workload, metric, higher in stand_ins.get(
                (row.workload, row.metric), [(row.workload, row.metric, row.higher_is_better)]):
            for name, factor in factors.items():
                value = row.value * (factor if higher else 1 / factor)
                store.add_trial(new_id, {"seq": seq, "platform": name, "workload": workload,
                                         "repetition": row.repetition, "warmup": False},
                                "ok", None, now(), 1.0, {},
                                [Sample(metric, value, row.unit, higher)])
                seq += 1
    return new_id


@pytest.mark.parametrize("width", [80, 100, 160])
def test_terminal_report_fits_its_width(real_run: tuple[Store, str], width: int) -> None:
    store, run_id = real_run
    analysis = analyse(store, _three_host_run(store, run_id))
    assert len(analysis.compared()) == 4 and len(set(analysis.baseline_of.values())) == 3
    console = Console(width=width, record=True)
    console.print(term.render(analysis))
    text = console.export_text()
    assert "…" not in text  # nothing truncated
    assert all(len(line) <= width for line in text.splitlines())
    for name in ("qemu-tcg", "qemu-kvm", "xen-pv", "xen-pvh", "On local", "On lab-kvm",
                 "On lab-xen"):
        assert name in text
    for row in analysis.rows:
        for comparison in row.comparisons.values():
            # each cell's first line whole: relative performance and its verdict mark
            assert f"{comparison.performance:.3f} {comparison.verdict.mark}" in text
    for category in ("cpu", "memory", "disk", "network", "micro", "app"):
        assert category in text
    assert "The answer" in text and "▼" in text  # the answer leads
    assert text.index("The answer") < text.index("On local")


def test_a_baseline_that_measured_zero_is_not_divided_by(tmp_path: Path) -> None:
    """A probe whose cost on the baseline is below what it resolves reads 0 there (seen
    for hvprobe's cpuid in the Xen lab's dom0): that metric gets no ratio and a warning
    naming it; the report of every other metric is made as usual."""
    from hvbench.workloads.base import Sample

    campaign = from_mapping({"platforms": ["native", "qemu-tcg"], "workloads": ["hvprobe"]})
    store = Store(tmp_path / "r.sqlite")
    store.create_run("zero", campaign.model_dump(mode="json"), [], {}, "test")
    values = {"native": {"cpuid": 0.0, "syscall": 90.0}, "qemu-tcg": {"cpuid": 40.0,
                                                                    "syscall": 300.0}}
    store.create_run("again", campaign.model_dump(mode="json"), [], {}, "test")
    for run_id in ("zero", "again"):
        for seq, (platform, rep) in enumerate((p, r) for r in range(4) for p in values):
            store.add_trial(run_id, {"seq": seq, "platform": platform, "workload": "hvprobe",
                                     "repetition": rep, "warmup": False}, "ok", None, now(),
                            1.0, {}, [Sample(m, v + rep if v else 0.0, "ns", False)
                                      for m, v in values[platform].items()])
    analysis = analyse(store, "zero")
    rows = {row.metric: row for row in analysis.rows}
    assert "qemu-tcg" not in rows["cpuid"].comparisons
    assert rows["syscall"].comparisons["qemu-tcg"].ratio > 3
    assert any("hvprobe/cpuid: the median on native is 0" in w for w in analysis.warnings)
    assert "cpuid" in formats.markdown(analysis)
    # comparing two such runs leaves that one metric out, with a note naming it
    _a, _b, changes, notes = compare_runs(store, "zero", "again")
    compared = {(c.platform, c.metric) for c in changes}
    assert ("native", "cpuid") not in compared and ("qemu-tcg", "cpuid") in compared
    assert ("native", "syscall") in compared
    assert any("native · hvprobe/cpuid: the median in the first run is 0" in n for n in notes)
    # and the gate itself never divides by it
    judged = judge([([0.0] * 4, [5.0] * 4, False, "cpuid")], GateRules())[0]
    assert not judged.significant
    assert judged.wording() == "no ratio: a value of 0 or less was measured"
