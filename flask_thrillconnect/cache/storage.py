"""Where cached responses live: the :class:`Entry` record and the :class:`Storage` backends.

Values are the serialized JSON bodies (``bytes``) and every time is wall-clock epoch seconds,
so that a backend shared between processes (Redis, in cluster mode) holds the same records as
the in-process :class:`MemoryStorage`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["Entry", "MemoryStorage", "Storage", "make_entry", "make_etag", "make_storage"]


def make_etag(value: bytes) -> str:
    """Return the strong, quoted ETag of ``value``.

    The tag depends on the bytes only, so storing an unchanged body again keeps the tag (and
    the browsers' ``If-None-Match``) matching.
    """
    return f'"{hashlib.blake2b(value, digest_size=16).hexdigest()}"'


@dataclass(frozen=True, slots=True)
class Entry:
    """One cached response body and its lifetime.

    :param value: the serialized JSON body.
    :param etag: strong, quoted ETag derived from ``value`` (see :func:`make_etag`).
    :param stored_at: when the value was stored (epoch seconds).
    :param fresh_until: until when the value is served without asking upstream.
    :param stale_until: until when the value may still stand in while upstream is refreshed or
        failing; past it the entry is unusable.
    """

    value: bytes
    etag: str
    stored_at: float
    fresh_until: float
    stale_until: float

    def is_fresh(self, now: float) -> bool:
        """Whether the entry can be served as is at ``now``."""
        return now < self.fresh_until

    def is_usable(self, now: float) -> bool:
        """Whether the entry may still be served (fresh or stale) at ``now``."""
        return now < self.stale_until

    def expired(self, now: float) -> Entry:
        """This entry, no longer fresh from ``now`` on (its stale window unchanged)."""
        if self.fresh_until <= now:
            return self
        return dataclasses.replace(self, fresh_until=now)


def make_entry(value: bytes, *, now: float, ttl: float, stale_ttl: float) -> Entry:
    """Build the :class:`Entry` for ``value`` stored at ``now``.

    :param ttl: seconds the value stays fresh.
    :param stale_ttl: seconds past freshness during which it may still stand in.
    """
    if ttl < 0 or stale_ttl < 0:
        raise ValueError("ttl and stale_ttl must not be negative")
    fresh_until = now + ttl
    return Entry(
        value=value,
        etag=make_etag(value),
        stored_at=now,
        fresh_until=fresh_until,
        stale_until=fresh_until + stale_ttl,
    )


@runtime_checkable
class Storage(Protocol):
    """What :class:`~flask_thrillconnect.cache.ResponseCache` needs from a backend.

    Implementations must be thread-safe. ``get`` may return an entry past its ``stale_until``;
    the cache ignores such entries, but a backend should drop them to bound its memory. Nothing
    here needs a scan of the keys (a player's entries are dropped by a generation number in
    their keys, see :class:`~flask_thrillconnect.jackpots.JackpotService`), so a shared store
    can implement it with plain gets and sets; only :meth:`clear` and :meth:`expire`, for
    tests and operations (``ThrillConnect.cache_clear``), may go through every entry.
    """

    def get(self, key: str) -> Entry | None:
        """Return the entry stored under ``key``, or ``None``."""
        ...

    def set(self, key: str, entry: Entry) -> None:
        """Store ``entry`` under ``key``, replacing any previous one."""
        ...

    def delete(self, key: str) -> None:
        """Forget ``key``; a missing key is not an error."""
        ...

    def __len__(self) -> int:
        """Number of entries held."""
        ...

    def clear(self) -> None:
        """Forget every entry."""
        ...

    def expire(self, now: float) -> None:
        """Make every entry fresh past ``now`` stale from ``now`` on (see :meth:`Entry.expired`)."""
        ...

    def close(self) -> None:
        """Let go of connections (lookups may still reconnect later)."""
        ...


class MemoryStorage:
    """In-process, least-recently-used storage bounded to ``max_entries`` entries.

    Reads count as use, so values that are requested keep their place while forgotten ones are
    evicted first. Entries past their ``stale_until`` are dropped when read.

    :param max_entries: how many entries are kept at most.
    :param clock: wall-clock time source (epoch seconds); injectable for tests.
    """

    def __init__(self, max_entries: int = 10_000, *, clock: Callable[[], float] = time.time):
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Entry | None:
        """Return the usable entry under ``key`` and mark it recently used, or ``None``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if not entry.is_usable(self._clock()):
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry

    def set(self, key: str, entry: Entry) -> None:
        """Store ``entry``, evicting the least recently used entries beyond the bound."""
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def delete(self, key: str) -> None:
        """Forget ``key``."""
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def expire(self, now: float) -> None:
        with self._lock:
            for key, entry in list(self._entries.items()):
                self._entries[key] = entry.expired(now)

    def close(self) -> None:
        """Nothing to let go of."""


def make_storage(settings: Settings) -> Storage:
    """The storage the configuration asks for: shared through Redis when
    ``THRILLCONNECT_REDIS_URL`` is set (see
    :class:`~flask_thrillconnect.cache.shared_storage.SharedStorage`), else in-process; both
    bounded by ``THRILLCONNECT_CACHE_MAX_ENTRIES``."""
    if settings.redis_url is not None:
        # Imported here: redis-py is needed (and loaded) in cluster mode only.
        from .shared_storage import make_shared_storage

        return make_shared_storage(settings)
    return MemoryStorage(max_entries=settings.cache_max_entries)
