"""The shared cache of cluster mode, against a real redis-server.

Each ``ResponseCache`` here stands for one process (a gunicorn worker): two of them over one
Redis must behave as one cache — one fetch per cold key, one refresh per expired key, one
back-off per failure — and Redis failing must never reach a caller.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import redis

from flask_thrillconnect.cache import (
    CacheLeaderFailed,
    CacheResult,
    ClusterStorage,
    MemoryStorage,
    ResponseCache,
)
from flask_thrillconnect.cache.breaker import CircuitBreaker
from flask_thrillconnect.cache.near_cache import NEAR_TTL
from flask_thrillconnect.cache.redis_storage import RedisStorage, decode_entry, encode_entry
from flask_thrillconnect.cache.shared_storage import SharedStorage
from flask_thrillconnect.cache.storage import make_entry
from flask_thrillconnect.errors import is_upstream_failure
from flask_thrillconnect.redis_connection import RedisKeys, connect

if TYPE_CHECKING:
    from redis_fixtures import RedisServer

pytest_plugins = ("redis_fixtures",)

#: Upper bound for anything a test waits on; a passing test never gets near it.
TIMEOUT = 10.0
PREFIX = "thrillconnect:test:brand1:"
KEY = "s:ticker:instance-1"
OLD = b'{"amount": "100.00"}'
NEW = b'{"amount": "101.50"}'


class UpstreamDown(Exception):
    """Stands for a 502/503/504 or a connection error."""


def is_upstream_down(exc: BaseException) -> bool:
    return isinstance(exc, UpstreamDown)


class Fetch:
    """A fetch that counts its calls (from any cache), can block on a gate and can fail."""

    def __init__(
        self,
        value: bytes = NEW,
        *,
        gate: threading.Event | None = None,
        error: Exception | None = None,
    ) -> None:
        self.value, self.gate, self.error = value, gate, error
        self.started = threading.Event()
        self._lock = threading.Lock()
        self._calls = 0

    @property
    def calls(self) -> int:
        with self._lock:
            return self._calls

    def __call__(self) -> bytes:
        with self._lock:
            self._calls += 1
        self.started.set()
        if self.gate is not None and not self.gate.wait(TIMEOUT):
            raise RuntimeError("the test never opened the gate")
        if self.error is not None:
            raise self.error
        return self.value


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.005)


def in_threads(*targets: Callable[[], object]) -> Callable[[], list[object]]:
    """Start ``targets`` together (a barrier); the returned function joins them (bounded) and
    answers their results or exceptions, in order."""
    barrier = threading.Barrier(len(targets), timeout=TIMEOUT)
    outcomes: list[object] = [None] * len(targets)

    def run(index: int) -> None:
        barrier.wait()
        try:
            outcomes[index] = targets[index]()
        except Exception as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(targets))]
    for thread in threads:
        thread.start()

    def join() -> list[object]:
        deadline = time.monotonic() + TIMEOUT
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not any(thread.is_alive() for thread in threads), "threads did not finish"
        return outcomes

    return join


@pytest.fixture
def make_shared(redis_server: RedisServer) -> Callable[..., SharedStorage]:
    """A SharedStorage over the test's Redis: one per "process"."""

    def make(prefix: str = PREFIX, retry_after: float = 5.0) -> SharedStorage:
        client = connect(redis_server.url)
        return SharedStorage(
            RedisStorage(client, RedisKeys(prefix)), breaker=CircuitBreaker(retry_after)
        )

    return make


@pytest.fixture
def make_cache(make_shared: Callable[..., SharedStorage]) -> Iterator[Callable[..., ResponseCache]]:
    caches: list[ResponseCache] = []

    def make(storage: SharedStorage | None = None, **options: Any) -> ResponseCache:
        options.setdefault("is_upstream_failure", is_upstream_down)
        cache = ResponseCache(storage if storage is not None else make_shared(), **options)
        caches.append(cache)
        return cache

    yield make
    for cache in caches:
        cache.close(timeout=TIMEOUT)


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """An Event blocking fetches; opened at teardown, before the caches close."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def raw(redis_server: RedisServer) -> redis.Redis:
    """A plain client of the test's Redis, to look at what the cache wrote."""
    return redis.Redis.from_url(redis_server.url)


def key_of(kind: str, key: str = KEY, prefix: str = PREFIX) -> str:
    return f"{prefix}cache:{kind}:{key}"


def expire_soon(cache: ResponseCache, value: bytes = OLD, ttl: float = 0.2) -> None:
    """Store ``value`` under KEY, fresh for ``ttl`` seconds, and wait until it is stale."""
    entry = cache.put(KEY, value, ttl=ttl)
    wait_until(lambda: time.time() >= entry.fresh_until, "the entry expired")


# -- one cache for every process -------------------------------------------------------------


def test_the_shared_storage_is_a_cluster_storage_and_memory_is_not(
    make_shared: Callable[..., SharedStorage],
) -> None:
    assert isinstance(make_shared(), ClusterStorage)
    assert not isinstance(MemoryStorage(), ClusterStorage)


def test_entries_round_trip_through_their_encoding() -> None:
    entry = make_entry(NEW, now=1_700_000_000.25, ttl=2, stale_ttl=300)

    assert decode_entry(encode_entry(entry)) == entry
    with pytest.raises(ValueError, match="not a cache entry"):
        decode_entry(b"not an entry")


def test_two_processes_share_one_entry_with_the_same_bytes_and_etag(
    make_cache: Callable[..., ResponseCache], raw: redis.Redis
) -> None:
    first, second = make_cache(), make_cache()
    fetch = Fetch(NEW)

    stored = first.lookup(KEY, fetch, ttl=5)
    shared = second.lookup(KEY, fetch, ttl=5)

    assert (stored.status, shared.status) == ("MISS", "HIT")
    assert shared.entry == stored.entry  # same bytes, same ETag, same lifetime
    assert fetch.calls == 1
    # In Redis under the portal's prefix, expiring with the entry's stale_until.
    assert decode_entry(raw.get(key_of("entry"))) == stored.entry  # type: ignore[arg-type]
    assert 0 < raw.pttl(key_of("entry")) <= (stored.entry.stale_until - time.time()) * 1000 + 50
    # The lead of the fetch is given up: nothing else is left behind.
    assert raw.keys(f"{PREFIX}*") == [key_of("entry").encode()]


def test_a_cold_key_is_fetched_once_for_all_threads_of_two_processes(
    make_cache: Callable[..., ResponseCache], gate: threading.Event
) -> None:
    first, second = make_cache(), make_cache()
    fetch = Fetch(NEW, gate=gate)
    per_process = 10

    join = in_threads(
        *[lambda: first.lookup(KEY, fetch, ttl=5)] * per_process,
        *[lambda: second.lookup(KEY, fetch, ttl=5)] * per_process,
    )
    assert fetch.started.wait(TIMEOUT)
    # Every thread but the two processes' first ones waits in its own process.
    wait_until(
        lambda: first.stats()["coalesced"] + second.stats()["coalesced"] == 2 * per_process - 2,
        "the herd waits",
    )
    gate.set()
    outcomes = join()

    assert fetch.calls == 1
    assert all(isinstance(outcome, CacheResult) for outcome in outcomes), outcomes
    results = [outcome for outcome in outcomes if isinstance(outcome, CacheResult)]
    assert {result.status for result in results} == {"MISS"}
    assert len({result.entry.etag for result in results}) == 1
    assert first.stats()["fetches"] + second.stats()["fetches"] == 1


def test_followers_of_a_failed_cold_fetch_fail_without_asking_upstream(
    make_cache: Callable[..., ResponseCache], gate: threading.Event
) -> None:
    first, second = make_cache(), make_cache()
    fetch = Fetch(gate=gate, error=UpstreamDown("503"))

    join_leader = in_threads(lambda: first.lookup(KEY, fetch, ttl=5))
    assert fetch.started.wait(TIMEOUT)
    join_follower = in_threads(lambda: second.lookup(KEY, fetch, ttl=5))
    wait_until(lambda: second.would_fetch(KEY) is False, "the follower waits")
    # Its flight is registered; let it also find the lead taken (one Redis call) before the
    # leader fails, or it would arrive after the failure and rightly lead a cold fetch itself.
    time.sleep(0.2)
    gate.set()

    assert isinstance(join_leader()[0], UpstreamDown)
    failed = join_follower()[0]
    assert isinstance(failed, CacheLeaderFailed)
    assert failed.code == 502  # an upstream failure, for the blueprint and the widgets alike
    assert is_upstream_failure(failed)
    assert fetch.calls == 1


def test_a_leader_whose_fetch_never_returns_blocks_the_key_until_its_lock_expires(
    make_cache: Callable[..., ResponseCache], gate: threading.Event, raw: redis.Redis
) -> None:
    hung, alive = make_cache(lock_ttl=1.0), make_cache(lock_ttl=1.0, wait_timeout=5.0)
    stuck = Fetch(OLD, gate=gate)
    join_stuck = in_threads(lambda: hung.lookup(KEY, stuck, ttl=5))
    assert stuck.started.wait(TIMEOUT)
    claimed_by = time.monotonic()

    result = alive.lookup(KEY, Fetch(NEW), ttl=5)
    waited = time.monotonic() - claimed_by

    assert result.status == "MISS"
    assert result.entry.value == NEW
    assert 0.8 <= waited < 1.8, waited
    # The hung leader comes back late: its caller gets its answer, but its fencing token no
    # longer matches, so the newer value stays.
    gate.set()
    late = join_stuck()[0]
    assert isinstance(late, CacheResult)
    assert late.entry.value == OLD
    assert decode_entry(raw.get(key_of("entry"))).value == NEW  # type: ignore[arg-type]


def test_a_lock_left_by_a_dead_process_delays_a_cold_key_only_until_it_expires(
    make_cache: Callable[..., ResponseCache], raw: redis.Redis
) -> None:
    raw.set(key_of("lock"), "token-of-a-killed-worker", px=700)
    cache = make_cache(wait_timeout=5.0)
    fetch = Fetch(NEW)

    started = time.monotonic()
    result = cache.lookup(KEY, fetch, ttl=5)
    waited = time.monotonic() - started

    assert (result.status, fetch.calls) == ("MISS", 1)
    assert 0.5 <= waited < 1.5, waited


def test_an_expired_entry_is_refreshed_once_for_the_cluster(
    make_cache: Callable[..., ResponseCache], gate: threading.Event
) -> None:
    first, second = make_cache(), make_cache()
    expire_soon(first)
    fetch = Fetch(NEW, gate=gate)

    answers = [first.lookup(KEY, fetch, ttl=5)]
    assert fetch.started.wait(TIMEOUT)
    answers += [cache.lookup(KEY, fetch, ttl=5) for cache in (second, first, second, second)]

    assert [answer.status for answer in answers] == ["UPDATING"] * 5
    assert {answer.entry.value for answer in answers} == {OLD}
    gate.set()
    wait_until(lambda: second.lookup(KEY, fetch, ttl=5).status == "HIT", "the refresh stored")
    assert second.lookup(KEY, fetch, ttl=5).entry.value == NEW
    assert fetch.calls == 1


def test_a_failure_backs_off_every_process(
    make_cache: Callable[..., ResponseCache], raw: redis.Redis
) -> None:
    first = make_cache(failure_backoff=1.0)
    second = make_cache(failure_backoff=1.0)
    expire_soon(first)
    first.close()  # refresh inline: the failure is over when lookup returns

    assert first.lookup(KEY, Fetch(error=UpstreamDown("503")), ttl=5).status == "STALE"
    assert raw.pttl(key_of("backoff")) > 0
    fetch = Fetch(NEW)
    stale = second.lookup(KEY, fetch, ttl=5)

    assert (stale.status, stale.entry.value, fetch.calls) == ("STALE", OLD, 0)
    # Once the back-off has passed, the next lookup asks upstream again.
    wait_until(lambda: raw.pttl(key_of("backoff")) < 0, "the back-off ended")
    wait_until(lambda: second.lookup(KEY, fetch, ttl=5).entry.value == NEW, "a refresh stored")
    assert fetch.calls == 1


def test_put_in_one_process_wins_over_a_fetch_running_in_another(
    make_cache: Callable[..., ResponseCache], gate: threading.Event, raw: redis.Redis
) -> None:
    fetching, streaming = make_cache(), make_cache()
    fetch = Fetch(OLD, gate=gate)
    join = in_threads(lambda: fetching.lookup(KEY, fetch, ttl=5))
    assert fetch.started.wait(TIMEOUT)

    streaming.put(KEY, NEW, ttl=15)
    gate.set()
    join()

    assert decode_entry(raw.get(key_of("entry"))).value == NEW  # type: ignore[arg-type]
    assert fetching.peek(KEY).entry.value == NEW  # type: ignore[union-attr]


def test_invalidate_in_one_process_keeps_a_running_fetch_of_another_out(
    make_cache: Callable[..., ResponseCache], gate: threading.Event, raw: redis.Redis
) -> None:
    fetching, other = make_cache(), make_cache()
    fetch = Fetch(OLD, gate=gate)
    join = in_threads(lambda: fetching.lookup(KEY, fetch, ttl=5))
    assert fetch.started.wait(TIMEOUT)

    other.invalidate(KEY)
    gate.set()
    join()

    assert raw.get(key_of("entry")) is None
    assert raw.keys(f"{PREFIX}*") == []


def test_a_change_reaches_other_processes_within_the_near_cache_ttl(
    make_cache: Callable[..., ResponseCache], raw: redis.Redis
) -> None:
    writer, reader = make_cache(), make_cache()
    writer.lookup(KEY, Fetch(OLD), ttl=60)
    assert reader.lookup(KEY, Fetch(), ttl=60).entry.value == OLD  # now near-cached

    gets_before = raw.info("commandstats")["cmdstat_get"]["calls"]
    hits = [reader.lookup(KEY, Fetch(), ttl=60).status for _ in range(100)]
    gets = raw.info("commandstats")["cmdstat_get"]["calls"] - gets_before
    assert set(hits) == {"HIT"}
    assert gets <= 2  # the near cache answers hits without a round trip

    changed = time.monotonic()
    writer.put(KEY, NEW, ttl=60)
    wait_until(lambda: reader.lookup(KEY, Fetch(), ttl=60).entry.value == NEW, "seen")
    assert time.monotonic() - changed < NEAR_TTL + 0.25


def test_two_prefixes_on_one_redis_do_not_see_each_others_entries(
    make_cache: Callable[..., ResponseCache], make_shared: Callable[..., SharedStorage]
) -> None:
    portal_a = make_cache(make_shared(prefix="thrillconnect:thrilltech:brand1:"))
    portal_b = make_cache(make_shared(prefix="thrillconnect:thrilltech:brand2:"))
    fetch_a, fetch_b = Fetch(OLD), Fetch(NEW)

    assert portal_a.lookup(KEY, fetch_a, ttl=5).entry.value == OLD
    assert portal_b.lookup(KEY, fetch_b, ttl=5).entry.value == NEW
    portal_b.invalidate(KEY)

    assert portal_a.lookup(KEY, fetch_a, ttl=5).status == "HIT"
    assert (fetch_a.calls, fetch_b.calls) == (1, 1)


# -- Redis failing ----------------------------------------------------------------------------


def redis_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("flask_thrillconnect") and "Redis" in record.getMessage()
    ]


def test_redis_stopped_falls_back_per_process_and_logs_it_once(
    make_cache: Callable[..., ResponseCache],
    make_shared: Callable[..., SharedStorage],
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="flask_thrillconnect")
    cache = make_cache(make_shared(retry_after=0.2))
    cache.lookup(KEY, Fetch(OLD), ttl=5)
    assert cache.stats()["mode"] == "redis"
    redis_server.stop()

    fetch = Fetch(NEW)
    started = time.monotonic()
    answers = [cache.lookup("s:ticker:other", fetch, ttl=5) for _ in range(3)]
    cache.put("g:player_00001", b"generation", ttl=60)
    cache.invalidate(KEY)
    assert cache.peek("g:player_00001") is not None
    # Probes of Redis every 0.2 s fail too, and are not logged again.
    wait_until(
        lambda: cache.peek("s:ticker:probe") is None and cache.stats()["redis_failures"] == 3,
        "probes ran",
    )
    cache.lookup("s:ticker:other", fetch, ttl=5)

    assert time.monotonic() - started < 3.0
    assert [answer.status for answer in answers] == ["MISS", "HIT", "HIT"]
    assert fetch.calls == 1
    assert cache.stats()["mode"] == "fallback"
    logged = redis_warnings(caplog)
    assert len(logged) == 1, logged
    assert "per process" in logged[0]
    assert str(redis_server.port) not in caplog.text


def test_a_slow_redis_costs_a_bounded_wait_then_falls_back(
    make_cache: Callable[..., ResponseCache], redis_server: RedisServer
) -> None:
    cache = make_cache()
    assert redis_server.process is not None
    pid = redis_server.process.pid
    os.kill(pid, signal.SIGSTOP)  # accepts connections, answers nothing
    try:
        started = time.monotonic()
        first = cache.lookup(KEY, Fetch(OLD), ttl=5)
        second = cache.lookup(KEY, Fetch(NEW), ttl=5)
        elapsed = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)

    assert (first.status, second.status) == ("MISS", "HIT")
    assert elapsed < 1.5, elapsed  # one command timeout (0.5 s), then no more waiting
    assert cache.stats()["mode"] == "fallback"


def test_redis_restarted_empty_is_used_again(
    make_cache: Callable[..., ResponseCache],
    make_shared: Callable[..., SharedStorage],
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="flask_thrillconnect")
    first = make_cache(make_shared(retry_after=0.2))
    second = make_cache(make_shared(retry_after=0.2))
    first.lookup(KEY, Fetch(OLD), ttl=5)
    redis_server.stop()
    first.lookup("s:ticker:other", Fetch(), ttl=5)
    assert first.stats()["mode"] == "fallback"

    redis_server.start()  # same port, no data, no scripts loaded
    wait_until(
        lambda: first.peek("s:ticker:probe") is None and first.stats()["mode"] == "redis",
        "the cache uses Redis again",
    )

    fetch = Fetch(NEW)
    assert first.lookup("s:ticker:new", fetch, ttl=5).status == "MISS"
    assert second.lookup("s:ticker:new", fetch, ttl=5).status == "HIT"
    assert fetch.calls == 1
    # Redis lost the entries stored before (``first`` may keep a near copy for 0.5 s).
    refetch = Fetch(NEW)
    assert second.lookup(KEY, refetch, ttl=5).status == "MISS"
    assert refetch.calls == 1
    logged = redis_warnings(caplog)
    assert len(logged) == 2, logged
    assert "again" in logged[1]
