#!/usr/bin/env python3
"""kvmprobe's cost per exit type, with its dispersion over repeated runs.

Each run measures every probe (CPL0 and CPL3) on this machine's /dev/kvm; the
table gives, per exit type, the median over runs, the spread (min-max and the
interquartile range as a share of the median), and the cost as a ratio to the
in-kernel `cpuid` exit measured in the same runs, so the comparison between
exit kinds does not depend on how busy the machine was.

    .venv/bin/python benchmarks/exit_costs.py [--runs 5] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys

from hvbench.probes import kvmprobe


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="short batches")
    args = parser.parse_args()
    costs: dict[tuple[str, int], list[float]] = {}
    exits: dict[tuple[str, int], dict[str, float]] = {}
    backend = "?"
    for run in range(args.runs):
        try:
            report = kvmprobe.measure(quick=args.quick)
        except kvmprobe.KvmProbeError as exc:
            print(f"exit_costs: {exc}", file=sys.stderr)
            return 2
        backend = report.backend
        for result in report.results:
            costs.setdefault((result.name, result.cpl), []).append(result.ns_per_exit)
            exits[(result.name, result.cpl)] = result.exits_per_iteration
        print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    print(f"kvmprobe exit costs on /dev/kvm ({backend}), {args.runs} runs")
    print(f"{'exit':10} {'CPL':>3} {'median ns':>11} {'min':>10} {'max':>10} "
          f"{'IQR/median':>10} {'vs cpuid':>9}  KVM exits per iteration")
    for cpl in (0, 3):
        reference = statistics.median(costs[("cpuid", cpl)])
        for (name, level), values in costs.items():
            if level != cpl:
                continue
            median = statistics.median(values)
            quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [median] * 3
            spread = (quartiles[2] - quartiles[0]) / median if median else float("nan")
            ratio = median / reference if reference > 0 else float("nan")
            print(f"{name:10} {cpl:>3} {median:>11,.0f} {min(values):>10,.0f} "
                  f"{max(values):>10,.0f} {spread:>10.1%} {ratio:>8.1f}x  "
                  f"{exits[(name, cpl)]}")
    if backend == "kvm_pvm":
        print("note: kvm_pvm emulates guest CPL0 code; CPL0 rows are emulator costs, not "
              "VT-x/AMD-V exits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
