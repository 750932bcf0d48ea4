"""Parsers against real captured output, and against broken output of every kind."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hvbench.errors import ParseError
from hvbench.machine import Completed
from hvbench.workloads import CATALOGUE

from .conftest import load_capture

NAMES = sorted(n for n in CATALOGUE if n != "boot")  # boot is timed, not parsed


def test_every_tool_workload_has_a_real_capture() -> None:
    from .conftest import DATA

    assert all((DATA / f"{name}.json").exists() for name in NAMES)


def parse(name: str, output: Completed, params: dict) -> list:
    workload = CATALOGUE[name]
    return workload.parse(output, workload.params(params))


def values(samples: list) -> dict[str, float]:
    return {s.metric: s.value for s in samples}


def _same_or_refused(name: str, changed: Completed, params: dict, full: dict) -> None:  # type: ignore[type-arg]
    """A changed output parses to exactly the original numbers, or is refused."""
    try:
        got = values(parse(name, changed, params))
    except ParseError:
        return
    assert got == full


@pytest.mark.parametrize("name", NAMES)
def test_real_output_gives_every_declared_metric(name: str) -> None:
    output, params = load_capture(name)
    samples = parse(name, output, params)
    declared = {m.name: m for m in CATALOGUE[name].metrics}
    expected = list(declared)
    if name == "hvprobe":  # latency sizes above max_chase_mib are not measured
        expected = [m for m in expected if not m.startswith("mem_latency_")
                    or int(m[12:-1]) <= params["max_chase_mib"] * 1024]
    assert [s.metric for s in samples] == expected
    for sample in samples:
        assert sample.value > 0
        assert sample.unit == declared[sample.metric].unit
        assert sample.higher_is_better == declared[sample.metric].higher_is_better


def test_sysbench_cpu_reads_the_printed_rate() -> None:
    output, params = load_capture("sysbench-cpu")
    printed = float(re.search(r"events per second:\s+([\d.]+)", output.stdout).group(1))
    assert values(parse("sysbench-cpu", output, params)) == {"events-per-second": printed}


def test_sysbench_memory_separates_read_and_write() -> None:
    output, params = load_capture("sysbench-memory")
    rates = re.findall(r"operation: (\w+).*?\(([\d.]+) MiB/sec\)", output.stdout, re.S)
    expected = {f"{op}-bandwidth": float(rate) for op, rate in rates}
    assert values(parse("sysbench-memory", output, params)) == expected


def test_sysbench_threads_rate_is_events_over_time() -> None:
    output, params = load_capture("sysbench-threads")
    events = int(re.search(r"total number of events:\s+(\d+)", output.stdout).group(1))
    seconds = float(re.search(r"total time:\s+([\d.]+)s", output.stdout).group(1))
    got = values(parse("sysbench-threads", output, params))
    assert got["events-per-second"] == pytest.approx(events / seconds)


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("fio-")])
def test_fio_values_come_from_the_json(name: str) -> None:
    output, params = load_capture(name)
    job = json.loads(output.stdout)["jobs"][0]
    side = job["read"] if "read" in name else job["write"]
    got = values(parse(name, output, params))
    assert got["iops"] == pytest.approx(side["iops"])
    assert got["bandwidth"] == pytest.approx(side["bw_bytes"] / 2**20)
    assert got["clat-p99"] == pytest.approx(side["clat_ns"]["percentile"]["99.000000"] / 1000)
    samples = parse(name, output, params)
    assert all(s.metadata["direct_io"] == (job["job options"]["direct"] == "1")
               for s in samples)


def test_fio_error_field_is_a_parse_error() -> None:
    output, params = load_capture("fio-randread")
    document = json.loads(output.stdout)
    document["jobs"][0]["error"] = 28  # ENOSPC
    broken = dataclasses.replace(output, stdout=json.dumps(document))
    with pytest.raises(ParseError, match="error 28"):
        parse("fio-randread", broken, params)


def test_iperf3_error_document_names_the_problem() -> None:
    output = Completed(("iperf3",), '{"start": {}, "error": "unable to connect to server"}',
                       "", 1, 0.1)
    with pytest.raises(ParseError, match="unable to connect"):
        parse("iperf3-tcp", output, {})


def test_sockperf_percentiles_are_ordered() -> None:
    output, params = load_capture("sockperf-pingpong")
    got = values(parse("sockperf-pingpong", output, params))
    assert got["latency-p50"] <= got["latency-p99"] <= got["latency-p99.9"]


def test_openssl_uses_the_largest_block_size() -> None:
    output, params = load_capture("openssl-speed")
    line = re.search(r"^\+F:\d+:sha256:(.+)$", output.stdout, re.M).group(1)
    got = values(parse("openssl-speed", output, params))
    assert got["sha256-throughput"] == pytest.approx(float(line.split(":")[-1]) / 1e6)


def test_john_scales_k_suffix() -> None:
    output, params = load_capture("john")
    many = re.search(r"Many salts:\s+([\d.]+)([KM]?) c/s real", output.stdout)
    scale = {"": 1, "K": 1e3, "M": 1e6}[many.group(2)]
    assert values(parse("john", output, params))["descrypt"] == float(many.group(1)) * scale


def test_postmark_rate_uses_measured_time() -> None:
    output, params = load_capture("postmark")
    got = values(parse("postmark", output, params))
    assert got["total-time"] == output.seconds
    counts = [int(re.search(rf"^\s*(\d+) {op} \(", output.stdout, re.M).group(1))
              for op in ("created", "read", "appended", "deleted")]
    assert got["operations-per-second"] == pytest.approx(sum(counts) / output.seconds)


def test_mafft_rejects_a_missing_sequence() -> None:
    output, params = load_capture("mafft")
    cut = output.stdout.rfind(">")
    with pytest.raises(ParseError, match="aligned sequences"):
        parse("mafft", dataclasses.replace(output, stdout=output.stdout[:cut]), params)


def test_kvm_exits_carry_the_exit_counts_and_refuse_wrong_ones() -> None:
    output, params = load_capture("kvm-exits")
    samples = parse("kvm-exits", output, params)
    assert len(samples) == 11 and all(s.metadata["exits_ok"] for s in samples)
    assert all("exits_per_iteration" in s.metadata for s in samples)
    report = json.loads(output.stdout)
    report["results"][0]["exits_ok"] = False  # a loop that did not exit as intended
    wrong = dataclasses.replace(output, stdout=json.dumps(report))
    with pytest.raises(ParseError, match="did not exit as intended"):
        parse("kvm-exits", wrong, params)


@pytest.mark.parametrize("name", NAMES)
def test_empty_output_is_a_parse_error_naming_the_workload(name: str) -> None:
    _, params = load_capture(name)
    with pytest.raises(ParseError, match=re.escape(name)):
        parse(name, Completed(("x",), "", "", 0, 1.0), params)


@pytest.mark.parametrize("name", NAMES)
def test_nonzero_exit_is_a_parse_error(name: str) -> None:
    output, params = load_capture(name)
    with pytest.raises(ParseError, match="exited with code 3"):
        parse(name, dataclasses.replace(output, exit_code=3), params)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.floats(min_value=0.0, max_value=1.0, exclude_max=True))
def test_truncated_output_fails_or_gives_the_same_numbers(name: str, cut: float) -> None:
    """Never a wrong number: a cut-off output parses to the full values or fails."""
    output, params = load_capture(name)
    full = values(parse(name, output, params))
    combined_length = len(output.stdout) + len(output.stderr)
    keep = int(cut * combined_length)
    if keep < len(output.stdout):
        truncated = dataclasses.replace(output, stdout=output.stdout[:keep], stderr="")
    else:
        truncated = dataclasses.replace(output, stderr=output.stderr[:keep - len(output.stdout)])
    _same_or_refused(name, truncated, params, full)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_garbled_output_never_crashes(name: str, data: st.DataObject) -> None:
    output, params = load_capture(name)
    text = output.stdout
    position = data.draw(st.integers(0, max(len(text) - 1, 0)))
    junk = data.draw(st.text(min_size=1, max_size=30))
    mode = data.draw(st.sampled_from(["insert", "replace", "delete"]))
    if mode == "insert":
        text = text[:position] + junk + text[position:]
    elif mode == "replace":
        text = text[:position] + junk + text[position + len(junk):]
    else:
        text = text[:position] + text[position + len(junk):]
    try:
        samples = parse(name, dataclasses.replace(output, stdout=text), params)
    except ParseError:
        return
    assert all(s.value >= 0 for s in samples)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=30, deadline=None)
@given(text=st.text(max_size=400))
def test_random_text_is_a_parse_error(name: str, text: str) -> None:
    _, params = load_capture(name)
    with pytest.raises(ParseError):
        parse(name, Completed(("x",), text, text, 0, 1.0), params)


def test_hvprobe_latency_sizes_skipped_for_lack_of_memory_are_left_out() -> None:
    output, params = load_capture("hvprobe")
    line = re.search(r"^hvprobe mem_latency_262144k .*\n", output.stdout, re.M).group(0)
    missing = dataclasses.replace(output, stdout=output.stdout.replace(line, ""))
    with pytest.raises(ParseError, match="mem_latency_262144k"):
        parse("hvprobe", missing, params)  # gone without a word: an error
    skipped = dataclasses.replace(missing, stdout=missing.stdout.replace(
        "hvprobe-end", "hvprobe-skip mem_latency_262144k only 120000 KiB free\nhvprobe-end"))
    got = values(parse("hvprobe", skipped, params))
    assert "mem_latency_262144k" not in got and "mem_latency_65536k" in got


# -- the tools run with options hvbench does not set (tests/data/variants) ---------------
VARIANTS = sorted(p.stem for p in (Path(__file__).parent / "data" /
                                                  "variants").glob("*.json"))


def _fio_group(text: str) -> dict[str, float]:
    job = json.loads(text[text.find("{"):])["jobs"][0]["read"]
    return {"bandwidth": job["bw_bytes"] / 2**20, "iops": job["iops"],
            "clat-mean": job["clat_ns"]["mean"] / 1000,
            "clat-p99": job["clat_ns"]["percentile"]["99.000000"] / 1000}


def _iperf3_sums(text: str) -> dict[str, float]:
    end = json.loads(text)["end"]
    return {"send-throughput": end["sum_received"]["bits_per_second"] / 1e9,
            "receive-throughput": end["sum_received_bidir_reverse"]["bits_per_second"] / 1e9}


def _openssl_totals(text: str) -> dict[str, float]:
    totals = dict(re.findall(r"^\+F:\d+:([^:]+):([\d.]+)$", text, re.M))  # not 'Got: +F'
    return {"sha256-throughput": float(totals["sha256"]) / 1e6,
            "aes-256-gcm-throughput": float(totals["AES-256-GCM"]) / 1e6}


def _stress_row(text: str) -> dict[str, float]:
    row = next(line for line in text.splitlines() if re.search(r"\] cpu\s+\d", line))
    return {"bogo-ops-per-second": float(row.split("]")[1].split()[5])}


#: what each variant must give: the numbers its output states (computed here by other
#: means than the parser), or a refusal whose message says why
EXPECTED: dict[str, Any] = {
    "fio-randread-numjobs2": "2 jobs separately",
    "fio-randread-group": _fio_group,
    "fio-randread-jsonplus": _fio_group,
    "fio-seqread-normal": "no JSON document",
    "fio-randwrite-mixed": "rw=randrw, not rw=randwrite",
    "iperf3-tcp-parallel": _iperf3_sums,
    "iperf3-tcp-reverse": "missing bidirectional totals",
    "iperf3-tcp-udp": "this is a UDP test",
    "sysbench-cpu-threads2": lambda text: {"events-per-second": float(
        re.search(r"events per second:\s+(\S+)", text).group(1))},
    "stress-ng-cpu-instances2": _stress_row,
    "stress-ng-cpu-metrics": _stress_row,
    "openssl-speed-multi2": _openssl_totals,
    "7zip-threads2": lambda text: dict(zip(("compress-rating", "decompress-rating"), (
        float(x) for x in re.search(r"^Avr:.*?(\d+)\s+\|.*?(\d+)\s*$", text, re.M).groups()),
        strict=True)),
    "sockperf-pingpong-fullrtt": "full round trips",
    "sysbench-memory-threads2": lambda text: dict(zip(
        ("read-bandwidth", "write-bandwidth"),
        (float(x) for x in re.findall(r"MiB transferred \(([\d.]+) MiB/sec\)", text)),
        strict=True)),
    "povray-threads2": lambda text: {"trace-time": float(
        re.search(r"Trace Time:.*\(([\d.]+) seconds\)", text).group(1))},
}


def test_every_variant_capture_has_an_expectation() -> None:
    assert len(VARIANTS) >= 16 and set(VARIANTS) == set(EXPECTED)


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_gives_the_stated_numbers_or_is_refused(variant: str) -> None:
    record = json.loads((Path(__file__).parent / "data" / "variants" /
                         f"{variant}.json").read_text())
    output = Completed(tuple(record["argv"]), record["stdout"], record["stderr"],
                       record["exit_code"], record["seconds"])
    expected = EXPECTED[variant]
    if isinstance(expected, str):
        with pytest.raises(ParseError, match=re.escape(expected)):
            parse(record["workload"], output, record["params"])
        return
    got = values(parse(record["workload"], output, record["params"]))
    stated = expected(output.stdout + output.stderr)
    assert set(stated) <= set(got)
    for metric, value in stated.items():
        assert got[metric] == pytest.approx(value, rel=1e-9), metric


_warning = st.sampled_from([
    "WARNING: cpu frequency scaling is on; results may vary by 12.5%",
    "fio: note: both iodepth >= 1 and synchronous I/O engine are selected, queue depth "
    "will be capped at 1",
    "[  42.123456] virtio_net virtio0: 3 packets dropped",
    "warning: 1 thread(s) could not be pinned (errno 22)",
    "stress-ng: warn:  [12] 2.0% of the time was stolen",
])


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_warnings_mixed_into_output_change_nothing_or_are_refused(
        name: str, data: st.DataObject) -> None:
    """Warnings printed between the tool's lines (stdout or stderr): the same numbers,
    or a ParseError; never another number."""
    output, params = load_capture(name)
    full = values(parse(name, output, params))
    stream = data.draw(st.sampled_from(["stdout", "stderr"]))
    lines = getattr(output, stream).split("\n")
    for _ in range(data.draw(st.integers(1, 3))):
        lines.insert(data.draw(st.integers(0, len(lines))), data.draw(_warning))
    noisy = dataclasses.replace(output, **{stream: "\n".join(lines)})
    _same_or_refused(name, noisy, params, full)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_localised_decimal_commas_are_never_misread(name: str, data: st.DataObject) -> None:
    """Some decimal points written as commas, as a tool run in a de_DE locale would:
    the same numbers (the changed ones were not read) or a ParseError."""
    output, params = load_capture(name)
    full = values(parse(name, output, params))
    text = output.stdout + "\x00" + output.stderr
    points = [m.start() + 1 for m in re.finditer(r"\d\.\d", text)]
    if not points:
        return
    chosen = data.draw(st.sets(st.sampled_from(points), min_size=1, max_size=8))
    changed = "".join("," if i in chosen else c for i, c in enumerate(text))
    stdout, stderr = changed.split("\x00")
    _same_or_refused(name, dataclasses.replace(output, stdout=stdout, stderr=stderr), params,
                     full)
