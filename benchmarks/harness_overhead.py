#!/usr/bin/env python3
"""Does running a workload through hvbench change what it measures?

Runs the same fixed-work command (``sysbench cpu --events=N``) directly and
through ``hvbench run --platform native``, interleaved, for several pairs, and
prints side-by-side ratios measured in this one run:

- metric ratio: sysbench's own events/s, direct / through hvbench (goal <= 1.02);
- wall ratio: the whole hvbench invocation (start-up, metadata, store) / direct.

    .venv/bin/python benchmarks/harness_overhead.py [--pairs 5] [--events 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time


def direct(events: int) -> tuple[float, float]:
    started = time.perf_counter()
    done = subprocess.run(["sysbench", "cpu", f"--events={events}", "--time=0", "run"],
                          capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    rate = float(re.search(r"events per second:\s+([\d.]+)", done.stdout).group(1))
    return rate, wall


def through_hvbench(events: int, home: str) -> tuple[float, float]:
    env = {**os.environ, "HVBENCH_HOME": home}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hvbench.cli", "run", "--platform", "native",
                    "--workload", "sysbench-cpu", "--reps", "1", "--no-warmup", "--quiet",
                    "--param", f"sysbench-cpu.events={events}"],
                   capture_output=True, text=True, check=True, env=env)
    wall = time.perf_counter() - started
    exported = subprocess.run([sys.executable, "-m", "hvbench.cli", "export", "latest",
                               "--json"], capture_output=True, text=True, check=True, env=env)
    rate = json.loads(exported.stdout)["samples"][0]["value"]
    return rate, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--events", type=int, default=20000)
    args = parser.parse_args()
    metric_ratios, wall_ratios = [], []
    with tempfile.TemporaryDirectory() as home:
        for pair in range(args.pairs):
            # Alternate which goes first so drift does not favour one side.
            order = [direct, through_hvbench] if pair % 2 == 0 else [through_hvbench, direct]
            results = {}
            for runner in order:
                results[runner.__name__] = (runner(args.events) if runner is direct
                                            else runner(args.events, home))
            (rate_d, wall_d), (rate_h, wall_h) = results["direct"], results["through_hvbench"]
            metric_ratios.append(rate_d / rate_h)
            wall_ratios.append(wall_h / wall_d)
            print(f"pair {pair + 1}: events/s direct {rate_d:9.1f}  via hvbench {rate_h:9.1f}"
                  f"  | wall direct {wall_d:6.2f} s  via hvbench {wall_h:6.2f} s")
    print(f"median metric ratio (direct / via hvbench): {statistics.median(metric_ratios):.3f}"
          "  (goal <= 1.02)")
    print(f"median wall ratio (via hvbench / direct):   {statistics.median(wall_ratios):.3f}"
          "  (fixed start-up cost, shrinks with longer workloads)")


if __name__ == "__main__":
    main()
