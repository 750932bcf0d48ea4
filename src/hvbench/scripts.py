"""Several fixed shell scripts run on a host or machine in one command.

On an SSH host, and most in a nested lab, each command costs a session (~85 ms there)
whatever it runs; through a guest's agent each is a round trip through the guest. The
collectors of a trial and the metadata of a platform therefore take their readings
together. Each script runs in a subshell of its own (its ``exit`` ends only itself)
with its own arguments: the command's text is made of our scripts' fixed texts only,
and every value (a path, a domain name, a program) is an argument.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .errors import TrialError


class _Result(Protocol):
    @property
    def stdout(self) -> str: ...

    @property
    def stderr(self) -> str: ...

    @property
    def exit_code(self) -> int: ...


class Runs(Protocol):
    """A host or machine that runs commands (argv lists)."""

    @property
    def label(self) -> str: ...

    def run(self, argv: Sequence[str], timeout: float) -> _Result: ...


@dataclass(frozen=True)
class Script:
    """A fixed shell script (never built from config or guest text) and its arguments."""

    text: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reply:
    """What a script printed (stdout and stderr together) and its exit code."""

    output: str
    exit_code: int


def run_scripts(host: Runs, scripts: Sequence[Script], timeout: float = 120
                ) -> list[Reply]:
    """Run the scripts one after the other in one command on the host, each in a
    subshell of its own (its ``exit`` ends only itself) with its own arguments;
    their replies in order. The command text is made of the scripts' fixed texts;
    every value is an argument."""
    token = secrets.token_hex(8)
    parts, args = [], [token]
    for index, script in enumerate(scripts):
        first = len(args) + 1  # $1 is the token
        args.extend(script.args)
        refs = " ".join(f'"${{{first + k}}}"' for k in range(len(script.args)))
        parts.append(f"_hvbench{index}() {{\n{script.text}\n}}\n"
                     f"( _hvbench{index} {refs} ) 2>&1 </dev/null\n"
                     f"printf '\\n%s %s\\n' \"hvbench-$1\" $?\n")
    done = host.run(["sh", "-c", "".join(parts), "sh", *args], timeout=timeout)
    replies: list[Reply] = []
    output: list[str] = []
    for line in done.stdout.split("\n"):
        tag, _, code = line.partition(" ")
        if tag == f"hvbench-{token}" and code.strip().lstrip("-").isdigit():
            # the newline printed before the tag is the one the lines were split on
            replies.append(Reply("\n".join(output), int(code)))
            output = []
        else:
            output.append(line)
    if len(replies) != len(scripts):
        raise TrialError(f"the scripts run together on {host.label} did not all finish: "
                         f"{(done.stderr or done.stdout).strip()[:200] or 'no output'}")
    return replies
