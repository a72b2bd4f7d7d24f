""":class:`Connection`: a browser's outbox, plus its audiences, subscriptions and resume point.

Its subscriptions are kept by the hub, under the hub lock, because the audiences' route
caches depend on them: the connection asks its hub for them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Protocol

from .audiences import Route
from .outbox import Outbox

__all__ = ["Connection"]


class _Hub(Protocol):
    """What a :class:`Connection` asks of its hub (a :class:`~.hub.RelayHub`)."""

    def subscribe(self, conn: Connection, events: Iterable[Route]) -> None: ...

    def subscriptions_of(self, conn: Connection) -> frozenset[Route]: ...


class Connection(Outbox):
    """One browser's place in the hub: its outbox, plus who it is and where it resumed.

    Made by :meth:`.hub.RelayHub.connect`, never directly. The hub's publishers fill the
    outbox; its consumer empties it with :meth:`~.outbox.Outbox.drain` when the hub's
    ``on_ready`` says it has work, and closes the browser with
    :attr:`~.outbox.Outbox.close_code` once that is set. Thread-safe.

    :ivar audiences: the audiences it receives (:data:`~.audiences.BROADCAST`, and
        :func:`~.audiences.player_audience` for a logged-in player).
    :ivar start_seq: its resume point: ``since`` when that was honoured, else the hub's last
        ``seq`` when it connected. Messages after it are replayed at its first
        :meth:`subscribe`.
    :ivar resumed: ``None`` when connected without ``since``; else whether ``since`` could be
        honoured (``False``: events were missed, the page should refresh over REST).
    :ivar told_upstream: the upstream status its connect-time ``RelayStatus`` gave.
    """

    __slots__ = ("_hub", "audiences", "resumed", "start_seq", "told_upstream")

    def __init__(
        self, hub: _Hub, audiences: frozenset[str], *, lock: threading.Lock, limit: int
    ) -> None:
        super().__init__(lock=lock, limit=limit)
        self._hub = hub
        self.audiences = audiences
        self.start_seq = 0
        self.resumed: bool | None = None
        self.told_upstream = "reconnecting"

    def __repr__(self) -> str:
        return (
            f"<Connection audiences={sorted(self.audiences)} pending={self.pending}"
            f" close_code={self.close_code}>"
        )

    @property
    def subscriptions(self) -> frozenset[Route]:
        """The ``(source, event_type)`` pairs subscribed so far (``event_type`` may be ``*``)."""
        return self._hub.subscriptions_of(self)

    def subscribe(self, events: Iterable[Route]) -> None:
        """Add ``(source, event_type)`` subscriptions, as a ``SubscribeRequest`` does.

        ``event_type`` is an event name or ``*`` (every event of that source). Subscriptions
        add up; there is no unsubscribe. Nothing but the connect-time ``RelayStatus`` reaches
        a connection before its first subscription; at that moment the outbox receives, in
        ``seq`` order, the missed messages after :attr:`start_seq` that match (the ``since``
        replay, or what was published between connect and subscribe), the current relay
        status if it changed since, and the latest ``JackpotUpdate`` of each matching
        instance (the snapshot). A later subscription adds the snapshot of the instances it
        newly covers.

        :raises ValueError: a malformed pair, or more than the hub's ``max_subscriptions``.
        """
        self._hub.subscribe(self, events)
