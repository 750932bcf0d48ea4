"""Re-capture real tool output into tests/data/ (run by hand, not by the tests).

Each workload runs once natively through its own prepare/commands, exactly as
hvbench runs it, and the combined output is saved as JSON for the parser tests:

    .venv/bin/python tests/capture_outputs.py [WORKLOAD ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hvbench.machine import Completed
from hvbench.platforms.native import NativePlatform
from hvbench.workloads import CATALOGUE

DATA = Path(__file__).parent / "data"


def capture(name: str) -> None:
    workload = CATALOGUE[name]
    params = workload.params()
    with NativePlatform("native").open() as machine, workload.prepare(machine, params) as ready:
        parts = [machine.run(argv, timeout=600) for argv in workload.commands(params, ready)]
    output = Completed.combine(parts)
    record = {"workload": name, "params": params.model_dump(), "argv": list(output.argv),
              "stdout": output.stdout, "stderr": output.stderr,
              "exit_code": output.exit_code, "seconds": output.seconds}
    (DATA / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    samples = workload.parse(output, params)
    print(name, [(s.metric, round(s.value, 3)) for s in samples])


if __name__ == "__main__":
    for workload_name in sys.argv[1:] or sorted(n for n in CATALOGUE if n != "boot"):
        capture(workload_name)
