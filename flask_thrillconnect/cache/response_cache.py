"""The response cache the REST proxy sits on: single-flight, stale-while-revalidate and
stale-if-error, over any :class:`~flask_thrillconnect.cache.storage.Storage`.

It is built for gunicorn ``gthread`` workers: a cold key costs one upstream fetch however many
threads ask for it at once, an expired key is answered at once while one background refresh
runs, and a failing upstream is asked at most once per back-off period per key.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Literal

from ..errors import ThrillConnectError
from .storage import Entry, MemoryStorage, Storage, make_entry

__all__ = [
    "CacheClosed",
    "CacheError",
    "CacheResult",
    "CacheStatus",
    "CacheWaitTimeout",
    "ResponseCache",
]

logger = logging.getLogger("flask_thrillconnect.cache")

#: nginx's ``X-Cache`` vocabulary.
CacheStatus = Literal["HIT", "MISS", "STALE", "UPDATING"]

_STAT_OF_STATUS: dict[str, str] = {
    "HIT": "hits",
    "MISS": "misses",
    "STALE": "stale",
    "UPDATING": "updating",
}
# Keys whose upstream failed are remembered for the back-off; bounded like everything else.
_MAX_BACKOFF_KEYS = 10_000


class CacheError(ThrillConnectError):
    """Base class of the errors raised by :class:`ResponseCache` itself."""


class CacheWaitTimeout(CacheError, TimeoutError):
    """Another request's upstream fetch of the same key did not finish within ``wait_timeout``."""

    code = 504
    error = "upstream_timeout"


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


def _always_upstream_failure(exc: BaseException) -> bool:
    return True


class _Flight:
    """One fetch in progress for one key; other callers of that key wait on it."""

    __slots__ = ("done", "error", "result", "superseded")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: CacheResult | None = None
        self.error: BaseException | None = None
        # Set when put()/invalidate() run during the fetch: its older value must not be stored.
        self.superseded = False


class _Counters:
    """Thread-safe event counters for :meth:`ResponseCache.stats`."""

    def __init__(self, *names: str) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(names, 0)

    def incr(self, name: str) -> None:
        with self._lock:
            self._values[name] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


class ResponseCache:
    """Cache of serialized upstream responses, safe to share between threads.

    :param storage: where entries live; a :class:`MemoryStorage` on ``clock`` by default.
    :param stale_ttl: seconds an expired entry may stand in (refresh running, upstream down).
    :param wait_timeout: seconds a caller waits for another caller's fetch of the same key
        before :class:`CacheWaitTimeout` is raised.
    :param clock: wall-clock time source (epoch seconds), shared with a shared storage.
    :param is_upstream_failure: whether a fetch exception means "upstream unavailable" (a stale
        copy may stand in) rather than a definitive answer such as a 404, which propagates and
        drops the stale copy. By default every exception is an upstream failure.
    :param refresh_workers: threads refreshing expired entries in the background.
    :param failure_backoff: seconds during which a key whose upstream just failed is served
        stale without asking upstream again.
    :param max_pending_refreshes: background refreshes queued or running at most; beyond it an
        expired key is fetched by the request itself.
    """

    def __init__(
        self,
        storage: Storage | None = None,
        *,
        stale_ttl: float = 300.0,
        wait_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        is_upstream_failure: Callable[[BaseException], bool] = _always_upstream_failure,
        refresh_workers: int = 4,
        failure_backoff: float = 1.0,
        max_pending_refreshes: int = 256,
    ) -> None:
        if stale_ttl < 0 or wait_timeout <= 0 or failure_backoff < 0:
            raise ValueError("stale_ttl and failure_backoff must be >= 0, wait_timeout > 0")
        if refresh_workers < 1 or max_pending_refreshes < 1:
            raise ValueError("refresh_workers and max_pending_refreshes must be at least 1")
        self.storage: Storage = storage if storage is not None else MemoryStorage(clock=clock)
        self._stale_ttl = stale_ttl
        self._wait_timeout = wait_timeout
        self._clock = clock
        self._is_upstream_failure = is_upstream_failure
        self._refresh_workers = refresh_workers
        self._failure_backoff = failure_backoff
        self._max_pending_refreshes = max_pending_refreshes
        self._counters = _Counters(
            "hits", "misses", "stale", "updating", "coalesced", "fetches", "fetch_errors"
        )
        # _lock guards the bookkeeping below and is never held while fetching or waiting.
        # _write_lock orders storage writes against put()/invalidate(), so a fetch that started
        # before them never overwrites their newer state. Order: _write_lock, then _lock.
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}
        self._refreshing: set[_Flight] = set()
        self._backoff_until: OrderedDict[str, float] = OrderedDict()
        self._pool: ThreadPoolExecutor | None = None
        self._pid = os.getpid()
        self._closed = False

    # -- reading -----------------------------------------------------------------------------

    def lookup(self, key: str, fetch: Callable[[], bytes], ttl: float) -> CacheResult:
        """Return the entry for ``key``, calling ``fetch`` when needed.

        :param fetch: asks upstream and returns the serialized body; called by at most one
            thread per key at a time, never while a lock is held.
        :param ttl: seconds a newly fetched value stays fresh.
        :raises CacheWaitTimeout: when waiting for another caller's fetch takes too long.
        :raises Exception: what ``fetch`` raised, when no usable copy can stand in.
        """
        now = self._clock()
        entry = self._usable(self.storage.get(key), now)
        if entry is not None and entry.is_fresh(now):
            return self._counted(CacheResult(entry, "HIT"))
        pool: ThreadPoolExecutor | None = None
        with self._lock:
            self._forget_parent_process()
            flight = self._flights.get(key)
            if entry is not None and flight is not None:
                return self._counted(CacheResult(entry, "UPDATING"))
            if entry is not None and self._backing_off(key, now):
                return self._counted(CacheResult(entry, "STALE"))
            if flight is not None:
                self._counters.incr("coalesced")
                waiting = True
            else:
                flight = self._flights[key] = _Flight()
                waiting = False
                pool = self._refresh_pool() if entry is not None else None
                if pool is not None:
                    self._refreshing.add(flight)
        if waiting:
            return self._wait_for(key, flight)
        if (
            entry is not None
            and pool is not None
            and self._start_refresh(pool, key, flight, fetch, ttl)
        ):
            return self._counted(CacheResult(entry, "UPDATING"))
        return self._counted(self._lead(key, flight, fetch, ttl))

    def stats(self) -> dict[str, int]:
        """Counters since start: ``hits``, ``misses``, ``stale``, ``updating`` (answers by
        status), ``coalesced`` (requests that waited for another's fetch), ``fetches``,
        ``fetch_errors``, and ``entries`` (held now)."""
        counts = self._counters.snapshot()
        counts["entries"] = len(self.storage)
        return counts

    # -- writing -----------------------------------------------------------------------------

    def peek(self, key: str) -> CacheResult | None:
        """The usable entry of ``key`` without ever asking upstream: ``HIT`` when fresh,
        ``STALE`` when not, ``None`` when there is none."""
        now = self._clock()
        entry = self._usable(self.storage.get(key), now)
        if entry is None:
            return None
        return CacheResult(entry, "HIT" if entry.is_fresh(now) else "STALE")

    def would_fetch(self, key: str) -> bool:
        """Whether a lookup of ``key`` now would ask upstream and wait for the answer: no
        usable copy, and no fetch of it already in progress to wait for."""
        if self._usable(self.storage.get(key), self._clock()) is not None:
            return False
        with self._lock:
            return key not in self._flights

    def put(self, key: str, value: bytes, ttl: float) -> Entry:
        """Store ``value`` under ``key`` (the live stream feeds the cache) and return its entry.

        A fetch of ``key`` running meanwhile will not overwrite it.
        """
        entry = make_entry(value, now=self._clock(), ttl=ttl, stale_ttl=self._stale_ttl)
        with self._write_lock:
            self.storage.set(key, entry)
            with self._lock:
                self._supersede(lambda candidate: candidate == key)
        return entry

    def invalidate(self, key: str) -> None:
        """Forget ``key``; a fetch of it running meanwhile will not store its result."""
        with self._write_lock:
            self.storage.delete(key)
            with self._lock:
                self._supersede(lambda candidate: candidate == key)

    def close(self, timeout: float = 5.0) -> None:
        """Stop background refreshing: queued refreshes are cancelled and running ones are
        awaited for at most ``timeout`` seconds. Lookups keep working, fetching inline."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            running = list(self._refreshing)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout
        for flight in running:
            if not flight.done.wait(max(0.0, deadline - time.monotonic())):
                logger.warning("cache closed with background refreshes still running")
                return

    # -- single flight -----------------------------------------------------------------------

    def _lead(
        self, key: str, flight: _Flight, fetch: Callable[[], bytes], ttl: float
    ) -> CacheResult:
        """Run ``flight`` for ``key`` and hand its outcome to the callers waiting on it."""
        try:
            result = self._fetch_and_store(key, flight, fetch, ttl)
        except BaseException as exc:
            self._finish(key, flight, error=exc)
            raise
        self._finish(key, flight, result=result)
        return result

    def _fetch_and_store(
        self, key: str, flight: _Flight, fetch: Callable[[], bytes], ttl: float
    ) -> CacheResult:
        now = self._clock()
        # Another leader may have stored the value between our miss and our taking the lead.
        current = self._usable(self.storage.get(key), now)
        if current is not None and current.is_fresh(now):
            return CacheResult(current, "HIT")
        self._counters.incr("fetches")
        try:
            value = fetch()
        except Exception as exc:
            self._counters.incr("fetch_errors")
            stale = self._stand_in_for_failure(key, flight, exc)
            if stale is None:
                raise
            return CacheResult(stale, "STALE")
        if not isinstance(value, bytes):
            raise TypeError(f"fetch must return bytes, not {type(value).__name__}")
        entry = make_entry(value, now=self._clock(), ttl=ttl, stale_ttl=self._stale_ttl)
        with self._write_lock:
            with self._lock:
                superseded = flight.superseded
                if not superseded:
                    self._backoff_until.pop(key, None)
            if not superseded:
                self.storage.set(key, entry)
        return CacheResult(entry, "MISS")

    def _stand_in_for_failure(self, key: str, flight: _Flight, exc: Exception) -> Entry | None:
        """Return the stale entry to serve after ``exc``, or ``None`` to let ``exc`` propagate."""
        if not self._is_upstream_failure(exc):
            # A definitive answer (e.g. 404): the old copy must not keep standing in for it.
            with self._write_lock:
                with self._lock:
                    superseded = flight.superseded
                if not superseded:
                    self.storage.delete(key)
            return None
        now = self._clock()
        with self._lock:
            self._remember_failure(key, now)
        stale = self._usable(self.storage.get(key), now)
        if stale is not None:
            logger.warning(
                "upstream failed for %r (%s); serving the copy stored at %.0f",
                key,
                type(exc).__name__,
                stale.stored_at,
            )
        return stale

    def _finish(
        self,
        key: str,
        flight: _Flight,
        *,
        result: CacheResult | None = None,
        error: BaseException | None = None,
    ) -> None:
        flight.result, flight.error = result, error
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
        flight.done.set()

    def _wait_for(self, key: str, flight: _Flight) -> CacheResult:
        if not flight.done.wait(self._wait_timeout):
            # No key in the message: it reaches the browser.
            raise CacheWaitTimeout(
                f"ThrillConnect did not answer in time (waited {self._wait_timeout:g} s for the "
                "same request from another visitor)"
            )
        if flight.error is not None:
            raise flight.error
        assert flight.result is not None
        return self._counted(flight.result)

    # -- background refresh ------------------------------------------------------------------

    def _refresh_pool(self) -> ThreadPoolExecutor | None:
        """The pool to refresh on, or ``None`` when closed or saturated. Called with _lock."""
        if self._closed or len(self._refreshing) >= self._max_pending_refreshes:
            return None
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self._refresh_workers, thread_name_prefix="thrillconnect-refresh"
            )
        return self._pool

    def _start_refresh(
        self,
        pool: ThreadPoolExecutor,
        key: str,
        flight: _Flight,
        fetch: Callable[[], bytes],
        ttl: float,
    ) -> bool:
        """Queue ``flight`` on ``pool``; ``False`` when close() shut the pool down meanwhile."""
        try:
            task = pool.submit(self._refresh, key, flight, fetch, ttl)
        except RuntimeError:
            with self._lock:
                self._refreshing.discard(flight)
            return False
        task.add_done_callback(partial(self._refresh_done, key, flight))
        return True

    def _refresh(self, key: str, flight: _Flight, fetch: Callable[[], bytes], ttl: float) -> None:
        try:
            self._lead(key, flight, fetch, ttl)
        except Exception as exc:
            logger.warning("background refresh of %r failed: %s: %s", key, type(exc).__name__, exc)

    def _refresh_done(self, key: str, flight: _Flight, task: Future[None]) -> None:
        with self._lock:
            self._refreshing.discard(flight)
        if task.cancelled():
            self._finish(key, flight, error=CacheClosed(f"cache closed before {key!r} refreshed"))

    def _forget_parent_process(self) -> None:
        """After a fork (gunicorn), drop the parent's refresh threads and fetches: they do not
        exist in this process. Called with _lock."""
        pid = os.getpid()
        if pid != self._pid:
            self._pid = pid
            self._pool = None
            self._flights.clear()
            self._refreshing.clear()

    # -- small helpers -----------------------------------------------------------------------

    def _backing_off(self, key: str, now: float) -> bool:
        """Whether upstream failed for ``key`` too recently to ask again. Called with _lock."""
        until = self._backoff_until.get(key)
        if until is None:
            return False
        if now < until:
            return True
        del self._backoff_until[key]
        return False

    def _remember_failure(self, key: str, now: float) -> None:
        """Start the back-off period of ``key``. Called with _lock."""
        self._backoff_until[key] = now + self._failure_backoff
        self._backoff_until.move_to_end(key)
        while len(self._backoff_until) > _MAX_BACKOFF_KEYS:
            self._backoff_until.popitem(last=False)

    def _supersede(self, matches: Callable[[str], bool]) -> None:
        """Mark running fetches of matching keys stale and end their back-off. Called with _lock."""
        for key, flight in self._flights.items():
            if matches(key):
                flight.superseded = True
        for key in [key for key in self._backoff_until if matches(key)]:
            del self._backoff_until[key]

    def _counted(self, result: CacheResult) -> CacheResult:
        self._counters.incr(_STAT_OF_STATUS[result.status])
        return result

    @staticmethod
    def _usable(entry: Entry | None, now: float) -> Entry | None:
        return entry if entry is not None and entry.is_usable(now) else None
