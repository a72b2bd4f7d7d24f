"""One browser's bounded outbox, and the publisher's loop that fills many of them.

An :class:`Outbox` is a single insertion-ordered ``dict`` whose keys say how an entry
conflates:

- a non-conflatable message (a win, an opt-in, a bonus...) is keyed by its ``seq`` (an
  ``int``), so it is unique and never replaced; at most ``limit`` of them may wait, one more
  marks the outbox for closing with 1013 ("try again later"): the browser reconnects and
  resumes with ``since`` instead of being fed an ever-growing backlog;
- a conflatable message is keyed by a string (``"jackpot:<instance id>"``, the relay status):
  a newer message with the same key *removes* the waiting one and is appended at the end.

Moving a conflated message to the end (rather than overwriting it in place) keeps what a
lagging browser receives a subsequence of what was published, in publishing order: its ``seq``
values still increase, and it never sees a jackpot value that predates a win it was already
shown. The cost is that a jackpot updated on every tick can keep sliding behind newer
messages; that is harmless, because each tick brings it back.

Locks are striped: the hub hands out a few dozen locks round-robin, each shared by many
outboxes, and the publisher walks its recipients grouped by lock (:func:`group_by_lock`),
taking each lock once per group. Per delivery it then pays one or two ``dict`` operations
and, only when the outbox was empty (its consumer may be idle), an append to the list of
outboxes reported ready, in one call, once the fan-out is done; nothing else is allocated
per browser. (An uncontended lock costs several times a dict operation, and most of a tick's
deliveries find the outbox already non-empty.)

Whoever consumes an outbox (the relay's writer thread) learns that it has work through the
``on_ready`` callback of :func:`fan_out` and of the hub; the outbox itself knows nothing of
threads, sockets or the hub.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import TypeVar

from ..metrics import relay_drained, relay_overflowed
from .protocol import CLOSE_TRY_AGAIN_LATER

__all__ = ["LockGroups", "Outbox", "OutboxKey", "fan_out", "group_by_lock"]

#: An outbox key: the ``seq`` of a non-conflatable message, or the conflation key of another.
OutboxKey = int | str
_O = TypeVar("_O", bound="Outbox")
#: Recipients grouped by the lock guarding their outboxes (see :func:`group_by_lock`).
LockGroups = tuple[tuple[threading.Lock, tuple[_O, ...]], ...]


class Outbox:
    """A bounded, conflating queue of message texts; every method is thread-safe.

    Its fields are guarded by :attr:`lock` (shared with other outboxes: lock striping) and
    belong to this module: :func:`fan_out`, the publisher's hot loop, works on them directly,
    and everything else goes through the methods.
    """

    __slots__ = ("__weakref__", "close_code", "entries", "limit", "lock", "waiting_events")

    def __init__(self, *, lock: threading.Lock, limit: int) -> None:
        #: Never held while taking another lock.
        self.lock = lock
        self.entries: dict[OutboxKey, str] = {}
        #: Non-conflatable messages waiting (``int`` keys of :attr:`entries`).
        self.waiting_events = 0
        self.limit = limit
        #: ``None`` while open; else the WebSocket close code the consumer should close with:
        #: 1013 (fell behind), 1001 (hub closed), 1000 (disconnected from the hub) or one the
        #: hub was asked for. Read without the lock; set once, under it.
        self.close_code: int | None = None

    @property
    def pending(self) -> int:
        """How many messages wait."""
        return len(self.entries)

    def drain(self, max_items: int = 100) -> list[str]:
        """Take up to ``max_items`` messages from the front, oldest first.

        Each is the JSON text shared by every browser that receives the message: send it
        as is. Returns ``[]`` when nothing waits, and always once :attr:`close_code` is set
        (what was still waiting then is dropped: the browser resumes with ``since``).

        :param max_items: bound on one batch, ``>= 1``, so one consumer never holds the lock
            long nor monopolises its socket.
        """
        if max_items < 1:
            raise ValueError("max_items must be >= 1")
        with self.lock:
            entries = self.entries
            if len(entries) <= max_items:
                texts = list(entries.values())
                entries.clear()
                self.waiting_events = 0
            else:
                keys = list(islice(entries, max_items))
                self.waiting_events -= sum(1 for key in keys if type(key) is int)
                texts = [entries.pop(key) for key in keys]
        relay_drained(texts)  # the fan-out delay, sampled
        return texts

    def enqueue(self, entries: Sequence[tuple[OutboxKey, str]]) -> tuple[bool, bool]:
        """Queue ``entries`` in order, conflating as :func:`fan_out` does.

        :returns: ``(ready, overflowed)``: whether the consumer must be told (the outbox was
            empty, or it just overflowed) and whether it overflowed (now closing with 1013).
        """
        with self.lock:
            if self.close_code is not None:
                return False, False
            queued = self.entries
            was_empty = not queued
            for key, text in entries:
                if type(key) is int:
                    if self.waiting_events >= self.limit:
                        self.overflow_locked()
                        break
                    self.waiting_events += 1
                else:
                    queued.pop(key, None)
                queued[key] = text
            overflowed = self.close_code is not None
        return overflowed or (was_empty and bool(entries)), overflowed

    def mark_closed(self, code: int) -> bool:
        """Ask the consumer to close with ``code`` and drop what waits; the first code wins.

        :returns: whether this call set the code (then the consumer must be told).
        """
        with self.lock:
            if self.close_code is not None:
                return False
            self.close_code = code
            self.entries.clear()
            self.waiting_events = 0
        return True

    def overflow_locked(self) -> None:
        """Close with 1013: the consumer fell too far behind. Needs :attr:`lock`."""
        relay_overflowed()
        self.close_code = CLOSE_TRY_AGAIN_LATER
        self.entries.clear()
        self.waiting_events = 0


def group_by_lock(outboxes: Iterable[_O]) -> LockGroups[_O]:
    """``outboxes`` grouped by their (striped) lock, for :func:`fan_out`."""
    groups: dict[threading.Lock, list[_O]] = {}
    for outbox in outboxes:
        groups.setdefault(outbox.lock, []).append(outbox)
    return tuple((lock, tuple(members)) for lock, members in groups.items())


def fan_out(
    groups: LockGroups[_O],
    key: OutboxKey,
    text: str,
    on_ready: Callable[[Sequence[_O]], None],
) -> tuple[int, int, int]:
    """Append ``text`` under ``key`` to every recipient; the publisher's hot loop.

    ``key`` is the message's ``seq`` (``int``: never conflated, bounded) or its conflation
    key (``str``). The same ``text`` object goes to every outbox. Never blocks on a browser:
    each lock is held for a few dict operations per member of its group. ``on_ready`` is
    called once at the end, with no lock held, with the outboxes that were empty (or
    overflowed): its consumer takes them in one go rather than one by one.

    :returns: ``(delivered, conflated, overflowed)`` counts.
    """
    delivered = conflated = overflowed = 0
    ready: list[_O] = []
    mark_ready = ready.append
    conflatable = type(key) is not int
    for lock, members in groups:
        with lock:
            for outbox in members:
                if outbox.close_code is not None:
                    continue
                entries = outbox.entries
                if not entries:
                    mark_ready(outbox)
                elif conflatable:
                    if entries.pop(key, None) is not None:
                        conflated += 1
                elif outbox.waiting_events >= outbox.limit:
                    outbox.overflow_locked()
                    overflowed += 1
                    mark_ready(outbox)
                    continue
                if not conflatable:
                    outbox.waiting_events += 1
                entries[key] = text
                delivered += 1
    if ready:
        on_ready(ready)
    return delivered, conflated, overflowed
