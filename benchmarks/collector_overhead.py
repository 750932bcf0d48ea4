#!/usr/bin/env python3
"""What the collectors cost: one guest, the same workload with and without them,
interleaved, and the collectors' own reading time per trial.

    .venv/bin/python benchmarks/collector_overhead.py [--kind qemu-tcg] [--pairs 8]

Goal (issue 16): the workload's result changes by under 1%, and reading the
collectors adds under 50 ms per trial. What they add is the time spent starting and
stopping them plus, in a guest, what the agent's own readings of the kernel's
counters around each command add to its round trip (the round trip less the
command's own time, with counting against without).
"""

from __future__ import annotations

import argparse
import statistics
import time

from hvbench.collect import Collector
from hvbench.machine import Completed, Machine
from hvbench.platforms import PlatformContext, make_platform
from hvbench.workloads import get_workload, payload


def _once(machine: Machine, name: str, params: dict, collectors: list[Collector]
          ) -> tuple[float, float, float]:
    """The workload's first metric, the seconds spent starting and stopping the
    collectors around it, and the agent's round trips beyond the commands' own time."""
    workload = get_workload(name)
    parsed = workload.params(params)
    with workload.prepare(machine, parsed) as prepared:
        began = time.monotonic()
        for collector in collectors:
            collector.start()
        reading = time.monotonic() - began
        parts = [machine.run(argv, timeout=600) for argv in workload.commands(parsed, prepared)]
        began = time.monotonic()
        for collector in collectors:
            collector.stop()
        reading += time.monotonic() - began
    trips = sum((p.observed or p.seconds) - p.seconds for p in parts)
    return workload.parse(Completed.combine(parts), parsed)[0].value, reading, trips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="qemu-tcg")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--workload", default="sysbench-cpu")
    args = parser.parse_args()
    params = {"events": 2000} if args.workload == "sysbench-cpu" else {}
    # the guest image must carry the workload's tools
    platform = make_platform(args.kind, args.kind, {"network": "none"},
                             PlatformContext(payload=payload([args.workload])))
    with platform.open() as machine:
        _once(machine, args.workload, params, [])  # warm-up
        plain, collected, costs, added = [], [], [], []
        for _ in range(args.pairs):
            value, _, trips = _once(machine, args.workload, params, [])
            plain.append(value)
            value, cost, counted_trips = _once(machine, args.workload, params,
                                               machine.collectors())
            collected.append(value)
            costs.append(cost)
            added.append(counted_trips - trips)
    ratio = statistics.median(collected) / statistics.median(plain)
    extra = statistics.median(added)
    total = [cost + more for cost, more in zip(costs, added, strict=True)]
    print(f"{args.workload} on {args.kind}, {args.pairs} interleaved pairs")
    print(f"  result with collectors / without: {ratio:.4f} "
          f"({(ratio - 1) * 100:+.2f}%; goal within 1%)")
    print(f"  starting and stopping the collectors: median {statistics.median(costs) * 1000:.0f}"
          f" ms, max {max(costs) * 1000:.0f} ms per trial")
    print(f"  the agent's round trips, counting against not: {extra * 1000:+.0f} ms per trial")
    print(f"  added per trial: median {statistics.median(total) * 1000:.0f} ms, max "
          f"{max(total) * 1000:.0f} ms (goal under 50 ms)")


if __name__ == "__main__":
    main()
