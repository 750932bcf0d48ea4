"""iperf3: TCP throughput in both directions at once (``--bidir``).

Natively the server runs on the same host over loopback, which measures the
network stack without a NIC; guests reach a server on their host across the
virtual NIC.
"""

from __future__ import annotations

import contextlib
import json
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


class IperfParams(Params):
    seconds: int = Field(5, ge=1, le=3600)
    streams: int = Field(1, ge=1, le=128)


class Iperf3Tcp(Workload[IperfParams]):
    name = "iperf3-tcp"
    duration = "seconds"
    category = Category.NETWORK
    description = "TCP throughput, sending and receiving simultaneously."
    tools = (Tool("iperf3", "iperf3"),)
    params_model = IperfParams
    version_argv = ("iperf3", "--version")
    work = WorkRate("send-throughput", "GB", 1 / 8)  # Gbit/s -> GB/s
    metrics = (
        Metric("send-throughput", "Gbit/s", True),
        Metric("receive-throughput", "Gbit/s", True),
    )

    def expected_seconds(self, params: IperfParams) -> float:
        return params.seconds + 0.5

    @contextlib.contextmanager
    def prepare(self, machine: Machine, params: IperfParams) -> Iterator[Prepared]:
        with network_server(machine, lambda bind, port: [
                "iperf3", "--server", "--bind", bind, "--port", str(port), "--forceflush"],
                "Server listening") as prepared:
            yield prepared

    def commands(self, params: IperfParams, prepared: Prepared) -> list[list[str]]:
        return [["iperf3", "--client", prepared.values["host"],
                 "--port", str(prepared.values["port"]), "--time", str(params.seconds),
                 "--parallel", str(params.streams), "--bidir", "--json"]]

    def parse(self, output: Completed, params: IperfParams) -> list[Sample]:
        try:
            document = json.loads(output.stdout)
        except ValueError:
            self.check_exit(output)
            raise self.fail("output is not a JSON document") from None
        if not isinstance(document, dict):
            raise self.fail("output is not a JSON object")
        if document.get("error"):
            raise self.fail(f"iperf3 reported: {str(document['error'])[:200]}")
        self.check_exit(output)
        protocol = (document.get("start") or {}).get("test_start", {}).get("protocol")
        if protocol != "TCP":  # UDP reports its target bit rate, not what TCP can carry
            raise self.fail(f"this is a {protocol or 'unknown'} test; {self.name} reads TCP "
                            "results only")
        try:
            end = document["end"]
            sent = float(end["sum_received"]["bits_per_second"])
            received = float(end["sum_received_bidir_reverse"]["bits_per_second"])
        except (KeyError, TypeError, ValueError) as exc:
            raise self.fail(f"missing bidirectional totals ({exc})") from None
        if sent <= 0 or received <= 0:
            raise self.fail("zero throughput in one direction")
        return [self.sample("send-throughput", sent / 1e9),
                self.sample("receive-throughput", received / 1e9)]
