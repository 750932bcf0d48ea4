#!/usr/bin/env python3
"""How does a run's wall time grow with the number of hosts?

Starts real OpenSSH servers on loopback (each with its own keys, port and home
directory, as separate hosts would have) and a private PostgreSQL server, writes an
Ansible inventory of them and runs ``hvbench run --inventory ... --forks F`` for 1,
4, 8 and 16 hosts, with results going into PostgreSQL.

The workload waits instead of computing: ``fio-randread`` capped at 20 I/O per
second for 4 s (``rate_iops``), two repetitions per host. All the "hosts" share this
machine's two cores, so a CPU-bound workload would measure the cores, not hvbench;
a waiting one measures what the issue asks: hvbench's orchestration of many hosts
at once (connections, metadata, the host lock, trials, the store).

Each loopback host gets ``SetEnv HOME=...`` (its own home, so its own caches, as a
separate machine would have; and not root's dotfiles, which on our machines run a
shell start-up costing about 0.15 s per remote command).

Prints, side by side from this one run: wall time per host count and forks, its
growth against one host, the time per host not spent in workloads (wall time minus
the longest host's measured trial time, with forks >= hosts), and the PostgreSQL
server's CPU time during the run (the store as a bottleneck or not).

    .venv/bin/python benchmarks/fleet_scale.py [--hosts 1,4,8,16] [--forks 4,16]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.postgres import Server, env_for, postgres  # noqa: E402 - the tests' real servers
from tests.sshd import Sshd, start_sshd  # noqa: E402

WORKLOAD = ["--workload", "fio-randread", "--param", "fio-randread.rate_iops=20",
            "--param", "fio-randread.runtime=4", "--param", "fio-randread.size=4M",
            "--reps", "2", "--no-warmup"]


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


def server_cpu(server: Server) -> float:
    """CPU seconds of the PostgreSQL server so far: the postmaster with the backends
    it has reaped, and the live ones."""
    tick = os.sysconf("SC_CLK_TCK")
    pid = int((server.base / "data" / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(entry.name) == pid:
                total += sum(int(f) for f in fields[11:15]) / tick  # with reaped children
            elif int(fields[1]) == pid:
                total += sum(int(f) for f in fields[11:13]) / tick
    return total


def machine_cpu() -> float:
    """CPU seconds this machine has been busy (all cores, from /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(f) for f in fields) - int(fields[3]) - int(fields[4])  # not idle, iowait
    return busy / os.sysconf("SC_CLK_TCK")


@dataclass
class Measured:
    wall: float  # seconds
    busiest: float  # the longest host's measured trial seconds
    controller: float  # CPU seconds of hvbench itself
    machine: float  # CPU seconds of the whole machine (hvbench, the hosts, the store)
    store: float  # CPU seconds of the PostgreSQL server


def one_run(home: Path, hosts_file: Path, count: int, forks: int, server: Server,
            env: dict[str, str]) -> Measured:
    limit = ",".join(f"h{i}" for i in range(1, count + 1))
    run_env = {**env, "HVBENCH_HOME": str(home)}
    cpu = server_cpu(server)
    busy = machine_cpu()
    own = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "hvbench.cli", "--store", server.url, "run",
                           "--inventory", str(hosts_file), "--limit", limit, "--forks",
                           str(forks), "--accept-new-host-key", "--platform", "native",
                           *WORKLOAD, "--quiet"],
                          env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, timeout=3600)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    controller = after.ru_utime + after.ru_stime - own.ru_utime - own.ru_stime
    busy = machine_cpu() - busy
    if done.returncode != 0:  # a number from a run with failures would mislead
        raise SystemExit(f"{count} hosts, forks {forks}: hvbench exited "
                         f"{done.returncode}:\n{done.stderr[-2000:]}")
    cpu = server_cpu(server) - cpu
    exported = json.loads(subprocess.run(
        [sys.executable, "-m", "hvbench.cli", "--store", server.url, "export", "latest",
         "--json"], env=run_env, check=True, capture_output=True, text=True).stdout)
    per_host: dict[str, float] = defaultdict(float)
    for trial in exported["trials"]:
        per_host[trial["platform"]] += trial["seconds"] or 0.0
    return Measured(wall, max(per_host.values()), controller, busy, cpu)


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
    servers = []
    for index in range(1, max(counts) + 1):
        home = base / f"h{index}" / "home"
        home.mkdir(parents=True)
        servers.append(start_sshd(base / f"h{index}", extra_config=f"SetEnv HOME={home}\n"))
    try:
        hosts_file = inventory(base, servers)
        with postgres() as server:
            env = env_for(server)
            # first contact with every host: host keys, each host's copy of the tools
            one_run(base / "home", hosts_file, max(counts), max(counts), server, env)
            print(f"workload: {' '.join(WORKLOAD)} (waits on a rate-capped disk)")
            print(f"{'hosts':>5} {'forks':>5} {'wall s':>7} {'vs 1 host':>9} "
                  f"{'in workloads s':>14} {'not in workloads s':>18} "
                  f"{'hvbench CPU s/host':>18} {'hosts CPU s/host':>16} {'store CPU s':>11}")
            for forks in forks_list:
                first = None
                for count in counts:
                    m = one_run(base / "home", hosts_file, count, forks, server, env)
                    first = first or m.wall
                    overhead = f"{m.wall - m.busiest:>18.1f}" if forks >= count else \
                        f"{'(queued)':>18}"
                    hosts_cpu = (m.machine - m.controller - m.store) / count
                    print(f"{count:>5} {forks:>5} {m.wall:>7.1f} {m.wall / first:>9.2f} "
                          f"{m.busiest:>14.1f} {overhead} {m.controller / count:>18.2f} "
                          f"{hosts_cpu:>16.2f} {m.store:>11.2f}", flush=True)
    finally:
        for sshd in servers:
            with contextlib.suppress(Exception):
                sshd.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
