"""Cluster mode's event stream (``THRILLCONNECT_REDIS_URL``): one upstream service stream per
cluster, every worker reading it from Redis.

- :mod:`.seq`: stream entry ids ↔ the browsers' ``seq``;
- :mod:`.base`: key names, errors, bounds; :mod:`.scripts`: the Lua scripts;
- :mod:`.lease`: :class:`HolderLease`, the fenced lease of the holder slots, and
  :class:`LeaseKeeper`, the thread that keeps it;
- :mod:`.log`: :class:`EventLog`, the Redis Stream with its epoch (append, replay);
- :mod:`.reader`: :class:`EventReader`, each worker's reader thread.

These modules import redis-py: import them only when a Redis URL is configured.
"""

from .base import (
    DEDUP_TTL,
    LEASE_TTL,
    RENEW_INTERVAL,
    STREAM_MAX_AGE,
    STREAM_MAX_LENGTH,
    ClusterUnavailable,
    LeaseLost,
    StreamKeys,
)
from .lease import Fence, HolderLease, LeaseKeeper
from .log import Entry, EventLog, Head, dedup_key
from .reader import EventReader
from .seq import MAX_SEQ, SEQ_PER_MS, entry_id, seq_of

__all__ = [
    "DEDUP_TTL",
    "LEASE_TTL",
    "MAX_SEQ",
    "RENEW_INTERVAL",
    "SEQ_PER_MS",
    "STREAM_MAX_AGE",
    "STREAM_MAX_LENGTH",
    "ClusterUnavailable",
    "Entry",
    "EventLog",
    "EventReader",
    "Fence",
    "Head",
    "HolderLease",
    "LeaseKeeper",
    "LeaseLost",
    "StreamKeys",
    "dedup_key",
    "entry_id",
    "seq_of",
]
