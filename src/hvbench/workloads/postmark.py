"""PostMark: many small files created, read, appended and deleted (mail-server style).

PostMark reports whole seconds only, so its own rates are useless for short
runs; we time it on the machine and divide its exact operation counts by that.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from pydantic import Field, model_validator

from ..errors import TrialError
from ..machine import Completed, Machine
from .base import Category, Metric, Params, Prepared, Sample, Tool, Workload, WorkRate

_OPERATIONS = ("created", "read", "appended", "deleted")


class PostmarkParams(Params):
    files: int = Field(2000, ge=10, le=10_000_000)
    transactions: int = Field(20000, ge=10, le=100_000_000)
    min_size: int = Field(500, ge=1)
    max_size: int = Field(10000, ge=1)

    @model_validator(mode="after")
    def _sizes_ordered(self) -> PostmarkParams:
        if self.min_size > self.max_size:
            raise ValueError("min_size must not exceed max_size")
        return self


class Postmark(Workload[PostmarkParams]):
    name = "postmark"
    category = Category.DISK
    description = "Small-file transactions on the scratch filesystem."
    tools = (Tool("postmark", "postmark"),)
    params_model = PostmarkParams
    work = WorkRate("operations-per-second", "transaction")
    metrics = (
        Metric("operations-per-second", "ops/s", True),
        Metric("total-time", "s", False),
    )

    def expected_seconds(self, params: PostmarkParams) -> float:
        return 0.3 + params.transactions / 15000

    @contextlib.contextmanager
    def prepare(self, machine: Machine, params: PostmarkParams) -> Iterator[Prepared]:
        scratch = machine.scratch_dir()
        location = f"{scratch}/postmark"
        config = f"{scratch}/postmark.cfg"
        machine.run(["mkdir", "-p", location], timeout=30)
        machine.write_file(config, (
            f"set location {location}\nset number {params.files}\n"
            f"set transactions {params.transactions}\n"
            f"set size {params.min_size} {params.max_size}\nset seed 42\nrun\nquit\n"
        ).encode())
        try:
            yield Prepared(scratch=scratch, values={"config": config})
        finally:
            with contextlib.suppress(TrialError):
                machine.run(["rm", "-rf", location, config], timeout=60)

    def commands(self, params: PostmarkParams, prepared: Prepared) -> list[list[str]]:
        return [["postmark", prepared.values["config"]]]

    def parse(self, output: Completed, params: PostmarkParams) -> list[Sample]:
        self.check_exit(output)
        text = output.stdout
        if "PostMark" not in text:
            raise self.fail("no PostMark banner: this is not PostMark output")
        for step in ("Creating files...Done", "Deleting files...Done"):
            if step not in text:
                raise self.fail(f"missing {step!r}: the run did not complete")
        if not re.search(r"Performing transactions\.*Done", text):
            raise self.fail("the transactions did not complete")
        counts = {op: self.number(rf"^\s*(\d+) {op} \(", text, f"{op} count", re.M)
                  for op in _OPERATIONS}
        if output.seconds <= 0:
            raise self.fail("no run time was measured")
        operations = sum(counts.values())
        return [self.sample("operations-per-second", operations / output.seconds,
                            **{k: int(v) for k, v in counts.items()}),
                self.sample("total-time", output.seconds)]
