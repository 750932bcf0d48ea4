"""The measurement lock on a remote host: two campaigns (two people, two CI jobs)
never measure on the same host at once.

The lock is flock(1) on a file on the host itself, held by a long-lived host process
(Host.start: over SSH its session dies when the connection closes): it is released
when the run is done with the host, and however hvbench ends, so a crashed hvbench
never leaves a host locked.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import HvbenchError, TrialError
from ..localproc import Warden
from .base import Host, HostProcess

#: where the lock lives unless the host says otherwise (?lock=PATH, hvbench_lock)
LOCK_PATH = "/var/lock/hvbench.lock"
#: a fixed script (nothing from a config in it): say so once the lock is held, then hold it
_HOLD = ["sh", "-c", "echo hvbench-locked; exec sleep infinity"]
_POLL = 1.0
#: flock's exit status when another process holds the lock (not 1, which a failure to
#: open the file also gives)
_HELD = 75


@contextlib.contextmanager
def measurement_lock(host: Host, path: str | None, timeout: float | None,
                     say: Callable[[str], None], cancelled: Callable[[], bool] = lambda: False
                     ) -> Iterator[None]:
    """Hold the host's measurement lock while the block runs; wait for it (saying so)
    while another hvbench holds it, up to ``timeout`` seconds (None: as long as it
    takes, or until ``cancelled``)."""
    where = path or LOCK_PATH  # (the host itself: no machine, so no scratch dir to leave)
    free = host.run(["flock", "-n", "-E", str(_HELD), where, "true"], timeout=60)
    if free.exit_code not in (0, _HELD):  # flock's own failure: no such directory...
        raise HvbenchError(f"{host.label}: cannot take the measurement lock {where} "
                           f"({(free.stderr or free.stdout).strip()[:200]}); set another "
                           "path with the host's hvbench_lock (or ?lock=PATH)")
    if free.exit_code == _HELD:
        limit = "" if timeout is None else f" (for up to {timeout:.0f} s, --lock-timeout)"
        say(f"{host.label}: another hvbench is measuring there (lock {where}); "
            f"waiting{limit}")
    output = Warden.make_dir("hvbench-lock-")
    # a long-lived host process: its session dies with our link to the host, and with
    # it the lock, however hvbench ends
    holder = host.start(["flock", where, *_HOLD], output / "out", output / "err")
    try:
        _wait_until_held(holder, output / "out", host.label, where, timeout, cancelled)
        yield
    finally:
        with contextlib.suppress(TrialError):
            holder.kill()
        Warden.remove_dir(output)


def _wait_until_held(holder: HostProcess, said: Path, label: str, where: str,
                     timeout: float | None, cancelled: Callable[[], bool]) -> None:
    started = time.monotonic()
    while "hvbench-locked" not in (said.read_text() if said.exists() else ""):
        code = holder.wait(_POLL)
        if code is not None:
            raise HvbenchError(f"{label}: the measurement lock {where} could not be held "
                               f"(flock ended with {code})")
        waited = time.monotonic() - started
        if timeout is not None and waited >= timeout:
            raise HvbenchError(f"{label}: another hvbench still measures there after "
                               f"{waited:.0f} s (lock {where}); try again later or "
                               "raise --lock-timeout")
        if cancelled():
            raise KeyboardInterrupt
