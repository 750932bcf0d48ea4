"""The agent protocol: the real guest-side agent.sh (busybox sh) over a pseudo-terminal,
with console noise injected, and the host-side parser under hypothesis."""

from __future__ import annotations

import asyncio
import base64
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
