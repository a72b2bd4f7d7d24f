"""The one module that knows which WebSocket server the relay runs on: flask-sock's
simple-websocket (under Werkzeug, gunicorn's ``gthread`` and the like).

The relay needs little from a browser's WebSocket, and :class:`BrowserSocket` offers exactly
that: wait for input or a wake-up, receive without blocking, the raw socket (the relay's writer
thread sends frames on it itself), close with a code, release the TCP connection, is-open.
Running the relay on another server or WebSocket engine means another class with these
methods, here; nothing else in the package touches simple-websocket or wsproto.

Writes. simple-websocket's reader thread writes on its own: pong and close replies, the 1009
close of an oversized message. It does so without a lock and on a blocking socket, so such a
frame could land in the middle of one the relay's writer has half sent, and a browser that
stops reading could block the thread for good. :class:`BrowserSocket` therefore puts itself in
the library's way: while the writer owns the socket (:meth:`BrowserSocket.hand_writes_to`),
those frames are handed to it and go out whole, between its own frames; otherwise they are
written under one lock with a deadline.

Servers. Under Werkzeug's dev server and gunicorn's ``gthread`` worker each browser holds an OS
thread; under gunicorn's ``gevent`` worker (which monkey-patches the standard library first)
threads, locks, events, ``select`` and sockets are gevent's, and each browser holds two
greenlets. The relay's code is the same under both; the one difference that matters is here:
gevent's socket ``send`` *waits* for a full socket to drain even when asked not to
(``MSG_DONTWAIT``), so :func:`nonblocking_send` calls it with a zero timeout instead.
Which of them serves a request is :mod:`flask_thrillconnect.servers`' concern.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from simple_websocket import ConnectionClosed
from wsproto.connection import ConnectionState
from wsproto.utilities import LocalProtocolError

__all__ = ["BrowserSocket", "decline_compression", "nonblocking_send"]

#: What closing a socket may raise once the other side has gone or started closing.
_CLOSE_FAILURES = (ConnectionClosed, LocalProtocolError, OSError)


def nonblocking_send(sock: socket.socket) -> Callable[[bytes | memoryview], int]:
    """A ``send`` on ``sock`` that never waits: the bytes the kernel took (maybe 0 when the
    socket is full: it raises :class:`BlockingIOError` then), whatever the server model.

    ``sock`` stays blocking for the WebSocket library's reader. A standard socket takes
    ``MSG_DONTWAIT``; a gevent socket (``gevent`` worker, monkey-patched) ignores the flag's
    intent and parks the calling greenlet until the socket drains, unless its own timeout
    argument is zero.
    """
    if type(sock).__module__.startswith("gevent"):
        gevent_send: Any = sock.send

        def send_gevent(data: bytes | memoryview) -> int:
            sent: int = gevent_send(data, socket.MSG_DONTWAIT, 0.0)
            return sent

        return send_gevent

    def send(data: bytes | memoryview) -> int:
        return sock.send(data, socket.MSG_DONTWAIT)

    return send


def decline_compression(environ: MutableMapping[str, Any]) -> None:
    """Make the upgrade of this request refuse ``permessage-deflate``.

    simple-websocket accepts the extension whenever the browser offers it; a frame shared by
    every browser (the relay's) cannot be compressed per connection, so the offer is removed
    before the upgrade. Call it before the handshake (in ``before_request``).
    """
    environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


class BrowserSocket:
    """One accepted browser WebSocket, with the operations the relay needs.

    :param ws: the connection flask-sock hands to a ``@sock.route`` view (a
        ``simple_websocket.Server``).
    :param max_message_size: bytes; a larger message from the browser closes the socket with
        1009 (the library does it).
    :param write_timeout: the longest a write made outside the relay's writer (a close frame,
        a control reply) may wait for a browser that does not read.
    """

    def __init__(self, ws: Any, *, max_message_size: int | None, write_timeout: float) -> None:
        self._ws = ws
        self._raw: socket.socket = ws.sock
        #: Sends without ever waiting (see :func:`nonblocking_send`): the relay's writer's.
        self.send_nowait = nonblocking_send(self._raw)
        self._write_timeout = write_timeout
        # Writes made outside the writer: the library's replies and our close frame.
        self._write_lock = threading.Lock()
        self._hand_to: Callable[[bytes], bool] | None = None
        # Who closes the raw socket: the library's reader at its end, or release().
        self._close_lock = threading.Lock()
        self._reader_done = False
        self._released = False
        ws.max_message_size = max_message_size
        # From now on the library reads and writes through us (it looks ws.sock up each time).
        ws.sock = _LibrarySocket(self._raw, write=self._library_write, close=self._library_close)

    # -- reading and waiting ----------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """Whether the WebSocket is open in both directions (no close sent or received)."""
        # The library wakes us when it starts closing (a message too big, say) but marks
        # itself disconnected only afterwards; the protocol state already says so.
        return bool(self._ws.connected) and self._ws.ws.state is ConnectionState.OPEN

    def wait(self, timeout: float) -> None:
        """Sleep until the browser sent something, :meth:`wake` was called, the socket started
        closing, or ``timeout`` seconds passed; look at every source of work afterwards."""
        event = self._ws.event
        event.wait(timeout)
        # Cleared after waking, before the caller looks: news arriving now sets it again.
        event.clear()

    def wake(self) -> None:
        """End a :meth:`wait` now; callable from any thread."""
        self._ws.event.set()

    def receive_nowait(self) -> str | bytes | None:
        """The next message the browser sent, or ``None`` when none is waiting (or closed)."""
        ws = self._ws
        # A look first: receive() on an empty buffer would swallow a wake() meant for wait().
        if not ws.input_buffer:
            return None
        try:
            message: str | bytes | None = ws.receive(timeout=0)
        except ConnectionClosed:
            return None
        return message

    # -- writing ----------------------------------------------------------------------------

    @property
    def raw_socket(self) -> socket.socket:
        """The connected socket, for a writer that sends whole frames with ``MSG_DONTWAIT``;
        it stays blocking (the library's reader relies on that)."""
        return self._raw

    def hand_writes_to(self, send: Callable[[bytes], bool] | None) -> None:
        """Route the frames the library writes on its own to ``send`` while a writer owns
        the raw socket; ``send`` answers ``False`` when it no longer does (they are then
        written here). ``None`` ends the routing."""
        self._hand_to = send

    def write(self, data: bytes) -> bool:
        """Write bytes that end on a frame boundary, within ``write_timeout``; for when no
        writer owns the socket. Whether they all went out."""
        try:
            self._write_direct(data)
        except OSError:
            return False
        return True

    def close(self, code: int, reason: str = "") -> None:
        """Send a close frame with ``code`` (best effort: the browser may be gone already)."""
        with contextlib.suppress(*_CLOSE_FAILURES):
            self._ws.close(reason=code, message=reason)

    def release(self, timeout: float) -> None:
        """End the TCP connection once the close handshake is done (or has had ``timeout``).

        The server keeps its own reference to the socket and would otherwise hold the
        connection open after the handshake, leaving the browser waiting for the end.
        """
        self._ws.thread.join(timeout=timeout)
        with contextlib.suppress(OSError):  # already gone
            self._raw.shutdown(socket.SHUT_RDWR)
        with self._close_lock:
            self._released = True
            close_now = self._reader_done
        if close_now:
            self._raw.close()

    # -- the library's side -----------------------------------------------------------------

    def _library_write(self, data: bytes) -> None:
        send = self._hand_to
        if send is not None and send(bytes(data)):
            return
        self._write_direct(data)

    def _library_close(self) -> None:
        # The reader closes the socket as it ends; the writer may still hold frames for it.
        with self._close_lock:
            self._reader_done = True
            close_now = self._released
        if close_now:
            self._raw.close()

    def _write_direct(self, data: bytes) -> None:
        """All of ``data``, non-blocking sends under the lock, bounded by ``write_timeout``."""
        view = memoryview(data)
        deadline = time.monotonic() + self._write_timeout
        with self._write_lock:
            poller: select.poll | None = None
            while view:
                try:
                    sent = self.send_nowait(view)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                view = view[sent:]
                if not view:
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("the browser does not read")
                if poller is None:
                    poller = select.poll()
                    poller.register(self._raw, select.POLLOUT)
                poller.poll(remaining * 1000)


class _LibrarySocket:
    """The socket as simple-websocket sees it once wrapped: reads go straight to the real
    socket; writes and the close go to :class:`BrowserSocket`."""

    def __init__(
        self, raw: socket.socket, *, write: Callable[[bytes], None], close: Callable[[], None]
    ) -> None:
        self._raw = raw
        self._write = write
        self.close = close
        # The reader's hot path: the real socket's own bound methods, no indirection.
        self.recv = raw.recv
        self.fileno = raw.fileno

    def send(self, data: bytes) -> int:
        self._write(data)
        return len(data)

    def sendall(self, data: bytes) -> None:
        self._write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)
