#!/usr/bin/env python3
"""What tracing a Xen guest's trials with xentrace costs: the same PVH guest kind
traced and untraced, trials interleaved in one run in the Xen lab, side by side.

    .venv/bin/python benchmarks/xentrace_overhead.py [--reps 6] [--workload sysbench-cpu]

Prints the workload's result traced / untraced (the perturbation of the measurement
itself) and the time each trial costs outside its measured command (collectors,
agent), traced against untraced: what the tracer adds to a run. Boots the Xen lab
when it is not running (minutes).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PARAMS = {"sysbench-cpu": 'params = { events = 300 }',
          "fio-randread": 'params = { runtime = 3, size = "16M" }'}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=6)
    parser.add_argument("--workload", default="sysbench-cpu", choices=sorted(PARAMS))
    args = parser.parse_args()
    hvbench = [sys.executable, "-m", "hvbench.cli"]
    with tempfile.TemporaryDirectory() as scratch:
        campaign = Path(scratch) / "xentrace.toml"
        campaign.write_text(
            'host = "lab:xen"\nwarmup = false\n'
            f"reps = {args.reps}\n"
            'platforms = [{ name = "traced", kind = "xen-pvh", settings = { trace = true } },\n'
            '             { name = "untraced", kind = "xen-pvh" }]\n'
            f'[[workloads]]\nname = "{args.workload}"\n{PARAMS[args.workload]}\n')
        env = dict(os.environ)
        subprocess.run([*hvbench, "run", str(campaign), "--quiet"], env=env, check=True)
        exported = json.loads(subprocess.run([*hvbench, "export", "latest", "--json"], env=env,
                                             check=True, capture_output=True,
                                             text=True).stdout)
    metric = exported["samples"][0]["metric"]
    values: dict[str, list[float]] = {"traced": [], "untraced": []}
    for sample in exported["samples"]:
        if sample["metric"] == metric:
            values[sample["platform"]].append(sample["value"])
    trials = sorted(exported["trials"], key=lambda t: t["started"])
    outside: dict[str, list[float]] = {"traced": [], "untraced": []}
    for trial, following in itertools.pairwise(trials):
        gap = (dt.datetime.fromisoformat(following["started"])
               - dt.datetime.fromisoformat(trial["started"])).total_seconds()
        outside[trial["platform"]].append(gap - trial["seconds"])
    traced = [t["metadata"]["accounting"]["xen_trace"] for t in trials
              if t["platform"] == "traced"]
    ratio = statistics.median(values["traced"]) / statistics.median(values["untraced"])
    print(f"{args.workload} in a PVH guest of the Xen lab, {args.reps} interleaved pairs")
    print(f"  {metric} traced / untraced: {ratio:.3f} ({(ratio - 1) * 100:+.1f}%)")
    print(f"  time outside the measured command per trial: traced "
          f"{statistics.median(outside['traced']):.2f} s, untraced "
          f"{statistics.median(outside['untraced']):.2f} s (median)")
    print(f"  records per trial: median {statistics.median(t['records'] for t in traced):,.0f}"
          f", lost {sum(t.get('lost', 0) for t in traced)}")


if __name__ == "__main__":
    main()
