"""The relay's fan-out hub: one upstream stream in, many browser connections out.

The upstream supervisor calls :meth:`RelayHub.publish` for every relayed event and
:meth:`RelayHub.set_upstream_status` when its stream goes up or down. The browser endpoint
calls :meth:`RelayHub.connect` for each browser and :meth:`Connection.subscribe` for its
``SubscribeRequest`` s, and finally :meth:`RelayHub.disconnect`. One consumer, the relay's
writer thread, empties every connection's outbox with :meth:`~.outbox.Outbox.drain`: the hub
tells it which connections have work through the ``on_ready`` callback. Pure Python: no
Flask, no sockets, no threads of its own.

The audiences (names, members, route caches, replay rings, snapshots) live in
:mod:`.audiences`, a browser's :class:`Connection` in :mod:`.connection`, the encoding, the
status texts, the figures and the resume/replay batches in :mod:`.replay`. None of them
takes the hub lock itself: every acquisition stays here, where the lock order can be checked
in one reading, which is why this module is longer than 500 lines. How the hub works, and
the decisions behind it:

**Encode once**, **seq and resume**, **external seq (cluster mode)** and **replay at
subscribe time**: see :mod:`.replay`, which holds the encoding, the status texts and the
resume and replay batches.

**Threads and locks.** ``_publish_lock`` serializes publishers, so every connection receives
messages in ``seq`` order; it is held while fanning out, during which the only foreign code
run is ``on_ready`` (which must be quick and never block). ``_lock`` guards the hub's state
(audiences, rings, subscriptions, counters) and is only ever held for bookkeeping; methods
that need it held end in ``_locked``, here, in :mod:`.audiences` and :mod:`.replay`. Each
outbox's (striped) lock guards that outbox. Order: publish lock, hub lock, outbox lock;
``on_ready`` and the audience callback run with no hub or outbox lock held.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from .. import metrics
from . import replay
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
    check_close_code,
    relay_status,
)
from .replay import Backfill, HubStats, UpstreamStatus

# BROADCAST, Connection and the audience names' functions are re-exported: other modules of
# the relay import them from here.
__all__ = [
    "BROADCAST",
    "CLOSE_SERVICE_RESTART",
    "Backfill",
    "Connection",
    "HubStats",
    "RelayHub",
    "UpstreamStatus",
    "audience_player_id",
    "player_audience",
]

logger = logging.getLogger("flask_thrillconnect.relay.hub")

#: The close code of a new epoch (:meth:`RelayHub.start_epoch`): reconnect, resume is gone.
CLOSE_SERVICE_RESTART: Final = 1012

# A bound on what a caller can make the hub hold.
_MAX_AUDIENCES_PER_CONNECTION: Final = 8
# Outbox locks are striped over this many locks (see the outbox module).
_LOCK_STRIPES: Final = 64


def _ignore(_connections: Sequence[Connection]) -> None:
    """The ``on_ready`` of a hub whose consumer polls (tests, benchmarks)."""


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
    :param on_ready: called with connections whose outboxes just gained work (they were
        empty) or that must now close; their consumer should drain them. Called once per
        publish with every such connection, from the publishing thread, with no hub or outbox
        lock held but with publishers waiting: it must be quick and never block (the relay's
        writer queues the connections and returns).
    :param on_published: called after each :meth:`publish` has filled the outboxes, from
        the publishing thread with no lock held; quick, never blocking. The relay's writer
        tells a burst's end by it.
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
        on_ready: Callable[[Sequence[Connection]], None] | None = None,
        on_published: Callable[[], None] | None = None,
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
        self._on_published = on_published
        self._on_player_audience = on_player_audience
        self._clock = clock
        #: Identifies this hub's ``seq`` space; a ``since`` is honoured only with it.
        self.relay_id: str = secrets.token_urlsafe(12)
        self._limits = AudienceLimits(replay_limit, replay_max_age, snapshot_limit)
        self._max_audiences = max_audiences
        # External seq (see start_epoch): the epoch's first seq, below which no ring reaches.
        self._external = False
        self._floor = 0
        self._local_keys = 0
        # Resumes completed from the event stream, until the connection's first subscribe.
        self._backfills: dict[Connection, tuple[int, list[Record]]] = {}

        self._publish_lock = threading.Lock()
        self._lock = threading.Lock()
        self._closed = False
        self._seq = 0
        self._upstream: UpstreamStatus = "reconnecting"
        self._status_record: Record | None = None
        self._connect_status = replay.ConnectStatusTexts()
        self._audiences: AudienceTable[Connection] = AudienceTable(self._limits, max_audiences)
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
        self,
        audiences: Iterable[str],
        *,
        since: int | None = None,
        relay_id: str | None = None,
        backfill: Backfill | None = None,
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
        :param backfill: in external-seq mode, ``(upto, entries)``: every event after
            ``since`` up to ``upto`` (from the cluster's event stream). When the rings do not
            reach back to ``since`` but hold everything after ``upto``, ``since`` is honoured
            with the entries of the connection's audiences (conflatable ones are left to the
            snapshot), replayed at its first subscription.
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
                    resumed = self._resumable_locked(auds, since, relay_id, now)
                    if not resumed and backfill is not None and relay_id == self.relay_id:
                        resumed = self._backfill_locked(conn, auds, since, backfill, now)
                    if resumed:
                        start = since
                conn.start_seq, conn.resumed = start, resumed
                conn.told_upstream = self._upstream
                self._members[conn] = set()
                text = self._connect_status.text(start, self._upstream, self.relay_id, resumed)
                conn.enqueue(((replay.CONNECT_STATUS_KEY, text),))
                self._deliveries += 1
        if closed:
            # Never registered: subscribe and disconnect ignore it.
            conn.mark_closed(CLOSE_GOING_AWAY)
        else:
            self._dispatch_audience_changes()
        self._on_ready((conn,))
        return conn

    def can_resume(self, audiences: Iterable[str], since: int, relay_id: str | None) -> bool:
        """Whether :meth:`connect` would honour ``since`` now without a backfill."""
        with self._lock:
            now = self._clock()
            auds = [aud for name in audiences if (aud := self._audiences.get_locked(name))]
            return bool(auds) and self._resumable_locked(auds, since, relay_id, now)

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
            batch = replay.subscription_batch_locked(
                conn.start_seq,
                auds,
                subscriptions,
                before,
                now=self._clock(),
                backfill=None if before else self._backfills.pop(conn, None),
                status_record=self._status_record,
                upstream=self._upstream,
                told_upstream=conn.told_upstream,
                relay_id=self.relay_id,
            )
            if not before:
                self._subscribed[conn] = None
                self._subscribed_groups = None
            ready, overflowed = conn.enqueue(batch)
            if overflowed:
                self._overflow_closes += 1
            else:
                self._deliveries += len(batch)
        if ready:
            self._on_ready((conn,))

    def subscriptions_of(self, conn: Connection) -> frozenset[Route]:
        """What ``conn`` subscribed to so far (nothing once disconnected)."""
        with self._lock:
            return frozenset(self._members.get(conn, ()))

    def close_connection(self, conn: Connection, code: int) -> None:
        """Ask ``conn``'s consumer to close it with ``code`` (1008 for a flood, say).

        What waits in its outbox is dropped; the first code asked for wins. It stays
        registered until :meth:`disconnect`.
        """
        check_close_code(code)
        if conn.mark_closed(code):
            self._on_ready((conn,))

    def disconnect(self, conn: Connection) -> None:
        """Remove ``conn`` from the hub (idempotent); marks it with 1000 if not yet marked."""
        with self._lock:
            subscriptions = self._members.pop(conn, None)
            self._backfills.pop(conn, None)
            if subscriptions is None:
                return
            for name in conn.audiences:
                self._audiences.leave_locked(name, conn, subscribed=bool(subscriptions))
            if subscriptions:
                del self._subscribed[conn]
                self._subscribed_groups = None
        if conn.mark_closed(CLOSE_NORMAL):
            self._on_ready((conn,))
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

    def publish(
        self, envelope: Mapping[str, Any], audience: str, *, seq: int | None = None
    ) -> int | None:
        """Relay an upstream envelope to the connections of ``audience``; never blocks on one.

        ``JackpotUpdate`` envelopes (``data.id`` naming the instance) conflate per instance
        and become the audience's snapshot; every other envelope is kept in the audience's
        replay ring and is never dropped silently (see :mod:`.outbox`).

        :param envelope: a ThrillConnect envelope (``msg_type``, ``source``, ``msg_name``,
            ``data``, ...), JSON-serializable; the hub adds ``seq``.
        :param audience: :data:`BROADCAST` or a :func:`player_audience`.
        :param seq: the event's ``seq`` from outside (external-seq mode, see
            :meth:`start_epoch`); it must be larger than :attr:`last_seq`, else the event is
            ignored. Without it, the next ``seq`` (external-seq mode: the last one).
        :returns: the ``seq`` assigned, or ``None`` when the hub is closed or ``seq`` was
            not larger than the last.
        :raises TypeError: the envelope is not JSON-serializable (nothing was recorded).
        """
        check_audience(audience)
        if not isinstance(envelope, Mapping):
            raise TypeError("envelope must be a mapping")
        if seq is not None and (type(seq) is not int or seq < 0):
            raise ValueError("seq must be an int >= 0")
        route = route_of(envelope)
        conflation_key = conflation_key_of(envelope)
        with self._publish_lock:
            if self._closed:
                return None
            # Only publishers (holding the publish lock) advance seq.
            key: OutboxKey
            if seq is not None:
                if seq <= self._seq:
                    return None
                key = seq
            elif self._external:
                # Never a seq a later stream entry will carry; a key of its own (negative,
                # so it is never conflated with the stream entry of the same seq).
                seq = self._seq
                self._local_keys += 1
                key = -self._local_keys
            else:
                seq = key = self._seq + 1
            if conflation_key is not None:
                key = conflation_key
            text = replay.encode(seq, envelope)
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
            metrics.relay_published(envelope, text)
            counts = fan_out(recipients, key, text, self._on_ready)
            self._count(counts)
        if self._on_published is not None:
            self._on_published()
        return seq

    def set_upstream_status(self, status: UpstreamStatus) -> bool:
        """Tell every subscribed connection that the upstream stream is up or down.

        Delivers ``{"seq": n, "msg_type": "Message", "source": "relay", "msg_name":
        "RelayStatus", "data": {"upstream": status}}`` only when ``status`` differs from the
        current one; connections that have not subscribed yet get it with their first
        subscription, new ones in their connect-time status.

        :returns: whether the status changed.
        """
        if status not in replay.UPSTREAM_STATUSES:
            raise ValueError(f"upstream status must be one of {replay.UPSTREAM_STATUSES}")
        with self._publish_lock:
            if self._closed or status == self._upstream:
                return False
            # External-seq mode: the last seq, never one a later stream entry will carry.
            seq = self._seq if self._external else self._seq + 1
            text = replay.encode(seq, relay_status({"upstream": status}))
            with self._lock:
                self._seq = seq
                self._upstream = status
                record = Record(seq, self._clock(), UNFILTERED, replay.STATUS_KEY, text)
                self._status_record = record
                if self._subscribed_groups is None:
                    self._subscribed_groups = group_by_lock(self._subscribed)
                recipients = self._subscribed_groups
                self._published += 1
            counts = fan_out(recipients, replay.STATUS_KEY, text, self._on_ready)
            self._count(counts)
        return True

    # -- epochs (cluster mode) ----------------------------------------------------------

    def start_epoch(self, relay_id: str, seq: int, *, external: bool = True) -> None:
        """Start a new ``seq`` space: ``relay_id`` and the last ``seq`` become these.

        The rings and snapshots are cleared and every connection is closed with
        :data:`CLOSE_SERVICE_RESTART` (1012): the browsers reconnect, and a ``since`` of the
        old space gets ``"resumed": false``. With ``external`` (cluster mode),
        :meth:`publish` is then given each event's ``seq``, and the hub's own messages take
        the last ``seq`` (see the module docstring); without it, the hub numbers events
        itself again, from ``seq`` on.
        """
        if not isinstance(relay_id, str) or not relay_id:
            raise ValueError("relay_id must be a non-empty string")
        if type(seq) is not int or seq < 0:
            raise ValueError("seq must be an int >= 0")
        with self._publish_lock:
            with self._lock:
                if self._closed:
                    return
                connections = list(self._members.items())
                for conn, subscriptions in connections:
                    for name in conn.audiences:
                        self._audiences.leave_locked(name, conn, subscribed=bool(subscriptions))
                self._members.clear()
                self._subscribed.clear()
                self._subscribed_groups = ()
                self._backfills.clear()
            # Report the players who left before their audiences are forgotten.
            self._dispatch_audience_changes()
            with self._lock:
                self._audiences = AudienceTable(self._limits, self._max_audiences)
                self.relay_id = relay_id
                self._seq = self._floor = seq
                self._external = external
                self._status_record = None
                self._connect_status.clear()
        for conn, _ in connections:
            if conn.mark_closed(CLOSE_SERVICE_RESTART):
                self._on_ready((conn,))
        logger.info("relay hub: new epoch; %d connections told to reconnect", len(connections))

    # -- lifecycle and figures -----------------------------------------------------------

    def close(self, code: int = CLOSE_GOING_AWAY) -> None:
        """Stop relaying: mark every connection for closing with ``code``, tell its consumer.

        Later :meth:`publish` calls are ignored and :meth:`connect` answers connections
        already marked with 1001. Connections stay registered until disconnected.
        """
        check_close_code(code)
        with self._publish_lock, self._lock:
            self._closed = True
            connections = list(self._members)
        for conn in connections:
            if conn.mark_closed(code):
                self._on_ready((conn,))
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

    def _resumable_locked(
        self, auds: list[Audience[Connection]], since: int, relay_id: str | None, now: float
    ) -> bool:
        return (
            relay_id == self.relay_id
            and self._floor <= since <= self._seq
            and all(aud.covers_locked(since, now) for aud in auds)
        )

    def _backfill_locked(
        self,
        conn: Connection,
        auds: list[Audience[Connection]],
        since: int,
        backfill: Backfill,
        now: float,
    ) -> bool:
        """Keep ``backfill`` for ``conn`` if it joins the rings; returns whether it does."""
        upto, floor = backfill[0], self._floor
        if not (self._external and replay.backfill_joins_locked(auds, since, upto, floor, now)):
            return False
        records = replay.backfill_records(conn.audiences, since, backfill, now)
        self._backfills[conn] = (upto, records)
        return True

    def _count(self, counts: tuple[int, int, int]) -> None:
        delivered, conflated, overflowed = counts
        with self._lock:
            self._deliveries += delivered
            self._conflated += conflated
            self._overflow_closes += overflowed

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
