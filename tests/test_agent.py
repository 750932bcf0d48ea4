"""The agent protocol: the real guest-side agent.sh (busybox sh) over a pseudo-terminal,
with console noise injected, and the host-side parser under hypothesis."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hvbench.collect import CountedKernel
from hvbench.errors import TrialError, TrialTimeout
from hvbench.hosts.agent import Agent, AgentError, ReplyParser, encode_argv

BUSYBOX = "/bin/busybox"


class PtyAgent:
    """agent.sh running natively on a pty: the same script the guest runs."""

    def __init__(self, work: Path):
        self.master, self.slave = os.openpty()
        script = resources.files("hvbench.guest").joinpath("agent.sh")
        self.process = subprocess.Popen(
            [BUSYBOX, "sh", str(script), os.ttyname(self.slave), "vda", str(work)],
            cwd=work, start_new_session=True, stdin=subprocess.DEVNULL)
        self.loop = asyncio.new_event_loop()
        self.agent = self.loop.run_until_complete(self._connect())

    async def _connect(self) -> Agent:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 22)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                     os.fdopen(os.dup(self.master), "rb", 0))
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(os.dup(self.master), "wb", 0))
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        return Agent(reader, writer)

    def noise(self, text: bytes) -> None:
        """Something else writing to the same console (e.g. a kernel message)."""
        os.write(self.slave, text)

    def call(self, coroutine):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        os.killpg(self.process.pid, 9)
        self.process.wait(10)
        self.agent.close()
        self.loop.close()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def pty_agent(tmp_path: Path) -> Iterator[PtyAgent]:
    if not Path(BUSYBOX).exists():
        pytest.fail("busybox is missing: make test installs busybox-static")
    agent = PtyAgent(tmp_path)
    try:
        ready = agent.call(asyncio.wait_for(agent.agent.wait_ready(), 20))
        assert ready.scratch == "vda" and ready.guest_ns > 0
        yield agent
    finally:
        agent.close()


def test_argv_is_data_not_shell(pty_agent: PtyAgent, tmp_path: Path) -> None:
    hostile = ["a b", "'quoted'", '"double"', "$(touch pwned)", "; touch pwned2", "`id`",
               "*", "", "tab\there", "ünïcode"]
    done = pty_agent.call(pty_agent.agent.run(["printf", "[%s]\\n", *hostile], 20))
    assert done.exit_code == 0
    assert done.stdout == "".join(f"[{item}]\n" for item in hostile)
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


def test_exit_code_streams_and_time(pty_agent: PtyAgent) -> None:
    done = pty_agent.call(pty_agent.agent.run(
        ["sh", "-c", "echo out; echo err >&2; sleep 0.3; exit 7"], 20))
    assert (done.stdout, done.stderr, done.exit_code) == ("out\n", "err\n", 7)
    assert 0.25 < done.seconds < 5


def test_kernel_counters_come_with_the_reply_around_the_command(pty_agent: PtyAgent) -> None:
    """RUN K: the agent reads /proc/uptime and /proc/stat before and after the command
    and sends them in the same reply (the trial's accounting costs no request); a
    CountedKernel collector turns a trial's first 'before' and last 'after' into the
    kernel's figures over exactly that window."""

    class Counting:  # the two calls GuestMachine makes around a trial's commands
        def __init__(self) -> None:
            self.counted: list = []  # type: ignore[type-arg]

        def count_kernel(self) -> None:
            self.counted = []

        def kernel_counted(self) -> list:  # type: ignore[type-arg]
            return self.counted

    machine = Counting()
    collector = CountedKernel(machine)
    collector.start()
    for argv in (["sh", "-c", "echo out; echo err >&2"],
                 ["sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 0.3"]):
        done, counters = pty_agent.call(pty_agent.agent.run_counted(argv, 20))
        machine.counted.append(counters)
    assert (done.exit_code, machine.counted[0].before.count("\ncpu ")) == (0, 1)
    first = pty_agent.call(pty_agent.agent.run_counted(["echo", "out"], 20))[0]
    assert (first.stdout, first.stderr) == ("out\n", "")  # the counters stay apart
    figures = collector.stop()
    assert 0.3 <= figures["seconds"] < 5  # uptime from the first 'before' to the last 'after'
    assert figures["busy_cores"] > 0 and figures["ctxt_per_s"] > 0
    assert 0.99 < sum(figures[f"{k}_share"] for k in (
        "user", "system", "irq", "softirq", "iowait", "idle", "steal")) < 1.01
    machine.counted = []
    with pytest.raises(ValueError, match="no command ran on the machine"):
        collector.stop()


def test_large_output_survives_noise_between_lines(pty_agent: PtyAgent) -> None:
    pty_agent.noise(b"[   12.345678] virtio_net virtio1 eth0: link up\r\n")
    done = pty_agent.call(pty_agent.agent.run(["seq", "1", "20000"], 60))
    assert done.stdout.split() == [str(i) for i in range(1, 20001)]
    pty_agent.noise(b"random console chatter @@HVB-BEGIN 99 0 0 0 0 " + b"0" * 64 + b"\r\n")
    again = pty_agent.call(pty_agent.agent.run(["echo", "still fine"], 20))
    assert again.stdout == "still fine\n"


def test_put_then_read_back(pty_agent: PtyAgent, tmp_path: Path) -> None:
    data = bytes(range(256)) * 40
    target = tmp_path / "put.bin"
    pty_agent.call(pty_agent.agent.put(str(target), data))
    assert target.read_bytes() == data


def test_timeout_kills_the_command_and_its_children(pty_agent: PtyAgent,
                                                    tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    started = time.monotonic()
    with pytest.raises(TrialTimeout, match="time limit in the guest"):
        pty_agent.call(pty_agent.agent.run(
            ["sh", "-c", f"sleep 300 & echo $! > {marker}; wait"], 1))
    assert time.monotonic() - started < 15
    child = int(marker.read_text())
    time.sleep(0.3)
    assert not Path(f"/proc/{child}").exists() or \
        Path(f"/proc/{child}/stat").read_text().split()[2] == "Z"
    done = pty_agent.call(pty_agent.agent.run(["echo", "after"], 20))
    assert done.stdout == "after\n"


def test_a_command_that_kills_its_wrapper_is_not_called_a_timeout(
        pty_agent: PtyAgent) -> None:
    # 'kill -9 0' kills the whole session the agent made, wrapper included: no exit
    # status is recorded, and the time limit was not reached
    with pytest.raises(TrialError, match=r"died in the guest .*killed by signal 9") as caught:
        pty_agent.call(pty_agent.agent.run(["sh", "-c", "kill -9 0"], 20))
    assert not isinstance(caught.value, TrialTimeout)
    done = pty_agent.call(pty_agent.agent.run(["echo", "after"], 20))
    assert done.stdout == "after\n"


def test_corrupted_request_is_refused(pty_agent: PtyAgent) -> None:
    payload = encode_argv(["echo", "hi"])
    lines = base64.encodebytes(payload).splitlines()
    wrong = hashlib.sha256(b"something else").hexdigest()
    request = f"@@REQ 41 RUN 10 {len(lines)} {wrong} -\n".encode() + b"\n".join(lines) + b"\n"

    async def send() -> bytes:
        pty_agent.agent._writer.write(request)
        parser = ReplyParser(41)
        while True:
            reply = parser.feed(await pty_agent.agent._line())
            if reply:
                return reply.stderr

    stderr = pty_agent.call(asyncio.wait_for(send(), 20))
    assert b"arrived corrupted" in stderr


def _frame(request_id: int, stdout: bytes, stderr: bytes) -> list[bytes]:
    payload = stdout + stderr
    header = (f"@@HVB-BEGIN {request_id} 0 1000 {len(stdout)} {len(stderr)} "
              f"{hashlib.sha256(payload).hexdigest()}").encode()
    return [header, *base64.encodebytes(payload).splitlines(), f"@@HVB-END {request_id}".encode()]


def _parse(lines: list[bytes], request_id: int = 3):  # type: ignore[no-untyped-def]
    parser = ReplyParser(request_id)
    for line in lines:
        reply = parser.feed(line + b"\r\n")
        if reply:
            return reply
    return None


noise_line = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=60).map(
    lambda t: f"[ {t} ]".encode())


@given(st.binary(max_size=2000), st.binary(max_size=300), st.data())
def test_noise_between_lines_never_changes_the_result(stdout: bytes, stderr: bytes,
                                                      data: st.DataObject) -> None:
    lines = _frame(3, stdout, stderr)
    noisy: list[bytes] = [*data.draw(st.lists(noise_line, max_size=3)),
                          *_frame(2, b"stale reply", b"")]
    for line in lines:
        noisy.append(line)
        noisy.extend(data.draw(st.lists(noise_line, max_size=2)))
    reply = _parse(noisy)
    assert reply is not None
    assert (reply.stdout, reply.stderr, reply.exit_code) == (stdout, stderr, 0)


@given(st.binary(min_size=1, max_size=500), st.data())
def test_corruption_inside_a_line_is_detected(stdout: bytes, data: st.DataObject) -> None:
    lines = _frame(3, stdout, b"")
    index = data.draw(st.integers(1, len(lines) - 2))
    line = lines[index]
    position = data.draw(st.integers(0, len(line) - 1))
    replacement = data.draw(st.sampled_from(list(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123+/")))
    corrupted = line[:position] + bytes([replacement]) + line[position + 1:]
    lines[index] = corrupted
    try:
        reply = _parse(lines)
    except AgentError:
        return
    assert reply is not None and reply.stdout == stdout  # only an identical byte passes


# -- a hostile or broken guest, fuzzed through the real Agent over a socket ----------------
def _agent_fed(wire: bytes, timeout: float = 10):  # type: ignore[no-untyped-def]
    """Run one request through Agent over a socket pair whose guest end sends ``wire``
    and then closes; the reply, or the exception the request raised."""
    import socket

    async def exchange():  # type: ignore[no-untyped-def]
        host_end, guest_end = socket.socketpair()
        reader, writer = await asyncio.open_unix_connection(sock=host_end, limit=1 << 16)
        agent = Agent(reader, writer, first_id=3)

        async def guest() -> None:  # read the request, answer with wire, then EOF
            loop = asyncio.get_running_loop()
            guest_end.setblocking(False)
            await loop.sock_recv(guest_end, 4096)
            with contextlib.suppress(OSError):  # the host may stop reading early
                await loop.sock_sendall(guest_end, wire)
                guest_end.shutdown(socket.SHUT_WR)

        sender = asyncio.ensure_future(guest())
        try:
            return await asyncio.wait_for(agent.request("RUN", b"x\0", 5), timeout)
        except Exception as exc:  # the test inspects what was raised
            return exc
        finally:
            agent.close()
            await sender
            guest_end.close()

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(exchange())
    finally:
        loop.close()


def _checksum_broken(lines: list[bytes]) -> list[bytes]:
    header = lines[0].rsplit(b" ", 1)[0] + b" " + b"0" * 64
    return [header, *lines[1:]]


_piece = st.one_of(
    st.tuples(st.just("noise"), st.binary(max_size=120)),
    st.tuples(st.just("frame"), st.sampled_from([2, 3, 4]), st.binary(max_size=300),
              st.booleans()),
    st.tuples(st.just("cut"), st.sampled_from([3, 4]), st.binary(min_size=1, max_size=300)),
)


@given(st.lists(_piece, max_size=8))
def test_hostile_frames_give_a_sent_reply_or_an_agent_error(pieces: list) -> None:  # type: ignore[type-arg]
    """Forged, stale, interleaved, truncated and checksum-broken frames, binary junk and
    an early close: the request returns exactly a reply the guest framed correctly for
    its id, or raises AgentError; never another exception, never a hang."""
    wire: list[bytes] = []
    honest: list[bytes] = []
    for piece in pieces:
        if piece[0] == "noise":
            wire.append(piece[1].replace(b"\n", b" "))
        elif piece[0] == "frame":
            _, request_id, stdout, intact = piece
            lines = _frame(request_id, stdout, b"")
            if request_id == 3 and intact:
                honest.append(stdout)
            wire.extend(lines if intact else _checksum_broken(lines))
        else:  # a frame whose end never comes
            wire.extend(_frame(piece[1], piece[2], b"")[:-1])
    outcome = _agent_fed(b"\n".join(wire) + b"\n")
    if isinstance(outcome, Exception):
        assert isinstance(outcome, AgentError), repr(outcome)
    else:
        assert outcome.stdout in honest


def test_oversized_reply_is_refused_before_it_is_read() -> None:
    header = f"@@HVB-BEGIN 3 0 1000 {1 << 40} 0 {'0' * 64}".encode()
    outcome = _agent_fed(header + b"\n" + b"QUFB\n" * 10)
    assert isinstance(outcome, AgentError) and "over the cap of 64 MiB" in str(outcome)


def test_a_frame_longer_than_its_header_is_refused() -> None:
    lines = _frame(3, b"short", b"")
    flood = [lines[0], *[b"QUFBQUFB" * 64] * 100, lines[-1]]
    outcome = _agent_fed(b"\n".join(flood) + b"\n")
    assert isinstance(outcome, AgentError) and "longer than its header" in str(outcome)


def test_a_console_flood_keeps_host_memory_bounded() -> None:
    """200,000 lines of console noise (and one over-long line) before the real reply: the
    reply still arrives, and what the host keeps of the noise stays small."""
    flood = b"".join(b"[ %d ] kernel says something rather long %s\n" % (i, b"x" * 200)
                     for i in range(200_000))
    wire = flood + b"\n".join(_frame(3, b"the answer", b"")) + b"\n"
    outcome = _agent_fed(wire, timeout=60)
    assert not isinstance(outcome, Exception), outcome
    assert outcome.stdout == b"the answer"
    over_long = _agent_fed(b"y" * (1 << 17) + b"\n", timeout=20)
    assert isinstance(over_long, AgentError) and "over-long line" in str(over_long)
