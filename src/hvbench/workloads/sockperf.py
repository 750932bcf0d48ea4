"""sockperf ping-pong: TCP round-trip latency percentiles.

Latency is where virtual NICs hurt most: every packet is a VM exit or a ring
kick. sockperf reports one-way latency (half of each measured round trip); we
keep its numbers as they are and say so in the unit.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from pydantic import Field

from ..machine import Completed, Machine
from .base import (
    Category,
    Metric,
    Params,
    Prepared,
    Sample,
    Tool,
    Workload,
    WorkRate,
    network_server,
)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PERCENTILES = {"latency-p50": "50.000", "latency-p99": "99.000", "latency-p99.9": "99.900"}


class SockperfParams(Params):
    seconds: int = Field(5, ge=1, le=3600)
    message_size: int = Field(64, ge=14, le=65000)


class SockperfPingPong(Workload[SockperfParams]):
    name = "sockperf-pingpong"
    duration = "seconds"
    category = Category.NETWORK
    description = "TCP ping-pong: latency percentiles (half round trip)."
    tools = (Tool("sockperf", "sockperf"),)
    params_model = SockperfParams
    version_argv = ("sockperf", "--version")
    metrics = (
        Metric("latency-avg", "us", False),
        *(Metric(name, "us", False) for name in _PERCENTILES),
    )
    #: sockperf's latency is half a round trip: 1e6 / (2 x latency in µs) round trips/s
    work = WorkRate("latency-avg", "round trip", 1e6 / 2, inverse=True)

    def expected_seconds(self, params: SockperfParams) -> float:
        return params.seconds + 0.8

    @contextlib.contextmanager
    def prepare(self, machine: Machine, params: SockperfParams) -> Iterator[Prepared]:
        with network_server(machine, lambda bind, port: [
                "sockperf", "server", "--tcp", "-i", bind, "-p", str(port)],
                "IP =") as prepared:
            yield prepared

    def commands(self, params: SockperfParams, prepared: Prepared) -> list[list[str]]:
        return [["sockperf", "ping-pong", "--tcp", "-i", prepared.values["host"],
                 "-p", str(prepared.values["port"]), "-t", str(params.seconds),
                 "-m", str(params.message_size)]]

    def parse(self, output: Completed, params: SockperfParams) -> list[Sample]:
        self.check_exit(output)
        text = _ANSI.sub("", output.stdout + output.stderr)
        if "sockperf" not in text:
            raise self.fail("no sockperf lines: this is not sockperf output")
        if "avg-rtt=" in text:  # --full-rtt: every figure would be twice the latency
            raise self.fail("sockperf measured full round trips (--full-rtt); hvbench reads "
                            "the one-way latency sockperf reports by default")
        observations = self.number(r"Total (\d+) observations", text, "observation count")
        if observations <= 0:
            raise self.fail("no round trips were observed")
        samples = [self.sample("latency-avg",
                               self.number(r"avg-latency=([\d.]+)", text, "average latency"),
                               observations=int(observations))]
        for metric, level in _PERCENTILES.items():
            value = self.number(rf"percentile {re.escape(level)} =\s+([\d.]+)", text,
                                f"{level} percentile")
            samples.append(self.sample(metric, value))
        return samples
