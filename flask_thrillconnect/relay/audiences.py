"""Audiences: who receives a published message, and what each audience remembers.

**Names.** :data:`BROADCAST` carries the brand's broadcasts (envelope ``player_id`` null);
``player:<id>`` (:func:`player_audience`) carries the events targeted at one player. An
anonymous browser joins ``BROADCAST``; a player's browser joins ``BROADCAST`` and its own
player audience.

**Routing.** Each audience caches, per ``(source, msg_name)``, the connections among its
members whose subscriptions match, grouped by outbox lock for :func:`~.outbox.fan_out`; a
subscription change or a departure invalidates that audience's cache. Envelopes whose
``msg_type`` is not ``Event`` (``Message``/``Error`` answers) have the route
:data:`UNFILTERED` and bypass the subscription filter. Connections that have not subscribed
yet receive nothing but their connect-time ``RelayStatus`` (what they miss meanwhile is queued
at their first subscription, see :mod:`.hub`).

**Rings and snapshots.** Each audience keeps a ring of its recent non-conflatable messages,
bounded by count and age, for the ``since`` replay: the ring *covers* a ``since`` while no
message after it has left the ring. It also keeps the latest ``JackpotUpdate`` of each
instance (the snapshot), bounded by count, oldest forgotten first.

**Forgetting.** :class:`AudienceTable` remembers a bounded number of audiences; when a new one
needs room, the least recently used player audiences without connections are forgotten
first. A new audience's ring starts as if it had evicted everything up to the newest ``seq``
of any forgotten one, so a ``since`` that needed a forgotten audience is not honoured.

**Locking.** Nothing here takes a lock: these objects are the hub's state, guarded by the hub
lock (see "Threads and locks" in :mod:`.hub`). Every method whose name ends in ``_locked``
must be called with that lock held.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from .outbox import LockGroups, Outbox, OutboxKey, group_by_lock

__all__ = [
    "BROADCAST",
    "UNFILTERED",
    "Audience",
    "AudienceLimits",
    "AudienceTable",
    "Record",
    "Route",
    "audience_player_id",
    "check_audience",
    "check_subscription",
    "conflation_key_of",
    "player_audience",
    "route_of",
    "subscriptions_accept",
]

#: The audience of the brand's broadcasts; every browser connection joins it.
BROADCAST: Final = "broadcast"
_PLAYER_PREFIX: Final = "player:"
#: ``(source, msg_name)`` of a published event; in a subscription, ``msg_name`` may be ``*``
#: (every event of that source).
Route = tuple[str, str]
#: The route of messages that bypass the subscription filter (``Message``/``Error`` answers).
UNFILTERED: Final[Route] = ("", "")
# Bounds on what a caller can make the hub hold.
_MAX_NAME_LENGTH: Final = 128
_MAX_ROUTES_PER_AUDIENCE: Final = 256
_C = TypeVar("_C", bound=Outbox)


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


def check_audience(audience: object) -> str:
    """``audience`` if it names an audience; else :class:`ValueError`."""
    if not isinstance(audience, str) or not (
        audience == BROADCAST
        or (audience.startswith(_PLAYER_PREFIX) and len(audience) > len(_PLAYER_PREFIX))
    ):
        raise ValueError(f"not an audience: {audience!r}")
    if len(audience) > _MAX_NAME_LENGTH + len(_PLAYER_PREFIX):
        raise ValueError("audience name too long")
    return audience


def check_subscription(pair: object) -> Route:
    """``pair`` if it is a ``(source, event_type)`` subscription; else :class:`ValueError`."""
    if not (
        isinstance(pair, tuple)
        and len(pair) == 2
        and all(isinstance(p, str) and 0 < len(p) <= _MAX_NAME_LENGTH for p in pair)
    ):
        raise ValueError(f"not a (source, event_type) pair: {pair!r}")
    return pair


def route_of(envelope: Mapping[str, Any]) -> Route:
    """``(source, msg_name)`` for an ``Event`` envelope, :data:`UNFILTERED` for the others."""
    if envelope.get("msg_type", "Event") == "Event":
        return (str(envelope.get("source")), str(envelope.get("msg_name")))
    return UNFILTERED


def conflation_key_of(envelope: Mapping[str, Any]) -> str | None:
    """``jackpot:<instance id>`` for a JackpotUpdate (conflatable: snapshot), else ``None``."""
    if envelope.get("msg_name") != "JackpotUpdate" or envelope.get("source") != "thrillpots":
        return None
    data = envelope.get("data")
    instance_id = data.get("id") if isinstance(data, Mapping) else None
    return f"jackpot:{instance_id}" if isinstance(instance_id, str) and instance_id else None


def subscriptions_accept(subscriptions: AbstractSet[Route], route: Route) -> bool:
    """Whether a connection with ``subscriptions`` receives messages of ``route``."""
    return route == UNFILTERED or route in subscriptions or (route[0], "*") in subscriptions


@dataclass(frozen=True, slots=True)
class Record:
    """One published message as the hub remembers it (shared by rings and snapshots)."""

    seq: int
    at: float  # the hub's clock when it was published
    route: Route
    key: OutboxKey  # the seq, or the conflation key
    text: str


@dataclass(frozen=True, slots=True)
class AudienceLimits:
    """What each audience may remember (the hub's parameters of the same names)."""

    replay_limit: int
    replay_max_age: float
    snapshot_limit: int


class Audience(Generic[_C]):
    """The connections, route cache, replay ring and snapshot of one audience.

    Made by :class:`AudienceTable`. Apart from :attr:`name`, its state is guarded by the hub
    lock: every method needs it (hence their ``_locked`` suffix).
    """

    __slots__ = (
        "_evicted_upto",
        "_limits",
        "_members",
        "_newest_seq",
        "_ring",
        "_routes",
        "_snapshot",
        "name",
    )

    def __init__(self, name: str, evicted_upto: int, limits: AudienceLimits) -> None:
        self.name: Final = name
        self._limits = limits
        self._members: dict[_C, None] = {}
        self._routes: dict[Route, LockGroups[_C]] = {}
        self._ring: deque[Record] = deque()
        # The highest seq that left the ring: a `since` below it cannot be replayed.
        self._evicted_upto = evicted_upto
        self._newest_seq = evicted_upto
        self._snapshot: dict[str, Record] = {}

    def __repr__(self) -> str:
        return f"<Audience {self.name!r} members={len(self._members)}>"

    # -- members and routes ----------------------------------------------------------------

    def connection_count_locked(self) -> int:
        """How many connections receive this audience."""
        return len(self._members)

    def add_connection_locked(self, conn: _C) -> bool:
        """Add ``conn``; returns whether it is the first connection."""
        first = not self._members
        self._members[conn] = None
        return first

    def remove_connection_locked(self, conn: _C, *, subscribed: bool) -> bool:
        """Remove ``conn``; returns whether none is left.

        :param subscribed: whether ``conn`` has subscribed (then it may be in the route cache,
            which is invalidated).
        """
        del self._members[conn]
        if subscribed:
            self._routes.clear()
        return not self._members

    def invalidate_routes_locked(self) -> None:
        """Forget the route cache (a member's subscriptions changed)."""
        self._routes.clear()

    def recipients_locked(
        self, route: Route, subscriptions: Mapping[_C, AbstractSet[Route]]
    ) -> LockGroups[_C]:
        """The members whose subscriptions accept ``route``, grouped by lock; cached.

        :param subscriptions: every member's subscriptions (empty until it subscribes).
        """
        recipients = self._routes.get(route)
        if recipients is None:
            if len(self._routes) >= _MAX_ROUTES_PER_AUDIENCE:
                self._routes.clear()
            recipients = self._routes[route] = group_by_lock(
                # An empty set: not subscribed yet, so nothing but its connect-time status.
                conn
                for conn in self._members
                if (accepted := subscriptions[conn]) and subscriptions_accept(accepted, route)
            )
        return recipients

    # -- what it remembers -----------------------------------------------------------------

    def newest_seq_locked(self) -> int:
        """The ``seq`` of the newest message put in the ring (its starting floor before any)."""
        return self._newest_seq

    def remember_locked(self, record: Record) -> None:
        """Append a non-conflatable message to the ring, evicting past its bounds."""
        ring = self._ring
        ring.append(record)
        self._newest_seq = record.seq
        while len(ring) > self._limits.replay_limit:
            self._evicted_upto = ring.popleft().seq
        self._expire_locked(record.at)

    def remember_latest_locked(self, conflation_key: str, record: Record) -> None:
        """Make ``record`` the snapshot's value for ``conflation_key``, forgetting the oldest."""
        snapshot = self._snapshot
        snapshot.pop(conflation_key, None)
        snapshot[conflation_key] = record
        if len(snapshot) > self._limits.snapshot_limit:
            del snapshot[next(iter(snapshot))]

    def covers_locked(self, since: int, now: float) -> bool:
        """Whether the ring still holds every message after ``since`` (expiring it first)."""
        self._expire_locked(now)
        return since >= self._evicted_upto

    def replay_locked(self, start: int, subscriptions: AbstractSet[Route]) -> list[Record]:
        """The ring's messages after ``start`` that ``subscriptions`` accept, newest first."""
        records: list[Record] = []
        for record in reversed(self._ring):
            if record.seq <= start:
                break
            if subscriptions_accept(subscriptions, record.route):
                records.append(record)
        return records

    def newly_covered_snapshot_locked(
        self, subscriptions: AbstractSet[Route], before: AbstractSet[Route]
    ) -> list[Record]:
        """The snapshot values that ``subscriptions`` accept and ``before`` did not."""
        return [
            record
            for record in self._snapshot.values()
            if subscriptions_accept(subscriptions, record.route)
            and not subscriptions_accept(before, record.route)
        ]

    def _expire_locked(self, now: float) -> None:
        ring, oldest_kept = self._ring, now - self._limits.replay_max_age
        while ring and ring[0].at < oldest_kept:
            self._evicted_upto = ring.popleft().seq


class AudienceTable(Generic[_C]):
    """The audiences a hub remembers: :data:`BROADCAST` always, player audiences until forgotten.

    At most ``max_audiences`` are remembered, those with connections included; the least
    recently used player audiences without connections are forgotten first. It also notes
    which player audiences gained their first connection or lost their last, for the hub to
    report (:meth:`next_activity_report_locked`). Guarded by the hub lock: every method needs
    it (hence their ``_locked`` suffix).
    """

    __slots__ = (
        "_by_name",
        "_changed",
        "_forgotten_upto",
        "_idle",
        "_limits",
        "_max_audiences",
        "_reported_active",
    )

    def __init__(self, limits: AudienceLimits, max_audiences: int) -> None:
        self._limits = limits
        self._max_audiences = max_audiences
        self._by_name: dict[str, Audience[_C]] = {BROADCAST: Audience(BROADCAST, 0, limits)}
        # Player audiences without connections, least recently used first.
        self._idle: OrderedDict[str, None] = OrderedDict()
        # The highest seq of any forgotten audience: the floor of a new audience's ring.
        self._forgotten_upto = 0
        # Player audiences whose activity may have changed, and those last reported active.
        self._changed: OrderedDict[str, None] = OrderedDict()
        self._reported_active: set[str] = set()

    def get_locked(self, name: str) -> Audience[_C] | None:
        """The audience called ``name``, if remembered (without marking it used)."""
        return self._by_name.get(name)

    def joined_locked(self, name: str) -> Audience[_C]:
        """The audience of a registered connection (having one, it is never forgotten)."""
        return self._by_name[name]

    def fetch_locked(self, name: str) -> Audience[_C]:
        """The audience called ``name``, made if need be; marks it as recently used."""
        aud = self._by_name.get(name)
        if aud is not None:
            if name in self._idle:
                self._idle.move_to_end(name)
            return aud
        # Make room first, so the new audience itself is never the one forgotten.
        while len(self._by_name) >= self._max_audiences and self._idle:
            oldest, _ = self._idle.popitem(last=False)
            forgotten = self._by_name.pop(oldest)
            self._forgotten_upto = max(self._forgotten_upto, forgotten.newest_seq_locked())
        aud = self._by_name[name] = Audience(name, self._forgotten_upto, self._limits)
        self._idle[name] = None
        return aud

    def join_locked(self, aud: Audience[_C], conn: _C) -> None:
        """Add ``conn`` to ``aud``, which (if it is its first) is no longer forgettable."""
        if aud.add_connection_locked(conn) and aud.name != BROADCAST:
            self._idle.pop(aud.name, None)
            self._changed[aud.name] = None

    def leave_locked(self, name: str, conn: _C, *, subscribed: bool) -> None:
        """Remove ``conn`` from audience ``name``, which (if it was its last) may be forgotten.

        :param subscribed: whether ``conn`` has subscribed (see
            :meth:`Audience.remove_connection_locked`).
        """
        aud = self._by_name[name]
        if aud.remove_connection_locked(conn, subscribed=subscribed) and name != BROADCAST:
            self._idle[name] = None
            self._changed[name] = None

    def next_activity_report_locked(self) -> tuple[str, bool] | None:
        """The next change to report, oldest first: ``(player_id, active)``, or ``None``.

        A player audience is active while it has connections. Each change is reported as
        the audience's state when it is taken, and only if that differs from the state last
        taken: a flap may be reported once or not at all.
        """
        while self._changed:
            name, _ = self._changed.popitem(last=False)
            player_id = audience_player_id(name)  # never None: only players are noted
            aud = self._by_name.get(name)
            active = aud is not None and aud.connection_count_locked() > 0
            if player_id is None or active == (name in self._reported_active):
                continue
            if active:
                self._reported_active.add(name)
            else:
                self._reported_active.discard(name)
            return player_id, active
        return None

    def drop_activity_reports_locked(self) -> None:
        """Forget the changes noted so far (nobody wants the reports)."""
        self._changed.clear()

    def player_connection_counts_locked(self) -> list[int]:
        """The connection count of each player audience that has connections."""
        return [
            count
            for name, aud in self._by_name.items()
            if name != BROADCAST and (count := aud.connection_count_locked())
        ]
