"""Caching of upstream responses: :class:`ResponseCache` over a :class:`Storage` backend."""

from flask_thrillconnect.cache.response_cache import (
    CacheClosed,
    CacheError,
    CacheResult,
    CacheStatus,
    CacheWaitTimeout,
    ResponseCache,
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
    "CacheResult",
    "CacheStatus",
    "CacheWaitTimeout",
    "Entry",
    "MemoryStorage",
    "ResponseCache",
    "Storage",
    "make_entry",
    "make_etag",
    "make_storage",
]
