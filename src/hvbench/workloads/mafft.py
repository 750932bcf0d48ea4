"""MAFFT multiple sequence alignment on DNA sequences generated with a fixed seed.

The classic studies timed a bioinformatics job; the input here is made on the
fly (same seed, same sequences everywhere) so no data set is downloaded.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

from pydantic import Field

from ..errors import TrialError
from ..machine import Completed, Machine
from .base import Category, Metric, Params, Prepared, Sample, Tool, Workload


class MafftParams(Params):
    sequences: int = Field(40, ge=2, le=100_000)
    length: int = Field(500, ge=10, le=1_000_000)
    seed: int = 42
    threads: int = Field(1, ge=1, le=256)


def generate_sequences(sequences: int, length: int, seed: int) -> str:
    """FASTA text of related sequences: one ancestor with point mutations and indels."""
    rng = random.Random(seed)
    ancestor = [rng.choice("ACGT") for _ in range(length)]
    records = []
    for index in range(sequences):
        sequence = list(ancestor)
        for _ in range(max(1, length // 10)):
            position = rng.randrange(len(sequence))
            roll = rng.random()
            if roll < 0.6:
                sequence[position] = rng.choice("ACGT")
            elif roll < 0.8 and len(sequence) > 1:
                del sequence[position]
            else:
                sequence.insert(position, rng.choice("ACGT"))
        records.append(f">seq{index}\n{''.join(sequence)}\n")
    return "".join(records)


class Mafft(Workload[MafftParams]):
    name = "mafft"
    category = Category.APP
    description = "Multiple sequence alignment (MAFFT --auto) of generated DNA sequences."
    tools = (Tool("mafft", "mafft"),)
    params_model = MafftParams
    metrics = (Metric("alignment-time", "s", False),)

    def expected_seconds(self, params: MafftParams) -> float:
        return 0.5 + (params.sequences / 40) ** 2 * (params.length / 500) ** 2 * 4

    @contextlib.contextmanager
    def prepare(self, machine: Machine, params: MafftParams) -> Iterator[Prepared]:
        scratch = machine.scratch_dir()
        path = f"{scratch}/mafft-input.fa"
        machine.write_file(path, generate_sequences(params.sequences, params.length,
                                                    params.seed).encode())
        try:
            yield Prepared(scratch=scratch, values={"input": path},
                           metadata={"seed": params.seed})
        finally:
            with contextlib.suppress(TrialError):
                machine.run(["rm", "-f", path], timeout=30)

    def commands(self, params: MafftParams, prepared: Prepared) -> list[list[str]]:
        return [["mafft", "--auto", "--quiet", "--thread", str(params.threads),
                 prepared.values["input"]]]

    def parse(self, output: Completed, params: MafftParams) -> list[Sample]:
        self.check_exit(output)
        rows: dict[str, list[str]] = {}
        current: list[str] | None = None
        for line in output.stdout.splitlines():
            if line.startswith(">"):
                current = rows.setdefault(line[1:].strip(), [])
            elif line.strip():
                if current is None:
                    raise self.fail("sequence data before the first '>' header")
                current.append(line.strip())
        if len(rows) != params.sequences:
            raise self.fail(f"expected {params.sequences} aligned sequences, got {len(rows)}")
        lengths = {len("".join(parts)) for parts in rows.values()}
        if len(lengths) != 1 or 0 in lengths:
            raise self.fail("aligned sequences differ in length: the alignment is incomplete")
        if output.seconds <= 0:
            raise self.fail("no run time was measured")
        return [self.sample("alignment-time", output.seconds,
                            alignment_columns=lengths.pop())]
