"""Opening WebSocket connections to ThrillConnect.

The upstream side uses the ``websockets`` library's synchronous client rather
than simple-websocket's: it bounds the TCP and WebSocket handshakes with a
timeout, keeps pings and close handshakes bounded too, and its writes are
locked. Tokens travel in the query string, so its logger is wrapped to redact
them.
"""

from __future__ import annotations

import logging
from typing import Any

from websockets.exceptions import InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, connect

from .errors import UpstreamTimeout, UpstreamUnauthorized, UpstreamUnavailable
from .limits import MAX_UPSTREAM_MESSAGE_BYTES
from .upstream_http import redact

logger = logging.getLogger("flask_thrillconnect.upstream_ws")


class _RedactingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets logs the request line at DEBUG, query string and token included."""

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            self.logger.log(level, redact(text), **kwargs)


_ws_logger = _RedactingLogger(logging.getLogger("flask_thrillconnect.upstream_ws.protocol"), {})


def open_stream(
    url: str,
    *,
    open_timeout: float,
    ping_interval: float | None = 20,
    ping_timeout: float | None = 20,
) -> ClientConnection:
    """Connect to ``url`` with bounded handshakes; upstream trouble as our exceptions.

    :raises UpstreamUnauthorized: the upgrade was refused with 401.
    :raises UpstreamTimeout: no connection within ``open_timeout``.
    :raises UpstreamUnavailable: anything else that stops the connection.
    """
    try:
        return connect(
            url,
            open_timeout=open_timeout,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=2,
            max_size=MAX_UPSTREAM_MESSAGE_BYTES,
            # Events are small and fanned out from one connection: compression
            # would cost CPU on the hot path for little gain.
            compression=None,
            proxy=None,
            logger=_ws_logger,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status == 401:
            raise UpstreamUnauthorized(
                status=401, message="ThrillConnect refused the stream credentials"
            ) from None
        raise UpstreamUnavailable(
            status=status, message=f"ThrillConnect refused the stream ({status})"
        ) from None
    except TimeoutError:
        raise UpstreamTimeout(message="ThrillConnect stream did not open in time") from None
    except (OSError, WebSocketException) as exc:
        # Keep the message free of the URL: it carries a token.
        raise UpstreamUnavailable(
            message=f"ThrillConnect stream could not be opened ({type(exc).__name__})"
        ) from None
