"""Cache entries and the coordination of their fetches, in Redis (cluster mode).

Keys of one cache key ``k``, all under the portal's prefix (``THRILLCONNECT_REDIS_PREFIX``):

- ``cache:entry:k`` — the entry (:func:`encode_entry`), expiring at its ``stale_until``;
- ``cache:lock:k`` — who fetches ``k`` now: a random token, ``SET NX PX`` (expires after the
  upstream timeout, so a leader that died blocks nobody longer);
- ``cache:fence:k`` — the token whose write is still accepted: a claim sets it, a ``set`` or
  ``delete`` removes it, so the write of a leader that lost its lock (expired and taken by
  another process) or was overtaken by a newer value is refused;
- ``cache:backoff:k`` — upstream failed for ``k``: nobody asks again until it expires.

Nothing here scans keys but :meth:`RedisStorage.clear` and :meth:`RedisStorage.expire`, for
tests and operations (``ThrillConnect.cache_clear``); every other call is one round trip (a
Lua script or a pipeline) and raises redis-py's errors, which
:class:`~flask_thrillconnect.cache.shared_storage.SharedStorage` turns into per-process fallback.
"""

from __future__ import annotations

import logging
import secrets
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .coordination import BackingOff, Busy, Claim, Lead
from .storage import Entry

if TYPE_CHECKING:
    import redis

    from ..redis_connection import RedisKeys

__all__ = ["RedisStorage", "decode_entry", "encode_entry"]

logger = logging.getLogger("flask_thrillconnect.cache")

# magic, stored_at, fresh_until, stale_until, length of the ETag; then the ETag, then the body.
_HEADER = struct.Struct("!4sdddH")
_MAGIC = b"tce1"
#: Polling of a follower: first interval, doubling up to the last (seconds).
POLL_FIRST = 0.005
POLL_MAX = 0.05

# KEYS: lock, fence, backoff. ARGV: token, hold ms, fence ms, "1" to respect the back-off.
_CLAIM = """
if ARGV[4] == '1' then
  local left = redis.call('PTTL', KEYS[3])
  if left > 0 then return {'backoff', left} end
end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'busy', 0} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
return {'lead', 0}
"""
# KEYS: entry, lock, fence, backoff. ARGV: token, payload ('' deletes), expiry (epoch ms).
_COMMIT = """
local ours = redis.call('GET', KEYS[3]) == ARGV[1]
if ours then
  if ARGV[2] == '' then redis.call('DEL', KEYS[1])
  else redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3]) end
  redis.call('DEL', KEYS[3], KEYS[4])
end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return ours and 1 or 0
"""
# KEYS: lock, fence, backoff. ARGV: token, back-off ms (0: none).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[3], '1', 'PX', ARGV[2]) end
return 0
"""


def encode_entry(entry: Entry) -> bytes:
    """The bytes stored in Redis: a small binary header, the ETag, the body as is."""
    etag = entry.etag.encode("ascii")
    header = _HEADER.pack(_MAGIC, entry.stored_at, entry.fresh_until, entry.stale_until, len(etag))
    return header + etag + entry.value


def decode_entry(data: bytes) -> Entry:
    """The entry :func:`encode_entry` made.

    :raises ValueError: ``data`` is not such an entry.
    """
    try:
        magic, stored_at, fresh_until, stale_until, etag_length = _HEADER.unpack_from(data)
    except struct.error as exc:
        raise ValueError("not a cache entry") from exc
    if magic != _MAGIC or len(data) < _HEADER.size + etag_length:
        raise ValueError("not a cache entry")
    start = _HEADER.size + etag_length
    return Entry(
        value=data[start:],
        etag=data[_HEADER.size : start].decode("ascii"),
        stored_at=stored_at,
        fresh_until=fresh_until,
        stale_until=stale_until,
    )


def _glob(prefix: str) -> str:
    """A ``SCAN MATCH`` pattern for every key starting with ``prefix`` (taken literally)."""
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in prefix) + "*"


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisStorage:
    """Entries, leads and back-offs of one portal's cache in Redis; redis-py errors propagate.

    :param client: a client with bounded timeouts
        (:func:`~flask_thrillconnect.redis_connection.connect`).
    :param keys: the portal's key names.
    :param clock: wall-clock time source (epoch seconds), to judge entries' lifetimes.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._keys = keys
        self._clock = clock
        self._claim = client.register_script(_CLAIM)
        self._commit = client.register_script(_COMMIT)
        self._release = client.register_script(_RELEASE)

    def close(self) -> None:
        """Close the client's connections (a later call opens new ones)."""
        self._client.close()

    def ping(self) -> None:
        """Raise redis-py's error when Redis does not answer."""
        self._client.ping()

    # -- entries -------------------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        return self._decoded(key, self._client.get(self._name("entry", key)))

    def set(self, key: str, entry: Entry) -> None:
        """Store ``entry`` and supersede every lead of ``key`` issued before."""
        entry_key, fence, backoff = self._name("entry", key), *self._names(key, "fence", "backoff")
        pipe = self._client.pipeline(transaction=True)
        if entry.is_usable(self._clock()):
            pipe.set(entry_key, encode_entry(entry), pxat=_ms(entry.stale_until))
        else:
            pipe.delete(entry_key)
        pipe.delete(fence, backoff)
        pipe.execute()

    def delete(self, key: str) -> None:
        """Forget ``key`` and supersede every lead of it issued before."""
        self._client.delete(self._name("entry", key), *self._names(key, "fence", "backoff"))

    def clear(self) -> None:
        """Forget every entry, lead and back-off of the portal's cache (a scan of its keys)."""
        names = list(self._client.scan_iter(match=_glob(self._keys("cache", "")), count=500))
        for start in range(0, len(names), 500):
            self._client.delete(*names[start : start + 500])

    def expire(self, now: float) -> None:
        """Make every entry stale from ``now`` on (a scan; an entry written meanwhile by
        another process may be overwritten with its expired predecessor: for tests)."""
        for name in self._client.scan_iter(match=_glob(self._name("entry", "")), count=500):
            data = self._client.get(name)
            entry = self._decoded(str(name), data)
            if entry is not None and entry.fresh_until > now:
                self._client.set(name, encode_entry(entry.expired(now)), keepttl=True, xx=True)

    # -- coordination --------------------------------------------------------------------------

    def claim(self, key: str, hold: float, *, respect_backoff: bool) -> Claim:
        token = secrets.token_hex(16)
        outcome, left = self._claim(
            keys=self._names(key, "lock", "fence", "backoff"),
            args=[token, _ms(hold), _ms(2 * hold), "1" if respect_backoff else "0"],
        )
        if outcome == b"lead":
            return Lead(key, token)
        if outcome == b"backoff":
            return BackingOff(int(left) / 1000)
        return Busy()

    def commit(self, lead: Lead, entry: Entry | None) -> bool:
        if entry is not None and not entry.is_usable(self._clock()):
            entry = None
        payload = b"" if entry is None else encode_entry(entry)
        expiry = 0 if entry is None else _ms(entry.stale_until)
        written = self._commit(
            keys=[
                self._name("entry", lead.key),
                *self._names(lead.key, "lock", "fence", "backoff"),
            ],
            args=[lead.token, payload, expiry],
        )
        return bool(written)

    def release(self, lead: Lead, backoff: float = 0.0) -> None:
        self._release(
            keys=self._names(lead.key, "lock", "fence", "backoff"),
            args=[lead.token, _ms(backoff) if backoff > 0 else 0],
        )

    def follow(self, key: str, timeout: float) -> Entry | BackingOff | None:
        """Poll (5 ms, doubling to 50 ms) until the leader's entry is there, it failed (a
        back-off and no lock), nobody leads, or ``timeout`` has passed."""
        names = (self._name("entry", key), *self._names(key, "lock", "backoff"))
        deadline = time.monotonic() + timeout
        interval = POLL_FIRST
        while True:
            pipe = self._client.pipeline(transaction=False)
            pipe.get(names[0])
            pipe.exists(names[1])
            pipe.pttl(names[2])
            data, locked, backoff_ms = pipe.execute()
            entry = self._decoded(key, data)
            if entry is not None and entry.is_usable(self._clock()):
                return entry
            if not locked:
                return BackingOff(backoff_ms / 1000) if backoff_ms > 0 else None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(interval, left))
            interval = min(2 * interval, POLL_MAX)

    # -- names ---------------------------------------------------------------------------------

    def _name(self, kind: str, key: str) -> str:
        return self._keys("cache", kind, key)

    def _names(self, key: str, *kinds: str) -> list[str]:
        return [self._name(kind, key) for kind in kinds]

    @staticmethod
    def _decoded(key: str, data: Any) -> Entry | None:
        if data is None:
            return None
        try:
            return decode_entry(data)
        except ValueError:
            # Not ours (another writer under our prefix): treat as missing, it gets replaced.
            logger.warning("ignoring an unreadable cache entry for %r in Redis", key)
            return None
