"""The live-event relay: one upstream ThrillConnect stream fanned out to many browsers.

Modules, each importing only those above it:

- :mod:`.protocol`: what browsers are promised: close codes, envelopes, limits;
- :mod:`.outbox`: one browser's bounded, conflating outbox, and the publisher's fan-out loop;
- :mod:`.audiences`: audience names, and what each audience holds: its connections, route
  cache, replay ring and snapshot;
- :mod:`.connection`: :class:`Connection`, one browser's outbox plus its audiences and resume
  point;
- :mod:`.replay`: the encoded texts, the relay's own statuses, resume backfills and the
  subscription batch, :class:`HubStats` (pure functions under the hub's lock discipline);
- :mod:`.hub`: :class:`RelayHub`, which encodes each event once and routes it to the
  :class:`Connection` s of its audiences;
- :mod:`.writer`: the one thread that writes every browser's frames, never blocking;
- :mod:`.upstream`: the supervisor that keeps one upstream WebSocket alive;
- :mod:`.cluster_mode`: :class:`~.cluster_mode.ClusterFeed`, this process's part of
  :mod:`.cluster` (reader, lease keeper, event log, holder statuses, backfill, fallback);
- :mod:`.relay`: :class:`Relay`, which owns all of the above for one app;
- :mod:`.endpoint`: one browser's WebSocket (through :mod:`flask_thrillconnect.sockets`).
"""

from .audiences import BROADCAST, audience_player_id, player_audience
from .connection import Connection
from .hub import CLOSE_SERVICE_RESTART, HubStats, RelayHub, UpstreamStatus
from .protocol import CLOSE_GOING_AWAY, CLOSE_NORMAL, CLOSE_TRY_AGAIN_LATER
from .relay import Relay

__all__ = [
    "BROADCAST",
    "CLOSE_GOING_AWAY",
    "CLOSE_NORMAL",
    "CLOSE_SERVICE_RESTART",
    "CLOSE_TRY_AGAIN_LATER",
    "Connection",
    "HubStats",
    "Relay",
    "RelayHub",
    "UpstreamStatus",
    "audience_player_id",
    "player_audience",
]
