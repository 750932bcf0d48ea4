"""7-Zip's built-in benchmark (``7z b``): LZMA compression and decompression ratings."""

from __future__ import annotations

import re

from pydantic import Field

from ..machine import Completed
from .base import Category, Metric, Params, Prepared, Sample, Tool, Workload


class SevenZipParams(Params):
    iterations: int = Field(1, ge=1, le=100)
    dictionary_log: int = Field(18, ge=16, le=26)  # 2**18 = 256 KiB dictionary
    threads: int = Field(1, ge=1, le=256)


class SevenZip(Workload[SevenZipParams]):
    name = "7zip"
    category = Category.CPU
    description = "LZMA compress/decompress ratings in MIPS (7-Zip's own benchmark)."
    tools = (Tool("7zz", "7zip"),)
    params_model = SevenZipParams
    version_argv = ("7zz", "i")
    metrics = (
        Metric("compress-rating", "MIPS", True),
        Metric("decompress-rating", "MIPS", True),
    )

    def expected_seconds(self, params: SevenZipParams) -> float:
        return 9.0 * params.iterations * 2 ** (params.dictionary_log - 18) / params.threads

    def commands(self, params: SevenZipParams, prepared: Prepared) -> list[list[str]]:
        return [["7zz", "b", str(params.iterations), f"-mmt{params.threads}",
                 f"-md{params.dictionary_log}"]]

    def parse(self, output: Completed, params: SevenZipParams) -> list[Sample]:
        self.check_exit(output)
        if "7-Zip" not in output.stdout:
            raise self.fail("no 7-Zip banner: this is not 7-Zip output")
        # "Avr:  speed usage R/U rating | speed usage R/U rating" (ratings in MIPS)
        row = re.search(r"^Avr:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\|\s+"
                        r"(\d+)\s+(\d+)\s+(\d+)\s+(\d+)[ \t]*\n", output.stdout, re.M)
        if not row:
            raise self.fail("no 'Avr:' summary row")
        if not re.search(r"^Tot:.*\d", output.stdout[row.end():], re.M):
            raise self.fail("no 'Tot:' line after the averages: the output is incomplete")
        compress, decompress = float(row.group(4)), float(row.group(8))
        if compress <= 0 or decompress <= 0:
            raise self.fail("zero rating")
        return [self.sample("compress-rating", compress),
                self.sample("decompress-rating", decompress)]
