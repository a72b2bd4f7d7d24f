"""One browser's WebSocket: its requests, their limits, and its close.

The relay's writer thread sends the browser everything it receives (see
:mod:`~flask_thrillconnect.relay.writer`). The thread flask-sock hands the socket to is
left with the rest: it sleeps until the browser sends something or the writer lets go of
the socket, handles the browser's requests, and sends the close frame once the writer has
finished. It reaches the socket only through :class:`~flask_thrillconnect.sockets.BrowserSocket`.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from typing import Any

from .. import models
from ..errors import InvalidRequest
from ..player import Player
from ..sockets import BrowserSocket
from .hub import Connection
from .protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_GRACE,
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

#: How often a browser's thread looks up when nothing woke it (close deadlines).
IDLE_WAKE = 5.0


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

    :param ws: the WebSocket flask-sock hands to the view (or a :class:`BrowserSocket`
        already made of it).
    """
    sock = ws if isinstance(ws, BrowserSocket) else _browser_socket(ws)
    try:
        _serve(sock, relay, player, since, relay_id, optin_timeout)
    except BaseException:
        # The server ends this thread or greenlet: gunicorn's gevent worker kills what still
        # runs at the end of --graceful-timeout (GreenletExit). The browser hears why.
        sock.close(CLOSE_GOING_AWAY, close_reason(CLOSE_GOING_AWAY))
        raise
    finally:
        sock.release(CLOSE_TIMEOUT)


def _browser_socket(ws: Any) -> BrowserSocket:
    """The relay's view of the WebSocket flask-sock hands a view, with the relay's limits."""
    return BrowserSocket(
        ws, max_message_size=MAX_BROWSER_MESSAGE_BYTES, write_timeout=CLOSE_TIMEOUT
    )


def _serve(
    sock: BrowserSocket,
    relay: Relay,
    player: Player | None,
    since: int | None,
    relay_id: str | None,
    optin_timeout: float,
) -> None:
    connection = relay.connect(player, since=since, relay_id=relay_id)
    # Before the writer starts: from its first frame on, the library's own go through it.
    sock.hand_writes_to(functools.partial(relay.writer.send_frame, connection))
    try:
        peer = relay.writer.attach(
            sock.raw_socket, connection, on_release=sock.wake, send=sock.send_nowait
        )
    except RuntimeError:  # the relay is shutting down
        sock.hand_writes_to(None)
        relay.disconnect(connection)
        sock.close(CLOSE_GOING_AWAY, close_reason(CLOSE_GOING_AWAY))
        return
    requests = _BrowserRequests(sock, relay, player, connection, optin_timeout, peer)
    close_requested_at: float | None = None
    gave_up = False
    try:
        while sock.is_open:
            sock.wait(IDLE_WAKE)
            if connection.close_code is None:
                requests.handle_waiting()  # may ask for a close (a flood)
            else:
                requests.discard_waiting()  # answers would only delay the close
            code = connection.close_code
            if code is None:
                continue
            if peer.released.is_set():  # the writer sent all it had: the close is ours
                sock.close(code, close_reason(code))
                break
            # The writer is still flushing to a browser that may never read: bounded.
            close_requested_at = close_requested_at or time.monotonic()
            if time.monotonic() - close_requested_at > CLOSE_GRACE:
                gave_up = True
                break
    except OSError:
        pass  # the browser went away; nothing to tell it
    except Exception:
        logger.exception("relay connection failed")
    finally:
        leftover = relay.writer.detach(peer)
        sock.hand_writes_to(None)
        relay.disconnect(connection)
        if leftover and not gave_up:
            # Frames the writer had not sent yet: a close reply of the library's, say.
            sock.write(leftover)


class _BrowserRequests:
    """What a browser sends: ``SubscribeRequest`` and the player's own ``PlayerOptInRequest``."""

    def __init__(
        self,
        sock: BrowserSocket,
        relay: Relay,
        player: Player | None,
        connection: Connection,
        optin_timeout: float,
        peer: Peer,
    ) -> None:
        self.sock = sock
        self.relay = relay
        self.player = player
        self.connection = connection
        self.optin_timeout = optin_timeout
        self.peer = peer
        self.bucket = _TokenBucket(updated=time.monotonic())

    def handle_waiting(self) -> None:
        """Handle every request already received; a flood asks for the close (1008)."""
        while (text := self.sock.receive_nowait()) is not None:
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

    def discard_waiting(self) -> None:
        """Drop what the browser sent: it is being closed."""
        while self.sock.receive_nowait() is not None:
            pass

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
