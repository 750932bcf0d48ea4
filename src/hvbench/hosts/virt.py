"""libvirt connections and streams (libvirt-python), used synchronously by the driver.

A connection is opened for a URI (``qemu:///system``, ``qemu+ssh://...``, ``xen:///``;
None: libvirt's own default, ``LIBVIRT_DEFAULT_URI``), with libvirt's errors turned
into one-line messages. A domain's channel or console is a ``virStream``, copied (on libvirt's
event loop, in a thread of its own) to and from one end of a local socket pair whose
other end the agent's client reads like any socket: the agent is reached the same way
over every URI.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import weakref
from typing import TYPE_CHECKING, Any

from ..errors import TrialError, UsageError

if TYPE_CHECKING:
    import libvirt

INSTALL_HINT = ("install the libvirt client library and its Python binding: apt-get install "
                "libvirt-dev pkg-config, then pip install 'hvbench[libvirt]' (make setup "
                "does both)")


_events = threading.Lock()
#: the streams open on each connection (by id), ended when the connection closes
_pipes: dict[int, weakref.WeakSet[StreamPipe]] = {}
_events_running = False


def binding() -> Any:
    """The ``libvirt`` module, with libvirt's default error printer silenced (its errors
    become exceptions with one-line messages instead) and libvirt's event loop running
    in a thread of its own (streams and keep-alives need it; it must exist before the
    first connection is opened)."""
    global _events_running
    try:
        import libvirt
    except ImportError:
        raise UsageError(f"libvirt-python is not installed: {INSTALL_HINT}") from None
    with _events:
        if not _events_running:
            libvirt.registerErrorHandler(lambda _context, _error: None, None)
            libvirt.virEventRegisterDefaultImpl()
            threading.Thread(target=_run_events, args=(libvirt,), daemon=True,
                             name="hvbench-libvirt-events").start()
            _events_running = True
    return libvirt


def _run_events(lib: Any) -> None:
    while True:
        lib.virEventRunDefaultImpl()


def message(exc: Exception) -> str:
    """libvirt's own message, on one line."""
    lib = binding()
    text = exc.get_error_message() if isinstance(exc, lib.libvirtError) else None
    return " ".join(str(text or exc).split())


def connect(uri: str | None) -> libvirt.virConnect:
    """A read-write connection to ``uri``; UsageError naming the URI and the likely fix
    when it cannot be opened (no daemon, refused, unknown driver)."""
    lib = binding()
    try:
        connection = lib.open(uri)
    except lib.libvirtError as exc:
        default = os.environ.get("LIBVIRT_DEFAULT_URI")
        where = uri or default or "libvirt's default URI (set 'uri' or LIBVIRT_DEFAULT_URI)"
        raise UsageError(f"cannot connect to {where}: {message(exc)} (is the libvirt daemon "
                         "running there and its driver installed? 'hvbench doctor' lists "
                         "the connections it can open)") from None
    pipes: weakref.WeakSet[StreamPipe] = weakref.WeakSet()
    _pipes[id(connection)] = pipes

    def closed(_connection: Any, _reason: int, _opaque: Any) -> None:
        """The daemon went away: its streams end with it (libvirt does not say so on
        the streams themselves), so a waiting agent request fails at once."""
        for pipe in list(pipes):
            pipe.end()

    connection.registerCloseCallback(closed, None)
    return connection


def disconnect(connection: libvirt.virConnect) -> None:
    """Close a connection from ``connect`` (best effort: the daemon may be gone)."""
    _pipes.pop(id(connection), None)
    with contextlib.suppress(Exception):
        connection.unregisterCloseCallback()
    with contextlib.suppress(Exception):
        connection.close()


class StreamPipe:
    """A libvirt stream joined to a local socket: ``socket`` carries the domain's
    channel (or console) both ways until either side ends. The copying runs on
    libvirt's event loop (the stream non-blocking, the socket's other end watched by
    the same loop), as libvirt's own console client does."""

    def __init__(self, stream: libvirt.virStream):
        lib = self._lib = binding()
        self._stream = stream
        self.socket, self._theirs = socket.socketpair()
        self._pending = b""  # from the socket, not yet taken by the stream
        self._closed = False
        self._lock = threading.Lock()
        stream.eventAddCallback(self._stream_events(), self._on_stream, None)
        self._watch = lib.virEventAddHandle(self._theirs.fileno(),
                                            lib.VIR_EVENT_HANDLE_READABLE,
                                            self._on_socket, None)

    def _stream_events(self) -> int:
        lib = self._lib
        wanted = (lib.VIR_STREAM_EVENT_READABLE | lib.VIR_STREAM_EVENT_ERROR
                  | lib.VIR_STREAM_EVENT_HANGUP)
        return wanted | (lib.VIR_STREAM_EVENT_WRITABLE if self._pending else 0)

    def _on_stream(self, stream: Any, events: int, _opaque: Any) -> None:
        """Domain -> socket, and pending socket data -> domain once it can take more."""
        lib = self._lib
        with self._lock:
            if self._closed:
                return
            try:
                if events & lib.VIR_STREAM_EVENT_READABLE:
                    while True:
                        data = stream.recv(65536)
                        if data == -2:  # nothing more for now
                            break
                        if not data:  # the channel's end
                            raise EOFError
                        self._theirs.sendall(data)
                if events & lib.VIR_STREAM_EVENT_WRITABLE:
                    self._flush()
                if events & (lib.VIR_STREAM_EVENT_ERROR | lib.VIR_STREAM_EVENT_HANGUP):
                    raise EOFError
            except (EOFError, OSError, lib.libvirtError):
                self.end()

    def _on_socket(self, _watch: int, _fd: int, _events: int, _opaque: Any) -> None:
        """Socket -> domain."""
        with self._lock:
            if self._closed:
                return
            try:
                data = self._theirs.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.end()
                return
            self._pending += data
            try:
                self._flush()
            except (OSError, self._lib.libvirtError):
                self.end()

    def _flush(self) -> None:
        """Give the stream what it takes; watch the socket again only when all is sent."""
        while self._pending:
            sent = self._stream.send(self._pending)
            if sent == -2:  # full: go on when the stream says it is writable
                break
            if sent < 0:
                raise OSError("the stream refused data")
            self._pending = self._pending[sent:]
        self._lib.virEventUpdateHandle(
            self._watch, 0 if self._pending else self._lib.VIR_EVENT_HANDLE_READABLE)
        self._stream.eventUpdateCallback(self._stream_events())

    def end(self) -> None:
        """The stream or the socket ended: end the other side too."""
        if not self._closed:
            with contextlib.suppress(OSError):
                self._theirs.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop copying and close both the stream and the sockets (best effort: the
        domain or the daemon may be gone)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(Exception):
            self._lib.virEventRemoveHandle(self._watch)
        with contextlib.suppress(Exception):
            self._stream.eventRemoveCallback()
        with contextlib.suppress(Exception):
            self._stream.abort()
        for sock in (self.socket, self._theirs):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def open_channel(connection: libvirt.virConnect, domain: libvirt.virDomain,
                 name: str | None) -> StreamPipe:
    """The domain's virtio-serial channel ``name`` (None: its console) as a StreamPipe;
    OSError while it cannot be opened yet."""
    lib = binding()
    stream = connection.newStream(lib.VIR_STREAM_NONBLOCK)
    try:
        if name is None:
            domain.openConsole(None, stream, lib.VIR_DOMAIN_CONSOLE_FORCE)
        else:
            domain.openChannel(name, stream, lib.VIR_DOMAIN_CHANNEL_FORCE)
    except lib.libvirtError as exc:
        with contextlib.suppress(Exception):
            stream.abort()
        raise OSError(message(exc)) from None
    pipe = StreamPipe(stream)
    _pipes.setdefault(id(connection), weakref.WeakSet()).add(pipe)
    return pipe


def failure(action: str, exc: Exception) -> TrialError:
    """A TrialError for a libvirt call that failed during a trial."""
    return TrialError(f"libvirt could not {action}: {message(exc)}")


def version(number: int) -> str:
    """libvirt's packed version number (major * 1,000,000 + minor * 1,000 + release)."""
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"
