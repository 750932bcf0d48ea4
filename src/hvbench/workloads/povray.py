"""POV-Ray's standard benchmark scene, rendered at a reduced size to bound its time.

``povray --benchmark`` renders this scene at 512x512 and takes minutes; we
render the very same scene (shipped in Debian's povray-examples) with the
benchmark's render settings at a smaller size, and report pixels per second.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pydantic import Field

from ..machine import Completed, Machine
from .base import Category, Metric, Params, Prepared, Sample, Tool, Workload

SCENE = "/usr/share/doc/povray/examples/advanced/benchmark/benchmark.pov"


class PovrayParams(Params):
    width: int = Field(64, ge=16, le=4096)
    height: int = Field(64, ge=16, le=4096)
    threads: int = Field(1, ge=1, le=256)


class Povray(Workload[PovrayParams]):
    name = "povray"
    category = Category.CPU
    description = "Ray tracing of POV-Ray's benchmark scene (floating point, caches)."
    tools = (Tool("povray", "povray"),)
    files = (Tool(SCENE, "povray-examples"),)
    params_model = PovrayParams
    metrics = (
        Metric("pixels-per-second", "px/s", True),
        Metric("trace-time", "s", False),
    )

    def expected_seconds(self, params: PovrayParams) -> float:
        return 2.0 + params.width * params.height / 900 / params.threads

    @contextlib.contextmanager
    def prepare(self, machine: Machine, params: PovrayParams) -> Iterator[Prepared]:
        yield Prepared(scratch=machine.scratch_dir(), metadata={"scene": SCENE})

    def commands(self, params: PovrayParams, prepared: Prepared) -> list[list[str]]:
        # The render settings of POV-Ray's benchmark.ini, with a smaller size.
        return [["povray", f"+I{SCENE}", f"+W{params.width}", f"+H{params.height}",
                 "-D", "-F", "+Q9", "+A0.3", "+AM1", "+R3", "+J0.3", "+MB3",
                 f"+WT{params.threads}"]]

    def parse(self, output: Completed, params: PovrayParams) -> list[Sample]:
        self.check_exit(output)
        text = output.stderr + output.stdout
        if "POV-Ray finished" not in text:
            raise self.fail("the render did not finish ('POV-Ray finished' missing)")
        seconds = self.number(r"Trace Time:\s+\d+ hours\s+\d+ minutes\s+\d+ seconds "
                              r"\(([\d.]+) seconds\)", text, "trace time")
        if seconds <= 0:
            raise self.fail("zero trace time")
        pixels = params.width * params.height
        return [self.sample("pixels-per-second", pixels / seconds, pixels=pixels),
                self.sample("trace-time", seconds)]
