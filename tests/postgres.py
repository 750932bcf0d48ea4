"""A PostgreSQL server of the tests' own: Debian's binaries, ``initdb`` in a private
directory, a loopback port, password authentication over TCP (as a shared store
would have). Started and stopped by the test that needs it."""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (packages/debian-test.txt)")
    return found[-1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    base: Path
    port: int
    password: str

    @property
    def url(self) -> str:
        """The store's URL, without its password (that comes from PGPASSWORD)."""
        return f"postgresql://hvb@127.0.0.1:{self.port}/hvb"

    def _as_postgres(self, argv: list[str]) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True,
                       capture_output=True, timeout=120, cwd=self.base)

    def start(self) -> None:
        self._as_postgres([_bin("pg_ctl"), "-D", str(self.base / "data"), "-l",
                           str(self.base / "server.log"), "-w", "-o",
                           f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1",
                           "start"])

    def stop(self) -> None:
        self._as_postgres([_bin("pg_ctl"), "-D", str(self.base / "data"), "-m", "fast",
                           "-w", "stop"])

    def sql(self, statement: str, check: bool = True, database: str = "hvb") -> str:
        """One statement as the superuser, over the local socket; its output ('' when
        it fails and ``check`` is off)."""
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", _bin("psql"), "-h", str(self.base), "-p",
             str(self.port), "-d", database, "-tAc", statement],
            check=check, capture_output=True, text=True, timeout=60, cwd=self.base)
        return done.stdout.strip() if done.returncode == 0 else ""


@contextlib.contextmanager
def postgres() -> Iterator[Server]:
    base = Path(tempfile.mkdtemp(prefix="hvb-pg-"))
    shutil.chown(base, "postgres", "postgres")
    server = Server(base, _free_port(), secrets.token_hex(8))
    try:
        (base / "pw").write_text(server.password)
        shutil.chown(base / "pw", "postgres", "postgres")
        server._as_postgres([_bin("initdb"), "-D", str(base / "data"), "-U", "postgres",
                             "--auth-local=trust", "--auth-host=scram-sha-256"])
        server.start()
        server._as_postgres([_bin("psql"), "-h", str(base), "-p", str(server.port), "-d",
                             "postgres", "-c",
                             f"CREATE ROLE hvb LOGIN PASSWORD '{server.password}'",
                             "-c", "CREATE DATABASE hvb OWNER hvb"])
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


def env_for(server: Server) -> dict[str, str]:
    """What a client needs beside the URL: the password where libpq looks for it."""
    return {**os.environ, "PGPASSWORD": server.password}
