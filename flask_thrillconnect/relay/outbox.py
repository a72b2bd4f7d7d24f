"""One browser's side of the relay: its bounded outbox and the wake-up its sender waits on.

A :class:`Connection` is made by :meth:`RelayHub.connect
<flask_thrillconnect.relay.hub.RelayHub.connect>` and fed by the hub's publisher threads; the
browser endpoint's own thread empties it with :meth:`Connection.wait` and
:meth:`Connection.drain` and writes the texts to its socket.

The outbox is a single insertion-ordered ``dict`` whose keys say how an entry conflates:

- a non-conflatable message (a win, an opt-in, a bonus...) is keyed by its ``seq`` (an
  ``int``), so it is unique and never replaced; at most ``limit`` of them may wait, one more
  marks the connection for closing with 1013 ("try again later"): the browser reconnects and
  resumes with ``since`` instead of being fed an ever-growing backlog;
- a conflatable message is keyed by a string (``"jackpot:<instance id>"``, the relay status):
  a newer message with the same key *removes* the waiting one and is appended at the end.

Moving a conflated message to the end (rather than overwriting it in place) keeps what a
lagging browser receives a subsequence of what was published, in publishing order: its ``seq``
values still increase, and it never sees a jackpot value that predates a win it was already
shown. The cost is that a jackpot updated on every tick can keep sliding behind newer
messages; that is harmless, because each tick brings it back.

Locks are striped: the hub hands out a few dozen locks round-robin, each shared by many
connections, and the publisher walks its recipients grouped by lock (:func:`group_by_lock`),
taking each lock once per group. Per delivery it then pays one or two ``dict`` operations
and, only when the outbox was empty (its sender may be asleep), an append to a wake list
whose events are set once that group's lock is released; nothing else is allocated per
browser. (An uncontended lock costs several times a dict operation, and most of a tick's
deliveries find the outbox already awake.)
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from itertools import islice
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .hub import RelayHub

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_NORMAL",
    "CLOSE_TRY_AGAIN_LATER",
    "Connection",
    "LockGroups",
    "fan_out",
    "group_by_lock",
]

#: The hub was closed (server shutting down).
CLOSE_GOING_AWAY = 1001
#: The connection was removed from the hub by :meth:`RelayHub.disconnect`.
CLOSE_NORMAL = 1000
#: The browser fell too far behind: it should reconnect and resume with ``since``.
CLOSE_TRY_AGAIN_LATER = 1013

#: An outbox key: the ``seq`` of a non-conflatable message, or the conflation key of another.
OutboxKey = int | str
#: Recipients grouped by the lock guarding their outboxes (see :func:`group_by_lock`).
LockGroups = tuple[tuple[threading.Lock, tuple["Connection", ...]], ...]


class Connection:
    """One browser's subscription to the hub: a bounded outbox plus a wake-up.

    Made by :meth:`RelayHub.connect <flask_thrillconnect.relay.hub.RelayHub.connect>`, never
    directly. Every method is thread-safe; the intended use is one sender thread per
    connection (the browser endpoint's handler) calling :meth:`wait`, :meth:`drain` and
    :meth:`subscribe`, while the hub's publisher threads fill the outbox::

        conn = hub.connect(audiences, since=since, relay_id=relay_id, wake_event=ws.event)
        try:
            while conn.close_code is None:
                conn.wait(timeout=25.0)
                while (text := ws.receive(timeout=0)) is not None:
                    handle_browser_message(conn, text)  # e.g. conn.subscribe(...)
                for text in conn.drain(max_items=100):
                    ws.send(text)
            ws.close(conn.close_code)
        finally:
            hub.disconnect(conn)

    :ivar audiences: the audiences it receives (see
        :data:`~flask_thrillconnect.relay.hub.BROADCAST` and
        :func:`~flask_thrillconnect.relay.hub.player_audience`).
    :ivar start_seq: its resume point: ``since`` when that was honoured, else the hub's last
        ``seq`` when it connected. Messages after it are replayed at its first
        :meth:`subscribe`.
    :ivar resumed: ``None`` when connected without ``since``; else whether ``since`` could be
        honoured (``False``: events were missed, the page should refresh over REST).
    """

    __slots__ = (
        "__weakref__",
        "_close_code",
        "_event",
        "_gone",
        "_hub",
        "_limit",
        "_lock",
        "_outbox",
        "_owns_event",
        "_pending_events",
        "_subscribed",
        "_subscriptions",
        "audiences",
        "resumed",
        "start_seq",
    )

    def __init__(
        self,
        hub: RelayHub,
        audiences: frozenset[str],
        *,
        lock: threading.Lock,
        limit: int,
        wake_event: threading.Event | None = None,
    ) -> None:
        self._hub = hub
        # Shared with other connections (lock striping); never held while taking another.
        self._lock = lock
        self._outbox: dict[OutboxKey, str] = {}
        self._pending_events = 0
        self._limit = limit
        self._owns_event = wake_event is None
        self._event = wake_event if wake_event is not None else threading.Event()
        self._close_code: int | None = None
        # Guarded by the hub's lock, not ours: the hub routes on them.
        self._subscriptions: set[tuple[str, str]] = set()
        self._subscribed = False
        self._gone = False
        self.audiences = audiences
        self.start_seq = 0
        self.resumed: bool | None = None

    def __repr__(self) -> str:
        return (
            f"<Connection audiences={sorted(self.audiences)} pending={len(self._outbox)}"
            f" close_code={self._close_code}>"
        )

    # -- the sender's side -------------------------------------------------------------

    @property
    def close_code(self) -> int | None:
        """``None`` while open; else the WebSocket close code the sender should close with:
        1013 (fell behind), 1001 (hub closed) or 1000 (disconnected from the hub)."""
        return self._close_code

    @property
    def wake_event(self) -> threading.Event:
        """The event :meth:`wait` sleeps on: the one given to ``connect`` or a private one."""
        return self._event

    @property
    def pending(self) -> int:
        """How many messages wait in the outbox."""
        return len(self._outbox)

    @property
    def subscriptions(self) -> frozenset[tuple[str, str]]:
        """The ``(source, event_type)`` pairs subscribed so far (``event_type`` may be ``*``)."""
        return frozenset(self._subscriptions)

    def wait(self, timeout: float) -> bool:
        """Sleep until there may be something to do, at most ``timeout`` seconds.

        Returns at once (``True``) when the outbox holds messages or a close is pending.
        Otherwise it sleeps on :attr:`wake_event`, which the hub sets when the outbox goes
        from empty to non-empty or a close is requested, and which the socket library's
        reader also sets when it shares that event. On waking the event is cleared and
        ``True`` returned: the caller must then look at every source of work, i.e. call
        :meth:`drain` *and* poll its socket without blocking (simple-websocket's
        ``receive(timeout=0)`` reads its own buffer, so clearing the shared event loses
        nothing). ``False`` means the timeout passed with no news (time for a keep-alive).

        :param timeout: seconds, finite and ``>= 0``; there is no "wait forever".
        """
        if not 0 <= timeout < math.inf:
            raise ValueError("timeout must be a finite number of seconds >= 0")
        with self._lock:
            if self._outbox or self._close_code is not None:
                return True
        if not self._event.wait(timeout):
            return False
        # Cleared only after waking: whoever sets it has already made its work visible, and
        # the caller inspects every source after this, so no wake-up is lost.
        self._event.clear()
        return True

    def drain(self, max_items: int = 100) -> list[str]:
        """Take up to ``max_items`` messages from the front of the outbox, oldest first.

        Each is the JSON text shared by every browser that receives the message: send it
        as is. Returns ``[]`` when nothing waits, and always once :attr:`close_code` is set
        (what was still waiting then is dropped: the browser resumes with ``since``).
        Emptying the outbox also clears a private wake event (saving a spurious wake-up), but
        never a shared one, whose other setter the caller may not have looked at yet.

        :param max_items: bound on one batch, ``>= 1``, so one sender never holds the lock
            long nor monopolises its socket.
        """
        if max_items < 1:
            raise ValueError("max_items must be >= 1")
        with self._lock:
            outbox = self._outbox
            if len(outbox) <= max_items:
                texts = list(outbox.values())
                outbox.clear()
                self._pending_events = 0
                if self._owns_event and self._close_code is None:
                    # Safe: a publisher sets the event only after appending under our lock.
                    self._event.clear()
                return texts
            keys = list(islice(outbox, max_items))
            self._pending_events -= sum(1 for key in keys if type(key) is int)
            return [outbox.pop(key) for key in keys]

    def subscribe(self, events: Iterable[tuple[str, str]]) -> None:
        """Add ``(source, event_type)`` subscriptions, as a ``SubscribeRequest`` does.

        ``event_type`` is an event name or ``*`` (every event of that source). Subscriptions
        add up; there is no unsubscribe. Nothing but the connect-time ``RelayStatus`` reaches
        a connection before its first subscription; at that moment the outbox receives, in
        ``seq`` order, the missed messages after :attr:`start_seq` that match (the ``since``
        replay, or what was published between connect and subscribe), the current relay
        status if it changed since, and the latest ``JackpotUpdate`` of each matching
        instance (the snapshot). A later subscription adds the snapshot of the instances it
        newly covers. See :meth:`RelayHub.subscribe
        <flask_thrillconnect.relay.hub.RelayHub.subscribe>`.

        :raises ValueError: a malformed pair, or more than the hub's ``max_subscriptions``.
        """
        self._hub.subscribe(self, events)

    # -- the hub's side ----------------------------------------------------------------

    def _enqueue_batch(self, entries: Sequence[tuple[OutboxKey, str]]) -> bool:
        """Queue ``entries`` in order (conflating like a publish); ``True`` on overflow."""
        with self._lock:
            if self._close_code is not None:
                return False
            outbox = self._outbox
            was_empty = not outbox
            for key, text in entries:
                if type(key) is int:
                    if self._pending_events >= self._limit:
                        self._overflow_locked()
                        break
                    self._pending_events += 1
                else:
                    outbox.pop(key, None)
                outbox[key] = text
            overflowed = self._close_code is not None
        if overflowed or (was_empty and entries):
            self._event.set()
        return overflowed

    def _mark_closed(self, code: int) -> bool:
        """Ask the sender to close with ``code`` (the first code wins); wakes it."""
        with self._lock:
            if self._close_code is not None:
                return False
            self._close_code = code
            self._outbox.clear()
            self._pending_events = 0
        self._event.set()
        return True

    def _overflow_locked(self) -> None:
        self._close_code = CLOSE_TRY_AGAIN_LATER
        self._outbox.clear()
        self._pending_events = 0


def group_by_lock(connections: Iterable[Connection]) -> LockGroups:
    """``connections`` grouped by their (striped) lock, for :func:`fan_out`."""
    groups: dict[threading.Lock, list[Connection]] = {}
    for conn in connections:
        groups.setdefault(conn._lock, []).append(conn)
    return tuple((lock, tuple(members)) for lock, members in groups.items())


def fan_out(groups: LockGroups, key: OutboxKey, text: str) -> tuple[int, int, int]:
    """Append ``text`` under ``key`` to every recipient's outbox; the publisher's hot loop.

    ``key`` is the message's ``seq`` (``int``: never conflated, bounded) or its conflation
    key (``str``). The same ``text`` object goes to every outbox. Never blocks on a browser:
    each lock is held for a few dict operations per member of its group, and the wake
    events of outboxes that were empty (their senders may sleep) are set after it is
    released.

    :returns: ``(delivered, conflated, overflowed)`` counts.
    """
    delivered = conflated = overflowed = 0
    woken: list[Connection] = []
    wake = woken.append
    conflatable = type(key) is not int
    for lock, members in groups:
        with lock:
            for conn in members:
                if conn._close_code is not None:
                    continue
                outbox = conn._outbox
                if not outbox:
                    wake(conn)
                elif conflatable:
                    if outbox.pop(key, None) is not None:
                        conflated += 1
                elif conn._pending_events >= conn._limit:
                    conn._overflow_locked()
                    overflowed += 1
                    wake(conn)
                    continue
                if not conflatable:
                    conn._pending_events += 1
                outbox[key] = text
                delivered += 1
        if woken:
            for conn in woken:
                conn._event.set()
            woken.clear()
    return delivered, conflated, overflowed
