"""One browser's WebSocket: its requests, their limits, and its close.

The relay's socket thread (:mod:`~flask_thrillconnect.relay.writer`) sends the browser everything
it receives and calls back here when the browser sent something, when the browser's last frames
before a close went out, and when a close deadline passed. A :class:`_Browser` answers: it
handles the browser's requests, sends the close frame, and ends the connection. Nothing of it
waits, so no browser holds a thread; where the server needs the request to last as long as the
connection, the request's thread just waits for the end. It reaches the socket only through
:class:`~flask_thrillconnect.sockets.BrowserSocket`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from .. import models, sockets
from ..errors import InvalidRequest
from ..player import Player
from ..servers import request_may_end_first
from .hub import Connection
from .protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    CLOSE_TIMEOUT,
    MAX_BROWSER_MESSAGE_BYTES,
    MAX_REFUSED_IN_A_ROW,
    RATE_BURST,
    RATE_PER_SECOND,
    close_reason,
    error_envelope,
)
from .relay import Relay
from .writer import Peer

__all__ = ["serve_browser"]

logger = logging.getLogger("flask_thrillconnect.relay.endpoint")

#: How often a request thread waiting for its browser's end looks up (a bound, not a poll:
#: the end wakes it).
_WAIT_STEP = 5.0


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
    environ: MutableMapping[str, Any],
    relay: Relay,
    player: Player | None,
    *,
    since: int | None,
    relay_id: str | None,
    optin_timeout: float,
) -> None:
    """Upgrade this request and hand the browser to the relay; bounded waits throughout.

    Returns at once where the server lets the connection outlive the request (gunicorn's
    ``gevent`` worker); elsewhere when the relay is done with the browser.
    """
    own_connection = request_may_end_first(environ)
    sock = sockets.accept(
        environ, max_message_size=MAX_BROWSER_MESSAGE_BYTES, own_connection=own_connection
    )
    browser = _Browser(sock, relay, player, optin_timeout)
    browser.start(since, relay_id)
    if own_connection:
        return
    try:
        while not browser.ended.wait(_WAIT_STEP):
            pass
    except BaseException:
        # The server ends this thread: the browser hears why, from the relay's thread.
        relay.hub.close_connection(browser.connection, CLOSE_GOING_AWAY)
        browser.ended.wait(CLOSE_TIMEOUT)
        raise


class _Browser:
    """One browser from its upgrade to its end; its methods but :meth:`start` run on the
    relay's socket thread."""

    def __init__(
        self, sock: sockets.BrowserSocket, relay: Relay, player: Player | None, optin_timeout: float
    ) -> None:
        self.sock = sock
        self.relay = relay
        self.player = player
        self.optin_timeout = optin_timeout
        #: Set once the connection is over and forgotten.
        self.ended = threading.Event()
        # Set by start(), before the socket thread can call back.
        self.connection: Connection
        self.peer: Peer
        self.requests: _BrowserRequests
        #: The code of the browser's own close frame, once it sent one.
        self.browser_close: int | None = None

    def start(self, since: int | None, relay_id: str | None) -> None:
        """Join the hub and the socket thread (from the request's thread)."""
        relay = self.relay
        self.connection = relay.connect(self.player, since=since, relay_id=relay_id)
        self.peer = Peer(
            relay.writer,
            self.sock.raw_socket,
            self.connection,
            on_input=self.on_input,
            on_release=self.on_release,
            on_timeout=self.end,
        )
        self.requests = _BrowserRequests(
            relay, self.player, self.connection, self.optin_timeout, self.peer
        )
        try:
            relay.writer.attach(self.peer)
        except RuntimeError:  # the relay is shutting down
            relay.disconnect(self.connection)
            self.send_close(CLOSE_GOING_AWAY)
            self.sock.end()
            self.ended.set()

    def on_input(self) -> None:
        """The browser sent something: requests, a ping, its close, or the end."""
        received = self.sock.receive()
        peer, requests = self.peer, self.requests
        if received.replies:
            peer.send_frame(received.replies)
        hub = self.relay.hub
        if self.connection.close_code is None and self.browser_close is None:
            requests.handle(received.messages)  # may ask for a close (a flood)
        if received.too_big:
            hub.close_connection(self.connection, CLOSE_MESSAGE_TOO_BIG)
        if received.close_code is not None and self.browser_close is None:
            self.browser_close = received.close_code
            if peer.released:  # our close went already: this is the answer
                self.end()
                return
            # The writer finishes the frame in flight, then the answer goes out.
            hub.close_connection(self.connection, CLOSE_NORMAL)
        if received.ended:
            self.end()

    def on_release(self, flushed: bool) -> None:
        """The writer let go of the socket: send the close frame (or give up on a browser
        that did not take its last frames)."""
        if not flushed:
            self.end()
            return
        code = self.browser_close or self.connection.close_code or CLOSE_GOING_AWAY
        if not self.send_close(code):
            self.end()
            return
        if self.sock.closed:
            self.end()  # that was the answer to the browser's close
        else:
            self.relay.writer.set_deadline(self.peer, CLOSE_TIMEOUT)

    def send_close(self, code: int) -> bool:
        """Send the close frame with ``code``; whether it went (not: the browser is gone)."""
        try:
            self.sock.send_nowait(self.sock.close_frame(code, close_reason(code)))
        except OSError:
            return False
        return True

    def end(self) -> None:
        """The connection is over: forget it and end the TCP connection (once)."""
        if self.ended.is_set():
            return
        self.relay.writer.detach(self.peer)
        self.relay.disconnect(self.connection)
        self.sock.end()
        self.ended.set()


class _BrowserRequests:
    """What a browser sends: ``SubscribeRequest`` and the player's own ``PlayerOptInRequest``."""

    def __init__(
        self,
        relay: Relay,
        player: Player | None,
        connection: Connection,
        optin_timeout: float,
        peer: Peer,
    ) -> None:
        self.relay = relay
        self.player = player
        self.connection = connection
        self.optin_timeout = optin_timeout
        self.peer = peer
        self.bucket = _TokenBucket(updated=time.monotonic())

    def handle(self, messages: list[str | bytes]) -> None:
        """Handle requests the browser sent; a flood asks for the close (1008)."""
        for text in messages:
            if not self.bucket.take(time.monotonic()):
                if self.bucket.refused_in_a_row > MAX_REFUSED_IN_A_ROW:
                    # The writer finishes what is in flight, then the close goes out.
                    self.relay.hub.close_connection(self.connection, CLOSE_POLICY_VIOLATION)
                    return
                self._error("RateLimit", "rate_limited", "too many requests; slow down")
                continue
            try:
                self._handle(text)
            except Exception:
                # A request we failed to handle is our bug, not a reason to drop the browser.
                logger.exception("relay request failed")
                self._error("Request", "internal_error", "the request could not be handled")

    def _handle(self, text: str | bytes) -> None:
        try:
            name, request = models.load_client_request(text)
        except InvalidRequest as exc:
            self._error("Request", "bad_request", str(exc))
            return
        if isinstance(request, models.SubscribeRequest):
            self.connection.subscribe((event.source, event.event_type) for event in request.events)
        elif isinstance(request, models.PlayerOptInRequest):
            self._opt_in(request)
        else:
            self._error(name, "unsupported_request", f"{name} is not relayed")

    def _opt_in(self, request: models.PlayerOptInRequest) -> None:
        name = "PlayerOptInRequest"
        player = self.player
        if player is None:
            self._error(name, "unauthorized", "log in to opt in to a jackpot")
            return
        if request.player_id != player.id:
            self._error(name, "player_mismatch", "player_id is not the logged-in player")
            return
        # Identity from the session, never from the browser's message.
        self.relay.opt_in(
            player,
            request.instance_id,
            request.opt_in,
            request.contribution_value,
            timeout=self.optin_timeout,
        )

    def _error(self, msg_name: str, code: str, message: str) -> None:
        """An ``Error`` envelope to this browser only (answers carry no ``seq``)."""
        player_id = self.player.id if self.player else None
        self.peer.send_text(
            models.to_json(error_envelope(msg_name, code, message, player_id=player_id))
        )
