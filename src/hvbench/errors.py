"""Error types: each carries a one-line message and the exit code the CLI uses.

Exit codes: 0 success, 1 a run finished with failed trials (or a comparison found
a regression), 2 usage or environment errors the user must fix (bad flag, bad
config, unknown name, missing tool, a full or read-only store), 130 interrupted
(samples so far are kept).
"""

from __future__ import annotations


class HvbenchError(Exception):
    """An error the CLI reports as one line, without a traceback."""

    exit_code = 1


class UsageError(HvbenchError):
    """Bad input: unknown name, invalid value, unreadable config, missing tool."""

    exit_code = 2


class MissingToolError(UsageError):
    """A binary a workload needs is absent; the message names the Debian package."""

    def __init__(self, workload: str, binary: str, package: str, where: str = "this host"):
        super().__init__(
            f"workload {workload!r} needs {binary!r}, which is not installed on {where}; "
            f"install it with: apt-get install {package}"
        )
        self.workload, self.binary, self.package = workload, binary, package


class ParseError(HvbenchError):
    """Tool output did not look like what the parser expects (never a guessed number)."""

    def __init__(self, workload: str, problem: str):
        super().__init__(f"cannot parse {workload} output: {problem}")
        self.workload, self.problem = workload, problem


class TrialError(HvbenchError):
    """One trial failed (non-zero exit, timeout, machine lost); the run goes on."""


class GuestDied(TrialError):
    """A guest that crashed, panicked or whose QEMU or domain went away (not a hang)."""


class TrialTimeout(TrialError):
    """A command exceeded its time limit and was killed with its process group."""


class StoreError(HvbenchError):
    """The result store cannot be read or written (disk full, read-only, locked, corrupt):
    the user must fix the environment."""

    exit_code = 2


class Interrupted(HvbenchError):
    """Ctrl-C or SIGTERM: the run stopped cleanly and can be resumed."""

    exit_code = 130
