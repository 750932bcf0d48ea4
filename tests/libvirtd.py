"""A libvirt daemon of the tests' own: libvirtd in session mode, in a private
directory, reached by its socket's URI.

Our machines run root without systemd, where libvirt's system daemon cannot start as
packaged (LAB-NOTES). A session daemon needs a non-root user: it runs in a user
namespace that maps uid 1000 inside to root outside, so it believes it is a user
(session mode, its state under its own XDG directories) while the files it opens
(the appliance, the scratch disks) are still root's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def short_dir() -> Iterator[Path]:
    """A private directory with a short path: the daemon's sockets live under it, and
    UNIX socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="hvb-lvd-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def session_daemon(base: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """(URI, daemon process) of a libvirtd started under ``base``; stopped on exit."""
    run, home = base / "run", base / "home"
    for path in (run, home):
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o700)
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(run),
           "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CACHE_HOME": str(home / ".cache"),
           "XDG_DATA_HOME": str(home / ".local/share")}
    socket = run / "libvirt" / "libvirt-sock"
    with (base / "libvirtd.log").open("wb") as log:
        daemon = subprocess.Popen(
            ["unshare", "--user", "--map-user=1000", "--map-group=1000", "libvirtd"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("libvirtd did not start: "
                                   + (base / "libvirtd.log").read_text()[-2000:])
            time.sleep(0.05)
        yield f"qemu+unix:///session?socket={socket}", daemon
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
