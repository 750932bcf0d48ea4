"""The measurement lock on a remote host: two campaigns (two people, two CI jobs)
never measure on the same host at once.

The lock is flock(1) on a file on the host itself, held by a process that hvbench
keeps running over its SSH connection: it is released when the run is done with the
host, and by the host's kernel however hvbench ends (the process dies with the
connection), so a crashed hvbench never leaves a host locked.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from ..errors import HvbenchError, TrialError, TrialTimeout
from ..machine import Background
from .base import Host

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
    machine, where = host.native(), path or LOCK_PATH
    free = machine.run(["flock", "-n", "-E", str(_HELD), where, "true"], timeout=60)
    if free.exit_code not in (0, _HELD):  # flock's own failure: no such directory...
        raise HvbenchError(f"{host.label}: cannot take the measurement lock {where} "
                           f"({(free.stderr or free.stdout).strip()[:200]}); set another "
                           "path with the host's hvbench_lock (or ?lock=PATH)")
    if free.exit_code == _HELD:
        limit = "" if timeout is None else f" (for up to {timeout:.0f} s, --lock-timeout)"
        say(f"{host.label}: another hvbench is measuring there (lock {where}); "
            f"waiting{limit}")
    holder = machine.spawn(["flock", where, *_HOLD])
    try:
        _wait_until_held(holder, host.label, where, timeout, cancelled)
        yield
    finally:
        with contextlib.suppress(TrialError):
            holder.stop()


def _wait_until_held(holder: Background, label: str, where: str, timeout: float | None,
                     cancelled: Callable[[], bool]) -> None:
    started = time.monotonic()
    while True:
        try:
            holder.wait_for_output("hvbench-locked", _POLL)
            return
        except TrialTimeout:
            waited = time.monotonic() - started
            if timeout is not None and waited >= timeout:
                raise HvbenchError(f"{label}: another hvbench still measures there after "
                                   f"{waited:.0f} s (lock {where}); try again later or "
                                   "raise --lock-timeout") from None
            if cancelled():
                raise KeyboardInterrupt from None
