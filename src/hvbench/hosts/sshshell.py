"""A shell kept open on an SSH host for hvbench's own short commands.

Every SSH command costs a session: a channel, a process forked by the server, the
user's shell and our wrapper started in it; in the Xen lab's dom0 (a paravirtual
guest under emulation, where each process costs milliseconds) that is ~60 ms before
the command itself runs, twice per trial for a guest's host-side readings. The
harness's own commands (readings, files, lookups, ``xl``) therefore go through one
shell per connection that reads them from its standard input. Each command is
still an argv list (quoted with ``shlex``; nothing from a config or a tool's output
is ever shell text), runs in a session of its own (``setsid``, so a time-out kills
it with its children), reads /dev/null (never the shell's command stream), and its
output and exit status come back behind a random end marker on each stream. Any
trouble (a time-out, a shell that died, a broken link) discards the shell; the next
command starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shlex
from collections.abc import Sequence
from typing import Any

#: $1 the command's marker, then the command: started in a session of its own, its
#: pid (= its process group) on stderr at once, then its status behind the marker on
#: both streams (each preceded by a newline, so output without one stays intact)
_RUN = ('_hvb() { t=$1; shift; setsid "$@" </dev/null & p=$!; '
        'echo "@@HVB-PID $p 0%N" >&2; wait "$p"; rc=$?; '
        'printf "\\n@@HVB-DONE %s %s\\n" "$t" "$rc"; printf "\\n@@HVB-DONE %s\\n" "$t" >&2; }\n')


class ShellGone(Exception):
    """The kept shell ended or its channel closed under a command."""


class KeptShell:
    """One ``sh`` on the host, reading hvbench's commands from its standard input."""

    def __init__(self, process: Any):
        self._process = process  # an asyncssh SSHClientProcess (bytes)
        process.stdin.write(_RUN.encode())

    @classmethod
    async def start(cls, open_process: Any) -> KeptShell:
        return cls(await open_process("exec sh"))

    async def run(self, argv: Sequence[str], errors: bytearray) -> tuple[int, bytes]:
        """The command's exit status and stdout; its stderr goes to ``errors`` as it
        comes (the pid stamp first, for a time-out's kill)."""
        token = secrets.token_hex(8)
        self._process.stdin.write(
            f"_hvb {token} {shlex.join(map(str, argv))}\n".encode())
        out_marker = f"\n@@HVB-DONE {token} ".encode()
        err_marker = f"\n@@HVB-DONE {token}\n".encode()
        out = bytearray()

        async def until(stream: Any, buffer: bytearray, marker: bytes, line: bool) -> int:
            """Where the marker starts, once it (and the rest of its line) came."""
            while True:
                found = buffer.find(marker)
                if found >= 0 and (not line or buffer.find(b"\n", found + len(marker)) >= 0):
                    return found
                chunk = await stream.read(65536)
                if not chunk:
                    raise ShellGone("the shell ended")
                buffer.extend(chunk)

        at_out, at_err = await asyncio.gather(
            until(self._process.stdout, out, out_marker, True),
            until(self._process.stderr, errors, err_marker, False))
        status = out[at_out + len(out_marker):].split(b"\n", 1)[0]
        del errors[at_err:]
        if not status.strip().lstrip(b"-").isdigit():
            raise ShellGone(f"unreadable status {status[:20]!r}")
        return int(status), bytes(out[:at_out])

    def usable(self) -> bool:
        return self._process.exit_status is None and not self._process.is_closing()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._process.stdin.write_eof()
        with contextlib.suppress(Exception):
            self._process.close()
