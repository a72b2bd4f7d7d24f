"""What :class:`~flask_thrillconnect.cache.ResponseCache` answers and raises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import ThrillConnectError, UpstreamUnavailable
from .storage import Entry

__all__ = [
    "CacheClosed",
    "CacheError",
    "CacheLeaderFailed",
    "CacheResult",
    "CacheStatus",
    "CacheWaitTimeout",
]

#: nginx's ``X-Cache`` vocabulary.
CacheStatus = Literal["HIT", "MISS", "STALE", "UPDATING"]


class CacheError(ThrillConnectError):
    """Base class of the errors raised by :class:`ResponseCache` itself."""


class CacheWaitTimeout(CacheError, TimeoutError):
    """Another request's upstream fetch of the same key did not finish within ``wait_timeout``."""

    code = 504
    error = "upstream_timeout"


class CacheLeaderFailed(CacheError, UpstreamUnavailable):
    """Another process's upstream fetch of the same key failed, and no copy can stand in.

    Cluster mode only: the waiters of one process get the leader's own exception, those of
    other processes get this one (an upstream failure: 502) instead of asking upstream again
    at once.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, error="upstream_unavailable")


class CacheClosed(CacheError):
    """The cache was closed before a queued background refresh could run."""


@dataclass(frozen=True, slots=True)
class CacheResult:
    """What :meth:`ResponseCache.lookup` answers.

    :param entry: the cached body, its ETag and lifetime.
    :param status: ``HIT`` (fresh), ``MISS`` (fetched for this request or the one it waited
        for), ``STALE`` (upstream failing, an older copy stands in) or ``UPDATING`` (expired
        copy served while a background refresh runs).
    """

    entry: Entry
    status: CacheStatus
