"""A process left running in a guest (an interference study's aggressor).

The agent serves one request at a time, so a long process cannot hold a request
open: it is started in a session of its own by a short request that returns its
process id at once, checked and killed by further short requests, its output kept
in a file in the guest. The script is fixed text; the argv rides along as
positional parameters, never as shell text.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

from ..errors import TrialError
from ..machine import Background, Completed, Machine

#: $1: the output file; the rest: the argv. Prints the new session's process id (its
#: process group: the stop kills all it started).
SPAWN_SCRIPT = r"""
out=$1; shift
rm -f "$out.pid"
setsid sh -c 'echo $$ > "$0.pid"; exec "$@"' "$out" "$@" < /dev/null > "$out" 2>&1 &
i=0
while [ ! -s "$out.pid" ] && [ "$i" -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
cat "$out.pid"
"""
#: $1: the process id: exit 0 while it runs (gone, or a zombie nobody reaped: 1); the
#: state is the field after the command name, which may hold spaces (shell builtins
#: only: a fork costs a lot in a busy guest)
ALIVE_SCRIPT = r"""
read -r stat < "/proc/$1/stat" 2>/dev/null || exit 1
state=${stat##*) }
state=${state%% *}
[ -n "$state" ] && [ "$state" != Z ]
"""
#: $1: the process id, $2: the output file: kill the session, print what it wrote and
#: remove it (one round trip)
STOP_SCRIPT = r"""
kill -9 -- "-$1" 2>/dev/null
cat "$2" 2>/dev/null
rm -f "$2" "$2.pid"
exit 0
"""
_SERIAL = itertools.count(1)


class GuestBackground(Background):
    """One process in a guest, started in a session of its own."""

    def __init__(self, machine: Machine, argv: Sequence[str], directory: str,
                 query_seconds: float):
        self.machine = machine
        self.argv = tuple(map(str, argv))
        self.query_seconds = query_seconds
        self.output_path = f"{directory}/hvb-background-{next(_SERIAL)}.out"
        self._started = time.perf_counter()
        done = machine.run(["sh", "-c", SPAWN_SCRIPT, "sh", self.output_path, *self.argv],
                           timeout=query_seconds)
        pid = done.stdout.strip()
        if done.exit_code != 0 or not pid.isdigit():
            raise TrialError(f"cannot start {self.argv[0]} in {machine.label}: "
                             f"{(done.stderr or done.stdout).strip()[-200:]}")
        self.pid = int(pid)

    def running(self) -> bool:
        return self.machine.run(["sh", "-c", ALIVE_SCRIPT, "sh", str(self.pid)],
                                timeout=self.query_seconds).exit_code == 0

    def wait_for_output(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self._output():
            if not self.running():
                raise TrialError(f"{self.argv[0]} in {self.machine.label} exited before "
                                 "it was ready")
            if time.monotonic() > deadline:
                raise TrialError(f"{self.argv[0]} in {self.machine.label} did not become "
                                 f"ready within {timeout:.0f} s")
            time.sleep(0.2)

    def _output(self) -> str:
        return self.machine.read_file(self.output_path) or ""

    def stop(self) -> Completed:
        """Kill the session's process group and keep what it printed."""
        try:
            done = self.machine.run(["sh", "-c", STOP_SCRIPT, "sh", str(self.pid),
                                     self.output_path], timeout=self.query_seconds)
        except TrialError:  # the guest itself is gone: so is the process
            return Completed(self.argv, "", "", 0, time.perf_counter() - self._started)
        return Completed(self.argv, done.stdout, "", 0, time.perf_counter() - self._started)
