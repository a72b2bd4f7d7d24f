"""One browser's WebSocket: its sender loop, its inbound requests and their limits.

The request thread that flask-sock hands the socket to is the socket's only
writer. It sleeps on the event simple-websocket sets when the browser sends
something, which the hub also sets when the outbox gains work, so one thread
serves both directions.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from simple_websocket import ConnectionClosed
from wsproto.connection import ConnectionState

from .. import schemas
from ..errors import InvalidRequest, ThrillConnectError
from ..optin import send_opt_in
from ..player import Player
from .outbox import Connection
from .service import Relay
from .writer import Peer

logger = logging.getLogger("flask_thrillconnect.relay.endpoint")

#: Browsers send small requests; anything larger is closed with 1009 by simple-websocket.
MAX_BROWSER_MESSAGE = 4096
#: How often a browser's thread looks up when nothing woke it (close deadlines).
IDLE_WAKE = 5.0
#: How long a browser that stopped reading gets to take its last frames before its
#: connection is cut without a close frame.
CLOSE_GRACE = 10.0
#: Inbound requests: a burst, then this many a second.
RATE_BURST = 20
RATE_PER_SECOND = 5.0
#: Past this many refused requests in a row the browser is cut off (1008).
MAX_REFUSED_IN_A_ROW = 50
CLOSE_POLICY_VIOLATION = 1008
CLOSE_GOING_AWAY = 1001
#: How long the browser gets to answer our close frame before the TCP connection ends.
CLOSE_TIMEOUT = 1.0

# Opt-ins sent on a fresh player connection must not block the browser's sender.
_optin_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="thrillconnect-optin")


@dataclass
class _TokenBucket:
    """Requests a browser may still send now; refilled at ``RATE_PER_SECOND``."""

    tokens: float = RATE_BURST
    updated: float = 0.0
    refused_in_a_row: int = 0

    def take(self, now: float) -> bool:
        self.tokens = min(RATE_BURST, self.tokens + (now - self.updated) * RATE_PER_SECOND)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.refused_in_a_row = 0
            return True
        self.refused_in_a_row += 1
        return False


def serve_browser(
    ws: Any,
    relay: Relay,
    player: Player | None,
    *,
    since: int | None,
    relay_id: str | None,
    optin_timeout: float,
) -> None:
    """Serve one browser until either side closes; bounded waits throughout.

    The relay's writer thread sends the browser's messages (see
    :mod:`~flask_thrillconnect.relay.writer`); this thread reads its requests and,
    once the writer has let go of the socket, sends the close frame.
    """
    ws.max_message_size = MAX_BROWSER_MESSAGE
    try:
        peer = relay.writer.attach(ws.sock, on_release=ws.event.set)
    except RuntimeError:  # the relay is shutting down
        ws.close(reason=CLOSE_GOING_AWAY, message=_close_message(CLOSE_GOING_AWAY))
        _release_socket(ws)
        return
    connection = relay.connect(player, since=since, relay_id=relay_id, wake_event=peer.signal)
    peer.connection = connection
    relay.writer.ready(peer)  # the connect-time RelayStatus is already waiting
    requests = _BrowserRequests(ws, relay, player, connection, optin_timeout, peer)
    close_requested_at: float | None = None
    try:
        while _is_open(ws):
            ws.event.wait(timeout=IDLE_WAKE)
            # Clear before looking: a request arriving now sets it again.
            ws.event.clear()
            if not requests.handle_waiting():
                break
            code = connection.close_code
            if code is None:
                continue
            if peer.released.is_set():
                with peer.io_lock:
                    ws.close(reason=code, message=_close_message(code))
                break
            # The writer is still flushing to a browser that may never read: bounded.
            close_requested_at = close_requested_at or time.monotonic()
            if time.monotonic() - close_requested_at > CLOSE_GRACE:
                break
    except (ConnectionClosed, OSError):
        pass  # the browser went away; nothing to tell it
    except Exception:
        logger.exception("relay connection failed")
    finally:
        relay.writer.detach(peer)
        relay.disconnect(connection)
        _release_socket(ws)


def _release_socket(ws: Any) -> None:
    """End the TCP connection once the close handshake is done (or has had its time).

    Werkzeug's server keeps its own reference to the socket and would otherwise hold
    the connection open after the handshake, leaving the browser waiting for the end.
    """
    ws.thread.join(timeout=CLOSE_TIMEOUT)
    with contextlib.suppress(OSError):  # already gone
        ws.sock.shutdown(socket.SHUT_RDWR)


def _is_open(ws: Any) -> bool:
    # simple-websocket wakes us when it starts closing (message too big, say) but only
    # marks itself disconnected afterwards; the protocol state already says so.
    return bool(ws.connected) and ws.ws.state is ConnectionState.OPEN


def _close_message(code: int) -> str:
    return {1001: "server going away", 1013: "fell behind; reconnect with since"}.get(code, "")


class _BrowserRequests:
    """What a browser sends: ``SubscribeRequest`` and the player's own ``PlayerOptInRequest``."""

    def __init__(
        self,
        ws: Any,
        relay: Relay,
        player: Player | None,
        connection: Connection,
        optin_timeout: float,
        peer: Peer,
    ):
        self.peer = peer
        self.ws = ws
        self.relay = relay
        self.player = player
        self.connection = connection
        self.optin_timeout = optin_timeout
        self.bucket = _TokenBucket(updated=time.monotonic())

    def handle_waiting(self) -> bool:
        """Handle every request already received; False once the browser must be cut off."""
        # A look at the buffer first: most wake-ups are for the outbox, not the browser.
        while self.ws.input_buffer and (text := self.ws.receive(timeout=0)) is not None:
            if not self.bucket.take(time.monotonic()):
                if self.bucket.refused_in_a_row > MAX_REFUSED_IN_A_ROW:
                    self.relay.writer.detach(self.peer)
                    with self.peer.io_lock:
                        self.ws.close(reason=CLOSE_POLICY_VIOLATION, message="too many requests")
                    return False
                self._error("RateLimit", "rate_limited", "too many requests; slow down")
                continue
            try:
                self._handle(text)
            except Exception:
                # A request we failed to handle is our bug, not a reason to drop the browser.
                logger.exception("relay request failed")
                self._error("Request", "internal_error", "the request could not be handled")
        return True

    def _handle(self, text: str | bytes) -> None:
        try:
            name, request = schemas.load_client_request(text)
        except InvalidRequest as exc:
            self._error("Request", "bad_request", str(exc))
            return
        if isinstance(request, schemas.SubscribeRequest):
            self.connection.subscribe((event.source, event.event_type) for event in request.events)
        elif isinstance(request, schemas.PlayerOptInRequest):
            self._opt_in(request)
        else:
            self._error(name, "unsupported_request", f"{name} is not relayed")

    def _opt_in(self, request: schemas.PlayerOptInRequest) -> None:
        name = "PlayerOptInRequest"
        player = self.player
        if player is None:
            self._error(name, "unauthorized", "log in to opt in to a jackpot")
            return
        if request.player_id != player.id:
            self._error(name, "player_mismatch", "player_id is not the logged-in player")
            return
        # Identity from the session, never from the browser's message.
        message = {
            "PlayerOptInRequest": {
                "instance_id": request.instance_id,
                "player_id": player.id,
                "brand_id": self.relay.settings.owner_id,
                "player_country": player.country_code,
                "opt_in": request.opt_in,
                **(
                    {"contribution_value": float(request.contribution_value)}
                    if request.contribution_value is not None
                    else {}
                ),
            }
        }
        if self.relay.send_for_player(player, message):
            return  # the answer comes back on the player's stream
        _optin_pool.submit(self._opt_in_on_fresh_stream, player, request)

    def _opt_in_on_fresh_stream(self, player: Player, request: schemas.PlayerOptInRequest) -> None:
        try:
            send_opt_in(
                self.relay.client,
                player,
                request.instance_id,
                request.opt_in,
                request.contribution_value,
                timeout=self.optin_timeout,
            )
        except ThrillConnectError as exc:
            code = getattr(exc, "error", None) or "upstream_error"
            self.relay.tell_player(player.id, "PlayerOptInRequest", code, str(exc))
        # Success needs nothing here: the OptInEvent reaches the player's audience through
        # the service stream.

    def _error(self, msg_name: str, code: str, message: str) -> None:
        """An ``Error`` envelope to this browser only (answers carry no ``seq``)."""
        self.peer.send_direct(
            json.dumps(
                {
                    "msg_type": "Error",
                    "source": "relay",
                    "msg_name": msg_name,
                    "player_id": self.player.id if self.player else None,
                    "data": {"code": code, "message": message},
                    "timestamp": int(time.time() * 1000),
                }
            )
        )
