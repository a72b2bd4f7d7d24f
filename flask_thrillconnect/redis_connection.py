"""The Redis connection of cluster mode (``THRILLCONNECT_REDIS_URL``), and its key names.

redis-py is an optional dependency (the ``[redis]`` extra): it is imported here only, when a
Redis URL is configured. Every call is bounded by short socket timeouts, so a Redis that is
down or slow costs a request a fraction of a second before the caller falls back to
per-process mode, never a hang.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import ConfigurationError

if TYPE_CHECKING:
    import redis

__all__ = ["COMMAND_TIMEOUT", "CONNECT_TIMEOUT", "RedisKeys", "connect"]

#: Seconds a TCP connect to Redis may take.
CONNECT_TIMEOUT = 0.5
#: Seconds one Redis command may take (blocking reads pass their own, longer, timeout).
COMMAND_TIMEOUT = 0.5


def connect(url: str) -> redis.Redis:
    """A client of the Redis at ``url`` with bounded timeouts (no connection is made yet).

    :raises ConfigurationError: redis-py is not installed (the ``[redis]`` extra).
    """
    try:
        import redis
    except ImportError:
        raise ConfigurationError(
            "THRILLCONNECT_REDIS_URL needs redis-py: pip install 'flask-thrillconnect[redis]'"
        ) from None
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=COMMAND_TIMEOUT,
        health_check_interval=30,
    )


class RedisKeys:
    """Every Redis key of one portal starts with its prefix (``THRILLCONNECT_REDIS_PREFIX``),
    so that portals can share one Redis."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, *parts: str) -> str:
        """``keys("cache", "s:ticker:x")`` → ``thrillconnect:op:brand:cache:s:ticker:x``."""
        return self.prefix + ":".join(parts)
