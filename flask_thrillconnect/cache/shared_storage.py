"""The cluster's cache storage: Redis, a near cache in front, per-process memory when Redis fails.

:class:`SharedStorage` is a :class:`~flask_thrillconnect.cache.coordination.ClusterStorage`:
every worker of every node reads and writes the same entries and leads, through
:class:`~flask_thrillconnect.cache.redis_storage.RedisStorage`. When Redis is down, slow or
refuses a command, a :class:`~flask_thrillconnect.cache.breaker.CircuitBreaker` opens: for a
few seconds the process keeps its entries in a :class:`MemoryStorage` and leads every fetch
itself (the cache's in-process single-flight still holds), then Redis is tried again. No
method raises for Redis's sake, and none waits longer than the client's timeouts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from .breaker import CircuitBreaker
from .coordination import BackingOff, Claim, Lead
from .near_cache import NEAR_TTL, NearCache
from .redis_storage import RedisStorage
from .storage import Entry, MemoryStorage

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["REDIS_RETRY_AFTER", "SharedStorage", "make_shared_storage"]

#: Seconds the cache runs per process after a Redis failure before trying Redis again.
REDIS_RETRY_AFTER = 5.0

_T = TypeVar("_T")


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    # OSError: what a socket raises before redis-py wraps it, to be safe.
    return (redis.RedisError, OSError)


class SharedStorage:
    """Cache entries shared through Redis, with a near cache and a fallback.

    :param redis: the Redis side.
    :param near: copies of fresh entries for ``NEAR_TTL`` seconds at most.
    :param fallback: where entries live while Redis fails.
    :param breaker: when Redis is left alone.
    """

    def __init__(
        self,
        redis: RedisStorage,
        *,
        near: NearCache | None = None,
        fallback: MemoryStorage | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.redis = redis
        self.near = near if near is not None else NearCache()
        self.fallback = fallback if fallback is not None else MemoryStorage()
        self.breaker = breaker if breaker is not None else CircuitBreaker(REDIS_RETRY_AFTER)
        self._errors = _redis_errors()

    def close(self) -> None:
        """Close the Redis connections."""
        self.redis.close()

    @property
    def mode(self) -> str:
        """``"redis"`` (shared by the cluster) or ``"fallback"`` (per process)."""
        return "fallback" if self.breaker.is_open else "redis"

    # -- Storage -------------------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        entry = self.near.get(key)
        if entry is not None:
            return entry
        entry = self._shared(lambda: self.redis.get(key), lambda: self.fallback.get(key))
        if entry is not None:
            self.near.put(key, entry)
        return entry

    def set(self, key: str, entry: Entry) -> None:
        self.near.put(key, entry)  # this process sees its own write at once
        self._shared(lambda: self.redis.set(key, entry), lambda: self.fallback.set(key, entry))

    def delete(self, key: str) -> None:
        self.near.discard(key)
        self._shared(lambda: self.redis.delete(key), lambda: self.fallback.delete(key))

    def __len__(self) -> int:
        """Entries held in this process: the fallback's, or the near cache's (Redis's own
        count would need a scan of the keys)."""
        return len(self.fallback) if self.breaker.is_open else len(self.near)

    def clear(self) -> None:
        """Forget every entry: this process's copies and, when it answers, Redis's."""
        self.near.clear()
        self.fallback.clear()
        self._shared(self.redis.clear, lambda: None)

    def expire(self, now: float) -> None:
        self.near.clear()  # copies are fresh by definition
        self.fallback.expire(now)
        self._shared(lambda: self.redis.expire(now), lambda: None)

    # -- ClusterStorage ------------------------------------------------------------------------

    def claim(self, key: str, hold: float, *, respect_backoff: bool) -> Claim:
        local = Lead(key, "", shared=False)
        return self._shared(
            lambda: self.redis.claim(key, hold, respect_backoff=respect_backoff), lambda: local
        )

    def commit(self, lead: Lead, entry: Entry | None) -> bool:
        def local() -> bool:
            self._store_locally(lead.key, entry)
            return True

        if not lead.shared:
            return local()
        written = self._shared(lambda: self.redis.commit(lead, entry), local)
        if written and entry is not None:
            self.near.put(lead.key, entry)
        elif entry is None:
            self.near.discard(lead.key)
        return written

    def release(self, lead: Lead, backoff: float = 0.0) -> None:
        if lead.shared:
            # On failure the lock expires by itself.
            self._shared(lambda: self.redis.release(lead, backoff), lambda: None)

    def follow(self, key: str, timeout: float) -> Entry | BackingOff | None:
        # None on failure: the next claim leads in this process.
        return self._shared(lambda: self.redis.follow(key, timeout), lambda: None)

    def stats(self) -> dict[str, int | str]:
        # Figures are read by /health even when no request needs the cache: while the
        # circuit is open, they are the breaker's probe too (at most once per retry_after,
        # bounded by the client's timeouts), so the mode shown does not lag behind Redis.
        if self.breaker.is_open:
            self._shared(self.redis.ping, lambda: None)
        return {"mode": self.mode, "redis_failures": self.breaker.failures}

    # -- inside --------------------------------------------------------------------------------

    def _shared(self, call: Callable[[], _T], fallback: Callable[[], _T]) -> _T:
        """``call()`` on Redis while the breaker allows it and it works, else ``fallback()``."""
        if not self.breaker.allows():
            return fallback()
        try:
            result = call()
        except self._errors as exc:
            self.breaker.failed(exc)
            return fallback()
        if self.breaker.is_open:
            # Back to Redis: the copies this process kept alone are of no more use.
            self.fallback = MemoryStorage(self.fallback.max_entries)
            self.breaker.succeeded()
        return result

    def _store_locally(self, key: str, entry: Entry | None) -> None:
        if entry is None:
            self.fallback.delete(key)
        else:
            self.fallback.set(key, entry)
            self.near.put(key, entry)


def make_shared_storage(settings: Settings) -> SharedStorage:
    """The storage of cluster mode: ``THRILLCONNECT_REDIS_URL``, keys under
    ``THRILLCONNECT_REDIS_PREFIX``, near cache and fallback bounded by
    ``THRILLCONNECT_CACHE_MAX_ENTRIES``."""
    from ..redis_connection import RedisKeys, connect

    assert settings.redis_url is not None
    return SharedStorage(
        RedisStorage(connect(settings.redis_url), RedisKeys(settings.redis_prefix)),
        near=NearCache(NEAR_TTL, settings.cache_max_entries),
        fallback=MemoryStorage(settings.cache_max_entries),
    )
