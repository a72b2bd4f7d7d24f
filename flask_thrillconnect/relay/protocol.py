"""What the relay promises browsers on ``<prefix>/v1/events``: close codes, envelopes, limits.

Each number here is documented in ``docs/relay.rst``; the rest of the relay takes it from here,
so the documentation and the code have one place to agree on. Sizes that the package's
validators share live in :mod:`flask_thrillconnect.limits` and are re-exported here.
"""

from __future__ import annotations

import time
from typing import Any, Final

from ..limits import MAX_BROWSER_MESSAGE_BYTES

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_GRACE",
    "CLOSE_MESSAGE_TOO_BIG",
    "CLOSE_NORMAL",
    "CLOSE_POLICY_VIOLATION",
    "CLOSE_TIMEOUT",
    "CLOSE_TRY_AGAIN_LATER",
    "MAX_BROWSER_MESSAGE_BYTES",
    "MAX_REFUSED_IN_A_ROW",
    "OUTBOX_LIMIT",
    "PING_INTERVAL",
    "RATE_BURST",
    "RATE_PER_SECOND",
    "REPLAY_LIMIT",
    "REPLAY_MAX_AGE",
    "check_close_code",
    "close_reason",
    "error_envelope",
    "relay_status",
]

# -- close codes (RFC 6455, 7.4.1) -------------------------------------------------------------

#: The connection was removed from the hub (the browser's own thread is leaving).
CLOSE_NORMAL: Final = 1000
#: The relay is shutting down (``flask_thrillconnect.shutdown()``).
CLOSE_GOING_AWAY: Final = 1001
#: A flood of requests past the rate limit.
CLOSE_POLICY_VIOLATION: Final = 1008
#: The browser fell too far behind: it should reconnect and resume with ``since``.
CLOSE_TRY_AGAIN_LATER: Final = 1013
#: A message from the browser over ``MAX_BROWSER_MESSAGE_BYTES``.
CLOSE_MESSAGE_TOO_BIG: Final = 1009

_CLOSE_REASONS: Final = {
    CLOSE_GOING_AWAY: "server going away",
    CLOSE_POLICY_VIOLATION: "too many requests",
    CLOSE_TRY_AGAIN_LATER: "fell behind; reconnect with since",
}


def close_reason(code: int) -> str:
    """The text sent with close ``code`` (empty when the code says it all)."""
    return _CLOSE_REASONS.get(code, "")


# -- limits -----------------------------------------------------------------------------------

#: Inbound requests: a burst, then this many a second.
RATE_BURST: Final = 20
RATE_PER_SECOND: Final = 5.0
#: Past this many refused requests in a row the browser is cut off (1008).
MAX_REFUSED_IN_A_ROW: Final = 50
#: Seconds of silence after which a browser is pinged: under the 60 s idle timeout of proxies.
PING_INTERVAL: Final = 25.0
#: Non-conflatable messages that may wait for one browser; one more closes it with 1013.
OUTBOX_LIMIT: Final = 1000
#: The ``since`` window: messages kept per audience, and for how many seconds.
REPLAY_LIMIT: Final = 500
REPLAY_MAX_AGE: Final = 120.0
#: How long a browser that stopped reading gets to take its last frames before its connection
#: is cut without a close frame.
CLOSE_GRACE: Final = 10.0
#: How long the browser gets to answer our close frame before the TCP connection ends (checked
#: about once a second).
CLOSE_TIMEOUT: Final = 1.0

# -- envelopes --------------------------------------------------------------------------------


def check_close_code(code: object) -> None:
    """Raise :class:`ValueError` unless ``code`` is a WebSocket close code (1000-4999)."""
    if type(code) is not int or not 1000 <= code <= 4999:
        raise ValueError("code must be a WebSocket close code (1000-4999)")


def relay_status(data: dict[str, Any]) -> dict[str, Any]:
    """A ``RelayStatus`` envelope (the hub adds ``seq``)."""
    return {"msg_type": "Message", "source": "relay", "msg_name": "RelayStatus", "data": data}


def error_envelope(
    msg_name: str,
    code: str,
    message: str,
    *,
    player_id: str | None,
    operator_id: str | None = None,
    brand_id: str | None = None,
) -> dict[str, Any]:
    """An ``Error`` answer to a browser's request, as ThrillConnect spells one.

    ``operator_id`` and ``brand_id`` are included when given (answers relayed from an upstream
    stream carry them; the relay's own answers to a malformed request do not).
    """
    envelope: dict[str, Any] = {"msg_type": "Error", "source": "relay", "msg_name": msg_name}
    if operator_id is not None:
        envelope["operator_id"] = operator_id
    if brand_id is not None:
        envelope["brand_id"] = brand_id
    envelope["player_id"] = player_id
    envelope["data"] = {"code": code, "message": message}
    envelope["timestamp"] = int(time.time() * 1000)
    return envelope
