"""The relay's fan-out hub: one upstream stream in, many browser connections out.

The upstream supervisor calls :meth:`RelayHub.publish` for every relayed event and
:meth:`RelayHub.set_upstream_status` when its stream goes up or down. The browser endpoint
calls :meth:`RelayHub.connect` for each browser and :meth:`Connection.subscribe` for its
``SubscribeRequest`` s, and finally :meth:`RelayHub.disconnect`. One consumer, the relay's
writer thread, empties every connection's outbox with :meth:`~.outbox.Outbox.drain`: the hub
tells it which connections have work through the ``on_ready`` callback. Pure Python: no
Flask, no sockets, no threads of its own.

The audiences (names, members, route caches, replay rings, snapshots) live in
:mod:`.audiences`, a browser's :class:`Connection` in :mod:`.connection`. Neither module
takes the hub lock itself: every acquisition stays here, where the lock order can be checked
in one reading, which is why this module is longer than 500 lines. How the hub works, and
the decisions behind it:

**Encode once.** :meth:`~RelayHub.publish` stamps the envelope with the next hub-wide
``seq`` (the first key of the object) and serializes it to compact JSON once; that very
``str`` object is appended to the outbox of every matching connection of the audience it
was published to, found in that audience's route cache.

**Seq and resume.** ``seq`` increases hub-wide, so each connection sees increasing, gapped
values. A browser resumes with ``since`` = the highest ``seq`` it has seen, *together with*
the hub's :attr:`~RelayHub.relay_id` (sent in every connect-time ``RelayStatus``): a ``seq``
from another process or an earlier hub means nothing here. ``since`` is honoured when the
``relay_id`` matches and no message after it has left the rings of the connection's
audiences. Then the connection starts at ``since``; otherwise it starts at the current
``seq`` and its connect-time status says ``"resumed": false`` (the page refreshes over REST).

**Replay at subscribe time.** ThrillConnect sends nothing before a ``SubscribeRequest``, so
the replay waits for the first :meth:`~RelayHub.subscribe`: in one step under the hub lock
(so no concurrent publish is lost or doubled) the outbox receives, merged in ``seq`` order,
the ring messages after the connection's start that match its subscriptions, the current
relay status if it changed after the start, and the latest ``JackpotUpdate`` of each matching
instance (the snapshot). Merging by ``seq`` places each snapshot value exactly where a lagging
connection's conflated outbox would have put it; as the newest value of a live jackpot, it
normally comes after the replayed wins. Live messages follow with higher ``seq`` values. A
later subscription adds only the snapshot of the instances it newly covers. Snapshot values
may carry a ``seq`` lower than one already seen; they are conflatable state, so resuming from
the highest ``seq`` seen never skips an event.

**Threads and locks.** ``_publish_lock`` serializes publishers, so every connection receives
messages in ``seq`` order; it is held while fanning out, during which the only foreign code
run is ``on_ready`` (which must be quick and never block). ``_lock`` guards the hub's state
(audiences, rings, subscriptions, counters) and is only ever held for bookkeeping; methods
that need it held end in ``_locked``, here and in :mod:`.audiences`. Each outbox's (striped)
lock guards that outbox. Order: publish lock, hub lock, outbox lock; ``on_ready`` and the
audience callback run with no hub or outbox lock held.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Final, Literal

from ..models import to_json
from .audiences import (
    BROADCAST,
    UNFILTERED,
    Audience,
    AudienceLimits,
    AudienceTable,
    Record,
    Route,
    audience_player_id,
    check_audience,
    check_subscription,
    conflation_key_of,
    player_audience,
    route_of,
)
from .connection import Connection
from .outbox import LockGroups, OutboxKey, fan_out, group_by_lock
from .protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    OUTBOX_LIMIT,
    REPLAY_LIMIT,
    REPLAY_MAX_AGE,
    relay_status,
)

# BROADCAST, Connection and the audience names' functions are re-exported: other modules of
# the relay import them from here.
__all__ = [
    "BROADCAST",
    "Connection",
    "HubStats",
    "RelayHub",
    "UpstreamStatus",
    "audience_player_id",
    "player_audience",
]

logger = logging.getLogger("flask_thrillconnect.relay.hub")

#: What :meth:`RelayHub.set_upstream_status` accepts.
UpstreamStatus = Literal["connected", "reconnecting"]
_UPSTREAM_STATUSES: Final = ("connected", "reconnecting")

# Outbox keys of relay-level messages. A newer live status replaces a waiting one; the
# connect-time status (relay_id, resumed) and a gap notice are never replaced by it.
_STATUS_KEY: Final = "relay:status"
_CONNECT_STATUS_KEY: Final = "relay:connect"
_GAP_STATUS_KEY: Final = "relay:gap"
# A bound on what a caller can make the hub hold.
_MAX_AUDIENCES_PER_CONNECTION: Final = 8
# Outbox locks are striped over this many locks (see the outbox module).
_LOCK_STRIPES: Final = 64


def _check_close_code(code: object) -> None:
    if type(code) is not int or not 1000 <= code <= 4999:
        raise ValueError("code must be a WebSocket close code (1000-4999)")


def _encode(seq: int, envelope: Mapping[str, Any]) -> str:
    body = {"seq": seq, **envelope}
    body["seq"] = seq  # an envelope's own "seq" never wins; ours stays the first key
    return to_json(body)


def _ignore(_connection: Connection) -> None:
    """The ``on_ready`` of a hub whose consumer polls (tests, benchmarks)."""


@dataclass(frozen=True, slots=True)
class HubStats:
    """A snapshot of the hub's figures (:meth:`RelayHub.stats`); aggregate, no player ids.

    :param connections: browser connections registered now.
    :param player_connections: those that also joined a player audience.
    :param player_audiences: players with at least one connection.
    :param subscribed_connections: connections that have sent a subscription.
    :param published: messages published (events and relay statuses).
    :param deliveries: messages appended to outboxes, replays and snapshots included.
    :param conflated: waiting messages replaced by a newer one of the same key.
    :param overflow_closes: connections marked for closing with 1013.
    :param seq: the last ``seq`` assigned.
    :param upstream: the current upstream status.
    """

    connections: int
    player_connections: int
    player_audiences: int
    subscribed_connections: int
    published: int
    deliveries: int
    conflated: int
    overflow_closes: int
    seq: int
    upstream: str


class RelayHub:
    """Fans published envelopes out to browser connections; see the module docstring.

    :param outbox_limit: non-conflatable messages that may wait in one connection's outbox;
        one more marks it for closing with 1013.
    :param replay_limit: non-conflatable messages each audience's ring keeps for ``since``.
    :param replay_max_age: seconds a message stays in a ring.
    :param snapshot_limit: instances whose latest ``JackpotUpdate`` an audience remembers
        (oldest forgotten first).
    :param max_audiences: audiences remembered, those with connections included; the least
        recently used without connections are forgotten first (a ``since`` that needed one
        is then not honoured).
    :param max_subscriptions: distinct ``(source, event_type)`` pairs per connection.
    :param on_ready: called with a connection whose outbox just gained work (it was empty) or
        that must now close; its consumer should drain it. Called from the publishing
        thread, with no hub or outbox lock held but with publishers waiting: it must be quick
        and never block (the relay's writer queues the connection and returns).
    :param on_player_audience: called as ``(player_id, active)`` when a player audience gains
        its first connection (``True``) or loses its last (``False``); the endpoint opens and
        closes that player's upstream connection with it. Calls are made with no lock held,
        one at a time, in order, deduplicated (a flap may be reported once or not at all);
        they must be quick and not block. A failing call is logged and not retried.
    :param clock: monotonic seconds, for the rings' age (tests inject their own).
    """

    def __init__(
        self,
        *,
        outbox_limit: int = OUTBOX_LIMIT,
        replay_limit: int = REPLAY_LIMIT,
        replay_max_age: float = REPLAY_MAX_AGE,
        snapshot_limit: int = 1000,
        max_audiences: int = 10_000,
        max_subscriptions: int = 64,
        on_ready: Callable[[Connection], None] | None = None,
        on_player_audience: Callable[[str, bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (
            ("outbox_limit", outbox_limit),
            ("replay_limit", replay_limit),
            ("snapshot_limit", snapshot_limit),
            ("max_audiences", max_audiences),
            ("max_subscriptions", max_subscriptions),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1")
        if not replay_max_age > 0:
            raise ValueError("replay_max_age must be > 0")
        self._outbox_limit = outbox_limit
        self._max_subscriptions = max_subscriptions
        self._on_ready = on_ready or _ignore
        self._on_player_audience = on_player_audience
        self._clock = clock
        #: Identifies this hub's ``seq`` space; a ``since`` is honoured only with it.
        self.relay_id: Final[str] = secrets.token_urlsafe(12)

        self._publish_lock = threading.Lock()
        self._lock = threading.Lock()
        self._closed = False
        self._seq = 0
        self._upstream: UpstreamStatus = "reconnecting"
        self._status_record: Record | None = None
        self._connect_status_cache: tuple[tuple[int, str, bool | None], str] | None = None
        self._audiences: AudienceTable[Connection] = AudienceTable(
            AudienceLimits(replay_limit, replay_max_age, snapshot_limit), max_audiences
        )
        # Every registered connection, with its subscriptions (empty until it subscribes).
        self._members: dict[Connection, set[Route]] = {}
        self._subscribed: dict[Connection, None] = {}
        self._subscribed_groups: LockGroups[Connection] | None = ()
        self._stripes = [threading.Lock() for _ in range(_LOCK_STRIPES)]
        self._next_stripe = 0
        # Whether a thread is reporting player audiences' activity (on_player_audience).
        self._dispatching = False
        self._published = 0
        self._deliveries = 0
        self._conflated = 0
        self._overflow_closes = 0

    # -- properties ----------------------------------------------------------------------

    @property
    def upstream_status(self) -> UpstreamStatus:
        """The status last given to :meth:`set_upstream_status` (initially ``reconnecting``)."""
        return self._upstream

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def last_seq(self) -> int:
        """The last ``seq`` assigned (0 before any)."""
        return self._seq

    # -- browser connections -------------------------------------------------------------

    def connect(
        self, audiences: Iterable[str], *, since: int | None = None, relay_id: str | None = None
    ) -> Connection:
        """Register a browser connection and queue its connect-time ``RelayStatus``.

        The status is ``{"msg_type": "Message", "source": "relay", "msg_name":
        "RelayStatus", "data": {"upstream": ..., "relay_id": ...}, "seq": start}``, with
        ``"resumed": true | false`` in ``data`` when ``since`` was given; its ``seq`` is the
        connection's :attr:`~.Connection.start_seq`. ``on_ready`` is called for it before
        this returns, so a consumer that starts afterwards must look at the outbox once.

        :param audiences: :data:`BROADCAST`, plus :func:`player_audience` for a logged-in
            player.
        :param since: the highest ``seq`` the browser saw on its previous connection.
        :param relay_id: the ``relay_id`` that came with it; ``since`` is honoured only when
            it equals :attr:`relay_id` and the rings still hold every message after it.
        :returns: the connection; if the hub is closed, one already marked with 1001.
        """
        names = frozenset(check_audience(a) for a in audiences)
        if not names or len(names) > _MAX_AUDIENCES_PER_CONNECTION:
            raise ValueError(f"between 1 and {_MAX_AUDIENCES_PER_CONNECTION} audiences")
        if since is not None and (type(since) is not int or since < 0):
            raise ValueError("since must be an int >= 0")
        with self._lock:
            lock = self._stripes[self._next_stripe]
            self._next_stripe = (self._next_stripe + 1) % _LOCK_STRIPES
        conn = Connection(self, names, lock=lock, limit=self._outbox_limit)
        with self._lock:
            if self._closed:
                closed = True
            else:
                closed = False
                now = self._clock()
                auds = []
                for name in names:
                    # Joined at once, so that fetching the next audience cannot forget it.
                    aud = self._audiences.fetch_locked(name)
                    self._audiences.join_locked(aud, conn)
                    auds.append(aud)
                start, resumed = self._seq, None
                if since is not None:
                    resumed = (
                        relay_id == self.relay_id
                        and since <= self._seq
                        and all(aud.covers_locked(since, now) for aud in auds)
                    )
                    if resumed:
                        start = since
                conn.start_seq, conn.resumed = start, resumed
                self._members[conn] = set()
                conn.enqueue(((_CONNECT_STATUS_KEY, self._connect_status_locked(start, resumed)),))
                self._deliveries += 1
        if closed:
            # Never registered: subscribe and disconnect ignore it.
            conn.mark_closed(CLOSE_GOING_AWAY)
        else:
            self._dispatch_audience_changes()
        self._on_ready(conn)
        return conn

    def subscribe(self, conn: Connection, events: Iterable[Route]) -> None:
        """Add ``(source, event_type)`` subscriptions to ``conn`` and queue what they cover.

        Same as :meth:`.Connection.subscribe`, which documents what is queued.

        :raises ValueError: a malformed pair or too many subscriptions.
        """
        pairs: list[Route] = []
        for pair in events:
            pairs.append(check_subscription(pair))
            if len(pairs) > self._max_subscriptions:
                raise ValueError(f"at most {self._max_subscriptions} subscriptions")
        with self._lock:
            subscriptions = self._members.get(conn)
            if subscriptions is None or conn.close_code is not None:
                return  # disconnected, or closing
            before = frozenset(subscriptions)
            new = set(pairs) - before
            if not new:
                return
            if len(before) + len(new) > self._max_subscriptions:
                raise ValueError(f"at most {self._max_subscriptions} subscriptions")
            subscriptions.update(new)
            auds = [self._audiences.joined_locked(name) for name in conn.audiences]
            for aud in auds:
                aud.invalidate_routes_locked()
            batch = self._subscription_batch_locked(conn, auds, subscriptions, before)
            if not before:
                self._subscribed[conn] = None
                self._subscribed_groups = None
            ready, overflowed = conn.enqueue(batch)
            if overflowed:
                self._overflow_closes += 1
            else:
                self._deliveries += len(batch)
        if ready:
            self._on_ready(conn)

    def subscriptions_of(self, conn: Connection) -> frozenset[Route]:
        """What ``conn`` subscribed to so far (nothing once disconnected)."""
        with self._lock:
            return frozenset(self._members.get(conn, ()))

    def close_connection(self, conn: Connection, code: int) -> None:
        """Ask ``conn``'s consumer to close it with ``code`` (1008 for a flood, say).

        What waits in its outbox is dropped; the first code asked for wins. It stays
        registered until :meth:`disconnect`.
        """
        _check_close_code(code)
        if conn.mark_closed(code):
            self._on_ready(conn)

    def disconnect(self, conn: Connection) -> None:
        """Remove ``conn`` from the hub (idempotent); marks it with 1000 if not yet marked."""
        with self._lock:
            subscriptions = self._members.pop(conn, None)
            if subscriptions is None:
                return
            for name in conn.audiences:
                self._audiences.leave_locked(name, conn, subscribed=bool(subscriptions))
            if subscriptions:
                del self._subscribed[conn]
                self._subscribed_groups = None
        if conn.mark_closed(CLOSE_NORMAL):
            self._on_ready(conn)
        self._dispatch_audience_changes()

    def audience_has_connections(self, audience: str) -> bool:
        """Whether any connection receives ``audience`` now."""
        return self.audience_connections(audience) > 0

    def audience_connections(self, audience: str) -> int:
        """How many connections receive ``audience`` now."""
        with self._lock:
            aud = self._audiences.get_locked(audience)
            return aud.connection_count_locked() if aud else 0

    # -- publishing ----------------------------------------------------------------------

    def publish(self, envelope: Mapping[str, Any], audience: str) -> int | None:
        """Relay an upstream envelope to the connections of ``audience``; never blocks on one.

        ``JackpotUpdate`` envelopes (``data.id`` naming the instance) conflate per instance
        and become the audience's snapshot; every other envelope is kept in the audience's
        replay ring and is never dropped silently (see :mod:`.outbox`).

        :param envelope: a ThrillConnect envelope (``msg_type``, ``source``, ``msg_name``,
            ``data``, ...), JSON-serializable; the hub adds ``seq``.
        :param audience: :data:`BROADCAST` or a :func:`player_audience`.
        :returns: the ``seq`` assigned, or ``None`` when the hub is closed.
        :raises TypeError: the envelope is not JSON-serializable (nothing was recorded).
        """
        check_audience(audience)
        if not isinstance(envelope, Mapping):
            raise TypeError("envelope must be a mapping")
        route = route_of(envelope)
        conflation_key = conflation_key_of(envelope)
        with self._publish_lock:
            if self._closed:
                return None
            # Only publishers (holding the publish lock) advance seq.
            seq = self._seq + 1
            text = _encode(seq, envelope)
            key: OutboxKey = seq if conflation_key is None else conflation_key
            with self._lock:
                if self._closed:
                    return None
                self._seq = seq
                aud = self._audiences.fetch_locked(audience)
                record = Record(seq, self._clock(), route, key, text)
                if conflation_key is None:
                    aud.remember_locked(record)
                else:
                    aud.remember_latest_locked(conflation_key, record)
                recipients = aud.recipients_locked(route, self._members)
                self._published += 1
            counts = fan_out(recipients, key, text, self._on_ready)
            self._count(counts)
        return seq

    def set_upstream_status(self, status: UpstreamStatus) -> bool:
        """Tell every subscribed connection that the upstream stream is up or down.

        Delivers ``{"seq": n, "msg_type": "Message", "source": "relay", "msg_name":
        "RelayStatus", "data": {"upstream": status}}`` only when ``status`` differs from the
        current one; connections that have not subscribed yet get it with their first
        subscription, new ones in their connect-time status.

        :returns: whether the status changed.
        """
        if status not in _UPSTREAM_STATUSES:
            raise ValueError(f"upstream status must be one of {_UPSTREAM_STATUSES}")
        with self._publish_lock:
            if self._closed or status == self._upstream:
                return False
            seq = self._seq + 1
            text = _encode(seq, relay_status({"upstream": status}))
            with self._lock:
                self._seq = seq
                self._upstream = status
                self._status_record = Record(seq, self._clock(), UNFILTERED, _STATUS_KEY, text)
                if self._subscribed_groups is None:
                    self._subscribed_groups = group_by_lock(self._subscribed)
                recipients = self._subscribed_groups
                self._published += 1
            counts = fan_out(recipients, _STATUS_KEY, text, self._on_ready)
            self._count(counts)
        return True

    # -- lifecycle and figures -----------------------------------------------------------

    def close(self, code: int = CLOSE_GOING_AWAY) -> None:
        """Stop relaying: mark every connection for closing with ``code``, tell its consumer.

        Later :meth:`publish` calls are ignored and :meth:`connect` answers connections
        already marked with 1001. Connections stay registered until disconnected.
        """
        _check_close_code(code)
        with self._publish_lock, self._lock:
            self._closed = True
            connections = list(self._members)
        for conn in connections:
            if conn.mark_closed(code):
                self._on_ready(conn)
        logger.info("relay hub closed; %d connections told to close", len(connections))

    def stats(self) -> HubStats:
        """The hub's current figures."""
        with self._lock:
            player_counts = self._audiences.player_connection_counts_locked()
            return HubStats(
                connections=len(self._members),
                player_connections=sum(player_counts),
                player_audiences=len(player_counts),
                subscribed_connections=len(self._subscribed),
                published=self._published,
                deliveries=self._deliveries,
                conflated=self._conflated,
                overflow_closes=self._overflow_closes,
                seq=self._seq,
                upstream=self._upstream,
            )

    # -- internals (the *_locked ones need self._lock) -----------------------------------

    def _count(self, counts: tuple[int, int, int]) -> None:
        delivered, conflated, overflowed = counts
        with self._lock:
            self._deliveries += delivered
            self._conflated += conflated
            self._overflow_closes += overflowed

    def _subscription_batch_locked(
        self,
        conn: Connection,
        auds: list[Audience[Connection]],
        subscriptions: AbstractSet[Route],
        before: AbstractSet[Route],
    ) -> list[tuple[OutboxKey, str]]:
        """What a subscription change queues, in seq order (see the module docstring)."""
        now = self._clock()
        records: list[Record] = []
        if not before:  # the first subscription
            start = conn.start_seq
            if not all(aud.covers_locked(start, now) for aud in auds):
                # The ring lost messages after the start while the browser dawdled.
                gap = _encode(start, relay_status(self._status_data(resumed=False)))
                records.append(Record(start, now, UNFILTERED, _GAP_STATUS_KEY, gap))
            for aud in auds:
                records.extend(aud.replay_locked(start, subscriptions))
            status = self._status_record
            if status is not None and status.seq > start:
                records.append(status)
        for aud in auds:
            records.extend(aud.newly_covered_snapshot_locked(subscriptions, before))
        records.sort(key=lambda record: record.seq)
        return [(record.key, record.text) for record in records]

    def _status_data(self, resumed: bool | None) -> dict[str, Any]:
        data: dict[str, Any] = {"upstream": self._upstream, "relay_id": self.relay_id}
        if resumed is not None:
            data["resumed"] = resumed
        return data

    def _connect_status_locked(self, start: int, resumed: bool | None) -> str:
        # A reconnect storm shares one text per (start, upstream, resumed).
        cache_key = (start, self._upstream, resumed)
        cached = self._connect_status_cache
        if cached is not None and cached[0] == cache_key:
            return cached[1]
        text = _encode(start, relay_status(self._status_data(resumed)))
        self._connect_status_cache = (cache_key, text)
        return text

    def _dispatch_audience_changes(self) -> None:
        """Report player audiences' first/last connection, one call at a time, no lock held."""
        callback = self._on_player_audience
        with self._lock:
            if callback is None:
                self._audiences.drop_activity_reports_locked()
                return
            if self._dispatching:
                return  # the thread already dispatching will report ours too
            self._dispatching = True
        try:
            while True:
                with self._lock:
                    report = self._audiences.next_activity_report_locked()
                    if report is None:
                        self._dispatching = False
                        return
                player_id, active = report
                try:
                    callback(player_id, active)
                except Exception:
                    logger.exception("on_player_audience callback failed (active=%s)", active)
        except BaseException:
            with self._lock:
                self._dispatching = False
            raise
