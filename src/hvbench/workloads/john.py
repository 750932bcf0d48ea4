"""John the Ripper's self-benchmark (``john --test``): password-hash cracking speed.

One of the CPU tests of the classic KVM-vs-Xen studies: tight integer loops that
barely touch the kernel, so virtualization should cost almost nothing.
"""

from __future__ import annotations

import re

from pydantic import Field

from ..machine import Completed
from .base import Category, Metric, Params, Prepared, Sample, Tool, Workload

# format name given to --format -> metric; descrypt reports "Many salts" first.
_FORMATS = {"descrypt": "descrypt", "md5crypt": "md5crypt", "bcrypt": "blowfish"}
_MULTIPLIER = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9}


class JohnParams(Params):
    seconds: int = Field(2, ge=1, le=600)


class John(Workload[JohnParams]):
    name = "john"
    category = Category.CPU
    description = "Hash-cracking speed for descrypt, md5crypt and blowfish (bcrypt)."
    tools = (Tool("john", "john"),)
    params_model = JohnParams
    metrics = tuple(Metric(name, "c/s", True) for name in _FORMATS.values())

    def expected_seconds(self, params: JohnParams) -> float:
        return 3 * params.seconds * 1.1

    def commands(self, params: JohnParams, prepared: Prepared) -> list[list[str]]:
        return [["john", f"--test={params.seconds}", f"--format={fmt}"] for fmt in _FORMATS]

    def parse(self, output: Completed, params: JohnParams) -> list[Sample]:
        self.check_exit(output)
        blocks = re.split(r"^Benchmarking: ", output.stdout, flags=re.M)[1:]
        if not blocks:
            raise self.fail("no 'Benchmarking:' lines: this is not john --test output")
        samples: dict[str, Sample] = {}
        for block in blocks:
            words = block.split(maxsplit=1)
            if not words:
                raise self.fail("an empty 'Benchmarking:' line")
            name = words[0].rstrip(",")
            metric = _FORMATS.get(name)
            if metric is None:
                continue
            if "DONE" not in block.splitlines()[0]:
                raise self.fail(f"the {name} benchmark did not finish")
            rate = re.search(r"^(?:Many salts|Raw):\s+([\d.]+)([KMG]?) c/s real", block, re.M)
            if not rate:
                raise self.fail(f"no c/s figure for {name}")
            value = float(rate.group(1)) * _MULTIPLIER[rate.group(2)]
            samples[metric] = self.sample(metric, value)
        missing = set(_FORMATS.values()) - set(samples)
        if missing:
            raise self.fail(f"no result for {', '.join(sorted(missing))}")
        return [samples[m] for m in _FORMATS.values()]
