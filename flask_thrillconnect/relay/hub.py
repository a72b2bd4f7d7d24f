"""The relay's fan-out hub: one upstream stream in, many browser connections out.

The upstream supervisor calls :meth:`RelayHub.publish` for every relayed event and
:meth:`RelayHub.set_upstream_status` when its stream goes up or down; the browser endpoint
calls :meth:`RelayHub.connect`, then :meth:`Connection.subscribe
<flask_thrillconnect.relay.outbox.Connection.subscribe>`, :meth:`~.Connection.wait` and
:meth:`~.Connection.drain` from the browser's own thread, and finally
:meth:`RelayHub.disconnect`. Pure Python: no Flask, no sockets.

How it works, and the decisions behind it:

**Audiences.** :data:`BROADCAST` carries the brand's broadcasts (envelope ``player_id`` null);
``player:<id>`` (:func:`player_audience`) carries the events targeted at one player. An
anonymous browser joins ``BROADCAST``; a player's browser joins ``BROADCAST`` and its own
player audience.

**Encode once.** :meth:`~RelayHub.publish` stamps the envelope with the next hub-wide
``seq`` (the first key of the object) and serializes it to compact JSON once; that very
``str`` object is appended to the outbox of every matching connection.

**Routing.** Each audience caches, per ``(source, msg_name)``, the tuple of its connections
whose subscriptions match; a subscription change or a departure invalidates that audience's
cache. Envelopes whose ``msg_type`` is not ``Event`` (``Message``/``Error`` answers) bypass the
subscription filter. Connections that have not subscribed yet receive nothing but their
connect-time ``RelayStatus`` (what they miss meanwhile is queued at their first subscription,
see below).

**Seq and resume.** ``seq`` increases hub-wide, so each connection sees increasing, gapped
values. A browser resumes with ``since`` = the highest ``seq`` it has seen, *together with*
the hub's :attr:`~RelayHub.relay_id` (sent in every connect-time ``RelayStatus``): a ``seq``
from another process or an earlier hub means nothing here. Each audience keeps a ring of its
recent non-conflatable messages (bounded by count and age); ``since`` is honoured when the
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
run is ``threading.Event.set``. ``_lock`` guards the hub's state (audiences, rings,
subscriptions, counters) and is only ever held for bookkeeping; each connection's own lock
guards its outbox. Order: publish lock, hub lock, connection lock. The audience callback runs
with no lock held.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Final, Literal

from .outbox import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    Connection,
    LockGroups,
    OutboxKey,
    fan_out,
    group_by_lock,
)

__all__ = [
    "BROADCAST",
    "HubStats",
    "RelayHub",
    "UpstreamStatus",
    "audience_player_id",
    "player_audience",
]

logger = logging.getLogger("flask_thrillconnect.relay.hub")

#: The audience of the brand's broadcasts; every browser connection joins it.
BROADCAST: Final = "broadcast"
_PLAYER_PREFIX: Final = "player:"

#: What :meth:`RelayHub.set_upstream_status` accepts.
UpstreamStatus = Literal["connected", "reconnecting"]
_UPSTREAM_STATUSES: Final = ("connected", "reconnecting")

# Outbox keys of relay-level messages. A newer live status replaces a waiting one; the
# connect-time status (relay_id, resumed) and a gap notice are never replaced by it.
_STATUS_KEY: Final = "relay:status"
_CONNECT_STATUS_KEY: Final = "relay:connect"
_GAP_STATUS_KEY: Final = "relay:gap"
# Route-cache key of messages that bypass the subscription filter (Message/Error answers).
_UNFILTERED: Final = ("", "")
# Bounds on what a caller can make the hub hold.
_MAX_AUDIENCES_PER_CONNECTION: Final = 8
_MAX_NAME_LENGTH: Final = 128
_MAX_ROUTES_PER_AUDIENCE: Final = 256
# Outbox locks are striped over this many locks (see the outbox module).
_LOCK_STRIPES: Final = 64


def player_audience(player_id: str) -> str:
    """The audience of the events ThrillConnect targets at ``player_id``."""
    if not player_id or not isinstance(player_id, str):
        raise ValueError("player_id must be a non-empty string")
    return _PLAYER_PREFIX + player_id


def audience_player_id(audience: str) -> str | None:
    """The player id of a player audience, ``None`` for :data:`BROADCAST`."""
    if audience.startswith(_PLAYER_PREFIX):
        return audience[len(_PLAYER_PREFIX) :]
    return None


def _check_audience(audience: object) -> str:
    if not isinstance(audience, str) or not (
        audience == BROADCAST
        or (audience.startswith(_PLAYER_PREFIX) and len(audience) > len(_PLAYER_PREFIX))
    ):
        raise ValueError(f"not an audience: {audience!r}")
    if len(audience) > _MAX_NAME_LENGTH + len(_PLAYER_PREFIX):
        raise ValueError("audience name too long")
    return audience


def _conflation_key(envelope: Mapping[str, Any]) -> str | None:
    """``jackpot:<instance id>`` for a JackpotUpdate (conflatable), else ``None``."""
    if envelope.get("msg_name") != "JackpotUpdate" or envelope.get("source") != "thrillpots":
        return None
    data = envelope.get("data")
    instance_id = data.get("id") if isinstance(data, Mapping) else None
    return f"jackpot:{instance_id}" if isinstance(instance_id, str) and instance_id else None


def _encode(seq: int, envelope: Mapping[str, Any]) -> str:
    body = {"seq": seq, **envelope}
    body["seq"] = seq  # an envelope's own "seq" never wins; ours stays the first key
    return json.dumps(body, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class _Record:
    """One published message as the hub remembers it (shared by rings and snapshots)."""

    seq: int
    at: float
    route: tuple[str, str]  # (source, msg_name), or _UNFILTERED
    key: OutboxKey  # the seq, or the conflation key
    text: str


class _Audience:
    """The connections, route cache, replay ring and snapshot of one audience."""

    __slots__ = ("evicted_upto", "members", "name", "newest_seq", "ring", "routes", "snapshot")

    def __init__(self, name: str, evicted_upto: int) -> None:
        self.name = name
        self.members: dict[Connection, None] = {}
        self.routes: dict[tuple[str, str], LockGroups] = {}
        self.ring: deque[_Record] = deque()
        # The highest seq that left the ring: a `since` below it cannot be replayed.
        self.evicted_upto = evicted_upto
        self.newest_seq = evicted_upto
        self.snapshot: dict[str, _Record] = {}


def _accepts(subscriptions: AbstractSet[tuple[str, str]], route: tuple[str, str]) -> bool:
    return route == _UNFILTERED or route in subscriptions or (route[0], "*") in subscriptions


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
        outbox_limit: int = 1000,
        replay_limit: int = 500,
        replay_max_age: float = 120.0,
        snapshot_limit: int = 1000,
        max_audiences: int = 10_000,
        max_subscriptions: int = 64,
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
        self._replay_limit = replay_limit
        self._replay_max_age = replay_max_age
        self._snapshot_limit = snapshot_limit
        self._max_audiences = max_audiences
        self._max_subscriptions = max_subscriptions
        self._on_player_audience = on_player_audience
        self._clock = clock
        #: Identifies this hub's ``seq`` space; a ``since`` is honoured only with it.
        self.relay_id: Final[str] = secrets.token_urlsafe(12)

        self._publish_lock = threading.Lock()
        self._lock = threading.Lock()
        self._closed = False
        self._seq = 0
        self._upstream: UpstreamStatus = "reconnecting"
        self._status_record: _Record | None = None
        self._connect_status_cache: tuple[tuple[int, str, bool | None], str] | None = None
        self._audiences: dict[str, _Audience] = {BROADCAST: _Audience(BROADCAST, 0)}
        # Player audiences without connections, least recently used first.
        self._idle: OrderedDict[str, None] = OrderedDict()
        # The highest seq of any forgotten audience: the floor of a new audience's ring.
        self._forgotten_upto = 0
        self._connections: dict[Connection, None] = {}
        self._subscribed: dict[Connection, None] = {}
        self._subscribed_groups: LockGroups | None = ()
        self._stripes = [threading.Lock() for _ in range(_LOCK_STRIPES)]
        self._next_stripe = 0
        # Player audience callbacks: players to re-check, and the state last reported.
        self._audience_changes: OrderedDict[str, None] = OrderedDict()
        self._reported_active: set[str] = set()
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
        wake_event: threading.Event | None = None,
    ) -> Connection:
        """Register a browser connection and queue its connect-time ``RelayStatus``.

        The status is ``{"msg_type": "Message", "source": "relay", "msg_name":
        "RelayStatus", "data": {"upstream": ..., "relay_id": ...}, "seq": start}``, with
        ``"resumed": true | false`` in ``data`` when ``since`` was given; its ``seq`` is the
        connection's :attr:`~.Connection.start_seq`.

        :param audiences: :data:`BROADCAST`, plus :func:`player_audience` for a logged-in
            player.
        :param since: the highest ``seq`` the browser saw on its previous connection.
        :param relay_id: the ``relay_id`` that came with it; ``since`` is honoured only when
            it equals :attr:`relay_id` and the rings still hold every message after it.
        :param wake_event: an event to sleep on instead of a private one, e.g.
            simple-websocket's ``ws.event``, which its reader sets when the browser sends
            something: one thread then waits for both. See :meth:`.Connection.wait`.
        :returns: the connection; if the hub is closed, one already marked with 1001.
        """
        names = frozenset(_check_audience(a) for a in audiences)
        if not names or len(names) > _MAX_AUDIENCES_PER_CONNECTION:
            raise ValueError(f"between 1 and {_MAX_AUDIENCES_PER_CONNECTION} audiences")
        if since is not None and (type(since) is not int or since < 0):
            raise ValueError("since must be an int >= 0")
        with self._lock:
            lock = self._stripes[self._next_stripe]
            self._next_stripe = (self._next_stripe + 1) % _LOCK_STRIPES
        conn = Connection(self, names, lock=lock, limit=self._outbox_limit, wake_event=wake_event)
        with self._lock:
            if self._closed:
                closed = True
            else:
                closed = False
                now = self._clock()
                auds = []
                for name in names:
                    # Joined at once, so that fetching the next audience cannot forget it.
                    aud = self._audience_locked(name)
                    self._join_locked(aud, conn)
                    auds.append(aud)
                start, resumed = self._seq, None
                if since is not None:
                    resumed = (
                        relay_id == self.relay_id
                        and since <= self._seq
                        and all(self._covers_locked(aud, since, now) for aud in auds)
                    )
                    if resumed:
                        start = since
                conn.start_seq, conn.resumed = start, resumed
                self._connections[conn] = None
                status = self._connect_status_locked(start, resumed)
                conn._enqueue_batch(((_CONNECT_STATUS_KEY, status),))
                self._deliveries += 1
        if closed:
            conn._gone = True
            conn._mark_closed(CLOSE_GOING_AWAY)
            return conn
        self._dispatch_audience_changes()
        return conn

    def subscribe(self, conn: Connection, events: Iterable[tuple[str, str]]) -> None:
        """Add ``(source, event_type)`` subscriptions to ``conn`` and queue what they cover.

        Same as :meth:`.Connection.subscribe`, which documents what is queued.

        :raises ValueError: a malformed pair or too many subscriptions.
        """
        pairs: list[tuple[str, str]] = []
        for pair in events:
            if not (
                isinstance(pair, tuple)
                and len(pair) == 2
                and all(isinstance(p, str) and 0 < len(p) <= _MAX_NAME_LENGTH for p in pair)
            ):
                raise ValueError(f"not a (source, event_type) pair: {pair!r}")
            pairs.append(pair)
            if len(pairs) > self._max_subscriptions:
                raise ValueError(f"at most {self._max_subscriptions} subscriptions")
        with self._lock:
            if conn._gone or conn.close_code is not None:
                return
            before = frozenset(conn._subscriptions)
            new = set(pairs) - before
            if not new:
                return
            if len(before) + len(new) > self._max_subscriptions:
                raise ValueError(f"at most {self._max_subscriptions} subscriptions")
            conn._subscriptions.update(new)
            auds = [self._audiences[name] for name in conn.audiences]
            for aud in auds:
                aud.routes.clear()
            batch = self._subscription_batch_locked(conn, auds, before)
            if not conn._subscribed:
                conn._subscribed = True
                self._subscribed[conn] = None
                self._subscribed_groups = None
            if conn._enqueue_batch(batch):
                self._overflow_closes += 1
            else:
                self._deliveries += len(batch)

    def disconnect(self, conn: Connection) -> None:
        """Remove ``conn`` from the hub (idempotent); marks it with 1000 if not yet marked."""
        with self._lock:
            if conn._gone:
                return
            conn._gone = True
            for name in conn.audiences:
                aud = self._audiences[name]
                del aud.members[conn]
                if conn._subscribed:
                    aud.routes.clear()
                if not aud.members and name != BROADCAST:
                    self._idle[name] = None
                    self._audience_changes[name] = None
            del self._connections[conn]
            if conn._subscribed:
                del self._subscribed[conn]
                self._subscribed_groups = None
        conn._mark_closed(CLOSE_NORMAL)
        self._dispatch_audience_changes()

    def audience_has_connections(self, audience: str) -> bool:
        """Whether any connection receives ``audience`` now."""
        with self._lock:
            aud = self._audiences.get(audience)
            return bool(aud and aud.members)

    def audience_connections(self, audience: str) -> int:
        """How many connections receive ``audience`` now."""
        with self._lock:
            aud = self._audiences.get(audience)
            return len(aud.members) if aud else 0

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
        _check_audience(audience)
        if not isinstance(envelope, Mapping):
            raise TypeError("envelope must be a mapping")
        if envelope.get("msg_type", "Event") == "Event":
            route = (str(envelope.get("source")), str(envelope.get("msg_name")))
        else:
            route = _UNFILTERED
        conflation_key = _conflation_key(envelope)
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
                aud = self._audience_locked(audience)
                record = _Record(seq, self._clock(), route, key, text)
                if conflation_key is None:
                    self._remember_locked(aud, record)
                else:
                    aud.snapshot.pop(conflation_key, None)
                    aud.snapshot[conflation_key] = record
                    if len(aud.snapshot) > self._snapshot_limit:
                        del aud.snapshot[next(iter(aud.snapshot))]
                recipients = self._routes_locked(aud, route)
                self._published += 1
            counts = fan_out(recipients, key, text)
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
            text = _encode(seq, _relay_status({"upstream": status}))
            with self._lock:
                self._seq = seq
                self._upstream = status
                self._status_record = _Record(seq, self._clock(), _UNFILTERED, _STATUS_KEY, text)
                if self._subscribed_groups is None:
                    self._subscribed_groups = group_by_lock(self._subscribed)
                recipients = self._subscribed_groups
                self._published += 1
            counts = fan_out(recipients, _STATUS_KEY, text)
            self._count(counts)
        return True

    # -- lifecycle and figures -----------------------------------------------------------

    def close(self, code: int = CLOSE_GOING_AWAY) -> None:
        """Stop relaying: mark every connection for closing with ``code`` and wake its sender.

        Later :meth:`publish` calls are ignored and :meth:`connect` answers connections
        already marked with 1001. Connections stay registered until disconnected.
        """
        if type(code) is not int or not 1000 <= code <= 4999:
            raise ValueError("code must be a WebSocket close code (1000-4999)")
        with self._publish_lock, self._lock:
            self._closed = True
            connections = list(self._connections)
        for conn in connections:
            conn._mark_closed(code)
        logger.info("relay hub closed; %d connections told to close", len(connections))

    def stats(self) -> HubStats:
        """The hub's current figures."""
        with self._lock:
            players = [
                aud for name, aud in self._audiences.items() if name != BROADCAST and aud.members
            ]
            return HubStats(
                connections=len(self._connections),
                player_connections=sum(len(aud.members) for aud in players),
                player_audiences=len(players),
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

    def _audience_locked(self, name: str) -> _Audience:
        aud = self._audiences.get(name)
        if aud is not None:
            if name in self._idle:
                self._idle.move_to_end(name)
            return aud
        # Make room first, so the new audience itself is never the one forgotten.
        while len(self._audiences) >= self._max_audiences and self._idle:
            oldest, _ = self._idle.popitem(last=False)
            forgotten = self._audiences.pop(oldest)
            self._forgotten_upto = max(self._forgotten_upto, forgotten.newest_seq)
        aud = self._audiences[name] = _Audience(name, self._forgotten_upto)
        self._idle[name] = None
        return aud

    def _join_locked(self, aud: _Audience, conn: Connection) -> None:
        if not aud.members and aud.name != BROADCAST:
            self._idle.pop(aud.name, None)
            self._audience_changes[aud.name] = None
        aud.members[conn] = None

    def _remember_locked(self, aud: _Audience, record: _Record) -> None:
        ring = aud.ring
        ring.append(record)
        aud.newest_seq = record.seq
        while len(ring) > self._replay_limit:
            aud.evicted_upto = ring.popleft().seq
        self._expire_locked(aud, record.at)

    def _expire_locked(self, aud: _Audience, now: float) -> None:
        ring, oldest_kept = aud.ring, now - self._replay_max_age
        while ring and ring[0].at < oldest_kept:
            aud.evicted_upto = ring.popleft().seq

    def _covers_locked(self, aud: _Audience, since: int, now: float) -> bool:
        self._expire_locked(aud, now)
        return since >= aud.evicted_upto

    def _routes_locked(self, aud: _Audience, route: tuple[str, str]) -> LockGroups:
        recipients = aud.routes.get(route)
        if recipients is None:
            if len(aud.routes) >= _MAX_ROUTES_PER_AUDIENCE:
                aud.routes.clear()
            recipients = aud.routes[route] = group_by_lock(
                conn
                for conn in aud.members
                if conn._subscribed and _accepts(conn._subscriptions, route)
            )
        return recipients

    def _subscription_batch_locked(
        self, conn: Connection, auds: list[_Audience], before: frozenset[tuple[str, str]]
    ) -> list[tuple[OutboxKey, str]]:
        """What a subscription change queues, in seq order (see the module docstring)."""
        now = self._clock()
        subscriptions = conn._subscriptions
        records: list[_Record] = []
        if not conn._subscribed:
            start = conn.start_seq
            if not all(self._covers_locked(aud, start, now) for aud in auds):
                # The ring lost messages after the start while the browser dawdled.
                gap = _encode(start, _relay_status(self._status_data(resumed=False)))
                records.append(_Record(start, now, _UNFILTERED, _GAP_STATUS_KEY, gap))
            for aud in auds:
                for record in reversed(aud.ring):
                    if record.seq <= start:
                        break
                    if _accepts(subscriptions, record.route):
                        records.append(record)
            status = self._status_record
            if status is not None and status.seq > start:
                records.append(status)
        for aud in auds:
            records.extend(
                record
                for record in aud.snapshot.values()
                if _accepts(subscriptions, record.route) and not _accepts(before, record.route)
            )
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
        text = _encode(start, _relay_status(self._status_data(resumed)))
        self._connect_status_cache = (cache_key, text)
        return text

    def _dispatch_audience_changes(self) -> None:
        """Report player audiences' first/last connection, one call at a time, no lock held."""
        callback = self._on_player_audience
        with self._lock:
            if callback is None:
                self._audience_changes.clear()
                return
            if self._dispatching:
                return  # the thread already dispatching will report ours too
            self._dispatching = True
        try:
            while True:
                with self._lock:
                    if not self._audience_changes:
                        self._dispatching = False
                        return
                    name, _ = self._audience_changes.popitem(last=False)
                    aud = self._audiences.get(name)
                    active = bool(aud and aud.members)
                    if active == (name in self._reported_active):
                        continue
                    if active:
                        self._reported_active.add(name)
                    else:
                        self._reported_active.discard(name)
                try:
                    callback(name[len(_PLAYER_PREFIX) :], active)
                except Exception:
                    logger.exception("on_player_audience callback failed (active=%s)", active)
        except BaseException:
            with self._lock:
                self._dispatching = False
            raise


def _relay_status(data: dict[str, Any]) -> dict[str, Any]:
    return {"msg_type": "Message", "source": "relay", "msg_name": "RelayStatus", "data": data}
