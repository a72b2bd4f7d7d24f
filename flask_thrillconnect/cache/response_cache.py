"""The response cache the REST proxy sits on: single-flight, stale-while-revalidate and
stale-if-error, over any :class:`~flask_thrillconnect.cache.storage.Storage`.

It is built for gunicorn ``gthread`` workers: a cold key costs one upstream fetch however many
threads ask for it at once, an expired key is answered at once while one background refresh
runs, and a failing upstream is asked at most once per back-off period per key.

Over a :class:`~flask_thrillconnect.cache.coordination.ClusterStorage` (Redis, in cluster mode)
the same holds for the whole cluster: the one thread of each process that would fetch first
claims the key's cluster-wide lead; the process that gets it fetches, the others follow (wait
for its entry), and a failure's back-off is kept in the shared store.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

from .coordination import BackingOff, ClusterStorage, Lead
from .flight import Backoffs, Counters, Flight
from .results import CacheClosed, CacheLeaderFailed, CacheResult, CacheWaitTimeout
from .storage import Entry, MemoryStorage, Storage, make_entry

__all__ = ["ResponseCache"]

logger = logging.getLogger("flask_thrillconnect.cache")

_STAT_OF_STATUS: dict[str, str] = {
    "HIT": "hits",
    "MISS": "misses",
    "STALE": "stale",
    "UPDATING": "updating",
}


def _always_upstream_failure(exc: BaseException) -> bool:
    return True


class ResponseCache:
    """Cache of serialized upstream responses, safe to share between threads.

    :param storage: where entries live; a :class:`MemoryStorage` on ``clock`` by default. Over
        a :class:`ClusterStorage` (cluster mode), single-flight, refreshes and back-offs hold
        for every process sharing it.
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
    :param lock_ttl: over a :class:`ClusterStorage`, seconds a process's lead of a key lasts
        at most (the lock's expiry), so a leader that died blocks the key no longer;
        ``wait_timeout`` by default (as long as a fetch may take).
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
        lock_ttl: float | None = None,
    ) -> None:
        if stale_ttl < 0 or wait_timeout <= 0 or failure_backoff < 0:
            raise ValueError("stale_ttl and failure_backoff must be >= 0, wait_timeout > 0")
        if lock_ttl is not None and lock_ttl <= 0:
            raise ValueError("lock_ttl must be positive")
        if refresh_workers < 1 or max_pending_refreshes < 1:
            raise ValueError("refresh_workers and max_pending_refreshes must be at least 1")
        self.storage: Storage = storage if storage is not None else MemoryStorage(clock=clock)
        # A storage shared by processes also coordinates their fetches; None: one process.
        self._cluster = storage if isinstance(storage, ClusterStorage) else None
        self._lock_ttl = lock_ttl if lock_ttl is not None else wait_timeout
        self._stale_ttl = stale_ttl
        self._wait_timeout = wait_timeout
        self._clock = clock
        self._is_upstream_failure = is_upstream_failure
        self._refresh_workers = refresh_workers
        self._failure_backoff = failure_backoff
        self._max_pending_refreshes = max_pending_refreshes
        self._counters = Counters(
            "hits", "misses", "stale", "updating", "coalesced", "fetches", "fetch_errors"
        )
        # _lock guards the bookkeeping below and is never held while fetching or waiting.
        # _write_lock orders storage writes against put()/invalidate(), so a fetch that started
        # before them never overwrites their newer state. Order: _write_lock, then _lock.
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._flights: dict[str, Flight] = {}
        self._refreshing: set[Flight] = set()
        self._backoffs = Backoffs()
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
            if entry is not None and self._backoffs.active(key, now):
                return self._counted(CacheResult(entry, "STALE"))
            if flight is not None:
                self._counters.incr("coalesced")
                waiting = True
            else:
                flight = self._flights[key] = Flight()
                waiting = False
                pool = self._refresh_pool() if entry is not None else None
                if pool is not None:
                    self._refreshing.add(flight)
        if waiting:
            return self._wait_for(key, flight)
        lead: Lead | None = None
        if self._cluster is not None:
            claimed = self._claim(key, flight, entry)
            if not isinstance(claimed, Lead):
                return self._counted(claimed)
            lead = claimed
        if (
            entry is not None
            and pool is not None
            and self._start_refresh(pool, key, flight, fetch, ttl, lead)
        ):
            return self._counted(CacheResult(entry, "UPDATING"))
        return self._counted(self._lead(key, flight, fetch, ttl, lead))

    def stats(self) -> dict[str, int | str]:
        """Counters since start: ``hits``, ``misses``, ``stale``, ``updating`` (answers by
        status), ``coalesced`` (requests that waited for another's fetch), ``fetches``,
        ``fetch_errors``, and ``entries`` (held now); over a :class:`ClusterStorage`, its
        figures too (``mode``: ``"redis"`` or ``"fallback"``)."""
        counts: dict[str, int | str] = dict(self._counters.snapshot())
        counts["entries"] = len(self.storage)
        if self._cluster is not None:
            counts.update(self._cluster.stats())
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

    def clear(self) -> None:
        """Forget every entry (in every process, over a shared storage); fetches running
        meanwhile will not store their results."""
        with self._write_lock:
            self.storage.clear()
            with self._lock:
                self._supersede(lambda candidate: True)

    def expire(self) -> None:
        """Make every entry stale now, as if its freshness had run out: the next lookup
        refreshes it (answering the stale copy meanwhile, as usual)."""
        with self._write_lock:
            self.storage.expire(self._clock())

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
                break
        self.storage.close()

    # -- single flight -----------------------------------------------------------------------

    def _lead(
        self,
        key: str,
        flight: Flight,
        fetch: Callable[[], bytes],
        ttl: float,
        lead: Lead | None = None,
    ) -> CacheResult:
        """Run ``flight`` for ``key`` (holding the cluster's ``lead`` of it, if any) and hand
        its outcome to the callers waiting on it."""
        try:
            result = self._fetch_and_store(key, flight, fetch, ttl, lead)
        except BaseException as exc:
            self._finish(key, flight, error=exc)
            raise
        self._finish(key, flight, result=result)
        return result

    def _fetch_and_store(
        self,
        key: str,
        flight: Flight,
        fetch: Callable[[], bytes],
        ttl: float,
        lead: Lead | None,
    ) -> CacheResult:
        now = self._clock()
        # Another leader may have stored the value between our miss and our taking the lead.
        current = self._usable(self.storage.get(key), now)
        if current is not None and current.is_fresh(now):
            self._release(lead)
            return CacheResult(current, "HIT")
        self._counters.incr("fetches")
        try:
            value = fetch()
        except Exception as exc:
            self._counters.incr("fetch_errors")
            stale = self._stand_in_for_failure(key, flight, exc, lead)
            if stale is None:
                raise
            return CacheResult(stale, "STALE")
        except BaseException:
            self._release(lead)
            raise
        if not isinstance(value, bytes):
            self._release(lead)
            raise TypeError(f"fetch must return bytes, not {type(value).__name__}")
        entry = make_entry(value, now=self._clock(), ttl=ttl, stale_ttl=self._stale_ttl)
        self._store(key, flight, entry, lead)
        return CacheResult(entry, "MISS")

    def _store(self, key: str, flight: Flight, entry: Entry | None, lead: Lead | None) -> None:
        """Write what ``flight`` fetched (``None``: a definitive answer, drop the key) unless
        put()/invalidate() superseded it meanwhile; in a cluster, only while ``lead`` is the
        newest writer of the key (its fencing token)."""
        with self._write_lock:
            with self._lock:
                superseded = flight.superseded
                if not superseded and entry is not None:
                    self._backoffs.end(lambda candidate: candidate == key)
            if superseded:
                self._release(lead)
            elif lead is not None and self._cluster is not None:
                self._cluster.commit(lead, entry)
            elif entry is None:
                self.storage.delete(key)
            else:
                self.storage.set(key, entry)

    def _stand_in_for_failure(
        self, key: str, flight: Flight, exc: Exception, lead: Lead | None
    ) -> Entry | None:
        """Return the stale entry to serve after ``exc``, or ``None`` to let ``exc`` propagate."""
        if not self._is_upstream_failure(exc):
            # A definitive answer (e.g. 404): the old copy must not keep standing in for it.
            self._store(key, flight, None, lead)
            return None
        now = self._clock()
        with self._lock:
            self._remember_failure(key, now)
        # The back-off holds for every process: the shared store keeps it.
        self._release(lead, self._failure_backoff)
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
        flight: Flight,
        *,
        result: CacheResult | None = None,
        error: BaseException | None = None,
    ) -> None:
        flight.result, flight.error = result, error
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
        flight.done.set()

    def _wait_for(self, key: str, flight: Flight) -> CacheResult:
        if not flight.done.wait(self._wait_timeout):
            raise self._wait_timed_out()
        if flight.error is not None:
            raise flight.error
        assert flight.result is not None
        return self._counted(flight.result)

    def _wait_timed_out(self) -> CacheWaitTimeout:
        # No key in the message: it reaches the browser.
        return CacheWaitTimeout(
            f"ThrillConnect did not answer in time (waited {self._wait_timeout:g} s for the "
            "same request from another visitor)"
        )

    # -- single flight across processes ------------------------------------------------------

    def _claim(self, key: str, flight: Flight, entry: Entry | None) -> CacheResult | Lead:
        """Take the cluster's lead of ``key`` for this process's ``flight``, or answer without
        it: another process refreshes (``UPDATING``), its failure backs off (``STALE``), or
        it fetches the cold key and this process follows."""
        assert self._cluster is not None
        try:
            claim = self._cluster.claim(key, self._lock_ttl, respect_backoff=entry is not None)
        except BaseException as exc:  # a bug, not Redis (the storage falls back): free the key
            self._finish(key, flight, error=exc)
            raise
        if isinstance(claim, Lead):
            return claim
        with self._lock:
            self._refreshing.discard(flight)
        if entry is None:
            return self._follow(key, flight)
        if isinstance(claim, BackingOff):
            with self._lock:
                self._remember_failure(key, self._clock(), claim.seconds)
            result = CacheResult(entry, "STALE")
        else:
            result = CacheResult(entry, "UPDATING")
        self._finish(key, flight, result=result)
        return result

    def _follow(self, key: str, flight: Flight) -> CacheResult | Lead:
        """Wait for the process fetching cold ``key``; take the lead if it gives it up (failed
        with a definitive answer, or died and its lock expired)."""
        assert self._cluster is not None
        deadline = time.monotonic() + self._wait_timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                outcome = self._cluster.follow(key, left)
                if isinstance(outcome, Entry):
                    fresh = outcome.is_fresh(self._clock())
                    result = CacheResult(outcome, "MISS" if fresh else "STALE")
                    break
                if isinstance(outcome, BackingOff):
                    raise CacheLeaderFailed(
                        "ThrillConnect failed to answer the same request from another visitor"
                    )
                claim = self._cluster.claim(key, self._lock_ttl, respect_backoff=False)
                if isinstance(claim, Lead):
                    return claim
            else:
                raise self._wait_timed_out()
        except BaseException as exc:
            self._finish(key, flight, error=exc)
            raise
        self._counters.incr("coalesced")
        self._finish(key, flight, result=result)
        return result

    def _release(self, lead: Lead | None, backoff: float = 0.0) -> None:
        if lead is not None and self._cluster is not None:
            self._cluster.release(lead, backoff)

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
        flight: Flight,
        fetch: Callable[[], bytes],
        ttl: float,
        lead: Lead | None,
    ) -> bool:
        """Queue ``flight`` on ``pool``; ``False`` when close() shut the pool down meanwhile."""
        try:
            task = pool.submit(self._refresh, key, flight, fetch, ttl, lead)
        except RuntimeError:
            with self._lock:
                self._refreshing.discard(flight)
            return False
        task.add_done_callback(partial(self._refresh_done, key, flight, lead))
        return True

    def _refresh(
        self, key: str, flight: Flight, fetch: Callable[[], bytes], ttl: float, lead: Lead | None
    ) -> None:
        try:
            self._lead(key, flight, fetch, ttl, lead)
        except Exception as exc:
            logger.warning("background refresh of %r failed: %s: %s", key, type(exc).__name__, exc)

    def _refresh_done(
        self, key: str, flight: Flight, lead: Lead | None, task: Future[None]
    ) -> None:
        with self._lock:
            self._refreshing.discard(flight)
        if task.cancelled():
            self._release(lead)
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

    def _remember_failure(self, key: str, now: float, seconds: float | None = None) -> None:
        """Start the back-off of ``key`` (``failure_backoff`` seconds unless told). Called
        with _lock."""
        self._backoffs.start(key, now + (self._failure_backoff if seconds is None else seconds))

    def _supersede(self, matches: Callable[[str], bool]) -> None:
        """Mark running fetches of matching keys stale and end their back-off. Called with _lock."""
        for key, flight in self._flights.items():
            if matches(key):
                flight.superseded = True
        self._backoffs.end(matches)

    def _counted(self, result: CacheResult) -> CacheResult:
        self._counters.incr(_STAT_OF_STATUS[result.status])
        return result

    @staticmethod
    def _usable(entry: Entry | None, now: float) -> Entry | None:
        return entry if entry is not None and entry.is_usable(now) else None
