"""QMP to a QEMU on a host (qemu.qmp), used synchronously by guest drivers.

On this machine the client connects to QEMU's QMP socket directly. On an SSH host or
in a lab the socket is reached the way the agent's is (a stream through the SSH
connection), relayed into one end of a local socket pair whose other end the
client is given: the client never knows the difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

from qemu.qmp import QMPClient, QMPError

from ..errors import TrialError
from .base import Host
from .loop import run_on, run_quietly

#: seconds a QMP command may take (query-stats reads every vCPU's counters)
COMMAND_SECONDS = 30.0


class QmpChannel:
    """One QMP session with a guest's QEMU."""

    def __init__(self, host: Host, client: QMPClient, relay: asyncio.Task[None] | None,
                 ours: socket.socket | None):
        self._host = host
        self._client = client
        self._relay = relay
        self._ours = ours

    @classmethod
    def connect(cls, host: Host, path: str) -> QmpChannel:
        """Connect to the QMP socket at ``path`` on the host (TrialError if it cannot)."""
        try:
            return run_on(host.loop, asyncio.wait_for(cls._open(host, path), COMMAND_SECONDS))
        except (OSError, QMPError, TimeoutError) as exc:
            raise TrialError(f"cannot reach QEMU's QMP socket on {host.label}: {exc}"
                             ) from None

    @classmethod
    async def _open(cls, host: Host, path: str) -> QmpChannel:
        client = QMPClient("hvbench")
        if not host.remote:
            await client.connect(path)
            return cls(host, client, None, None)
        reader, writer = await host.open_unix(path)
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        relay = asyncio.get_running_loop().create_task(_relay(theirs, reader, writer))
        await client.connect(ours)
        return cls(host, client, relay, ours)

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        try:
            return run_on(self._host.loop, asyncio.wait_for(
                self._client.execute(command, arguments), COMMAND_SECONDS))
        except (OSError, QMPError, TimeoutError) as exc:
            raise TrialError(f"QMP {command} failed on {self._host.label}: {exc}") from None

    def execute_all(self, commands: list[tuple[str, dict[str, Any] | None]]) -> list[Any]:
        """Several commands in flight together (one round trip's wait, not one each:
        in a nested lab each costs tens of milliseconds); their results in order."""
        async def all_of() -> list[Any]:
            return list(await asyncio.gather(*(self._client.execute(command, arguments)
                                               for command, arguments in commands)))
        try:
            return run_on(self._host.loop, asyncio.wait_for(all_of(), COMMAND_SECONDS))
        except (OSError, QMPError, TimeoutError) as exc:
            names = ", ".join(command for command, _ in commands)
            raise TrialError(f"QMP {names} failed on {self._host.label}: {exc}") from None

    def close(self) -> None:
        """Disconnect (best effort: QEMU or the host may already be gone)."""
        run_quietly(self._host.loop, self._client.disconnect())
        if self._relay is not None:
            self._relay.cancel()
            run_quietly(self._host.loop, asyncio.wait({self._relay}))
        if self._ours is not None:
            self._ours.close()


async def _relay(local: socket.socket, reader: Any, writer: Any) -> None:
    """Copy bytes both ways between a local socket and a host stream until either ends."""
    loop = asyncio.get_running_loop()

    async def inbound() -> None:  # QEMU -> client
        while data := await reader.read(65536):
            await loop.sock_sendall(local, data if isinstance(data, bytes) else data.encode())

    async def outbound() -> None:  # client -> QEMU
        while data := await loop.sock_recv(local, 65536):
            writer.write(data)
            await writer.drain()

    tasks = [asyncio.ensure_future(inbound()), asyncio.ensure_future(outbound())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            writer.close()
        local.close()
