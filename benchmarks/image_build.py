#!/usr/bin/env python3
"""Guest image build time: cold (empty image cache) versus warm (cached), side by side.

The Debian kernel is fetched once beforehand and shared, so "cold" measures the
build itself (library closure, modules, vmlinux extraction, cpio), not the download.

    .venv/bin/python benchmarks/image_build.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from hvbench.appliance import image as image_mod
from hvbench.workloads import payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    shared = image_mod.cache_root()
    image_mod.build(cache=shared)  # make sure a kernel is fetched
    colds, warms = [], []
    for round_number in range(args.rounds):
        with tempfile.TemporaryDirectory() as directory:
            cache = Path(directory)
            (cache / "kernels").symlink_to(shared / "kernels")
            started = time.perf_counter()
            built = image_mod.build(payload=payload(None), cache=cache)
            colds.append(time.perf_counter() - started)
            started = time.perf_counter()
            image_mod.build(payload=payload(None), cache=cache)
            warms.append(time.perf_counter() - started)
        print(f"round {round_number + 1}: cold {colds[-1]:6.2f} s   warm {warms[-1]:6.3f} s   "
              f"({built.manifest['initramfs_bytes'] / 2**20:.0f} MiB initramfs, all tools)")
    print(f"median cold {statistics.median(colds):.2f} s, warm {statistics.median(warms):.3f} s,"
          f" cold/warm {statistics.median(colds) / statistics.median(warms):.1f}x")


if __name__ == "__main__":
    main()
