"""The response cache: single-flight, stale-while-revalidate, stale-if-error, LRU storage."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable

import pytest

from flask_thrillconnect.cache import (
    CacheClosed,
    CacheResult,
    CacheWaitTimeout,
    Entry,
    MemoryStorage,
    ResponseCache,
    Storage,
    make_entry,
    make_etag,
)

# Upper bound for anything a test waits on; a passing test never gets near it.
TIMEOUT = 10.0
KEY = "ticker:instance-1"
OLD = b'{"amount": "100.00"}'
NEW = b'{"amount": "101.50"}'


class UpstreamDown(Exception):
    """Stands for a 502/503/504 or a connection error."""


class NotFound(Exception):
    """Stands for a definitive upstream 404."""


def is_upstream_down(exc: BaseException) -> bool:
    return isinstance(exc, UpstreamDown)


class FakeClock:
    """Wall clock the tests move by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Fetch:
    """A fetch that counts its calls, can block on a gate and can fail."""

    def __init__(
        self,
        value: bytes = NEW,
        *,
        gate: threading.Event | None = None,
        error: Exception | None = None,
    ) -> None:
        self.value = value
        self.gate = gate
        self.error = error
        self.started = threading.Event()
        self.threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self.threads)

    def __call__(self) -> bytes:
        with self._lock:
            self.threads.append(threading.current_thread())
        self.started.set()
        if self.gate is not None and not self.gate.wait(TIMEOUT):
            raise RuntimeError("the test never opened the gate")
        if self.error is not None:
            raise self.error
        return self.value


class Crowd:
    """``count`` threads that start together (a Barrier) and each call ``target`` once."""

    def __init__(self, count: int, target: Callable[[], CacheResult]) -> None:
        self._target = target
        self._barrier = threading.Barrier(count, timeout=TIMEOUT)
        self.outcomes: list[CacheResult | BaseException | None] = [None] * count
        self._threads = [
            threading.Thread(target=self._run, args=(index,), daemon=True) for index in range(count)
        ]

    def _run(self, index: int) -> None:
        self._barrier.wait()
        try:
            self.outcomes[index] = self._target()
        except Exception as exc:
            self.outcomes[index] = exc

    def start(self) -> Crowd:
        for thread in self._threads:
            thread.start()
        return self

    def join(self) -> list[CacheResult | BaseException | None]:
        deadline = time.monotonic() + TIMEOUT
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not any(thread.is_alive() for thread in self._threads), "crowd did not finish"
        return self.outcomes


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    """Poll ``predicate`` until true, failing the test after TIMEOUT seconds."""
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.005)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_cache(clock: FakeClock):
    caches: list[ResponseCache] = []

    def make(**options) -> ResponseCache:
        options.setdefault("clock", clock)
        cache = ResponseCache(**options)
        caches.append(cache)
        return cache

    yield make
    for cache in caches:
        cache.close(timeout=TIMEOUT)


@pytest.fixture
def cache(make_cache) -> ResponseCache:
    return make_cache(is_upstream_failure=is_upstream_down)


@pytest.fixture
def gate(make_cache):
    """An Event blocking fetches; opened at teardown before the caches close."""
    event = threading.Event()
    yield event
    event.set()


def stale_entry(cache: ResponseCache, clock: FakeClock, value: bytes = OLD) -> None:
    """Store ``value`` under KEY and let it expire (still within stale_ttl)."""
    cache.put(KEY, value, ttl=1)
    clock.advance(2)


def run_in_thread(target: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(target())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


# -- HIT / MISS ------------------------------------------------------------------------------


def test_cold_key_is_a_miss_that_fetches_and_stores(cache: ResponseCache) -> None:
    fetch = Fetch(OLD)

    result = cache.lookup(KEY, fetch, ttl=5)

    assert result.status == "MISS"
    assert result.entry.value == OLD
    assert fetch.calls == 1
    assert cache.storage.get(KEY) == result.entry


def test_fresh_entry_is_a_hit_without_fetching(cache: ResponseCache, clock: FakeClock) -> None:
    cache.lookup(KEY, Fetch(OLD), ttl=5)
    clock.advance(4.9)
    fetch = Fetch(NEW)

    result = cache.lookup(KEY, fetch, ttl=5)

    assert (result.status, result.entry.value) == ("HIT", OLD)
    assert fetch.calls == 0


def test_fetch_must_return_bytes(cache: ResponseCache) -> None:
    with pytest.raises(TypeError, match="bytes"):
        cache.lookup(KEY, lambda: '{"a": 1}', ttl=5)  # type: ignore[arg-type, return-value]
    assert len(cache.storage) == 0


# -- single flight ---------------------------------------------------------------------------


def test_herd_on_a_cold_key_fetches_once_and_all_get_the_same_bytes(
    cache: ResponseCache,
) -> None:
    herd = 200
    arrived = 0
    arrived_lock = threading.Lock()
    all_arrived = threading.Event()
    fetch = Fetch(OLD, gate=all_arrived)

    def request() -> CacheResult:
        nonlocal arrived
        with arrived_lock:
            arrived += 1
            if arrived == herd:
                all_arrived.set()
        return cache.lookup(KEY, fetch, ttl=5)

    outcomes = Crowd(herd, request).start().join()

    assert fetch.calls == 1
    assert all(isinstance(outcome, CacheResult) for outcome in outcomes), outcomes
    assert {outcome.entry.value for outcome in outcomes} == {OLD}  # type: ignore[union-attr]
    assert {outcome.status for outcome in outcomes} <= {"MISS", "HIT"}  # type: ignore[union-attr]


class PausingStorage(MemoryStorage):
    """A MemoryStorage whose next read by one thread pauses after reading, until resumed."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.paused_thread: threading.Thread | None = None
        self.read_done = threading.Event()
        self.resume = threading.Event()

    def get(self, key: str) -> Entry | None:
        entry = super().get(key)
        if threading.current_thread() is self.paused_thread:
            self.paused_thread = None
            self.read_done.set()
            if not self.resume.wait(TIMEOUT):
                raise RuntimeError("the test never resumed the read")
        return entry


def test_a_caller_that_missed_just_before_the_value_was_stored_does_not_fetch_again(
    make_cache, clock: FakeClock
) -> None:
    storage = PausingStorage(clock)
    cache = make_cache(storage=storage)
    fetch = Fetch(OLD)
    outcome: list[CacheResult] = []
    late = threading.Thread(
        target=lambda: outcome.append(cache.lookup(KEY, fetch, ttl=5)), daemon=True
    )
    storage.paused_thread = late
    late.start()
    assert storage.read_done.wait(TIMEOUT)  # `late` has read: nothing cached yet

    assert cache.lookup(KEY, fetch, ttl=5).status == "MISS"
    storage.resume.set()
    late.join(TIMEOUT)

    assert outcome[0].status == "HIT"
    assert fetch.calls == 1


def test_two_keys_fetch_independently(cache: ResponseCache, gate: threading.Event) -> None:
    slow = Fetch(OLD, gate=gate)
    leader, _ = run_in_thread(lambda: cache.lookup("key-a", slow, ttl=5))
    assert slow.started.wait(TIMEOUT)

    result = cache.lookup("key-b", Fetch(NEW), ttl=5)

    assert (result.status, result.entry.value) == ("MISS", NEW)
    assert leader.is_alive(), "key-a's fetch is still blocked: key-b did not wait for it"
    gate.set()
    leader.join(TIMEOUT)
    assert cache.storage.get("key-a").value == OLD  # type: ignore[union-attr]


def test_waiters_time_out_when_the_leader_hangs(make_cache, gate: threading.Event) -> None:
    cache = make_cache(wait_timeout=0.2)
    hanging = Fetch(OLD, gate=gate)
    run_in_thread(lambda: cache.lookup(KEY, hanging, ttl=5))
    assert hanging.started.wait(TIMEOUT)

    started = time.monotonic()
    with pytest.raises(CacheWaitTimeout, match=r"waited 0\.2 s") as raised:
        cache.lookup(KEY, Fetch(NEW), ttl=5)

    assert time.monotonic() - started < 2.0
    assert isinstance(raised.value, TimeoutError)
    assert hanging.calls == 1


def test_leaders_exception_reaches_the_waiters_and_nothing_is_cached(
    cache: ResponseCache, gate: threading.Event
) -> None:
    failure = UpstreamDown("upstream answered 503")
    fetch = Fetch(gate=gate, error=failure)
    leader, leader_outcome = run_in_thread(lambda: cache.lookup(KEY, fetch, ttl=5))
    assert fetch.started.wait(TIMEOUT)
    waiters = Crowd(5, lambda: cache.lookup(KEY, fetch, ttl=5)).start()
    wait_until(lambda: cache.stats()["coalesced"] == 5, "the 5 waiters wait on the leader")

    gate.set()

    assert all(outcome is failure for outcome in waiters.join())
    leader.join(TIMEOUT)
    assert leader_outcome == [failure]
    assert fetch.calls == 1
    assert len(cache.storage) == 0


def test_a_failed_fetch_is_retried_by_the_next_lookup(cache: ResponseCache) -> None:
    with pytest.raises(UpstreamDown):
        cache.lookup(KEY, Fetch(error=UpstreamDown("503")), ttl=5)

    result = cache.lookup(KEY, Fetch(NEW), ttl=5)

    assert (result.status, result.entry.value) == ("MISS", NEW)


# -- stale while revalidate ------------------------------------------------------------------


def test_expired_entry_is_served_updating_while_exactly_one_refresh_runs(
    cache: ResponseCache, clock: FakeClock, gate: threading.Event
) -> None:
    stale_entry(cache, clock)
    refresh = Fetch(NEW, gate=gate)

    outcomes = Crowd(50, lambda: cache.lookup(KEY, refresh, ttl=5)).start().join()

    assert {(o.status, o.entry.value) for o in outcomes} == {("UPDATING", OLD)}  # type: ignore[union-attr]
    assert refresh.started.wait(TIMEOUT)
    assert refresh.calls == 1
    gate.set()
    wait_until(lambda: cache.storage.get(KEY).value == NEW, "the refresh stored")  # type: ignore[union-attr]
    after = cache.lookup(KEY, refresh, ttl=5)
    assert (after.status, after.entry.value) == ("HIT", NEW)
    assert refresh.calls == 1


def test_a_refresh_runs_on_a_background_thread(cache: ResponseCache, clock: FakeClock) -> None:
    stale_entry(cache, clock)
    refresh = Fetch(NEW)

    cache.lookup(KEY, refresh, ttl=5)

    assert refresh.started.wait(TIMEOUT)
    assert refresh.threads[0] is not threading.current_thread()
    assert refresh.threads[0].name.startswith("thrillconnect-refresh")


def test_beyond_max_pending_refreshes_an_expired_key_is_fetched_inline(
    make_cache, clock: FakeClock, gate: threading.Event
) -> None:
    cache = make_cache(max_pending_refreshes=1)
    cache.put("busy", OLD, ttl=1)
    stale_entry(cache, clock)
    blocked = Fetch(gate=gate)
    assert cache.lookup("busy", blocked, ttl=5).status == "UPDATING"
    assert blocked.started.wait(TIMEOUT)

    result = cache.lookup(KEY, Fetch(NEW), ttl=5)

    assert (result.status, result.entry.value) == ("MISS", NEW)


# -- stale if error --------------------------------------------------------------------------


def test_failed_refresh_serves_stale_and_backs_off(cache: ResponseCache, clock: FakeClock) -> None:
    stale_entry(cache, clock)
    failing = Fetch(error=UpstreamDown("503"))
    assert cache.lookup(KEY, failing, ttl=5).status == "UPDATING"

    wait_until(lambda: cache.lookup(KEY, failing, ttl=5).status == "STALE", "stale is served")
    later = [cache.lookup(KEY, failing, ttl=5) for _ in range(20)]

    assert {(result.status, result.entry.value) for result in later} == {("STALE", OLD)}
    assert failing.calls == 1


def test_upstream_is_asked_again_once_the_back_off_has_passed(make_cache, clock: FakeClock) -> None:
    cache = make_cache(failure_backoff=1.0)
    cache.close()  # refreshes run inline, so every outcome is immediate
    stale_entry(cache, clock)
    failing = Fetch(error=UpstreamDown("503"))
    assert cache.lookup(KEY, failing, ttl=5).status == "STALE"
    clock.advance(0.9)
    assert cache.lookup(KEY, failing, ttl=5).status == "STALE"
    assert failing.calls == 1

    clock.advance(0.2)
    result = cache.lookup(KEY, Fetch(NEW), ttl=5)

    assert (result.status, result.entry.value) == ("MISS", NEW)


def test_inline_fetch_failure_serves_the_stale_copy_at_once(
    cache: ResponseCache, clock: FakeClock
) -> None:
    cache.close()
    stale_entry(cache, clock)

    result = cache.lookup(KEY, Fetch(error=UpstreamDown("timeout")), ttl=5)

    assert (result.status, result.entry.value) == ("STALE", OLD)


def test_error_propagates_once_the_entry_is_past_stale_until(make_cache, clock: FakeClock) -> None:
    cache = make_cache(stale_ttl=10)
    cache.put(KEY, OLD, ttl=1)
    clock.advance(11)
    failure = UpstreamDown("503")

    with pytest.raises(UpstreamDown) as raised:
        cache.lookup(KEY, Fetch(error=failure), ttl=5)

    assert raised.value is failure


def test_non_upstream_errors_propagate_and_are_not_cached(cache: ResponseCache) -> None:
    missing = Fetch(error=NotFound("no such instance"))
    for _ in range(2):
        with pytest.raises(NotFound):
            cache.lookup(KEY, missing, ttl=5)

    assert missing.calls == 2
    assert len(cache.storage) == 0


def test_a_definitive_upstream_answer_drops_the_stale_copy(
    cache: ResponseCache, clock: FakeClock
) -> None:
    cache.close()
    stale_entry(cache, clock)

    with pytest.raises(NotFound):
        cache.lookup(KEY, Fetch(error=NotFound("no such instance")), ttl=5)

    assert cache.storage.get(KEY) is None


# -- put, invalidate -------------------------------------------------------------------------


def test_put_overrides_the_cached_value(cache: ResponseCache) -> None:
    cache.lookup(KEY, Fetch(OLD), ttl=5)
    fetch = Fetch(OLD)

    stored = cache.put(KEY, NEW, ttl=5)
    result = cache.lookup(KEY, fetch, ttl=5)

    assert result == CacheResult(stored, "HIT")
    assert fetch.calls == 0


def test_put_during_a_fetch_wins_over_the_fetched_value(
    cache: ResponseCache, gate: threading.Event
) -> None:
    slow = Fetch(OLD, gate=gate)
    leader, outcome = run_in_thread(lambda: cache.lookup(KEY, slow, ttl=5))
    assert slow.started.wait(TIMEOUT)

    cache.put(KEY, NEW, ttl=5)
    gate.set()
    leader.join(TIMEOUT)

    assert outcome[0].entry.value == OLD  # type: ignore[attr-defined]
    assert cache.storage.get(KEY).value == NEW  # type: ignore[union-attr]


def test_invalidate_during_a_fetch_keeps_the_fetched_value_out(
    cache: ResponseCache, gate: threading.Event
) -> None:
    slow = Fetch(OLD, gate=gate)
    leader, _ = run_in_thread(lambda: cache.lookup(KEY, slow, ttl=5))
    assert slow.started.wait(TIMEOUT)

    cache.invalidate(KEY)
    gate.set()
    leader.join(TIMEOUT)

    assert cache.storage.get(KEY) is None


def test_invalidate_makes_the_next_lookup_fetch(cache: ResponseCache) -> None:
    cache.put(KEY, OLD, ttl=5)

    cache.invalidate(KEY)
    result = cache.lookup(KEY, Fetch(NEW), ttl=5)

    assert (result.status, result.entry.value) == ("MISS", NEW)


def test_storing_identical_bytes_again_keeps_the_etag(
    cache: ResponseCache, clock: FakeClock
) -> None:
    first = cache.put(KEY, OLD, ttl=1)
    clock.advance(5)

    second = cache.put(KEY, OLD, ttl=1)

    assert second.etag == first.etag
    assert second.stored_at != first.stored_at


def test_different_bytes_get_different_etags() -> None:
    assert make_etag(OLD) != make_etag(NEW)


def test_etag_is_strong_and_quoted() -> None:
    assert re.fullmatch(r'"[0-9a-f]{32}"', make_etag(OLD))


# -- stats -----------------------------------------------------------------------------------


def test_stats_count_every_outcome(cache: ResponseCache, clock: FakeClock) -> None:
    cache.lookup(KEY, Fetch(OLD), ttl=1)
    cache.lookup(KEY, Fetch(OLD), ttl=1)
    with pytest.raises(NotFound):
        cache.lookup("other", Fetch(error=NotFound("gone")), ttl=1)
    cache.close()  # refresh inline, so the failure below is immediate
    clock.advance(2)
    cache.lookup(KEY, Fetch(error=UpstreamDown("503")), ttl=1)

    assert cache.stats() == {
        "hits": 1,
        "misses": 1,
        "stale": 1,
        "updating": 0,
        "coalesced": 0,
        "fetches": 3,
        "fetch_errors": 2,
        "entries": 1,
    }


def test_stats_count_updating_answers(cache: ResponseCache, clock: FakeClock) -> None:
    stale_entry(cache, clock)

    cache.lookup(KEY, Fetch(NEW), ttl=5)

    assert cache.stats()["updating"] == 1


# -- close and fork --------------------------------------------------------------------------


def test_close_with_a_refresh_in_flight_returns_within_its_bound(
    cache: ResponseCache, clock: FakeClock, gate: threading.Event
) -> None:
    stale_entry(cache, clock)
    stuck = Fetch(gate=gate)
    cache.lookup(KEY, stuck, ttl=5)
    assert stuck.started.wait(TIMEOUT)

    started = time.monotonic()
    cache.close(timeout=0.2)

    assert time.monotonic() - started < 2.0


def test_close_cancels_queued_refreshes_and_releases_their_waiters(
    make_cache, clock: FakeClock, gate: threading.Event
) -> None:
    cache = make_cache(refresh_workers=1)
    cache.put("busy", OLD, ttl=1)
    stale_entry(cache, clock)
    cache.lookup("busy", Fetch(gate=gate), ttl=5)  # occupies the only worker
    queued = Fetch(NEW)
    assert cache.lookup(KEY, queued, ttl=5).status == "UPDATING"
    cache.invalidate(KEY)  # so the next caller has nothing to serve and waits
    waiter, outcome = run_in_thread(lambda: cache.lookup(KEY, Fetch(NEW), ttl=5))
    wait_until(lambda: cache.stats()["coalesced"] == 1, "the caller waits on the queued refresh")

    cache.close(timeout=0.2)
    waiter.join(TIMEOUT)

    assert isinstance(outcome[0], CacheClosed)
    assert queued.calls == 0


def test_lookups_after_close_fetch_inline(cache: ResponseCache, clock: FakeClock) -> None:
    stale_entry(cache, clock)
    cache.close()
    fetch = Fetch(NEW)

    result = cache.lookup(KEY, fetch, ttl=5)

    assert (result.status, result.entry.value) == ("MISS", NEW)
    assert fetch.threads == [threading.current_thread()]


def test_a_new_process_gets_a_new_refresh_pool(
    make_cache, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = make_cache(refresh_workers=1)
    refresh = Fetch(NEW)

    def refresh_once() -> threading.Thread:
        calls = refresh.calls
        cache.put(KEY, OLD, ttl=1)
        clock.advance(2)
        assert cache.lookup(KEY, refresh, ttl=1).status == "UPDATING"
        wait_until(lambda: cache.storage.get(KEY).value == NEW, "the refresh stored")  # type: ignore[union-attr]
        assert refresh.calls == calls + 1
        return refresh.threads[-1]

    first = refresh_once()
    assert refresh_once() is first  # same process: the single worker is reused
    parent_pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: parent_pid + 1)

    in_child = refresh_once()

    assert in_child is not first
    assert in_child.name.startswith("thrillconnect-refresh")


# -- memory storage --------------------------------------------------------------------------


def entry_at(clock: FakeClock, value: bytes = OLD, ttl: float = 5) -> Entry:
    return make_entry(value, now=clock(), ttl=ttl, stale_ttl=10)


def test_memory_storage_is_a_storage() -> None:
    assert isinstance(MemoryStorage(), Storage)


def test_memory_storage_evicts_the_least_recently_used_entry_when_full(clock: FakeClock) -> None:
    storage = MemoryStorage(max_entries=3, clock=clock)
    for key in ("a", "b", "c"):
        storage.set(key, entry_at(clock))
    storage.get("a")  # recently read: kept

    storage.set("d", entry_at(clock))

    assert len(storage) == 3
    assert storage.get("b") is None
    assert all(storage.get(key) is not None for key in ("a", "c", "d"))


def test_memory_storage_drops_entries_past_stale_until_on_read(clock: FakeClock) -> None:
    storage = MemoryStorage(clock=clock)
    storage.set(KEY, entry_at(clock, ttl=5))  # stale_until = now + 15
    clock.advance(14.9)
    assert storage.get(KEY) is not None

    clock.advance(0.1)

    assert storage.get(KEY) is None
    assert len(storage) == 0


def test_memory_storage_delete_forgets_the_key(clock: FakeClock) -> None:
    storage = MemoryStorage(clock=clock)
    storage.set(KEY, entry_at(clock))

    storage.delete(KEY)
    storage.delete(KEY)  # a missing key is not an error

    assert storage.get(KEY) is None
