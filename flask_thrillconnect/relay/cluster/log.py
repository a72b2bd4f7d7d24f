"""The cluster's event log: one Redis Stream of upstream envelopes, with its epoch.

The holders of the upstream service stream (see :mod:`.lease`) :meth:`~EventLog.append` each
envelope they receive; every worker reads the stream (see :mod:`.reader`) and feeds its own
hub. An entry's position is the browsers' ``seq`` (see :mod:`.seq`) and the stream's epoch is
their ``relay_id``, so a browser resumes on any worker of any node.

**Epoch.** A random id stored beside the stream, created when missing (``SET NX``). When Redis
loses its data (a restart without persistence, a flush), the epoch goes with the stream and
the next :meth:`~EventLog.head` creates another: a browser's old ``relay_id`` no longer
matches, so it gets ``"resumed": false`` instead of a ``seq`` of another stream. The epoch has
no expiry, so the ``volatile-*`` eviction policies never evict it; under ``allkeys-*`` policies
an evicted epoch looks like lost data (browsers refresh once).

**Appending.** One script checks the holder's fence (the lease value of its slot: a paused old
holder is refused), remembers the envelope's content digest for :data:`~.base.DEDUP_TTL`
(the hot standby's copy of the same upstream event adds nothing), adds the entry, and trims
the stream *exactly* to :data:`~.base.STREAM_MAX_LENGTH` entries and
:data:`~.base.STREAM_MAX_AGE` seconds, remembering the newest trimmed id. Nothing else ever
deletes entries, so "every entry after ``seq`` is still there" is exactly "``seq`` is not
older than the newest trimmed id": :meth:`~EventLog.replay` answers it without guessing.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from ...redis_connection import RedisKeys
from . import scripts
from .base import (
    DEDUP_TTL,
    READ_BATCH,
    STREAM_MAX_AGE,
    STREAM_MAX_LENGTH,
    ClusterUnavailable,
    LeaseLost,
    StreamKeys,
    millis,
    redis_call,
    text,
)
from .seq import MAX_SEQ, SEQ_PER_MS, entry_id, seq_of

if TYPE_CHECKING:
    import redis

    from .lease import Fence

__all__ = ["Entry", "EventLog", "Fetched", "Head", "dedup_key", "new_epoch"]


class Entry(NamedTuple):
    """One envelope of the stream: its ``seq`` and its JSON text, as the holder appended it."""

    seq: int
    text: str


class Head(NamedTuple):
    """The stream's epoch and the ``seq`` of its newest entry (0 when it has none)."""

    epoch: str
    seq: int


class Fetched(NamedTuple):
    """What :meth:`EventLog.fetch` found after a position.

    ``status`` is ``"ok"`` (``entries`` follow the position, oldest first), ``"epoch"`` (the
    stream is another epoch's: Redis lost its data), ``"gap"`` (entries after the position
    were trimmed; ``trimmed`` is the newest of them) or ``"ahead"`` (the position is past the
    newest entry: not a position of this stream).
    """

    status: str
    entries: tuple[Entry, ...] = ()
    trimmed: int = 0


def new_epoch() -> str:
    """A fresh random epoch: 16 URL-safe characters, valid as a ``relay_id``."""
    return secrets.token_urlsafe(12)


def dedup_key(envelope: Mapping[str, Any]) -> str:
    """The de-duplication key of an upstream envelope: a digest of its whole content
    (message name, source, owner, player, ``data`` and upstream ``timestamp``), independent of
    the order of its keys. Two holders receiving the same upstream event get the same key; two
    events differing in anything (such as their timestamp) get different keys."""
    canonical = json.dumps(envelope, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


class EventLog:
    """One portal's event stream in Redis.

    :param client: from :func:`flask_thrillconnect.redis_connection.connect` (bounded
        timeouts).
    :param keys: the portal's key namespace.
    :param max_length: entries kept at most.
    :param max_age: seconds an entry is kept (trimmed on the next append after that).
    :param dedup_ttl: seconds an appended content is remembered.

    Every method but :meth:`answers` raises :class:`~.base.ClusterUnavailable` when Redis
    fails or does not answer within the client's timeouts.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        *,
        max_length: int = STREAM_MAX_LENGTH,
        max_age: float = STREAM_MAX_AGE,
        dedup_ttl: float = DEDUP_TTL,
    ) -> None:
        if max_length < 1 or not max_age > 0 or not dedup_ttl > 0:
            raise ValueError("max_length, max_age and dedup_ttl must be positive")
        self.client = client
        self.keys = StreamKeys(keys)
        self.max_length = max_length
        self.max_age = max_age
        self.dedup_ttl = dedup_ttl
        self._append = client.register_script(scripts.APPEND)
        self._fetch = client.register_script(scripts.FETCH)
        self._head = client.register_script(scripts.HEAD)

    def append(self, envelope_text: str, *, fence: Fence, dedup_key: str) -> int | None:
        """Append one upstream envelope for the holder of ``fence``.

        :param envelope_text: the envelope's JSON text (delivered to readers as it is).
        :param fence: the holder's current lease (:attr:`.HolderLease.fence`).
        :param dedup_key: :func:`dedup_key` of the envelope.
        :returns: the new entry's ``seq``, or ``None`` when the same content was appended
            within the dedup ttl (by the other holder: nothing to do).
        :raises LeaseLost: ``fence`` is no longer the slot's lease: stop writing.

        An append that timed out (:class:`~.base.ClusterUnavailable`) may still have been
        applied; retrying it within the dedup ttl adds nothing.
        """
        keys = [
            self.keys.holder(fence.slot),
            self.keys.stream,
            self.keys.dedup(dedup_key),
            self.keys.trimmed,
        ]
        args: list[str | int] = [
            fence.value,
            envelope_text,
            millis(self.dedup_ttl),
            self.max_length,
            millis(self.max_age),
            SEQ_PER_MS,
        ]
        with redis_call("append"):
            reply = self._append(keys, args)
        status = text(reply[0])
        if status == "fenced":
            raise LeaseLost(f"holder slot {fence.slot} (fence {fence.number}) is no longer held")
        if status == "duplicate":
            return None
        return seq_of(reply[1])

    def answers(self) -> bool:
        """Whether Redis answers a ``PING`` within the client's timeouts."""
        try:
            with redis_call("ping"):
                self.client.ping()
        except ClusterUnavailable:
            return False
        return True

    def head(self) -> Head:
        """The epoch (created when missing) and the ``seq`` of the newest entry."""
        with redis_call("head"):
            epoch, newest = self._head([self.keys.epoch, self.keys.stream], [new_epoch()])
        return Head(text(epoch), seq_of(newest))

    def fetch(
        self, since: int, epoch: str, *, count: int = READ_BATCH, upto: int | None = None
    ) -> Fetched:
        """Up to ``count`` entries after ``since`` (and at most ``upto``), checked atomically
        against ``epoch`` and the trimming (see :class:`Fetched`)."""
        if count < 1:
            raise ValueError("count must be at least 1")
        last = "+" if upto is None else entry_id(upto)
        keys = [self.keys.epoch, self.keys.stream, self.keys.trimmed]
        with redis_call("fetch"):
            reply = self._fetch(keys, [epoch, entry_id(since), last, count])
        status = text(reply[0])
        if status == "gap":
            return Fetched("gap", trimmed=seq_of(reply[1]))
        if status != "ok":
            return Fetched(status)
        return Fetched("ok", tuple(_entry(item) for item in reply[1]))

    def replay(
        self, since: int, epoch: str, *, limit: int, upto: int | None = None
    ) -> list[Entry] | None:
        """Every entry after ``since`` (up to ``upto``), for a browser resuming with
        ``since`` and ``relay_id`` = ``epoch``.

        :param limit: the most entries to return; more than that means "too far behind".
        :param upto: the last ``seq`` wanted, e.g. the position the worker's reader has
            delivered to its hub (later entries reach the browser live).
        :returns: the entries, oldest first, or ``None`` when the browser cannot resume:
            another epoch, entries after ``since`` trimmed, ``since`` not of this stream, or
            more than ``limit`` entries.
        """
        if not 0 <= since <= MAX_SEQ:
            return None  # a since that no entry of any stream has
        entries: list[Entry] = []
        position = since
        while True:
            page = min(READ_BATCH, limit + 1 - len(entries))
            fetched = self.fetch(position, epoch, count=page, upto=upto)
            if fetched.status != "ok":
                return None
            entries.extend(fetched.entries)
            if len(entries) > limit:
                return None
            if len(fetched.entries) < page:
                return entries
            position = entries[-1].seq


def _entry(item: Any) -> Entry:
    """``[id, [field, value, ...]]`` → :class:`Entry` (the envelope is field ``e``)."""
    entry, fields = item
    values = {text(name): value for name, value in zip(fields[::2], fields[1::2], strict=True)}
    return Entry(seq_of(entry), text(values["e"]))
