"""What the hub queues besides live fan-out: encoded texts, its own ``RelayStatus`` messages,
resume backfills and the batch a subscription queues; and :class:`HubStats`.

Pure functions over :class:`~.audiences.Record` s: nothing here takes the hub lock (see
:mod:`.hub`, "Threads and locks"); the ``_locked`` function reads audiences and must be called
with the hub lock held.

**Encode once.** :meth:`~.hub.RelayHub.publish` stamps the envelope with the next hub-wide
``seq`` (the first key of the object) and serializes it to compact JSON once; that very
``str`` object is appended to the outbox of every matching connection of the audience it
was published to, found in that audience's route cache.

**Seq and resume.** ``seq`` increases hub-wide, so each connection sees increasing, gapped
values. A browser resumes with ``since`` = the highest ``seq`` it has seen, *together with*
the hub's :attr:`~.hub.RelayHub.relay_id` (sent in every connect-time ``RelayStatus``): a ``seq``
from another process or an earlier hub means nothing here. ``since`` is honoured when the
``relay_id`` matches and no message after it has left the rings of the connection's
audiences. Then the connection starts at ``since``; otherwise it starts at the current
``seq`` and its connect-time status says ``"resumed": false`` (the page refreshes over REST).

**External seq (cluster mode).** :meth:`~.hub.RelayHub.start_epoch` makes the hub take its
``relay_id`` and ``seq`` from outside (the cluster's event stream: its epoch, its entry
positions): :meth:`~.hub.RelayHub.publish` is then given each event's ``seq``, which must be
larger than the last (an older or equal one is ignored). A new epoch clears the rings and
snapshots and closes every connection with **1012** (service restart): their ``seq`` values
mean nothing in the new epoch, so they reconnect and get ``"resumed": false``. What the hub
publishes on its own in that mode (relay statuses, answers to one player) takes the *last*
``seq`` rather than the next, so that it never takes a ``seq`` a later stream entry will
carry: ``seq`` is then non-decreasing rather than increasing, and resuming from the highest
``seq`` seen still skips no stream entry. A resume that reaches back past the rings can be
completed with a *backfill* (:meth:`~.hub.RelayHub.connect`, :func:`backfill_records`): the
entries read from the stream.

**Replay at subscribe time** (:func:`subscription_batch_locked`). ThrillConnect sends nothing
before a ``SubscribeRequest``, so the replay waits for the first
:meth:`~.hub.RelayHub.subscribe`: in one step under the hub lock (so no concurrent publish is
lost or doubled) the outbox receives, merged in ``seq`` order, the ring messages after the
connection's start that match its subscriptions, the current relay status if it changed after
the start, and the latest ``JackpotUpdate`` of each matching instance (the snapshot). Merging
by ``seq`` places each snapshot value exactly where a lagging connection's conflated outbox
would have put it; as the newest value of a live jackpot, it normally comes after the replayed
wins. Live messages follow with higher ``seq`` values. A later subscription adds only the
snapshot of the instances it newly covers. Snapshot values may carry a ``seq`` lower than one
already seen; they are conflatable state, so resuming from the highest ``seq`` seen never
skips an event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Final, Literal

from ..models import to_json
from .audiences import (
    UNFILTERED,
    Audience,
    Record,
    Route,
    conflation_key_of,
    route_of,
    subscriptions_accept,
)
from .outbox import OutboxKey
from .protocol import relay_status

__all__ = [
    "CONNECT_STATUS_KEY",
    "GAP_STATUS_KEY",
    "STATUS_KEY",
    "UPSTREAM_STATUSES",
    "Backfill",
    "ConnectStatusTexts",
    "HubStats",
    "UpstreamStatus",
    "backfill_joins_locked",
    "backfill_records",
    "encode",
    "status_data",
    "subscription_batch_locked",
]

#: What :meth:`.hub.RelayHub.connect` accepts to complete a resume the rings cannot serve
#: alone: ``(upto, entries)``, every event after the browser's ``since`` up to ``seq``
#: ``upto``, as ``(seq, envelope, audience)`` in ``seq`` order.
Backfill = tuple[int, Sequence[tuple[int, Mapping[str, Any], str]]]

#: What :meth:`.hub.RelayHub.set_upstream_status` accepts.
UpstreamStatus = Literal["connected", "reconnecting"]
UPSTREAM_STATUSES: Final = ("connected", "reconnecting")

# Outbox keys of relay-level messages. A newer live status replaces a waiting one; the
# connect-time status (relay_id, resumed) and a gap notice are never replaced by it.
STATUS_KEY: Final = "relay:status"
CONNECT_STATUS_KEY: Final = "relay:connect"
GAP_STATUS_KEY: Final = "relay:gap"


@dataclass(frozen=True, slots=True)
class HubStats:
    """A snapshot of the hub's figures (:meth:`.hub.RelayHub.stats`); aggregate, no player ids.

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


def encode(seq: int, envelope: Mapping[str, Any]) -> str:
    """The text every browser receives: ``seq`` first, then the envelope (encoded once)."""
    body = {"seq": seq, **envelope}
    body["seq"] = seq  # an envelope's own "seq" never wins; ours stays the first key
    return to_json(body)


def status_data(upstream: str, relay_id: str, resumed: bool | None) -> dict[str, Any]:
    """The ``data`` of a connect-time (or gap) ``RelayStatus``."""
    data: dict[str, Any] = {"upstream": upstream, "relay_id": relay_id}
    if resumed is not None:
        data["resumed"] = resumed
    return data


class ConnectStatusTexts:
    """The connect-time ``RelayStatus`` texts; a reconnect storm shares one text per
    ``(start, upstream, resumed)``. Guarded by the hub lock."""

    def __init__(self) -> None:
        self._cached: tuple[tuple[int, str, bool | None], str] | None = None

    def text(self, start: int, upstream: str, relay_id: str, resumed: bool | None) -> str:
        """The connect-time status of a connection starting at ``start``."""
        cache_key = (start, upstream, resumed)
        cached = self._cached
        if cached is not None and cached[0] == cache_key:
            return cached[1]
        text = encode(start, relay_status(status_data(upstream, relay_id, resumed)))
        self._cached = (cache_key, text)
        return text

    def clear(self) -> None:
        """Forget the cached text (a new epoch: a new ``relay_id``)."""
        self._cached = None


def backfill_joins_locked(
    auds: Sequence[Audience[Any]], since: int, upto: int, floor: int, now: float
) -> bool:
    """Whether a backfill after ``since`` up to ``upto`` joins the rings of ``auds``."""
    return since <= upto and floor <= upto and all(aud.covers_locked(upto, now) for aud in auds)


def backfill_records(
    audiences: AbstractSet[str], since: int, backfill: Backfill, now: float
) -> list[Record]:
    """The records a backfill gives a connection of ``audiences`` resuming from ``since``:
    its own audiences' entries after ``since``, conflatable ones left to the snapshot."""
    upto, entries = backfill
    return [
        Record(seq, now, route_of(envelope), seq, encode(seq, envelope))
        for seq, envelope, audience in entries
        if since < seq <= upto and audience in audiences and conflation_key_of(envelope) is None
    ]


def subscription_batch_locked(
    start: int,
    auds: Sequence[Audience[Any]],
    subscriptions: AbstractSet[Route],
    before: AbstractSet[Route],
    *,
    now: float,
    backfill: tuple[int, list[Record]] | None,
    status_record: Record | None,
    upstream: str,
    told_upstream: str,
    relay_id: str,
) -> list[tuple[OutboxKey, str]]:
    """What a subscription change queues, in seq order (see the module docstring).

    :param start: the connection's :attr:`~.connection.Connection.start_seq`.
    :param auds: its audiences.
    :param subscriptions: its subscriptions, the new ones included.
    :param before: its subscriptions before (empty: this is the first subscription).
    :param backfill: on the first subscription, the ``(upto, records)`` kept for it.
    :param status_record: the hub's latest live status.
    :param upstream: the hub's upstream status; ``relay_id``: its ``relay_id``.
    :param told_upstream: the status the connection was given when it connected.
    """
    records: list[Record] = []
    if not before:  # the first subscription
        covered, backfilled = start, []
        if backfill is not None:
            covered = backfill[0]
            backfilled = [r for r in backfill[1] if subscriptions_accept(subscriptions, r.route)]
        if not all(aud.covers_locked(covered, now) for aud in auds):
            # The ring lost messages after the start while the browser dawdled.
            gap = encode(start, relay_status(status_data(upstream, relay_id, resumed=False)))
            records.append(Record(start, now, UNFILTERED, GAP_STATUS_KEY, gap))
        for aud in auds:
            records.extend(aud.replay_locked(start, subscriptions))
        # The rings and the backfill overlap: each entry once.
        keys = {record.key for record in records}
        records.extend(record for record in backfilled if record.key not in keys)
        # A status newer than the start, or one that changed since the connection was told:
        # in cluster mode a status takes the last seq, which may be the start itself.
        changed = upstream != told_upstream
        if status_record is not None and (status_record.seq > start or changed):
            records.append(status_record)
    for aud in auds:
        records.extend(aud.newly_covered_snapshot_locked(subscriptions, before))
    records.sort(key=lambda record: record.seq)
    return [(record.key, record.text) for record in records]
