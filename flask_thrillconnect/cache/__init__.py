"""Caching of upstream responses: :class:`ResponseCache` over a :class:`Storage` backend
(in-process, or shared by the cluster through Redis: a :class:`ClusterStorage`)."""

from flask_thrillconnect.cache.coordination import ClusterStorage
from flask_thrillconnect.cache.response_cache import ResponseCache
from flask_thrillconnect.cache.results import (
    CacheClosed,
    CacheError,
    CacheLeaderFailed,
    CacheResult,
    CacheStatus,
    CacheWaitTimeout,
)
from flask_thrillconnect.cache.storage import (
    Entry,
    MemoryStorage,
    Storage,
    make_entry,
    make_etag,
    make_storage,
)

__all__ = [
    "CacheClosed",
    "CacheError",
    "CacheLeaderFailed",
    "CacheResult",
    "CacheStatus",
    "CacheWaitTimeout",
    "ClusterStorage",
    "Entry",
    "MemoryStorage",
    "ResponseCache",
    "Storage",
    "make_entry",
    "make_etag",
    "make_storage",
]
