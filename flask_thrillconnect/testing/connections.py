"""The simulator's open WebSockets: each connection's threads, locked writes and bounded outbox,
and the broadcaster that fans events out to them.

This is the only module of the simulator that touches simple-websocket's and wsproto's
internals (``ws.sock``, ``ws.ws``, ``ws.thread``); the app hands it the accepted ``ws`` as is.

Threads, per WebSocket: the Werkzeug request thread runs the connection's *sender* (the only
writer of messages, draining a bounded outbox), a *reader* thread turns client requests into
world calls, and simple-websocket's own thread reads frames and answers pings. simple-websocket
does not lock its writes, so each connection wraps the socket and the wsproto connection in
one lock (see :class:`_SerializedSocket` and :class:`_GuardedProtocol`).

- Events are routed by subscription (:meth:`SimConnection.wants`); answers to a client's own
  requests are offered to that connection directly, subscribed or not.
- A connection whose outbox holds :data:`OUTBOX_LIMIT` messages is closed with 1013; a peer
  that stops reading altogether has its socket cut after a grace period.
- Faults: ``drop`` closes every open WebSocket with 1012 (service restart, see
  :meth:`SimBroadcaster.close_all`); ``stall`` discards everything meant for open connections
  (events and answers) and leaves pings unanswered.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from simple_websocket import ConnectionClosed
from wsproto.events import Pong
from wsproto.utilities import LocalProtocolError

from . import wire
from .domain import Event, WalletPlayer
from .faults import Faults

logger = logging.getLogger(__name__)

#: Messages a connection may have waiting; beyond that it is closed with 1013 (try again later).
OUTBOX_LIMIT = 10_000
MAX_SUBSCRIPTIONS = 100
#: How often idle connection threads look up from their queues.
POLL_SECONDS = 0.25
#: How long a closing WebSocket waits for the peer's close frame before its socket is cut.
CLOSE_GRACE_SECONDS = 2.0

CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN_LATER = 1013

_KINDS = ("service", "player")
_WAKE = None  # outbox sentinel: look at the connection's state now
# A send fails like this when the peer has gone, or has started closing (wsproto's state).
_SEND_FAILURES = (ConnectionClosed, OSError, LocalProtocolError)

#: What the reader thread does with each client message.
MessageHandler = Callable[["SimConnection", str | bytes], None]


class _SerializedSocket:
    """The connection's socket with every write under the connection's lock, sent whole."""

    def __init__(self, sock: socket.socket, lock: threading.RLock) -> None:
        self._sock = sock
        self._lock = lock

    def send(self, data: bytes) -> int:
        with self._lock:
            self._sock.sendall(data)
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _GuardedProtocol:
    """The wsproto connection with frame building under the connection's lock; while the
    ``stall`` fault is on, pings go unanswered (so a client's watchdog can be tested)."""

    def __init__(self, protocol: Any, lock: threading.RLock, faults: Faults) -> None:
        self._protocol = protocol
        self._lock = lock
        self._faults = faults

    def send(self, event: Any) -> bytes:
        if isinstance(event, Pong) and self._faults.stalled:
            return b""
        with self._lock:
            data: bytes = self._protocol.send(event)
            return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._protocol, name)


class SimConnection:
    """One open WebSocket of the simulator: its identity, subscriptions and bounded outbox.

    :param ws: the accepted simple-websocket server connection.
    :param player: the wallet player of a player connection, ``None`` for a service one.
    :param faults: the simulator's faults (``stall`` silences the connection).
    """

    def __init__(self, ws: Any, player: WalletPlayer | None, faults: Faults) -> None:
        self.kind = "service" if player is None else "player"
        self.player = player
        self.brand_id = player.brand_id if player else None
        self._ws = ws
        self._faults = faults
        self._raw_sock: socket.socket = ws.sock
        self._write_lock = threading.RLock()
        ws.sock = _SerializedSocket(ws.sock, self._write_lock)
        ws.ws = _GuardedProtocol(ws.ws, self._write_lock, faults)
        self._outbox: queue.Queue[str | None] = queue.Queue(OUTBOX_LIMIT)
        # Replaced whole on change, so the broadcaster reads it without a lock.
        self._subscriptions: frozenset[tuple[str, str]] = frozenset()
        self._close_lock = threading.Lock()
        self._close: tuple[int, str] | None = None
        self._abort_timer: threading.Timer | None = None

    # -- routing ------------------------------------------------------------------------------
    def subscribe(self, pairs: Iterable[tuple[str, str]]) -> bool:
        """Add ``(source, event_type)`` subscriptions; ``False`` if that would pass the limit."""
        merged = self._subscriptions | set(pairs)
        if len(merged) > MAX_SUBSCRIPTIONS:
            return False
        self._subscriptions = merged
        return True

    def wants(self, event: Event) -> bool:
        """The routing rule: a service connection gets every event of the operator; a player
        connection gets its brand's broadcasts and its own targeted events; either only what
        its subscriptions match."""
        player = self.player
        if player is not None and (
            event.service_only
            or event.brand_id != self.brand_id
            or event.player_id not in (None, player.id)
        ):
            return False
        subscriptions = self._subscriptions
        return (event.source, "*") in subscriptions or (
            event.source,
            event.msg_name,
        ) in subscriptions

    def offer(self, text: str) -> None:
        """Queue a serialized message; a full outbox closes the connection with 1013."""
        try:
            self._outbox.put_nowait(text)
        except queue.Full:
            self.request_close(CLOSE_TRY_AGAIN_LATER, "outbox overflow")

    # -- closing ------------------------------------------------------------------------------
    @property
    def close_code(self) -> int | None:
        """The close code the server asked for, if it asked."""
        return self._close[0] if self._close else None

    @property
    def closing(self) -> bool:
        """A close was requested (by the server) or has happened (by the peer)."""
        return self._close is not None or not self._ws.connected

    def request_close(self, code: int, reason: str) -> None:
        """Ask the sender to close with ``code``; if it cannot within the grace period (a peer
        that stopped reading), the socket is cut."""
        with self._close_lock:
            if self._close is not None:
                return
            self._close = (code, reason)
            self._abort_timer = threading.Timer(CLOSE_GRACE_SECONDS * 2, self.abort)
            self._abort_timer.daemon = True
            self._abort_timer.start()
        self._wake()

    def _wake(self) -> None:
        # A full outbox needs no wake-up: the sender looks at the state between messages.
        with contextlib.suppress(queue.Full):
            self._outbox.put_nowait(_WAKE)

    def abort(self) -> None:
        """Cut the TCP connection: unblocks every thread of this connection."""
        with contextlib.suppress(OSError):
            self._raw_sock.shutdown(socket.SHUT_RDWR)

    # -- the connection's life ----------------------------------------------------------------
    def serve(self, handle_message: MessageHandler) -> None:
        """Run the connection until it closes: this thread sends, a helper thread reads."""
        reader = threading.Thread(
            target=self._read_loop, args=(handle_message,), name="sim-ws-reader", daemon=True
        )
        reader.start()
        try:
            self._send_loop()
        finally:
            self._shut_down(reader)

    def _read_loop(self, handle_message: MessageHandler) -> None:
        try:
            while not self.closing:
                message = self._ws.receive(timeout=POLL_SECONDS)
                if message is not None:
                    handle_message(self, message)
        except ConnectionClosed:
            pass
        except Exception:
            logger.exception("WebSocket request handling failed")
            self.request_close(CLOSE_INTERNAL_ERROR, "internal error")
        finally:
            self._wake()

    def _send_loop(self) -> None:
        while not self.closing:
            try:
                text = self._outbox.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            if text is _WAKE or self._faults.stalled:
                continue
            try:
                with self._write_lock:
                    self._ws.send(text)
            except _SEND_FAILURES:
                return

    def _shut_down(self, reader: threading.Thread) -> None:
        code, reason = self._close or (CLOSE_GOING_AWAY, "")
        try:
            with self._write_lock:
                self._ws.close(code, reason)
        except _SEND_FAILURES:
            pass  # the peer closed first, or the socket is gone
        # simple-websocket's thread ends when the peer answers the close frame.
        self._ws.thread.join(CLOSE_GRACE_SECONDS)
        if self._ws.thread.is_alive():
            self.abort()
            self._ws.thread.join(CLOSE_GRACE_SECONDS)
        reader.join(CLOSE_GRACE_SECONDS)
        with self._close_lock:
            if self._abort_timer is not None:
                self._abort_timer.cancel()


class SimBroadcaster:
    """The registry of the simulator's open WebSockets; fans each event out, serialized once."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._connections: set[SimConnection] = set()
        self._connects: Counter[str] = Counter()
        self._closed = False

    def register(self, connection: SimConnection) -> bool:
        """Add an accepted connection; ``False`` once the broadcaster is shut."""
        with self._cond:
            if self._closed:
                return False
            self._connections.add(connection)
            self._connects[connection.kind] += 1
            return True

    def unregister(self, connection: SimConnection) -> None:
        """Forget a connection that has ended."""
        with self._cond:
            self._connections.discard(connection)
            self._cond.notify_all()

    def publish(self, events: Iterable[Event]) -> None:
        """Serialize each event once and queue the same text on every connection it routes to."""
        with self._cond:
            connections = list(self._connections)
        for event in events:
            text = wire.serialize(event)
            for connection in connections:
                if connection.wants(event):
                    connection.offer(text)

    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """``(open now, accepted since start)`` by kind."""
        with self._cond:
            open_now = Counter(connection.kind for connection in self._connections)
            return (
                {kind: open_now[kind] for kind in _KINDS},
                {kind: self._connects[kind] for kind in _KINDS},
            )

    def close_all(self, code: int, reason: str, *, shut: bool = False) -> None:
        """Close every open connection and wait (bounded) until they have ended; with ``shut``,
        refuse new ones from now on."""
        with self._cond:
            self._closed = self._closed or shut
            closing = list(self._connections)
        for connection in closing:
            connection.request_close(code, reason)
        deadline = time.monotonic() + CLOSE_GRACE_SECONDS * 3
        with self._cond:
            self._cond.wait_for(
                lambda: not self._connections.intersection(closing),
                timeout=max(0.0, deadline - time.monotonic()),
            )
            stragglers = self._connections.intersection(closing)
        for connection in stragglers:
            connection.abort()
