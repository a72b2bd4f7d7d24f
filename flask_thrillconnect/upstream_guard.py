"""What keeps browsers from turning the proxy into a load generator against ThrillConnect.

Every cache miss costs an upstream call made in the operator's name, and a bot asking for
random well-formed ids would otherwise cause one per id (and get the operator throttled, so
that every player loses their jackpots). Three checks stand before an upstream call:

- :class:`KnownIds`: a source or instance id must be one of the brand's, as listed by the
  sources answer the proxy caches anyway; an unknown id refreshes that list at most once per
  :data:`KNOWN_IDS_REFRESH_INTERVAL` (single-flight through the cache), then is a 404.
- :class:`NotFoundMemory`: what upstream answered 404 for is answered 404 again for
  :data:`NOT_FOUND_TTL` seconds without asking.
- :class:`MissLimiter`: each browser (player id, else address) may cause
  :data:`MISS_BURST` misses at once and :data:`MISS_PER_SECOND` after that; more is a 429.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .errors import RateLimited, ThrillConnectError

__all__ = [
    "KNOWN_IDS_REFRESH_INTERVAL",
    "MAX_TRACKED",
    "MISS_BURST",
    "MISS_PER_SECOND",
    "NOT_FOUND_TTL",
    "BrandIds",
    "KnownIds",
    "MissLimiter",
    "NotFoundMemory",
]

#: An id not in the brand's sources list refreshes that list at most this often (seconds).
KNOWN_IDS_REFRESH_INTERVAL = 10.0
#: Seconds an upstream 404 is remembered.
NOT_FOUND_TTL = 30.0
#: Misses a browser may cause at once, and per second after that.
MISS_BURST = 30
MISS_PER_SECOND = 3.0
#: Browsers and 404s remembered at most (the oldest are forgotten first).
MAX_TRACKED = 10_000


@dataclass(frozen=True, slots=True)
class BrandIds:
    """The source and instance ids of the brand's sources list."""

    sources: frozenset[str]
    instances: frozenset[str]

    @classmethod
    def from_sources_json(cls, body: bytes) -> BrandIds:
        """Read the ids out of the cached ``/v1/thrillpots/sources`` body (our own bytes)."""
        listed = json.loads(body)
        return cls(
            sources=frozenset(source["source_id"] for source in listed),
            instances=frozenset(
                jackpot["instance_id"] for source in listed for jackpot in source["jackpots"]
            ),
        )


class KnownIds:
    """Whether an id is one of the brand's, from a sources body the cache keeps.

    :param read_sources: returns the cached sources body and its ETag, fetching it when the
        cache has none; ``force=True`` fetches it afresh. It raises
        :class:`~flask_thrillconnect.errors.ThrillConnectError` when upstream fails.
    :param clock: monotonic seconds (a fake one in tests).
    """

    def __init__(
        self,
        read_sources: Callable[[bool], tuple[bytes, str]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read_sources = read_sources
        self._clock = clock
        self._lock = threading.Lock()
        self._parsed: tuple[str, BrandIds] | None = None
        self._last_forced = -math.inf

    def is_source(self, source_id: str) -> bool:
        return self._is_known(source_id, lambda ids: ids.sources)

    def is_instance(self, instance_id: str) -> bool:
        return self._is_known(instance_id, lambda ids: ids.instances)

    def _is_known(self, value: str, pick: Callable[[BrandIds], frozenset[str]]) -> bool:
        ids = self._current(force=False)
        if ids is None or value in pick(ids):
            # Without a sources list nothing can be ruled out: upstream answers for itself
            # (and the miss limiter still bounds each browser).
            return True
        if not self._may_force():
            return False
        ids = self._current(force=True)
        return ids is None or value in pick(ids)

    def _may_force(self) -> bool:
        """At most one forced refresh per interval, whoever asks."""
        now = self._clock()
        with self._lock:
            if now - self._last_forced < KNOWN_IDS_REFRESH_INTERVAL:
                return False
            self._last_forced = now
            return True

    def _current(self, *, force: bool) -> BrandIds | None:
        try:
            body, etag = self._read_sources(force)
        except ThrillConnectError:
            return None
        parsed = self._parsed
        if parsed is not None and parsed[0] == etag:
            return parsed[1]
        ids = BrandIds.from_sources_json(body)
        self._parsed = (etag, ids)
        return ids


class NotFoundMemory:
    """Cache keys that upstream answered 404 for, each remembered for :data:`NOT_FOUND_TTL`."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._until: OrderedDict[str, float] = OrderedDict()

    def remember(self, key: str) -> None:
        with self._lock:
            self._until[key] = self._clock() + NOT_FOUND_TTL
            self._until.move_to_end(key)
            while len(self._until) > MAX_TRACKED:
                self._until.popitem(last=False)

    def knows(self, key: str) -> bool:
        with self._lock:
            until = self._until.get(key)
            if until is None:
                return False
            if until <= self._clock():
                del self._until[key]
                return False
            return True


class MissLimiter:
    """Token buckets per browser for the requests that would ask upstream."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # browser -> (tokens left, when counted)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, requester: str) -> None:
        """Count one miss for ``requester``.

        :raises RateLimited: when its bucket is empty.
        """
        now = self._clock()
        with self._lock:
            tokens, counted = self._buckets.pop(requester, (float(MISS_BURST), now))
            tokens = min(float(MISS_BURST), tokens + (now - counted) * MISS_PER_SECOND)
            allowed = tokens >= 1
            self._buckets[requester] = (tokens - 1 if allowed else tokens, now)
            while len(self._buckets) > MAX_TRACKED:
                self._buckets.popitem(last=False)
        if not allowed:
            raise RateLimited(
                "too many requests for data that is not cached; slow down",
                retry_after=math.ceil((1 - tokens) / MISS_PER_SECOND),
            )
