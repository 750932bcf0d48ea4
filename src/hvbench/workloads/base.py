"""The workload contract: a declarative definition plus a parser of real output.

A workload names its tool, the Debian package that provides it, its parameters
(a pydantic model, so bad values are rejected with the field's name), the argv
it runs, the metrics it reports and how long it should take. ``parse`` turns the
tool's real output into Samples or raises ParseError: it never guesses a number.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import MissingToolError, ParseError, UsageError
from ..machine import Completed, Machine, stopping


class Category(StrEnum):
    CPU = "cpu"
    MEMORY = "memory"
    DISK = "disk"
    NETWORK = "network"
    MICRO = "micro"
    APP = "app"


@dataclass(frozen=True)
class Tool:
    """A binary a workload runs and the Debian package that provides it."""

    binary: str
    package: str


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    higher_is_better: bool


@dataclass(frozen=True)
class WorkRate:
    """The work a trial did per second, read from one of its metrics: what 'where the
    time goes' divides by to give figures per unit of work (exits per I/O, host CPU
    per event). ``scale`` turns the metric's value into units per second; a metric
    that is a time per unit (a latency) is inverted first."""

    metric: str
    unit: str  # one unit of work, e.g. "I/O", "event", "round trip", "GB"
    scale: float = 1.0
    inverse: bool = False  # the metric is seconds (or µs...) per unit of work

    def per_second(self, value: float) -> float:
        return (self.scale / value if self.inverse else value * self.scale) if value else 0.0


@dataclass(frozen=True)
class Sample:
    """One measured value of one metric in one trial."""

    metric: str
    value: float
    unit: str
    higher_is_better: bool
    metadata: dict[str, Any] = field(default_factory=dict)


class Params(BaseModel):
    """Base for workload parameters: unknown keys are an error, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class Prepared:
    """What ``prepare`` made ready for one trial: files, ports, servers, facts."""

    scratch: str
    values: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def network_server(machine: Machine, server_argv: Callable[[str, int], list[str]],
                   ready: str) -> Iterator[Prepared]:
    """Run a workload's server where ``machine``'s network peer is (its own loopback
    natively, the host for a guest) and yield where the client must connect."""
    peer, bind, connect = machine.network_peer()
    port = peer.free_port()
    server = peer.spawn(server_argv(bind, port))
    with stopping(server):
        server.wait_for_output(ready, timeout=15)
        yield Prepared(scratch=machine.scratch_dir(), values={"host": connect, "port": port},
                       metadata={"server": "loopback" if peer is machine
                                 else f"host, reached at {connect}"})


P = TypeVar("P", bound="Params")


class Workload(Generic[P]):
    """Base class; one subclass per benchmark, grouped in one module per tool, generic in
    its parameters' model."""

    name: ClassVar[str]
    category: ClassVar[Category]
    description: ClassVar[str]
    tools: ClassVar[tuple[Tool, ...]]
    #: data files the workload reads, with the Debian package that ships them
    files: ClassVar[tuple[Tool, ...]] = ()
    params_model: type[P]
    metrics: ClassVar[tuple[Metric, ...]]
    #: how much work a trial did per second (None: no natural unit of work)
    work: ClassVar[WorkRate | None] = None
    #: argv printing the tool's version (recorded in run metadata), or None
    version_argv: ClassVar[tuple[str, ...] | None] = None
    #: the parameter giving how long it runs, in seconds (None: it runs until its work
    #: is done); only such a workload can be an aggressor, run until stopped
    duration: ClassVar[str | None] = None

    # -- parameters -------------------------------------------------------
    def params(self, overrides: Mapping[str, Any] | None = None) -> P:
        """Defaults merged with overrides, validated; bad values raise UsageError."""
        try:
            return self.params_model(**(overrides or {}))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"
                for err in exc.errors()
            )
            known = ", ".join(self.params_model.model_fields) or "none"
            raise UsageError(
                f"invalid parameter for workload {self.name!r}: {problems} "
                f"(parameters: {known})"
            ) from None

    def expected_seconds(self, params: P) -> float:
        """How long one execution should take natively (for ETAs and timeouts)."""
        raise NotImplementedError

    # -- execution --------------------------------------------------------
    @contextlib.contextmanager
    def prepare(self, machine: Machine, params: P) -> Iterator[Prepared]:
        """Set up files or servers a trial needs; override when there are any."""
        yield Prepared(scratch=machine.scratch_dir())

    def applies_to(self, machine: Machine) -> str | None:
        """Why this workload means nothing on ``machine`` (trial skipped), or None."""
        if machine.kvmprobe:
            return "the kvmprobe platform runs only kvm-exits"
        if self.category == Category.NETWORK:
            return machine.network_absent()
        return None

    def execute(self, machine: Machine, params: P, timeout: float
                ) -> tuple[list[Sample], dict[str, Any], float] | None:
        """Measure something other than a command's output (e.g. a boot); None = no."""
        return None

    def commands(self, params: P, prepared: Prepared) -> list[list[str]]:
        """The argv lists one execution runs, in order."""
        raise NotImplementedError

    def parse(self, output: Completed, params: P) -> list[Sample]:
        """Turn real tool output into Samples; raise ParseError when it is not valid."""
        raise NotImplementedError

    # -- helpers for parsers ----------------------------------------------
    def fail(self, problem: str) -> ParseError:
        return ParseError(self.name, problem)

    def sample(self, metric: str, value: float, **metadata: Any) -> Sample:
        """A Sample for a declared metric; rejects NaN, infinities and negatives."""
        declared = {m.name: m for m in self.metrics}
        if metric not in declared:
            raise self.fail(f"undeclared metric {metric!r}")
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise self.fail(f"{metric} is not a valid non-negative number: {value!r}")
        spec = declared[metric]
        return Sample(metric, float(value), spec.unit, spec.higher_is_better, metadata)

    def number(self, pattern: str, text: str, what: str, flags: int = 0) -> float:
        """First capture group of ``pattern`` in ``text`` as a float, or ParseError."""
        match = re.search(pattern, text, flags)
        if not match:
            raise self.fail(f"no {what} found in the output")
        if match.end(1) >= len(text):
            # Nothing after the digits: the output may have been cut mid-number.
            raise self.fail(f"the output ends inside the {what}")
        if re.match(r"[.,]\d", text[match.end(1):match.end(1) + 2]):
            # "1234,56" (a localised decimal comma) must never be read as 1234
            raise self.fail(f"the {what} is written in a number format hvbench does not "
                            "read; run the tool in the C locale (LC_ALL=C)")
        try:
            return float(match.group(1))
        except ValueError:
            raise self.fail(f"{what} is not a number: {match.group(1)!r}") from None

    def check_exit(self, output: Completed) -> None:
        """Non-zero exit means the measurement is void, whatever was printed."""
        if output.exit_code != 0:
            tail = (output.stderr or output.stdout).strip().splitlines()[-1:] or ["no output"]
            raise self.fail(f"the tool exited with code {output.exit_code}: {tail[0][:200]}")

    def missing(self, machine: Machine) -> MissingToolError | None:
        """The first binary or file this workload needs that ``machine`` lacks."""
        for tool in self.tools:
            if machine.which(tool.binary) is None:
                return MissingToolError(self.name, tool.binary, tool.package, machine.label)
        for data in self.files:
            if machine.read_file(data.binary) is None:
                return MissingToolError(self.name, data.binary, data.package, machine.label)
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "category": str(self.category),
            "description": self.description,
            "tools": [{"binary": t.binary, "package": t.package} for t in self.tools],
            "params": self.params_model().model_dump(),
            "metrics": [
                {"name": m.name, "unit": m.unit, "higher_is_better": m.higher_is_better}
                for m in self.metrics
            ],
        }
