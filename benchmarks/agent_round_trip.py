#!/usr/bin/env python3
"""What one request through the guest agent costs: this tree's agent.sh against
another revision's, side by side in one run, both under busybox sh on a
pseudo-terminal here (a guest's agent is the same script).

Prints milliseconds per request and processes started per request (this machine's
fork counter: keep it otherwise idle). Processes are what a nested guest pays for:
each costs milliseconds there, a fraction of one here.

    .venv/bin/python benchmarks/agent_round_trip.py [--against HEAD] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from importlib import resources
from pathlib import Path

from hvbench.hosts.agent import Agent

BUSYBOX = "/bin/busybox"


def forks() -> int:
    """Processes this machine's kernel has created since boot."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("processes "):
            return int(line.split()[1])
    raise RuntimeError("no 'processes' line in /proc/stat")


async def _connect(master: int) -> Agent:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 22)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                 os.fdopen(os.dup(master), "rb", 0))
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(os.dup(master), "wb", 0))
    return Agent(reader, asyncio.StreamWriter(transport, protocol, reader, loop))


async def measure(script: Path, work: Path, requests: int) -> tuple[float, float]:
    """(ms, processes) per counted request of ``true`` (a trial's shape: the kernel's
    counters read around the command)."""
    master, slave = os.openpty()
    process = subprocess.Popen([BUSYBOX, "sh", str(script), os.ttyname(slave), "vda",
                                str(work)], cwd=work, start_new_session=True,
                               stdin=subprocess.DEVNULL)
    agent = await _connect(master)
    try:
        await asyncio.wait_for(agent.wait_ready(), 20)
        await agent.run_counted(["true"], 20, 5)  # the first one warms the caches
        before, started = forks(), time.perf_counter()
        for _ in range(requests):
            await agent.run_counted(["true"], 20, 5)
        seconds, spawned = time.perf_counter() - started, forks() - before
    finally:
        os.killpg(process.pid, 9)
        process.wait(10)
        agent.close()
        os.close(master)
        os.close(slave)
    return seconds / requests * 1000, spawned / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="HEAD", help="the git revision to compare with")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ours = Path(str(resources.files("hvbench.guest").joinpath("agent.sh")))
    with tempfile.TemporaryDirectory(prefix="hvbench-agent-") as scratch:
        theirs = Path(scratch) / "agent.sh"
        theirs.write_bytes(subprocess.run(
            ["git", "show", f"{args.against}:src/hvbench/guest/agent.sh"],
            capture_output=True, check=True, cwd=Path(__file__).parent).stdout)
        results: dict[str, list[tuple[float, float]]] = {"this tree": [], args.against: []}
        for _ in range(args.rounds):  # interleaved: the machine's noise hits both
            for name, script in (("this tree", ours), (args.against, theirs)):
                work = Path(tempfile.mkdtemp(dir=scratch))
                results[name].append(asyncio.run(measure(script, work, args.requests)))
    best = {name: (min(r[0] for r in runs), min(r[1] for r in runs))
            for name, runs in results.items()}
    for name, (ms, spawned) in best.items():
        print(f"{name:<12} {ms:7.2f} ms per request  {spawned:5.1f} processes per request")
    (ms, spawned), (their_ms, their_spawned) = best["this tree"], best[args.against]
    print(f"ratio (this tree / {args.against}): time {ms / their_ms:.2f}, "
          f"processes {spawned / their_spawned:.2f}")


if __name__ == "__main__":
    main()
