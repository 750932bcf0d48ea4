#!/usr/bin/env python3
"""How does a run's wall time grow with the number of hosts?

Starts real OpenSSH servers on loopback (each with its own keys and port, as the
tests do) and a private PostgreSQL server, writes an Ansible inventory of them and
runs ``hvbench run --inventory ... --forks F`` for 1, 4, 8 and 16 hosts, with results
going into PostgreSQL. The workload is ``sysbench-cpu`` with a handful of events: it
takes milliseconds, so what is measured is hvbench's orchestration (connecting,
metadata, the host lock, the agent-less native trials, the store), not the workload.
All the "hosts" share this machine's cores, so the orchestration of many hosts at once
competes for them: that is part of what the growth shows.

Prints, side by side from this one run: wall time per host count and forks, its
growth against one host, and hvbench's own time per host (wall time x forks / hosts
where forks >= hosts, else wall time / hosts).

    .venv/bin/python benchmarks/fleet_scale.py [--hosts 1,4,8,16] [--forks 4,16]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.postgres import env_for, postgres  # noqa: E402 - the tests' real servers
from tests.sshd import Sshd, start_sshd  # noqa: E402


def inventory(base: Path, servers: list[Sshd]) -> Path:
    lines = ["all:", "  vars:", "    ansible_host: 127.0.0.1", "    ansible_user: root",
             "  hosts:"]
    for index, server in enumerate(servers, 1):
        lines.append(f"    h{index}: {{ansible_port: {server.port}, "
                     f"ansible_ssh_private_key_file: {server.client_key}, "
                     f"hvbench_lock: {base / f'h{index}.lock'}}}")
    path = base / "hosts.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def one_run(home: Path, hosts_file: Path, count: int, forks: int, store: str,
            env: dict[str, str]) -> float:
    limit = ",".join(f"h{i}" for i in range(1, count + 1))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hvbench.cli", "--store", store, "run",
                    "--inventory", str(hosts_file), "--limit", limit, "--forks", str(forks),
                    "--accept-new-host-key", "--platform", "native", "--workload",
                    "sysbench-cpu", "--param", "sysbench-cpu.events=10", "--reps", "2",
                    "--no-warmup", "--quiet"],
                   env={**env, "HVBENCH_HOME": str(home)}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=3600)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="1,4,8,16")
    parser.add_argument("--forks", default="4,16")
    args = parser.parse_args()
    counts = [int(x) for x in args.hosts.split(",")]
    forks_list = [int(x) for x in args.forks.split(",")]
    if os.geteuid() != 0:
        print("run as root: the loopback sshd logs in as root", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="hvb-fleet-"))
    servers = [start_sshd(base / f"h{i}") for i in range(1, max(counts) + 1)]
    try:
        hosts_file = inventory(base, servers)
        with postgres() as server:
            env = env_for(server)
            one_run(base / "home", hosts_file, 1, 1, server.url, env)  # known_hosts, caches
            print(f"{'hosts':>5} {'forks':>5} {'wall s':>8} {'vs 1 host':>9} "
                  f"{'hvbench s per host':>18}")
            for forks in forks_list:
                first = None
                for count in counts:
                    wall = one_run(base / "home", hosts_file, count, forks, server.url, env)
                    first = first or wall
                    per_host = wall * min(forks, count) / count
                    print(f"{count:>5} {forks:>5} {wall:>8.1f} {wall / first:>9.2f} "
                          f"{per_host:>18.1f}")
    finally:
        for sshd in servers:
            with contextlib.suppress(Exception):
                sshd.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
