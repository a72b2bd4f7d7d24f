"""The simulator's web side: REST and WebSocket routes, control routes, fault injection, the
connection registry that fans events out, and the :class:`Simulator` handle that runs it all.

Threads, per WebSocket: the Werkzeug request thread runs the connection's *sender* (the only
writer of messages, draining a bounded outbox), a *reader* thread turns client requests into
world calls, and simple-websocket's own thread reads frames and answers pings. simple-websocket
does not lock its writes, so each connection wraps the socket and the wsproto connection in
one lock (see :class:`_SerializedSocket` and :class:`_GuardedProtocol`).

Behaviour worth knowing when testing against it:

- Events are routed by subscription; ``Error`` and ``Message`` answers (e.g.
  ``PlayerRaffleTicketResponse``) go to the asking connection whether subscribed or not.
  ``OptInEvent`` is an event: a player sees it only when subscribed to it (or ``*``).
- Faults (``POST /_sim/faults``): keys left out keep their value, so ``{}`` changes nothing and
  answers the current faults; ``{"rest": null, "ws": null}`` clears all. REST faults apply to
  ``/v1/*`` and ``/health`` (not to upgrades, ``OPTIONS`` or ``/_sim``). ``delay`` sleeps then
  serves; ``hang`` holds the request until the fault changes (then serves), the simulator stops
  (503) or 60 s pass (504). ``drop`` closes every open WebSocket with close code 1012 (service
  restart) and clears itself; ``refuse`` answers upgrades with 503; ``stall`` discards
  everything meant for open connections (events and answers) and leaves pings unanswered.
- A connection whose outbox holds :data:`OUTBOX_LIMIT` messages is closed with 1013; a peer
  that stops reading altogether has its socket cut after a grace period.
- Refused upgrades get HTTP 401 (bad or expired service JWT, unknown wallet token, token of
  another brand or operator, missing or unknown currency) or 403 (a valid service JWT of
  another operator); REST requests are counted by ``/_sim/stats`` whatever their outcome.
"""

from __future__ import annotations

import contextlib
import http
import json
import logging
import queue
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import Flask, Response, g, jsonify, request
from flask_sock import Sock
from simple_websocket import ConnectionClosed
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from wsproto.events import Pong
from wsproto.utilities import LocalProtocolError

from ..player import Player
from . import world as w
from .tokens import DEFAULT_SECRET, InvalidServiceToken, issue_service_token, verify_service_token

logger = logging.getLogger("flask_thrillconnect.testing.server")

#: Messages a connection may have waiting; beyond that it is closed with 1013 (try again later).
OUTBOX_LIMIT = 10_000
#: Largest client message accepted (simple-websocket closes with 1009 beyond).
MAX_CLIENT_MESSAGE_BYTES = 64 * 1024
MAX_SUBSCRIPTIONS = 100
MAX_TICKS_PER_CALL = 1000
#: A ``hang`` fault never holds a request longer than this.
MAX_HANG_SECONDS = 60.0
MAX_DELAY_SECONDS = 60.0
#: How often idle connection threads look up from their queues.
POLL_SECONDS = 0.25
#: How long a closing WebSocket waits for the peer's close frame before its socket is cut.
CLOSE_GRACE_SECONDS = 2.0
SERVICE_TOKEN_LIFETIME = 24 * 3600.0

CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN_LATER = 1013

REST_COUNTERS = ("currencies", "sources", "jackpot", "ticker", "cors", "health")
_WS_FAULTS = ("drop", "refuse", "stall")
_FIELD_LIMIT = 128
_QUERY = re.compile(r"\?[^\s\"']*")
_COMPACT = {"separators": (",", ":"), "ensure_ascii": False}
_WAKE = None  # outbox sentinel: look at the connection's state now
# A send fails like this when the peer has gone, or has started closing (wsproto's state).
_SEND_FAILURES = (ConnectionClosed, OSError, LocalProtocolError)


class SimulatorControlError(RuntimeError):
    """A control route refused a request; ``status`` and ``error`` are the HTTP answer's."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error


class ApiError(Exception):
    """An error answered as ``{"error": code, "message": text}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str) -> Response:
    """The JSON error body every failure of the simulator answers with."""
    response = jsonify({"error": code, "message": message})
    response.status_code = status
    return response


def _snake(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


# ---------------------------------------------------------------------------------------------
# Fault injection and counters
# ---------------------------------------------------------------------------------------------
class Faults:
    """The faults currently injected; REST request threads wait on it for ``delay``/``hang``."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._stopping = False
        self.rest: dict[str, Any] | None = None
        self.ws: str | None = None

    @property
    def stalled(self) -> bool:
        """Open WebSockets get no events and no pongs."""
        return self.ws == "stall"

    @property
    def refusing(self) -> bool:
        """New WebSocket upgrades are refused with 503."""
        return self.ws == "refuse"

    def snapshot(self) -> dict[str, Any]:
        """``{"rest": …, "ws": …}`` as the control route shows it."""
        with self._cond:
            return {"rest": dict(self.rest) if self.rest else None, "ws": self.ws}

    def update(self, body: Any) -> bool:
        """Apply a ``/_sim/faults`` body; keys not given stay as they are. Answer whether open
        WebSockets must be dropped now (``drop`` acts once and leaves ``ws`` cleared).

        :raises ApiError: 400 for anything but ``rest``/``ws`` with the documented values.
        """
        if not isinstance(body, dict) or not set(body) <= {"rest", "ws"}:
            raise ApiError(400, "invalid_body", 'expected an object with "rest" and/or "ws"')
        rest = self._validated_rest(body["rest"]) if "rest" in body else self.rest
        ws = body.get("ws", self.ws)
        if ws is not None and ws not in _WS_FAULTS:
            raise ApiError(400, "invalid_fault", f"ws must be null or one of {_WS_FAULTS}")
        with self._cond:
            self.rest = rest
            self.ws = None if ws == "drop" else ws
            self._cond.notify_all()
        return ws == "drop"

    @staticmethod
    def _validated_rest(fault: Any) -> dict[str, Any] | None:
        if fault is None:
            return None
        if not isinstance(fault, dict) or len(fault) != 1:
            raise ApiError(
                400, "invalid_fault", 'rest must be null, {"status"}, {"delay"} or {"hang"}'
            )
        ((kind, value),) = fault.items()
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if kind == "status" and number and int(value) == value and 400 <= value <= 599:
            return {"status": int(value)}
        if kind == "delay" and number and 0 < value <= MAX_DELAY_SECONDS:
            return {"delay": float(value)}
        if kind == "hang" and value is True:
            return {"hang": True}
        raise ApiError(
            400,
            "invalid_fault",
            f"rest fault must be status 400-599, delay in (0, {MAX_DELAY_SECONDS:g}] or hang true",
        )

    def rest_fault_response(self) -> Response | None:
        """Act on the REST fault: an error response to answer with, or ``None`` to serve."""
        with self._cond:
            fault = self.rest
        if fault is None:
            return None
        if "status" in fault:
            status = fault["status"]
            try:
                code = _snake(http.HTTPStatus(status).phrase)
            except ValueError:
                code = "injected_fault"
            return error_response(status, code, "fault injected by the simulator")
        with self._cond:
            if "delay" in fault:
                self._cond.wait_for(lambda: self._stopping, timeout=fault["delay"])
                released = not self._stopping
            else:
                released = self._cond.wait_for(
                    lambda: self.rest != fault or self._stopping, timeout=MAX_HANG_SECONDS
                )
            stopping = self._stopping
        if stopping:
            return error_response(503, "service_unavailable", "the simulator is stopping")
        if not released:
            return error_response(504, "gateway_timeout", "hang fault held the request too long")
        return None

    def stop(self) -> None:
        """Release every request held by a ``delay`` or ``hang``."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()


class RequestCounter:
    """REST requests that reached a route since start, by kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(REST_COUNTERS, 0)

    def count(self, kind: str) -> None:
        """Count one request of ``kind``."""
        with self._lock:
            self._counts[kind] += 1

    def snapshot(self) -> dict[str, int]:
        """The counts so far."""
        with self._lock:
            return dict(self._counts)


# ---------------------------------------------------------------------------------------------
# WebSocket connections and the hub
# ---------------------------------------------------------------------------------------------
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
            return self._protocol.send(event)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._protocol, name)


class Connection:
    """One open WebSocket: its identity, subscriptions and bounded outbox.

    :param ws: the accepted simple-websocket server connection.
    :param player: the wallet player of a player connection, ``None`` for a service one.
    """

    def __init__(self, ws: Any, player: w.Player | None, faults: Faults) -> None:
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
        # Replaced whole on change, so the hub reads it without a lock.
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

    def wants(self, event: w.Event) -> bool:
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
    def serve(self, handle_message: Callable[[Connection, str | bytes], None]) -> None:
        """Run the connection until it closes: this thread sends, a helper thread reads."""
        reader = threading.Thread(
            target=self._read_loop, args=(handle_message,), name="sim-ws-reader", daemon=True
        )
        reader.start()
        try:
            self._send_loop()
        finally:
            self._shut_down(reader)

    def _read_loop(self, handle_message: Callable[[Connection, str | bytes], None]) -> None:
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


class Hub:
    """The registry of open WebSockets; fans each event out, serialized once."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._connections: set[Connection] = set()
        self._connects: Counter[str] = Counter()
        self._closed = False

    def register(self, connection: Connection) -> bool:
        """Add an accepted connection; ``False`` once the hub is shut."""
        with self._cond:
            if self._closed:
                return False
            self._connections.add(connection)
            self._connects[connection.kind] += 1
            return True

    def unregister(self, connection: Connection) -> None:
        """Forget a connection that has ended."""
        with self._cond:
            self._connections.discard(connection)
            self._cond.notify_all()

    def publish(self, events: Iterable[w.Event]) -> None:
        """Serialize each event once and queue the same text on every connection it routes to."""
        with self._cond:
            connections = list(self._connections)
        for event in events:
            text = json.dumps(event.envelope(), **_COMPACT)
            for connection in connections:
                if connection.wants(event):
                    connection.offer(text)

    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """``(open now, accepted since start)`` by kind."""
        with self._cond:
            open_now = Counter(connection.kind for connection in self._connections)
            return (
                {kind: open_now[kind] for kind in ("service", "player")},
                {kind: self._connects[kind] for kind in ("service", "player")},
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


# ---------------------------------------------------------------------------------------------
# The platform: the world plus what the web side needs around it
# ---------------------------------------------------------------------------------------------
class Platform:
    """The world, the hub, the faults and the counters of one simulator.

    Every change of the world and the publication of its events happen under one lock, so
    connections see events in the order the world produced them.
    """

    def __init__(self, seed: int, win_chance: float, secret: str) -> None:
        self.world = w.World(seed=seed, win_chance=win_chance)
        self.hub = Hub()
        self.faults = Faults()
        self.requests = RequestCounter()
        self.secret = secret
        self._publish_lock = threading.Lock()

    def _apply(self, change: Callable[[], tuple[Any, list[w.Event]]]) -> Any:
        with self._publish_lock:
            result, events = change()
            self.hub.publish(events)
        return result

    def tick(self, count: int = 1) -> None:
        """``count`` ticks of the world, each published as it happens."""
        for _ in range(count):
            self._apply(lambda: (None, self.world.tick()))

    def win(self, instance_id: str, pot_id: str | None, player_id: str | None) -> dict[str, Any]:
        """A win (or raffle draw) now; answer the event's data."""
        return self._apply(lambda: self.world.win(instance_id, pot_id, player_id))

    def opt_in(self, player: w.Player, **choice: Any) -> None:
        """An opt-in request of ``player``; its ``OptInEvent`` is routed like any event."""
        self._apply(lambda: (None, [self.world.opt_in(player, **choice)]))

    def stats(self) -> dict[str, Any]:
        """The ``/_sim/stats`` answer."""
        open_now, accepted = self.hub.counts()
        return {"requests": self.requests.snapshot(), "connections": open_now, "connects": accepted}


# ---------------------------------------------------------------------------------------------
# Client → server WebSocket requests
# ---------------------------------------------------------------------------------------------
class _RequestError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _text(body: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= _FIELD_LIMIT:
        raise _RequestError(
            "invalid_request", f"{key} must be a string of 1 to {_FIELD_LIMIT} chars"
        )
    return value


def _object(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if not isinstance(value, dict):
        raise _RequestError("invalid_request", f"{key} must be an object")
    return value


def _opt_in_flag(body: dict[str, Any]) -> bool:
    if not isinstance(body.get("opt_in"), bool):
        raise _RequestError("invalid_request", "opt_in must be true or false")
    return body["opt_in"]


def _player_of(connection: Connection, player_id: str | None, brand: str | None) -> w.Player:
    if connection.player is None:
        raise _RequestError("player_connection_required", "only a player connection may ask this")
    if player_id != connection.player.id or (
        brand is not None and w.bare_brand_id(brand) != connection.brand_id
    ):
        raise _RequestError("player_mismatch", "the request is not for this connection's player")
    return connection.player


def _subscribe(platform: Platform, connection: Connection, body: dict[str, Any]) -> None:
    events = body.get("events")
    if not isinstance(events, list) or not 0 < len(events) <= MAX_SUBSCRIPTIONS:
        raise _RequestError("invalid_request", f"events must be a list of 1 to {MAX_SUBSCRIPTIONS}")
    pairs = []
    for entry in events:
        if not isinstance(entry, dict):
            raise _RequestError("invalid_request", "each subscription must be an object")
        pairs.append((_text(entry, "source"), _text(entry, "event_type")))
    if not connection.subscribe(pairs):
        raise _RequestError("too_many_subscriptions", f"at most {MAX_SUBSCRIPTIONS} subscriptions")


def _opt_in_v1(platform: Platform, connection: Connection, body: dict[str, Any]) -> None:
    player = _player_of(connection, _text(body, "player_id"), _text(body, "brand_id"))
    platform.opt_in(
        player,
        opt_in=_opt_in_flag(body),
        instance_id=_text(body, "instance_id"),
        contribution_value=body.get("contribution_value"),
    )


def _opt_in_v2(platform: Platform, connection: Connection, body: dict[str, Any]) -> None:
    target, who = _object(body, "target"), _object(body, "player")
    if _text(body, "operator_id") != w.OPERATOR_ID:
        raise _RequestError("player_mismatch", "the request is for another operator")
    player = _player_of(connection, _text(who, "id"), _text(who, "brand_id"))
    kind, target_id = _text(target, "type"), _text(target, "id")
    if kind not in ("instance", "source"):
        raise _RequestError("invalid_request", 'target.type must be "instance" or "source"')
    if "opt_linked" in body and not isinstance(body["opt_linked"], bool):
        raise _RequestError("invalid_request", "opt_linked must be true or false")
    platform.opt_in(
        player,
        opt_in=_opt_in_flag(body),
        contribution_value=body.get("contribution_value"),
        **{f"{kind}_id": target_id},
    )


def _raffle_tickets(platform: Platform, connection: Connection, body: dict[str, Any]) -> None:
    player = _player_of(connection, _text(body, "player_id"), _text(body, "brand_id"))
    data = platform.world.raffle_tickets(player, _text(body, "instance_id") or "")
    reply = w.Event(
        "thrillpots",
        "PlayerRaffleTicketResponse",
        player.brand_id,
        player.id,
        data,
        int(time.time() * 1000),
        msg_type="Message",
    )
    connection.offer(json.dumps(reply.envelope(), **_COMPACT))


_REQUESTS: dict[str, Callable[[Platform, Connection, dict[str, Any]], None]] = {
    "SubscribeRequest": _subscribe,
    "PlayerOptInRequest": _opt_in_v1,
    "PlayerOptInRequestV2": _opt_in_v2,
    "PlayerRaffleTicketsRequest": _raffle_tickets,
}


def handle_client_message(platform: Platform, connection: Connection, message: str | bytes) -> None:
    """Act on one client message; a failure is answered with an ``Error`` envelope and the
    connection stays open."""
    name = "InvalidMessage"
    try:
        try:
            request_object = json.loads(message)
        except ValueError as e:
            raise _RequestError("malformed_request", "the message is not JSON") from e
        if not isinstance(request_object, dict) or len(request_object) != 1:
            raise _RequestError("malformed_request", "a request is an object with one key")
        ((name, body),) = request_object.items()
        handler = _REQUESTS.get(name)
        if handler is None:
            raise _RequestError("unknown_request", f"unknown request {name[:_FIELD_LIMIT]!r}")
        if not isinstance(body, dict):
            raise _RequestError("invalid_request", f"{name} must hold an object")
        handler(platform, connection, body)
    except (_RequestError, w.WorldError) as e:
        error = {
            "msg_type": "Error",
            "source": "thrillconnect" if name == "SubscribeRequest" else "thrillpots",
            "msg_name": name[:_FIELD_LIMIT],
            "operator_id": w.OPERATOR_ID,
            "brand_id": connection.brand_id,
            "player_id": connection.player.id if connection.player else None,
            "data": {"code": e.code, "message": e.message},
            "timestamp": int(time.time() * 1000),
        }
        connection.offer(json.dumps(error, **_COMPACT))


# ---------------------------------------------------------------------------------------------
# The Flask application
# ---------------------------------------------------------------------------------------------
# endpoint -> path; the seed page and the vendor guide spell the paths in several ways.
_SERVICE_WS_ROUTES = {
    "service_events": "/v1/events/service",
    "service_events_unversioned": "/events/service",
}
_PLAYER_WS_ROUTES = {
    "player_events": "/v1/events/<operator_id>/<brand_id>",
    "player_events_unversioned": "/events/<operator_id>/<brand_id>",
    "player_events_singular": "/event/<operator_id>/<brand_id>",
}


def _is_websocket_upgrade() -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def _is_rest_request() -> bool:
    path = request.path
    return (
        request.method != "OPTIONS"
        and not _is_websocket_upgrade()
        and (path == "/health" or path.startswith("/v1/"))
    )


def _json_object(allowed: set[str], *, empty_ok: bool = False) -> dict[str, Any]:
    if empty_ok and not request.get_data():
        return {}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "the body must be a JSON object")
    unknown = set(body) - allowed
    if unknown:
        raise ApiError(400, "invalid_body", f"unknown fields: {', '.join(sorted(unknown))}")
    return body


def _optional_text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and (not isinstance(value, str) or not 0 < len(value) <= _FIELD_LIMIT):
        raise ApiError(400, "invalid_body", f"{key} must be a string of 1 to {_FIELD_LIMIT} chars")
    return value


def _query_text(name: str) -> str | None:
    value = request.args.get(name)
    if value is not None and len(value) > _FIELD_LIMIT:
        raise ApiError(400, "invalid_parameter", f"{name} is longer than {_FIELD_LIMIT} chars")
    return value or None


def create_app(platform: Platform) -> Flask:
    """The simulator's Flask application, serving ``platform``."""
    app = Flask("flask_thrillconnect.testing")
    app.config["SOCK_SERVER_OPTIONS"] = {"max_message_size": MAX_CLIENT_MESSAGE_BYTES}
    _register_hooks(app, platform)
    _register_rest_routes(app, platform)
    _register_websocket_routes(app, platform)
    _register_control_routes(app, platform)
    return app


def _register_hooks(app: Flask, platform: Platform) -> None:
    @app.before_request
    def count_and_gate() -> Response | None:
        if request.endpoint in REST_COUNTERS and request.method != "OPTIONS":
            platform.requests.count(request.endpoint)
        if request.endpoint in _SERVICE_WS_ROUTES or request.endpoint in _PLAYER_WS_ROUTES:
            return _admit_websocket(platform)
        if _is_rest_request():
            return platform.faults.rest_fault_response()
        return None

    @app.after_request
    def add_cors_headers(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if origin and not _is_websocket_upgrade():
            response.vary.add("Origin")
            if platform.world.origin_allowed(origin):
                response.headers["Access-Control-Allow-Origin"] = origin
                if request.method == "OPTIONS":
                    response.headers["Access-Control-Allow-Methods"] = "GET, PUT, DELETE"
                    response.headers["Access-Control-Allow-Headers"] = request.headers.get(
                        "Access-Control-Request-Headers", "Authorization, Content-Type"
                    )
                    response.headers["Access-Control-Max-Age"] = "600"
        return response

    @app.errorhandler(ApiError)
    def api_error(e: ApiError) -> Response:
        response = error_response(e.status, e.code, e.message)
        if e.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.errorhandler(w.WorldError)
    def world_error(e: w.WorldError) -> Response:
        status = {w.NotFound: 404, w.InvalidInput: 400}.get(type(e), 409)
        return error_response(status, e.code, e.message)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        response = error_response(e.code or 500, _snake(e.name), e.description or e.name)
        if isinstance(e, MethodNotAllowed) and e.valid_methods:
            response.headers["Allow"] = ", ".join(e.valid_methods)
        return response

    @app.errorhandler(Exception)
    def unexpected_error(e: Exception) -> Response:
        logger.exception("simulator request failed")
        return error_response(500, "internal_error", "the simulator failed")


def _admit_websocket(platform: Platform) -> Response | None:
    """Check an upgrade before the handshake: refused (503) or bad credentials (401/403) get an
    HTTP answer; an admitted one leaves its player (or ``None``) in ``g.ws_player``."""
    if platform.faults.refusing:
        return error_response(503, "service_unavailable", "WebSocket upgrades are refused")
    token = request.args.get("token")
    if request.endpoint in _SERVICE_WS_ROUTES:
        try:
            claims = verify_service_token(platform.secret, token)
        except InvalidServiceToken as e:
            return error_response(401, "unauthorized", str(e))
        if claims.org_id != w.OPERATOR_ID:
            return error_response(403, "forbidden", "the token is for another operator")
        g.ws_player = None
        return None
    args = request.view_args or {}
    player = platform.world.player_for_token(token)
    if (
        player is None
        or args.get("operator_id") != player.operator_id
        or w.bare_brand_id(args.get("brand_id", "")) != player.brand_id
    ):
        return error_response(401, "unauthorized", "unknown player token for this brand")
    if request.args.get("currency") not in w.EXCHANGE_RATES:
        return error_response(401, "unauthorized", "a known player currency is required")
    g.ws_player = player
    return None


def _register_rest_routes(app: Flask, platform: Platform) -> None:
    world = platform.world

    @app.get("/health")
    def health() -> Response:
        return jsonify({"version": w.PLATFORM_VERSION})

    @app.get("/v1/currencies")
    def currencies() -> Response:
        return jsonify(world.currencies())

    @app.get("/v1/thrillpots/sources")
    def sources() -> Response:
        owner_id = _query_text("owner_id")
        if owner_id is None:
            raise ApiError(400, "owner_id_required", "owner_id is required")
        return jsonify(world.sources(owner_id, _query_text("name")))

    @app.get("/v1/thrillpots/instances/source/<source_id>/brand/<brand_id>")
    def jackpot(source_id: str, brand_id: str) -> Response:
        segments = [s.strip() for s in (_query_text("segments") or "").split(",") if s.strip()]
        return jsonify(
            world.jackpot_for_source(
                source_id,
                brand_id,
                player_id=_query_text("player_id"),
                country=_query_text("country_code"),
                segments=segments,
            )
        )

    @app.get("/v1/thrillpots/instances/<instance_id>/ticker")
    def ticker(instance_id: str) -> Response:
        return jsonify(world.ticker(instance_id))

    @app.route("/v1/cors", methods=["GET", "PUT", "DELETE"])
    def cors() -> Response:
        _require_service_token(platform)
        if request.method == "GET":
            return jsonify({"cors_origin_list": world.cors_rules()})
        body = _json_object({"cors_origin_list"})
        if request.method == "PUT":
            return jsonify({"cors_origin_list": world.cors_upsert(body.get("cors_origin_list"))})
        removed, remaining = world.cors_remove(body.get("cors_origin_list"))
        return jsonify({"removed": removed, "cors_origin_list": remaining})


def _require_service_token(platform: Platform) -> None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "a Bearer service token is required")
    try:
        claims = verify_service_token(platform.secret, token.strip())
    except InvalidServiceToken as e:
        raise ApiError(401, "unauthorized", str(e)) from e
    if claims.org_id != w.OPERATOR_ID:
        raise ApiError(403, "forbidden", "the token is for another operator")


def _register_websocket_routes(app: Flask, platform: Platform) -> None:
    sock = Sock(app)

    def serve(ws: Any) -> None:
        connection = Connection(ws, g.ws_player, platform.faults)
        if not platform.hub.register(connection):
            connection.request_close(CLOSE_GOING_AWAY, "simulator stopping")
        try:
            connection.serve(lambda conn, message: handle_client_message(platform, conn, message))
        finally:
            platform.hub.unregister(connection)

    def service_events(ws: Any) -> None:
        serve(ws)

    def player_events(ws: Any, operator_id: str, brand_id: str) -> None:
        serve(ws)

    for endpoint, path in _SERVICE_WS_ROUTES.items():
        sock.route(path, endpoint=endpoint)(service_events)
    for endpoint, path in _PLAYER_WS_ROUTES.items():
        sock.route(path, endpoint=endpoint)(player_events)


def _register_control_routes(app: Flask, platform: Platform) -> None:
    @app.post("/_sim/tick")
    def sim_tick() -> Response:
        count = _json_object({"count"}, empty_ok=True).get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int):
            raise ApiError(400, "invalid_body", "count must be an integer")
        if not 1 <= count <= MAX_TICKS_PER_CALL:
            raise ApiError(400, "invalid_body", f"count must be between 1 and {MAX_TICKS_PER_CALL}")
        platform.tick(count)
        return jsonify({"ticks": count})

    @app.post("/_sim/win")
    def sim_win() -> Response:
        body = _json_object({"instance_id", "pot_id", "player_id"})
        instance_id = _optional_text(body, "instance_id")
        if instance_id is None:
            raise ApiError(400, "invalid_body", "instance_id is required")
        return jsonify(
            platform.win(
                instance_id, _optional_text(body, "pot_id"), _optional_text(body, "player_id")
            )
        )

    @app.get("/_sim/stats")
    def sim_stats() -> Response:
        return jsonify(platform.stats())

    @app.route("/_sim/faults", methods=["GET", "POST"])
    def sim_faults() -> Response:
        if request.method == "POST":
            body = request.get_json(silent=True)
            if platform.faults.update(body):
                platform.hub.close_all(CLOSE_SERVICE_RESTART, "service restart")
        return jsonify(platform.faults.snapshot())

    @app.post("/_sim/players")
    def sim_players() -> tuple[Response, int]:
        body = _json_object({"id", "token", "currency", "country", "segments", "brand_id"})
        for key in ("id", "token", "currency", "country"):
            if key not in body:
                raise ApiError(400, "invalid_body", f"{key} is required")
        profile = platform.world.add_player(
            body["id"],
            body["token"],
            body["currency"],
            body["country"],
            body.get("segments", []),
            body.get("brand_id", "brand1"),
        )
        return jsonify(profile), 201


# ---------------------------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------------------------
class _QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler with its access log sent to our logger at DEBUG (a library configures
    no logging) and query strings cut out of it: they carry service and wallet tokens."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.debug("%s %s %s", self.command, urlsplit(self.path).path, code)

    def log(self, type: str, message: str, *args: Any) -> None:
        logger.debug("%s", _QUERY.sub("?…", message % args))


class Simulator:
    """A running local ThrillConnect on a real socket.

    :param host: interface to listen on.
    :param port: port, 0 for a free one.
    :param tick_interval: seconds between automatic ticks; 0 ticks only when told to.
    :param seed: seed of the world (ids, values, wins).
    :param win_chance: probability per active jackpot per tick of a random win.

    ``service_token`` is a service JWT of operator ``thrilltech`` for ``brand1`` and ``brand2``,
    valid 24 hours (so that demos outlive the platform's 30-minute tokens).
    """

    operator_id = w.OPERATOR_ID

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tick_interval: float = 0.0,
        seed: int = 1,
        win_chance: float = 0.0,
    ) -> None:
        if tick_interval < 0:
            raise ValueError("tick_interval must be >= 0")
        self.host = host
        self.port = port
        self.tick_interval = tick_interval
        self._secret = DEFAULT_SECRET
        self._platform = Platform(seed, win_chance, self._secret)
        self.app = create_app(self._platform)
        self.service_token = self.make_service_token(expires_in=SERVICE_TOKEN_LIFETIME)
        self._server: BaseWSGIServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._session = requests.Session()

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> Simulator:
        """Listen and serve in background threads; answer ``self``."""
        if self._server is not None:
            raise RuntimeError("the simulator is already started")
        self._server = make_server(
            self.host, self.port, self.app, threaded=True, request_handler=_QuietRequestHandler
        )
        self.port = self._server.server_port
        server_thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="thrillconnect-simulator",
            daemon=True,
        )
        self._threads.append(server_thread)
        if self.tick_interval > 0:
            self._threads.append(
                threading.Thread(target=self._tick_forever, name="sim-ticker", daemon=True)
            )
        for thread in self._threads:
            thread.start()
        logger.info("ThrillConnect simulator serving on %s", self.url)
        return self

    def _tick_forever(self) -> None:
        while not self._stopping.wait(self.tick_interval):
            try:
                self._platform.tick()
            except Exception:
                logger.exception("automatic tick failed")

    def stop(self) -> None:
        """Stop ticking, release held requests, close every WebSocket, stop serving; returns
        within a few seconds."""
        if self._server is None or self._stopping.is_set():
            return
        self._stopping.set()
        self._platform.faults.stop()
        self._server.shutdown()
        self._platform.hub.close_all(CLOSE_GOING_AWAY, "simulator stopping", shut=True)
        self._server.server_close()
        for thread in self._threads:
            thread.join(CLOSE_GRACE_SECONDS)
        self._session.close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses and credentials ------------------------------------------------------------
    @property
    def url(self) -> str:
        """REST base URL (routes are under ``/v1``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """WebSocket base URL."""
        return f"ws://{self.host}:{self.port}"

    def make_service_token(
        self,
        *,
        org_id: str = w.OPERATOR_ID,
        unit_ids: Iterable[str] = w.BRAND_IDS,
        expires_in: float = 1800,
        secret: str | None = None,
    ) -> str:
        """A service JWT; another ``org_id``, a negative ``expires_in`` or another ``secret``
        make tokens the simulator refuses (403, 401, 401)."""
        return issue_service_token(
            self._secret if secret is None else secret,
            org_id=org_id,
            unit_ids=tuple(unit_ids),
            expires_in=expires_in,
        )

    @property
    def instance_ids(self) -> dict[str, str]:
        """Role → instance id (``progressive``, ``raffle``, ``brand2``, ...)."""
        return self._platform.world.instance_ids

    @property
    def players(self) -> dict[str, dict[str, Any]]:
        """Player id → ``{"id", "token", "currency", "country", "segments", "operator_id",
        "brand_id"}`` for every wallet player."""
        return self._platform.world.players()

    def player(self, player_id: str, *, locale: str | None = None) -> Player:
        """The :class:`~flask_thrillconnect.Player` of a wallet player, token included:
        what a portal's ``player_loader`` returns once that player has logged in.

        :raises KeyError: no such wallet player.
        """
        wallet = self.players[player_id]
        return Player(
            id=wallet["id"],
            token=wallet["token"],
            currency=wallet["currency"],
            country_code=wallet["country"],
            segments=tuple(wallet["segments"]),
            locale=locale,
        )

    # -- control, through the HTTP control routes ---------------------------------------------
    def _control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._session.request(method, self.url + path, json=body, timeout=(3.05, 30))
        answer = response.json()
        if response.status_code >= 400:
            raise SimulatorControlError(
                response.status_code, answer.get("error", ""), answer.get("message", "")
            )
        return answer

    def tick(self, count: int = 1) -> None:
        """``count`` ticks now (pots grow, ``JackpotUpdate`` per active instance per tick)."""
        self._control("POST", "/_sim/tick", {"count": count})

    def win(
        self, instance_id: str, pot_id: str | None = None, player_id: str | None = None
    ) -> dict[str, Any]:
        """A win now (a raffle draws); answer the ``WinEvent``/``RaffleWinEvent`` data."""
        body = {"instance_id": instance_id, "pot_id": pot_id, "player_id": player_id}
        return self._control("POST", "/_sim/win", {k: v for k, v in body.items() if v is not None})

    def stats(self) -> dict[str, Any]:
        """REST requests served, WebSockets open and accepted."""
        return self._control("GET", "/_sim/stats")

    def faults(self, rest: dict[str, Any] | None = None, ws: str | None = None) -> None:
        """Set both faults; ``faults()`` clears everything."""
        self._control("POST", "/_sim/faults", {"rest": rest, "ws": ws})

    def add_player(
        self,
        id: str,
        token: str,
        currency: str,
        country: str,
        segments: tuple[str, ...] = (),
        brand_id: str = "brand1",
    ) -> None:
        """Register a wallet player."""
        self._control(
            "POST",
            "/_sim/players",
            {
                "id": id,
                "token": token,
                "currency": currency,
                "country": country,
                "segments": list(segments),
                "brand_id": brand_id,
            },
        )
