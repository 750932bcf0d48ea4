"""A guest's agent reached through its host, used synchronously by guest drivers.

The stream is a UNIX socket on the host (QEMU's virtio-serial port) or a console
client's stdin/stdout (``xl console``); both live on the host's event loop, which
only this module and the hosts themselves drive.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from ..machine import Completed
from .agent import REPLY_MARGIN, Agent, KernelCounters, Ready
from .base import Host
from .loop import run_on, run_quietly, usable

T = TypeVar("T")


class AgentChannel:
    """One conversation with a guest's agent."""

    def __init__(self, host: Host, agent: Agent, handle: Any = None):
        self._host = host
        self._agent = agent
        self._handle = handle  # the console client, when the stream is one
        self._ready: asyncio.Task[Ready] | None = None
        self._current: asyncio.Task[Any] | None = None  # a request in flight

    @classmethod
    def over_unix(cls, host: Host, path: str) -> AgentChannel:
        """Connect to the agent's socket on the host (OSError: not there yet)."""
        reader, writer = run_on(host.loop, host.open_unix(path))
        return cls(host, Agent(reader, writer))

    @classmethod
    def over_socket(cls, host: Host, sock: socket.socket, handle: Any = None
                    ) -> AgentChannel:
        """Speak to the agent through a local socket (one end of a relay such as a
        libvirt stream's, which ``handle.close()`` ends)."""
        reader, writer = run_on(host.loop, asyncio.open_connection(sock=sock, limit=1 << 22))
        return cls(host, Agent(reader, writer), handle)

    @classmethod
    def over_command(cls, host: Host, argv: Sequence[str], first_id: int = 1
                     ) -> AgentChannel:
        """Speak to the agent through a console client on the host (``xl console``,
        given a terminal); numbering continues from ``first_id`` so a reply lost with an
        earlier client can never pass for a new request's (OSError: cannot start)."""
        reader, writer, handle = run_on(host.loop, host.open_stream(argv, tty=True))
        return cls(host, Agent(reader, writer, first_id), handle)

    def ready(self, wait: float) -> Ready | None:
        """The agent's READY once it has said so, waiting up to ``wait`` seconds meanwhile
        (None while it has not); AgentError when the stream ended before it."""
        loop = self._host.loop
        if self._ready is None:
            self._ready = loop.create_task(self._agent.wait_ready())
        if not self._ready.done():
            run_on(loop, asyncio.wait({self._ready}, timeout=wait))
        if not self._ready.done():
            return None
        return self._ready.result()

    def run(self, argv: Sequence[str], limit: float, margin: float = REPLY_MARGIN
            ) -> Completed:
        return self._request(self._agent.run(argv, limit, margin))

    def run_counted(self, argv: Sequence[str], limit: float, margin: float = REPLY_MARGIN
                    ) -> tuple[Completed, KernelCounters]:
        return self._request(self._agent.run_counted(argv, limit, margin))

    def put(self, path: str, data: bytes) -> None:
        self._request(self._agent.put(path, data))

    def _request(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """One request, remembered so that an interrupt (Ctrl-C) leaves no task behind
        once the channel closes."""
        task = self._host.loop.create_task(coroutine)
        self._current = task
        return run_on(self._host.loop, task)

    @property
    def next_id(self) -> int:
        return self._agent.next_id

    def close(self) -> None:
        """End the conversation: pending waits cancelled, stream and console client
        closed (best effort: the host may already be gone)."""
        loop = self._host.loop
        mine = {t for t in (self._ready, self._current) if t is not None and not t.done()}
        if mine and usable(loop):
            for task in mine:
                task.cancel()
            run_quietly(loop, asyncio.wait(mine))
        with contextlib.suppress(Exception):  # a stream whose other end is gone
            self._agent.close()
        if self._handle is not None:
            with contextlib.suppress(Exception):
                self._handle.close()
