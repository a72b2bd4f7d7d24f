"""The live-event relay: one upstream ThrillConnect stream fanned out to many browsers.

:class:`RelayHub` sits between the upstream supervisor (which publishes every relayed event)
and the browser endpoint (one :class:`Connection` per browser WebSocket).
"""

from flask_thrillconnect.relay.hub import (
    BROADCAST,
    HubStats,
    RelayHub,
    UpstreamStatus,
    audience_player_id,
    player_audience,
)
from flask_thrillconnect.relay.outbox import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_TRY_AGAIN_LATER,
    Connection,
)

__all__ = [
    "BROADCAST",
    "CLOSE_GOING_AWAY",
    "CLOSE_NORMAL",
    "CLOSE_TRY_AGAIN_LATER",
    "Connection",
    "HubStats",
    "RelayHub",
    "UpstreamStatus",
    "audience_player_id",
    "player_audience",
]
