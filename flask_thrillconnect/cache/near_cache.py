"""A small in-process layer in front of a shared storage, so that cache hits stay fast.

An entry is kept for ``ttl`` seconds at most (0.5 s by default) and never past its own
``fresh_until``: a value another process writes is seen here within that time, and stale
entries always come from the shared store, where another process may have refreshed them.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from .storage import Entry

__all__ = ["NEAR_TTL", "NearCache"]

#: Seconds a near copy is trusted; well below the ticker's freshness (2 s by default).
NEAR_TTL = 0.5


class NearCache:
    """Bounded, short-lived copies of fresh entries.

    :param ttl: seconds a copy is served at most.
    :param max_entries: copies kept at most; the oldest stored go first.
    :param clock: wall-clock time source (epoch seconds), the entries' own.
    """

    def __init__(
        self,
        ttl: float = NEAR_TTL,
        max_entries: int = 10_000,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl < 0 or max_entries < 1:
            raise ValueError("ttl must be >= 0 and max_entries at least 1")
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (entry, served until)
        self._copies: OrderedDict[str, tuple[Entry, float]] = OrderedDict()

    def get(self, key: str) -> Entry | None:
        """The copy of ``key`` while it may be served, else ``None``."""
        with self._lock:
            copy = self._copies.get(key)
            if copy is None:
                return None
            if self._clock() < copy[1]:
                return copy[0]
            del self._copies[key]
            return None

    def put(self, key: str, entry: Entry) -> None:
        """Keep a copy of ``entry`` while it is fresh, for ``ttl`` seconds at most."""
        now = self._clock()
        until = min(now + self.ttl, entry.fresh_until)
        with self._lock:
            if until <= now:
                self._copies.pop(key, None)
                return
            self._copies[key] = (entry, until)
            self._copies.move_to_end(key)
            while len(self._copies) > self.max_entries:
                self._copies.popitem(last=False)

    def discard(self, key: str) -> None:
        with self._lock:
            self._copies.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._copies.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._copies)
