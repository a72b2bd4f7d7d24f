"""The one module that knows the WebSocket libraries under the relay: simple-websocket (flask-sock's
engine) for the upgrade, wsproto for the frames a browser sends.

The relay reads and writes every browser socket from one thread of its own (see
:mod:`~flask_thrillconnect.relay.writer`), so no browser holds a thread or a greenlet just to
read: :func:`accept` completes the upgrade with simple-websocket's handshake but tells the
library not to start the reader it would start per socket (flask-sock's ``@sock.route`` always
starts one, which is why the relay's route upgrades here). :class:`BrowserSocket` then turns the
bytes the relay's thread reads into messages, answers pings and makes close frames.

The socket is non-blocking from the upgrade on, so ``send`` and ``recv`` never wait whatever
the server model: under gunicorn's ``gevent`` worker (a monkey-patched standard library) a
gevent socket with no timeout would park the caller until the socket is ready, even when asked
not to (``MSG_DONTWAIT``).

When the server lets go of a request's socket by just closing it (gunicorn's ``gevent`` worker,
:func:`~flask_thrillconnect.servers.request_may_end_first`), :func:`accept` takes a duplicate of
the connection and the request ends at once: a browser then costs its state and no greenlet.
Elsewhere the request's thread waits until the relay is done with the browser (the server would
otherwise end the TCP connection).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from flask import Response
from simple_websocket import Server
from wsproto.connection import Connection, ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import LocalProtocolError

__all__ = ["BrowserSocket", "Received", "accept", "decline_compression", "upgraded_response"]

#: Bytes read from a browser per readiness: more than any request the relay takes.
RECEIVE_BYTES = 65536


def decline_compression(environ: MutableMapping[str, Any]) -> None:
    """Make the upgrade of this request refuse ``permessage-deflate``.

    simple-websocket accepts the extension whenever the browser offers it; a frame shared by
    every browser (the relay's) cannot be compressed per connection, so the offer is removed
    before the upgrade. Call it before the handshake (in ``before_request``).
    """
    environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


def accept(
    environ: MutableMapping[str, Any], *, max_message_size: int, own_connection: bool
) -> BrowserSocket:
    """Complete the WebSocket upgrade of this request, with nobody reading the socket yet.

    :param max_message_size: bytes; a larger message from the browser is reported by
        :meth:`BrowserSocket.receive` (the relay closes with 1009).
    :param own_connection: take a duplicate of the connection, so that the server may close its
        socket as the request ends (see :func:`~flask_thrillconnect.servers.request_may_end_first`).
    """
    upgraded = Server(environ, thread_class=_NoReader, event_class=_NoEvent)
    raw: socket.socket = upgraded.sock
    if own_connection:
        raw = raw.dup()
    raw.setblocking(False)
    # The relay writes whole batches: Nagle would only hold a tick's second write back
    # (gunicorn's listening socket sets it already; Werkzeug's does not).
    with contextlib.suppress(OSError):  # not TCP (a Unix socket)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # The frames' state alone: the HTTP handshake's (and simple-websocket's) are done with.
    protocol = upgraded.ws.connection
    if protocol is None:  # pragma: no cover - Server raises when the handshake failed
        raise ConnectionError("the WebSocket handshake did not complete")
    return BrowserSocket(
        raw, protocol, max_message_size=max_message_size, owns_connection=own_connection
    )


def upgraded_response(environ: MutableMapping[str, Any]) -> Response:
    """What the view of an upgraded request returns, as flask-sock does per server: gunicorn
    is told the connection is done with; Werkzeug writes an ordinary response, which goes to a
    connection that has ended already."""
    if "gunicorn.socket" in environ:
        return _EndOfConnection()
    return Response()


class _EndOfConnection(Response):
    """gunicorn's way out of a request whose connection is taken: it then closes its socket."""

    def __call__(self, environ: Any, start_response: Any) -> Any:
        raise StopIteration


@dataclass
class Received:
    """What :meth:`BrowserSocket.receive` read."""

    #: Whole messages, oldest first.
    messages: list[str | bytes] = field(default_factory=list)
    #: Frames to send back (pongs), whole.
    replies: bytes = b""
    #: The browser sent a message over the size limit (what followed it is dropped).
    too_big: bool = False
    #: The browser sent a close frame, with this code; or the frames broke the protocol (1002,
    #: 1007), to be answered with that code.
    close_code: int | None = None
    #: The connection is gone (closed by the browser, reset, or the close handshake is over).
    ended: bool = False


class BrowserSocket:
    """One upgraded browser WebSocket, read and written by the relay's socket thread.

    :ivar raw_socket: the connected socket, non-blocking.
    :ivar owns_connection: whether the server has let go of the connection (it is this
        object's to end).
    """

    def __init__(
        self,
        raw: socket.socket,
        protocol: Connection,
        *,
        max_message_size: int,
        owns_connection: bool,
    ) -> None:
        self.raw_socket = raw
        self.owns_connection = owns_connection
        #: Sends without waiting: the bytes the kernel took; raises BlockingIOError when full.
        self.send_nowait: Callable[[bytes | memoryview], int] = raw.send
        self._protocol = protocol
        self._max_message_size = max_message_size
        self._partial: list[str | bytes] = []
        self._partial_size = 0
        self._skipping = False  # the rest of a message over the limit

    @property
    def closed(self) -> bool:
        """Whether the close handshake is over (both close frames went)."""
        return self._protocol.state is ConnectionState.CLOSED

    def receive(self) -> Received:
        """Read what the browser sent, without waiting; never raises."""
        received = Received()
        try:
            data: bytes | None = self.raw_socket.recv(RECEIVE_BYTES)
        except (BlockingIOError, InterruptedError):
            return received
        except OSError:
            received.ended = True
            return received
        if not data:
            data = None  # the browser closed the TCP connection
            received.ended = True
        try:
            self._protocol.receive_data(data)
        except LocalProtocolError:  # data after the close handshake
            received.ended = True
            return received
        replies = []
        for event in self._protocol.events():
            if isinstance(event, TextMessage):
                self._take_part(event.data, event.message_finished, received)
            elif isinstance(event, BytesMessage):
                self._take_part(bytes(event.data), event.message_finished, received)
            elif isinstance(event, Ping):
                with contextlib.suppress(LocalProtocolError):  # closing meanwhile
                    replies.append(self._protocol.send(event.response()))
            elif isinstance(event, CloseConnection):
                received.close_code = event.code
        received.replies = b"".join(replies)
        received.ended = received.ended or self.closed
        return received

    def close_frame(self, code: int, reason: str = "") -> bytes:
        """The close frame to send: ours with ``code``, or the answer to the browser's;
        ``b""`` when one went already."""
        try:
            return self._protocol.send(CloseConnection(code=code, reason=reason))
        except LocalProtocolError:
            return b""

    def end(self) -> None:
        """End the TCP connection (both directions); the socket is closed when it is ours."""
        with contextlib.suppress(OSError):  # already gone
            self.raw_socket.shutdown(socket.SHUT_RDWR)
        if self.owns_connection:
            self.raw_socket.close()

    def _take_part(self, data: str | bytes, finished: bool, received: Received) -> None:
        """One piece of a message; whole ones go to ``received``, oversized ones are dropped."""
        if not self._skipping:
            self._partial_size += len(data)
            if self._partial_size > self._max_message_size:
                received.too_big = True
                self._skipping = True
                self._partial.clear()
            else:
                self._partial.append(data)
        if not finished:
            return
        if not self._skipping:
            first = self._partial[0] if self._partial else ""
            message = first[:0].join(self._partial)  # type: ignore[arg-type]
            received.messages.append(message)
        self._partial.clear()
        self._partial_size = 0
        self._skipping = False


class _NoReader:
    """simple-websocket's ``thread_class`` for a socket the relay reads itself: never runs."""

    name = "thrillconnect-no-reader"

    def __init__(self, target: Callable[[], None]) -> None:
        del target

    def start(self) -> None:
        pass

    def join(self, timeout: float | None = None) -> None:
        pass


class _NoEvent:
    """simple-websocket's ``event_class`` when nobody waits on its ``receive``."""

    def set(self) -> None:
        pass

    def clear(self) -> None:
        pass

    def wait(self, timeout: float | None = None) -> bool:
        return True
