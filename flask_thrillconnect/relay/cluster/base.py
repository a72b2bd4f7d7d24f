"""What the cluster's pieces share: their Redis key names, their errors and their bounds.

Every Redis call of the cluster goes through :func:`redis_call`, which turns any redis-py
failure (refused, timed out, out of memory, a replica that refuses writes...) into
:class:`ClusterUnavailable`: the caller falls back to per-process mode instead of failing a
request. The clients come from :func:`flask_thrillconnect.redis_connection.connect`, whose
0.5 s socket timeouts bound every call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import redis

from ...errors import ThrillConnectError
from ...redis_connection import RedisKeys
from ..protocol import REPLAY_MAX_AGE

__all__ = [
    "DEDUP_TTL",
    "LEASE_TTL",
    "READ_BATCH",
    "READ_BLOCK",
    "READ_GATHER",
    "RENEW_INTERVAL",
    "STREAM_MAX_AGE",
    "STREAM_MAX_LENGTH",
    "ClusterUnavailable",
    "LeaseLost",
    "StreamKeys",
    "millis",
    "redis_call",
    "text",
]

#: Seconds a holder's lease lives without a renewal: a killed holder's slot is free after it.
LEASE_TTL: Final = 5.0
#: Seconds between renewals: a third of the lease, so two renewals may fail before it ends.
RENEW_INTERVAL: Final = LEASE_TTL / 3
#: Entries the event stream keeps at most (a safety cap for bursts; the age bound rules).
STREAM_MAX_LENGTH: Final = 10_000
#: Seconds an entry stays in the event stream: the browsers' ``since`` window.
STREAM_MAX_AGE: Final = REPLAY_MAX_AGE
#: Seconds an appended envelope's content is remembered, so that a hot-standby holder
#: appending the same upstream event (normally milliseconds later) adds nothing.
DEDUP_TTL: Final = 60.0
#: Seconds one blocking read of the stream waits for new entries, so a reader can stop.
READ_BLOCK: Final = 1.0
#: Entries fetched by one read (and one page of a replay).
READ_BATCH: Final = 500
#: Seconds a reader waits after the stream woke it before it fetches: a holder appends an
#: upstream burst (a tick's JackpotUpdates) one envelope at a time, and fetching the burst
#: whole lets every browser get it in one write rather than one per envelope
#: (``bench.cluster_relay``: p50 121 → 104 ms at 1,000 browsers over two nodes).
READ_GATHER: Final = 0.004


class ClusterUnavailable(ThrillConnectError):
    """Redis could not be reached in time, or refused the operation: fall back to per-process
    mode. The message names the kind of failure, never the Redis URL."""

    code = 503


class LeaseLost(ThrillConnectError):
    """The holder's lease ended (it expired, or another process took the slot): what it was
    about to write was refused, and it must stop writing."""

    code = 409


@contextmanager
def redis_call(what: str) -> Iterator[None]:
    """Turn a redis-py failure inside the block into :class:`ClusterUnavailable`."""
    try:
        yield
    except redis.RedisError as error:
        raise ClusterUnavailable(
            f"Redis is unavailable ({what}: {type(error).__name__})"
        ) from error


class StreamKeys:
    """The Redis keys of one portal's event stream, all under its prefix
    (``THRILLCONNECT_REDIS_PREFIX``), so that portals can share one Redis.

    - ``events``: the Redis Stream of upstream envelopes (field ``e``);
    - ``events:epoch``: a random id of the stream's life, the browsers' ``relay_id``;
    - ``events:trimmed``: the newest entry id ever trimmed (resume and gap checks);
    - ``events:dedup:<hash>``: an appended envelope's content, for :data:`DEDUP_TTL`;
    - ``events:holder:<slot>``: the lease of a holder slot, ``<fence>:<token>``;
    - ``events:fence``: the counter that numbers the leases (the fencing tokens).
    """

    def __init__(self, keys: RedisKeys) -> None:
        self.stream = keys("events")
        self.epoch = keys("events", "epoch")
        self.trimmed = keys("events", "trimmed")
        self.fence = keys("events", "fence")
        self._keys = keys

    def holder(self, slot: int) -> str:
        """The lease key of holder slot ``slot`` (0-based)."""
        return self._keys("events", "holder", str(slot))

    def dedup(self, digest: str) -> str:
        """The key remembering an appended envelope's content digest."""
        return self._keys("events", "dedup", digest)


def millis(seconds: float) -> int:
    """Whole milliseconds (at least 1) of ``seconds``, for Redis' ``PX`` and friends."""
    return max(1, round(seconds * 1000))


def text(value: Any) -> str:
    """A Redis reply (bytes, as the clients of :func:`~flask_thrillconnect.redis_connection.
    connect` answer, or str) as text.

    :raises ClusterUnavailable: any other reply: not a Redis this package can use.
    """
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, str):
        return value
    raise ClusterUnavailable(f"unexpected reply from Redis: {type(value).__name__}")
