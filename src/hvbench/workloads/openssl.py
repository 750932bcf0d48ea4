"""openssl speed: SHA-256 and AES-256-GCM throughput (crypto in user space)."""

from __future__ import annotations

import re

from pydantic import Field

from ..machine import Completed
from .base import Category, Metric, Params, Prepared, Sample, Tool, Workload

_ALGORITHMS = {"sha256": "sha256-throughput", "AES-256-GCM": "aes-256-gcm-throughput"}


class OpensslParams(Params):
    seconds: int = Field(2, ge=1, le=600)
    block_size: int = Field(16384, ge=16, le=1 << 24)


class OpensslSpeed(Workload[OpensslParams]):
    name = "openssl-speed"
    category = Category.CPU
    description = "SHA-256 and AES-256-GCM through OpenSSL's EVP interface."
    tools = (Tool("openssl", "openssl"),)
    params_model = OpensslParams
    version_argv = ("openssl", "version")
    metrics = tuple(Metric(name, "MB/s", True) for name in _ALGORITHMS.values())

    def expected_seconds(self, params: OpensslParams) -> float:
        return 2 * params.seconds + 0.2

    def commands(self, params: OpensslParams, prepared: Prepared) -> list[list[str]]:
        return [["openssl", "speed", "-mr", "-seconds", str(params.seconds),
                 "-bytes", str(params.block_size), "-evp", algorithm]
                for algorithm in ("sha256", "aes-256-gcm")]

    def parse(self, output: Completed, params: OpensslParams) -> list[Sample]:
        self.check_exit(output)
        # Machine-readable result lines: +F:<n>:<algorithm>:<bytes/s for each size>
        results: dict[str, float] = {}
        # A line counts only when complete (newline-terminated): never a cut-off number.
        for match in re.finditer(r"^\+F:\d+:([^:\n]+):([\d.:]+)\n", output.stdout, re.M):
            values = match.group(2).split(":")
            try:
                results[match.group(1)] = float(values[-1])
            except ValueError:
                raise self.fail(f"bad throughput for {match.group(1)}") from None
        samples = []
        for algorithm, metric in _ALGORITHMS.items():
            if algorithm not in results:
                raise self.fail(f"no result line for {algorithm}")
            if results[algorithm] <= 0:
                raise self.fail(f"zero throughput for {algorithm}")
            samples.append(self.sample(metric, results[algorithm] / 1e6,
                                       block_size=params.block_size))
        return samples
