"""Re-capture real tool output into tests/data/ (run by hand, not by the tests).

Each workload runs once natively through its own prepare/commands, exactly as
hvbench runs it, and the combined output is saved as JSON for the parser tests:

    .venv/bin/python tests/capture_outputs.py [WORKLOAD ...]

Variants are the same tools run with options hvbench does not set but a user (or a
future parameter) may: several jobs or threads, reverse or UDP modes, other output
formats. They land in tests/data/variants/ and test_parsers checks that each parses
to the numbers the output states, or is refused:

    .venv/bin/python tests/capture_outputs.py --variants [VARIANT ...]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hvbench.errors import ParseError
from hvbench.machine import Completed
from hvbench.platforms.native import NativePlatform
from hvbench.workloads import CATALOGUE

DATA = Path(__file__).parent / "data"
Edit = Callable[[list[str]], list[str]]


def _swap(old: str, *new: str) -> Edit:
    return lambda argv: [part for arg in argv for part in ((*new,) if arg == old else (arg,))]


def _add(*extra: str) -> Edit:
    """Options added before a trailing 'run' (sysbench) or at the end."""
    def edit(argv: list[str]) -> list[str]:
        if argv[-1] == "run":
            return [*argv[:-1], *extra, "run"]
        return [*argv, *extra]
    return edit


#: name: (workload, parameters, how each command line is changed)
VARIANTS: dict[str, tuple[str, dict[str, Any], Edit]] = {
    "fio-randread-numjobs2": ("fio-randread", {"runtime": 2}, _add("--numjobs=2")),
    "fio-randread-group": ("fio-randread", {"runtime": 2},
                           _add("--numjobs=2", "--group_reporting")),
    "fio-randread-jsonplus": ("fio-randread", {"runtime": 2},
                              _swap("--output-format=json", "--output-format=json+")),
    "fio-seqread-normal": ("fio-seqread", {"runtime": 2},
                           _swap("--output-format=json", "--output-format=normal")),
    "fio-randwrite-mixed": ("fio-randwrite", {"runtime": 2},
                            _swap("--rw=randwrite", "--rw=randrw")),
    "iperf3-tcp-parallel": ("iperf3-tcp", {"seconds": 2, "streams": 2}, _add()),
    "iperf3-tcp-reverse": ("iperf3-tcp", {"seconds": 2}, _swap("--bidir", "--reverse")),
    "iperf3-tcp-udp": ("iperf3-tcp", {"seconds": 2}, _add("--udp")),
    "sysbench-cpu-threads2": ("sysbench-cpu", {"threads": 2}, _add()),
    "stress-ng-cpu-instances2": ("stress-ng-cpu", {"instances": 2, "seconds": 2}, _add()),
    "stress-ng-cpu-metrics": ("stress-ng-cpu", {"seconds": 2},
                              _swap("--metrics-brief", "--metrics")),
    "openssl-speed-multi2": ("openssl-speed", {"seconds": 1}, _add("-multi", "2")),
    "7zip-threads2": ("7zip", {"threads": 2}, _add()),
    "sysbench-memory-threads2": ("sysbench-memory", {"threads": 2, "total_size": "2G"},
                                 _add()),
    "povray-threads2": ("povray", {"threads": 2}, _add()),
    "sockperf-pingpong-fullrtt": ("sockperf-pingpong", {"seconds": 2}, _add("--full-rtt")),
}


def _run(name: str, params: Any, edit: Edit) -> Completed:
    workload = CATALOGUE[name]
    with NativePlatform("native").open() as machine, workload.prepare(machine, params) as ready:
        parts = [machine.run(edit(argv), timeout=600)
                 for argv in workload.commands(params, ready)]
    return Completed.combine(parts)


def _save(path: Path, name: str, params: Any, output: Completed, **extra: Any) -> None:
    record = {"workload": name, **extra, "params": params.model_dump(),
              "argv": list(output.argv), "stdout": output.stdout, "stderr": output.stderr,
              "exit_code": output.exit_code, "seconds": output.seconds}
    path.write_text(json.dumps(record, indent=1) + "\n")


def capture(name: str) -> None:
    workload = CATALOGUE[name]
    params = workload.params()
    output = _run(name, params, lambda argv: argv)
    _save(DATA / f"{name}.json", name, params, output)
    samples = workload.parse(output, params)
    print(name, [(s.metric, round(s.value, 3)) for s in samples])


def capture_variant(variant: str) -> None:
    name, overrides, edit = VARIANTS[variant]
    workload = CATALOGUE[name]
    params = workload.params(overrides)
    output = _run(name, params, edit)
    (DATA / "variants").mkdir(exist_ok=True)
    _save(DATA / "variants" / f"{variant}.json", name, params, output, variant=variant)
    try:
        print(variant, [(s.metric, round(s.value, 3)) for s in workload.parse(output, params)])
    except ParseError as exc:
        print(variant, "refused:", exc)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--variants"]:
        for variant_name in sys.argv[2:] or sorted(VARIANTS):
            capture_variant(variant_name)
    else:
        for workload_name in sys.argv[1:] or sorted(n for n in CATALOGUE if n != "boot"):
            capture(workload_name)
