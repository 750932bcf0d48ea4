"""Host side of the guest agent protocol (the guest side is init.sh).

One request at a time over a byte stream (a QEMU virtio-serial port socket, a
Xen console, ...). Requests carry an argv (NUL-separated, base64) that the guest
executes as an argv, never as shell text. Replies are framed and checksummed:

    @@HVB-BEGIN <id> <rc> <elapsed-ns> <stdout-bytes> <stderr-bytes> <sha256> [<kernel-bytes>]
    <base64 lines of stdout + stderr (+ the guest kernel's counters around the command)>
    @@HVB-END <id>

Lines that are not part of a frame (kernel messages, echoes, stale replies) are
ignored, and a frame whose payload fails its checksum is an error, so console
noise can neither corrupt a result nor pass as one. Nothing the guest sends is
ever executed: replies are only decoded as data.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import TrialError, TrialTimeout
from ..machine import Completed

_BASE64_LINE = re.compile(rb"^[A-Za-z0-9+/]+={0,2}$")
_BEGIN = re.compile(
    rb"^@@HVB-BEGIN (\d+) (-?\d+) (\d+) (\d+) (\d+) ([0-9a-f]{64})(?: (\d+))?$")
_READY = re.compile(rb"@@HVB-READY (\d+) ([\d.]+) ?(\S*)")
_DIED = re.compile(r"hvbench-agent: DIED with wait status (\d+)")
#: how much longer than the command's own limit the host waits for the reply
REPLY_MARGIN = 30.0
#: the most output (stdout + stderr) the host accepts from one guest command: a guest
#: that floods cannot exhaust the host's memory (workload outputs are kilobytes)
MAX_REPLY_BYTES = 64 << 20
#: how much of each recent noise line is kept for error messages
_NOISE_KEPT = 512


class AgentError(TrialError):
    """The agent is unreachable, stopped answering, or sent a corrupted reply."""


class AgentClosed(AgentError):
    """The stream to the agent ended (the guest, or only the console client, went away)."""


@dataclass(frozen=True)
class Ready:
    guest_ns: int  # guest monotonic clock when the agent came up
    uptime: float  # guest uptime in seconds at that point
    scratch: str  # the block device mounted on /scratch, or "tmpfs"


def encode_request(request_id: int, kind: str, limit: float, payload: bytes,
                   arg: str = "-") -> bytes:
    lines = base64.encodebytes(payload).splitlines()
    digest = hashlib.sha256(payload).hexdigest()
    header = f"@@REQ {request_id} {kind} {max(1, int(limit + 0.999))} {len(lines)} {digest} {arg}\n"
    return header.encode() + b"".join(line + b"\n" for line in lines)


def encode_argv(argv: Sequence[str]) -> bytes:
    """NUL-separated argv; an argument containing NUL cannot be passed safely."""
    parts = [str(a).encode() for a in argv]
    if not parts:
        raise ValueError("empty argv")
    if any(b"\0" in part for part in parts):
        raise ValueError("an argument contains a NUL byte")
    return b"\0".join(parts) + b"\0"


@dataclass(frozen=True)
class Reply:
    request_id: int
    exit_code: int
    elapsed_ns: int
    stdout: bytes
    stderr: bytes
    #: /proc/uptime and /proc/stat just before the command, "--", the same just after
    #: (asked for with RUN's argument "K"; empty otherwise)
    kernel: bytes = b""


@dataclass(frozen=True)
class KernelCounters:
    """The guest kernel's /proc/uptime and /proc/stat read by the agent just before
    and just after one command."""

    before: str
    after: str

    @classmethod
    def parse(cls, text: bytes) -> KernelCounters:
        """The two readings; both empty when the reply held none (the collector then
        says its figures are missing; the command's own result stands)."""
        before, separator, after = text.decode("ascii", "replace").partition("\n--\n")
        return cls(before, after) if separator else cls("", "")


class ReplyParser:
    """Feed lines; returns the reply for ``request_id`` once its frame is complete."""

    def __init__(self, request_id: int):
        self.request_id = request_id
        self._header: re.Match[bytes] | None = None
        self._chunks: list[bytes] = []
        self._room = 0  # base64 bytes the frame may still hold

    def feed(self, raw: bytes) -> Reply | None:
        line = raw.strip(b"\r\n").strip()
        if self._header is None:
            match = _BEGIN.match(line)
            if match and int(match.group(1)) == self.request_id:
                declared = int(match.group(4)) + int(match.group(5)) + int(match.group(7) or 0)
                if declared > MAX_REPLY_BYTES:
                    raise AgentError(f"the guest's reply holds {declared >> 20} MiB of "
                                     f"output, over the cap of {MAX_REPLY_BYTES >> 20} MiB "
                                     "per command")
                self._header = match
                self._chunks = []
                # base64 of the declared bytes, plus slack for a few noise lines that
                # happen to look like base64
                self._room = 4 * (declared + 2) // 3 + 4096
            return None
        if line == f"@@HVB-END {self.request_id}".encode():
            return self._finish()
        if line.startswith(b"@@HVB-BEGIN"):
            raise AgentError("agent reply interrupted by another frame")
        if _BASE64_LINE.match(line):
            self._chunks.append(line)
            self._room -= len(line)
            if self._room < 0:
                raise AgentError("agent reply is longer than its header says (corrupted on "
                                 "the way, or a guest flooding its console)")
        return None  # anything else is console noise

    def _finish(self) -> Reply:
        header = self._header
        assert header is not None
        try:
            payload = base64.b64decode(b"".join(self._chunks), validate=True)
        except (binascii.Error, ValueError):
            raise AgentError("agent reply is not valid base64 (corrupted on the way)") from None
        out_len, err_len = int(header.group(4)), int(header.group(5))
        kernel_len = int(header.group(7) or 0)
        if hashlib.sha256(payload).hexdigest().encode() != header.group(6) \
                or len(payload) != out_len + err_len + kernel_len:
            raise AgentError("agent reply failed its checksum (corrupted on the way)")
        ends = out_len + err_len
        return Reply(int(header.group(1)), int(header.group(2)), int(header.group(3)),
                     payload[:out_len], payload[out_len:ends], payload[ends:])


class Agent:
    """Talks to one guest's agent over an asyncio stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 first_id: int = 1):
        self._reader = reader
        self._writer = writer
        #: a new stream to the same agent continues the numbering, so a reply to a
        #: request lost with the old stream can never pass for a new one's
        self._next_id = first_id
        self.noise: list[bytes] = []  # recent non-protocol lines, for error messages

    @classmethod
    async def connect_unix(cls, path: str) -> Agent:
        reader, writer = await asyncio.open_unix_connection(path, limit=1 << 22)
        return cls(reader, writer)

    async def _line(self) -> bytes:
        try:
            line = await self._reader.readline()
        except ValueError:  # a line longer than the stream limit: noise, not protocol
            raise AgentError("the agent sent an over-long line") from None
        except Exception as exc:  # OSError, or the transport's own (asyncssh's ConnectionLost)
            raise AgentClosed(f"the agent connection broke: {exc}") from None
        if not line:
            said = " | ".join(text for text in (
                n.decode("utf-8", "replace").strip() for n in self.noise[-3:]) if text)
            raise AgentClosed("the guest closed the agent connection"
                             + (f" (last said: {said[-300:]})" if said else ""))
        stripped = line.strip()
        if stripped and not stripped.startswith(b"@@") and not _BASE64_LINE.match(stripped):
            self._remember(line)
        return line

    async def wait_ready(self) -> Ready:
        while True:
            line = await self._line()
            match = _READY.search(line)
            if match:
                return Ready(int(match.group(1)), float(match.group(2)),
                             match.group(3).decode() or "unknown")

    def _remember(self, line: bytes) -> None:
        self.noise = [*self.noise[-19:], line[:_NOISE_KEPT]]

    async def request(self, kind: str, payload: bytes, limit: float, arg: str = "-") -> Reply:
        request_id = self._next_id
        self._next_id += 1
        try:
            self._writer.write(encode_request(request_id, kind, limit, payload, arg))
            await self._writer.drain()
        except Exception as exc:  # the stream's other end is gone (OSError, asyncssh's)
            raise AgentClosed(f"the agent connection broke: {exc}") from None
        parser = ReplyParser(request_id)
        while True:
            line = await self._line()
            reply = parser.feed(line)
            if reply is not None:
                return reply

    async def run(self, argv: Sequence[str], limit: float,
                  margin: float = REPLY_MARGIN) -> Completed:
        return (await self._run(argv, limit, margin, "-"))[0]

    async def run_counted(self, argv: Sequence[str], limit: float,
                          margin: float = REPLY_MARGIN) -> tuple[Completed, KernelCounters]:
        """``run``, with the guest kernel's counters read around the command by the
        agent itself (a trial's accounting without a request of its own)."""
        done, reply = await self._run(argv, limit, margin, "K")
        return done, KernelCounters.parse(reply.kernel)

    async def _run(self, argv: Sequence[str], limit: float, margin: float, arg: str
                   ) -> tuple[Completed, Reply]:
        try:
            reply = await asyncio.wait_for(self.request("RUN", encode_argv(argv), limit, arg),
                                           limit + margin)
        except TimeoutError:
            raise TrialTimeout(f"the guest agent did not answer within {limit:.0f} s "
                               f"(+{margin:.0f} s margin) running {argv[0]}") from None
        stderr = reply.stderr.decode("utf-8", "replace")
        if reply.exit_code == 124 and "hvbench-agent: TIMEOUT" in stderr:
            raise TrialTimeout(f"{argv[0]} exceeded its {limit:.0f} s time limit in the "
                               "guest and was killed")
        died = _DIED.search(stderr)
        if died:
            raise TrialError(f"{argv[0]} died in the guest without an exit status (wait "
                             f"status {died.group(1)}: killed by signal "
                             f"{int(died.group(1)) - 128})")
        return Completed(tuple(str(a) for a in argv), reply.stdout.decode("utf-8", "replace"),
                         stderr, reply.exit_code, reply.elapsed_ns / 1e9), reply

    async def put(self, path: str, data: bytes, limit: float = 60) -> None:
        encoded_path = base64.b64encode(path.encode()).decode()
        try:
            reply = await asyncio.wait_for(self.request("PUT", data, limit, encoded_path),
                                           limit + REPLY_MARGIN)
        except TimeoutError:
            raise TrialTimeout(f"the guest agent did not store {path} in time") from None
        if reply.exit_code != 0:
            raise TrialError(f"cannot write {path} in the guest: "
                             f"{reply.stderr.decode('utf-8', 'replace').strip()[:200]}")

    @property
    def next_id(self) -> int:
        return self._next_id

    def close(self) -> None:
        self._writer.close()
