"""Cluster mode's event stream against a real redis-server: the fenced holder lease, the
de-duplicated, bounded Redis Stream with its epoch, and each worker's reader.

Threads in this one process stand in for the processes of a cluster: each "process" has its
own client and its own lease, as a gunicorn worker would.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import redis

from flask_thrillconnect.redis_connection import RedisKeys, connect
from flask_thrillconnect.relay.cluster import (
    MAX_SEQ,
    ClusterUnavailable,
    Entry,
    EventLog,
    EventReader,
    Fence,
    HolderLease,
    LeaseKeeper,
    LeaseLost,
    StreamKeys,
    dedup_key,
    entry_id,
    seq_of,
)

if TYPE_CHECKING:
    from redis_fixtures import RedisServer

pytest_plugins = ("redis_fixtures",)

#: Every wait in these tests gives up after this long.
WAIT = 5.0
#: A short lease, so that expiries happen within a test.
TTL = 0.6
#: How long one Redis operation may take when Redis is down or hung: its socket timeout
#: (0.5 s) and some slack for a loaded machine.
FAIL_FAST = 1.5

KEYS = RedisKeys("test:portal:")


def envelope(number: int, *, name: str = "WinEvent") -> dict[str, Any]:
    return {
        "msg_type": "Event",
        "source": "thrillpots",
        "msg_name": name,
        "operator_id": "thrilltech",
        "brand_id": "brand1",
        "player_id": None,
        "data": {"instance_id": "i1", "win_amount": number},
        "timestamp": 1_715_355_347_000 + number,
    }


def append(log: EventLog, fence: Fence, number: int) -> int | None:
    message = envelope(number)
    return log.append(json.dumps(message), fence=fence, dedup_key=dedup_key(message))


def numbers(entries: list[Entry]) -> list[int]:
    return [json.loads(entry.text)["data"]["win_amount"] for entry in entries]


def wait_until(predicate: Callable[[], object], timeout: float = WAIT) -> None:
    """Poll ``predicate`` (for states that only time brings, such as an expired lease)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


@pytest.fixture
def clients(redis_server: RedisServer) -> Iterator[Callable[[], redis.Redis]]:
    """A factory of clients (one per simulated process), all closed after the test."""
    made: list[redis.Redis] = []

    def make() -> redis.Redis:
        made.append(connect(redis_server.url))
        return made[-1]

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(clients: Callable[[], redis.Redis]) -> redis.Redis:
    return clients()


class Recorder:
    """The callbacks of an :class:`EventReader`, one queue per kind, read with timeouts."""

    KINDS = ("entry", "epoch", "gap", "status")

    def __init__(self) -> None:
        self.queues: dict[str, queue.Queue[Any]] = {kind: queue.Queue() for kind in self.KINDS}
        #: Set when an entry arrived while stalling.
        self.stalled = threading.Event()
        self._stalling = False
        self._go_on = threading.Event()

    def stall(self) -> None:
        """From the next entry on, keep the reader inside ``on_entry`` until :meth:`go_on`:
        a hub that does not keep up."""
        self._stalling = True

    def go_on(self) -> None:
        self._go_on.set()

    def entry(self, seq: int, text: str) -> None:
        self.queues["entry"].put((seq, json.loads(text)["data"]["win_amount"]))
        if self._stalling:
            self.stalled.set()
            self._go_on.wait(WAIT)

    def epoch(self, epoch: str, seq: int) -> None:
        self.queues["epoch"].put((epoch, seq))

    def gap(self, seq: int, trimmed: int) -> None:
        self.queues["gap"].put((seq, trimmed))

    def status(self, available: bool) -> None:
        self.queues["status"].put(available)

    def next(self, kind: str, timeout: float = WAIT) -> Any:
        """The next callback of ``kind``, waiting at most ``timeout``."""
        try:
            return self.queues[kind].get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no {kind} in time") from None

    def pending(self) -> int:
        return sum(waiting.qsize() for waiting in self.queues.values())


@pytest.fixture
def start_reader(
    redis_server: RedisServer,
) -> Iterator[Callable[..., tuple[EventReader, Recorder]]]:
    """Starts readers on the test's Redis; stops them after the test."""
    readers: list[EventReader] = []

    def start(keys: RedisKeys = KEYS) -> tuple[EventReader, Recorder]:
        recorder = Recorder()
        reader = EventReader(
            redis_server.url,
            keys,
            on_entry=recorder.entry,
            on_epoch=recorder.epoch,
            on_gap=recorder.gap,
            on_status=recorder.status,
            block=0.5,
        )
        readers.append(reader)
        reader.start()
        return reader, recorder

    yield start
    for reader in readers:
        reader.stop()


# -- the holder lease -----------------------------------------------------------------------


@pytest.mark.parametrize("slots", [1, 2])
def test_only_as_many_processes_as_slots_hold_the_stream(
    clients: Callable[[], redis.Redis], slots: int
) -> None:
    leases = [HolderLease(clients(), KEYS, slots=slots, ttl=TTL) for _ in range(3)]

    fences = [lease.acquire() for lease in leases]

    held = [fence for fence in fences if fence is not None]
    assert len(held) == slots
    assert sorted(fence.slot for fence in held) == list(range(slots))
    assert [fence.number for fence in held] == sorted({fence.number for fence in held})
    assert [lease.held for lease in leases] == [fence is not None for fence in fences]
    # Acquiring again keeps the slot one holds rather than taking another.
    assert leases[0].acquire() == fences[0]


def test_a_holder_that_stops_renewing_loses_its_slot_within_the_ttl(
    clients: Callable[[], redis.Redis],
) -> None:
    changes: queue.Queue[tuple[str, str, float]] = queue.Queue()

    ttl = 1.0  # renewals every third of it: room for a busy machine

    def keeper(name: str) -> LeaseKeeper:
        lease = HolderLease(clients(), KEYS, slots=1, ttl=ttl)
        return LeaseKeeper(
            lease,
            on_acquired=lambda fence: changes.put((name, "acquired", time.monotonic())),
            on_lost=lambda: changes.put((name, "lost", time.monotonic())),
        )

    first, second = keeper("first"), keeper("second")
    first.start()
    assert changes.get(timeout=WAIT)[:2] == ("first", "acquired")
    second.start()
    try:
        # The standby keeps trying, in vain, while the holder renews.
        time.sleep(ttl)
        assert changes.empty()
        assert second.lease.fence is None

        # The holder stops renewing (as a paused or killed process would).
        stopped = time.monotonic()
        first.stop(release=False)
        assert changes.get(timeout=WAIT)[:2] == ("first", "lost")
        name, what, at = changes.get(timeout=WAIT)
        assert (name, what) == ("second", "acquired")
        assert at - stopped < ttl + second.interval + FAIL_FAST
        assert not first.lease.held
        assert first.lease.renew() is False
    finally:
        first.stop()
        second.stop()


def test_a_released_slot_is_taken_at_once(clients: Callable[[], redis.Redis]) -> None:
    first = HolderLease(clients(), KEYS, slots=1, ttl=30.0)
    second = HolderLease(clients(), KEYS, slots=1, ttl=30.0)
    old = first.acquire()
    assert old is not None
    assert second.acquire() is None

    first.release()

    new = second.acquire()
    assert new is not None
    assert new.number > old.number
    assert not first.held


def test_a_slot_taken_by_an_attempt_that_timed_out_is_not_left_to_a_ghost(
    redis_server: RedisServer, clients: Callable[[], redis.Redis]
) -> None:
    client = clients()  # one connection, already open when Redis stops answering
    holder = HolderLease(client, KEYS, slots=2, ttl=30.0)
    assert holder.acquire() is not None  # slot 0 (and the script is loaded)
    lease = HolderLease(client, KEYS, slots=2, ttl=30.0)
    assert redis_server.process is not None
    pid = redis_server.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(ClusterUnavailable):
            lease.acquire()  # times out: the command waits in Redis' socket
    finally:
        os.kill(pid, signal.SIGCONT)
    observer = clients()
    wait_until(lambda: observer.exists(StreamKeys(KEYS).holder(1)))  # Redis ran it after all

    fence = lease.acquire()

    assert fence is not None
    assert fence.slot == 1
    assert HolderLease(clients(), KEYS, slots=2).acquire() is None


def test_a_paused_holder_is_fenced_out(clients: Callable[[], redis.Redis]) -> None:
    old_holder = HolderLease(clients(), KEYS, slots=1, ttl=TTL)
    new_holder = HolderLease(clients(), KEYS, slots=1, ttl=TTL)
    log = EventLog(clients(), KEYS)
    old_fence = old_holder.acquire()
    assert old_fence is not None
    assert append(log, old_fence, 1) is not None

    # The old holder pauses (no renewal); its slot expires and the other process takes it.
    wait_until(lambda: new_holder.acquire() is not None)
    new_fence = new_holder.fence
    assert new_fence is not None
    assert new_fence.number > old_fence.number

    # Waking up, the old holder still has its fence in hand: its writes are refused.
    with pytest.raises(LeaseLost):
        append(log, old_fence, 2)
    assert append(log, new_fence, 3) is not None
    assert numbers(log.fetch(0, log.head().epoch).entries) == [1, 3]
    assert old_holder.renew() is False
    assert not old_holder.held


def test_an_expired_lease_refuses_writes_even_when_nobody_took_the_slot(
    client: redis.Redis,
) -> None:
    lease = HolderLease(client, KEYS, slots=1, ttl=0.2)
    log = EventLog(client, KEYS)
    fence = lease.acquire()
    assert fence is not None

    wait_until(lambda: not client.exists(StreamKeys(KEYS).holder(0)))

    with pytest.raises(LeaseLost):
        append(log, fence, 1)
    assert not lease.held


def test_a_keeper_woken_after_a_refused_append_reports_the_loss_at_once(
    clients: Callable[[], redis.Redis],
) -> None:
    lost, acquired = threading.Event(), threading.Event()
    lease = HolderLease(clients(), KEYS, slots=1, ttl=60.0)
    keeper = LeaseKeeper(
        lease, on_acquired=lambda fence: acquired.set(), on_lost=lost.set, interval=30.0
    )
    keeper.start()
    try:
        assert acquired.wait(WAIT)
        fence = lease.fence
        assert fence is not None
        # Another process took the slot (say, this one was paused past the ttl).
        clients().delete(StreamKeys(KEYS).holder(0))
        assert HolderLease(clients(), KEYS, slots=1).acquire() is not None
        with pytest.raises(LeaseLost):
            append(EventLog(clients(), KEYS), fence, 1)

        keeper.wake()

        assert lost.wait(WAIT)  # long before the next renewal (30 s)
        assert not lease.held
    finally:
        keeper.stop()


def test_a_holder_cut_off_from_redis_knows_it_lost_the_lease_when_its_ttl_ends(
    redis_server: RedisServer, client: redis.Redis
) -> None:
    ttl = 1.0
    changes: queue.Queue[float] = queue.Queue()
    keeper = LeaseKeeper(
        HolderLease(client, KEYS, slots=1, ttl=ttl),
        on_acquired=lambda fence: changes.put(time.monotonic()),
        on_lost=lambda: changes.put(time.monotonic()),
        interval=0.9,  # the next renewal would come long after the end of the lease
    )
    keeper.start()
    try:
        acquired = changes.get(timeout=WAIT)
        redis_server.stop(kill=True)

        lost = changes.get(timeout=WAIT)
        # Not at the first failed renewal (the lease may still be ours), and not after
        # another process may have taken the slot.
        assert ttl - 0.2 < lost - acquired < ttl + 0.5
        assert not keeper.lease.held
        assert not keeper.redis_ok
    finally:
        keeper.stop()


# -- appending: fencing, de-duplication, bounds -----------------------------------------------


def test_two_holders_appending_the_same_events_make_one_entry_each(
    clients: Callable[[], redis.Redis],
) -> None:
    holders = [HolderLease(clients(), KEYS, slots=2, ttl=30.0) for _ in range(2)]
    fences = [holder.acquire() for holder in holders]
    assert None not in fences
    logs = [EventLog(clients(), KEYS) for _ in holders]
    added: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    def hold(index: int) -> None:
        fence = fences[index]
        assert fence is not None
        start.wait(WAIT)
        for number in range(200):  # both receive the same upstream events, in order
            if append(logs[index], fence, number) is not None:
                added[index].append(number)

    threads = [threading.Thread(target=hold, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
        assert not thread.is_alive()

    assert sorted(added[0] + added[1]) == list(range(200))
    entries = logs[0].replay(0, logs[0].head().epoch, limit=1000)
    assert entries is not None
    assert numbers(entries) == list(range(200))


def test_the_dedup_key_is_the_content_of_the_envelope() -> None:
    message = envelope(1)
    reordered = dict(reversed(list(message.items())))
    later = {**message, "timestamp": message["timestamp"] + 1}
    other = {**message, "data": {**message["data"], "win_amount": 2}}

    assert dedup_key(reordered) == dedup_key(message)
    assert dedup_key(later) != dedup_key(message)
    assert dedup_key(other) != dedup_key(message)


def test_the_same_event_is_appended_again_once_the_dedup_window_passed(
    client: redis.Redis,
) -> None:
    fence = HolderLease(client, KEYS, slots=1, ttl=30.0).acquire()
    assert fence is not None
    log = EventLog(client, KEYS, dedup_ttl=0.2)

    first = append(log, fence, 7)
    assert first is not None
    assert append(log, fence, 7) is None
    wait_until(lambda: not client.exists(StreamKeys(KEYS).dedup(dedup_key(envelope(7)))))
    again = append(log, fence, 7)
    assert again is not None
    assert again > first


def test_the_stream_keeps_at_most_its_length(client: redis.Redis) -> None:
    fence = HolderLease(client, KEYS, slots=1, ttl=30.0).acquire()
    assert fence is not None
    log = EventLog(client, KEYS, max_length=10)

    seqs = [append(log, fence, number) for number in range(25)]

    assert client.xlen(StreamKeys(KEYS).stream) == 10
    epoch = log.head().epoch
    kept = log.replay(0, epoch, limit=100)
    assert kept is None  # entries after seq 0 were trimmed: no resume from there
    kept = log.replay(seqs[14] or 0, epoch, limit=100)
    assert kept is not None
    assert numbers(kept) == list(range(15, 25))
    assert log.replay(seqs[13] or 0, epoch, limit=100) is None


def test_the_stream_keeps_entries_for_at_most_its_age(client: redis.Redis) -> None:
    fence = HolderLease(client, KEYS, slots=1, ttl=30.0).acquire()
    assert fence is not None
    log = EventLog(client, KEYS, max_age=0.3)
    old = [append(log, fence, number) for number in range(5)]

    time.sleep(0.4)  # the entries age; nothing to await
    newest = append(log, fence, 5)

    assert client.xlen(StreamKeys(KEYS).stream) == 1
    epoch = log.head().epoch
    assert log.replay(old[-1] or 0, epoch, limit=10) == [
        Entry(newest or 0, json.dumps(envelope(5)))
    ]
    assert log.replay(old[0] or 0, epoch, limit=10) is None


# -- seq ----------------------------------------------------------------------------------------


def test_seq_maps_entry_ids_one_to_one_and_in_order() -> None:
    ids = ["0-0", "1-0", "1-999", "2-0", "1796163016920-0", "1796163016920-3", "1796163016921-0"]

    seqs = [seq_of(entry) for entry in ids]

    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    assert [entry_id(seq) for seq in seqs] == ids
    assert seq_of(b"1796163016920-3") == 1_796_163_016_920_003
    # Exact in JavaScript (the page script compares seqs).
    assert MAX_SEQ == 2**53 - 1
    assert seq_of("4102444800000-999") <= MAX_SEQ  # the year 2100


@pytest.mark.parametrize("bad", ["", "12", "12-", "-3", "a-1", "1-1000", "9007199254741-0"])
def test_seq_refuses_what_is_not_an_entry_id_of_the_stream(bad: str) -> None:
    with pytest.raises(ValueError, match="entry id"):
        seq_of(bad)


def test_ids_move_to_the_next_millisecond_rather_than_overflow_the_seq(
    client: redis.Redis,
) -> None:
    # A Redis clock that stands still (here: a last id far in the future) makes XADD count
    # up within one millisecond; the seq keeps only three digits for that count.
    future = int(time.time() * 1000) + 3_600_000
    client.xadd(StreamKeys(KEYS).stream, {"e": json.dumps(envelope(0))}, id=f"{future}-997")
    fence = HolderLease(client, KEYS, slots=1, ttl=30.0).acquire()
    assert fence is not None
    log = EventLog(client, KEYS)

    seqs = [append(log, fence, number) for number in range(1, 4)]

    assert seqs == [future * 1000 + 998, future * 1000 + 999, (future + 1) * 1000]
    entries = log.replay(0, log.head().epoch, limit=10)
    assert entries is not None
    assert numbers(entries) == [0, 1, 2, 3]


# -- replay -------------------------------------------------------------------------------------


def test_replay_gives_exactly_the_missed_entries(client: redis.Redis) -> None:
    fence = HolderLease(client, KEYS, slots=1, ttl=30.0).acquire()
    assert fence is not None
    log = EventLog(client, KEYS)
    epoch = log.head().epoch
    seqs = [append(log, fence, number) or 0 for number in range(10)]

    replayed = log.replay(seqs[3], epoch, limit=100)

    assert replayed is not None
    assert [entry.seq for entry in replayed] == seqs[4:]
    assert numbers(replayed) == list(range(4, 10))
    assert log.replay(seqs[-1], epoch, limit=100) == []
    assert log.replay(0, epoch, limit=100) is not None  # nothing trimmed yet
    # Up to what the worker's hub already has; later entries reach it live.
    upto = log.replay(seqs[3], epoch, limit=100, upto=seqs[6])
    assert upto is not None
    assert numbers(upto) == [4, 5, 6]


def test_replay_across_pages_and_within_its_limit(client: redis.Redis) -> None:
    fence = HolderLease(client, KEYS, slots=1, ttl=30.0).acquire()
    assert fence is not None
    log = EventLog(client, KEYS)
    epoch = log.head().epoch
    count = 1200  # more than one page of 500
    for number in range(count):
        append(log, fence, number)

    everything = log.replay(0, epoch, limit=count)

    assert everything is not None
    assert numbers(everything) == list(range(count))
    assert log.replay(0, epoch, limit=count - 1) is None  # too far behind


@pytest.mark.parametrize("case", ["other epoch", "ahead", "past the JS range"])
def test_replay_refuses_a_position_of_another_stream(client: redis.Redis, case: str) -> None:
    fence = HolderLease(client, KEYS, slots=1, ttl=30.0).acquire()
    assert fence is not None
    log = EventLog(client, KEYS)
    epoch = log.head().epoch
    seqs = [append(log, fence, number) or 0 for number in range(3)]
    since, relay_id = {
        "other epoch": (seqs[0], "SomeOtherEpoch00"),
        "ahead": (seqs[-1] + 1, epoch),
        "past the JS range": (10**18 - 1, epoch),
    }[case]

    assert log.replay(since, relay_id, limit=100) is None


# -- the reader ---------------------------------------------------------------------------------


def test_the_reader_delivers_new_entries_in_order_with_increasing_seq(
    client: redis.Redis, start_reader: Callable[..., tuple[EventReader, Recorder]]
) -> None:
    fence = HolderLease(client, KEYS, slots=1, ttl=30.0).acquire()
    assert fence is not None
    log = EventLog(client, KEYS)
    before = append(log, fence, -1)
    reader, recorder = start_reader()
    epoch, start = recorder.next("epoch")
    assert (epoch, start) == (log.head().epoch, before)  # it starts after what was there

    appended = [append(log, fence, number) for number in range(100)]

    received = [recorder.next("entry") for _ in range(100)]
    assert received == list(zip(appended, range(100), strict=True))
    assert [seq for seq, _ in received] == sorted({seq for seq, _ in received})
    assert reader.seq == appended[-1]
    assert reader.replay(appended[97] or 0, epoch, limit=10) is not None
    assert recorder.pending() == 0


def test_a_reader_that_fell_behind_the_trim_reports_a_gap(
    client: redis.Redis, start_reader: Callable[..., tuple[EventReader, Recorder]]
) -> None:
    fence = HolderLease(client, KEYS, slots=1, ttl=30.0).acquire()
    assert fence is not None
    log = EventLog(client, KEYS, max_length=5)
    _, recorder = start_reader()
    recorder.next("epoch")
    recorder.stall()
    first = append(log, fence, 0)
    assert recorder.stalled.wait(WAIT)
    seqs = [append(log, fence, number) for number in range(1, 21)]
    recorder.go_on()

    assert recorder.next("entry") == (first, 0)
    assert recorder.next("gap") == (first, seqs[-6])
    assert [recorder.next("entry") for _ in range(5)] == list(
        zip(seqs[-5:], range(16, 21), strict=True)
    )


def test_a_reader_replays_up_to_what_it_delivered(
    client: redis.Redis, start_reader: Callable[..., tuple[EventReader, Recorder]]
) -> None:
    fence = HolderLease(client, KEYS, slots=1, ttl=30.0).acquire()
    assert fence is not None
    log = EventLog(client, KEYS)
    reader, recorder = start_reader()
    epoch, start = recorder.next("epoch")
    recorder.stall()
    first = append(log, fence, 1)
    assert recorder.stalled.wait(WAIT)  # the hub has entry 1, not yet what follows
    later = [append(log, fence, number) for number in (2, 3)]

    replayed = reader.replay(start, epoch, limit=10)

    assert replayed is not None
    assert numbers(replayed) == [1]  # 2 and 3 reach the hub (and the browser) live
    recorder.go_on()
    assert [recorder.next("entry") for _ in range(3)] == [(first, 1), (later[0], 2), (later[1], 3)]
    replayed = reader.replay(start, epoch, limit=10)
    assert replayed is not None
    assert numbers(replayed) == [1, 2, 3]
    assert reader.replay(start, "SomeOtherEpoch00", limit=10) is None


def test_redis_restarted_empty_means_a_new_epoch_and_the_reader_goes_on(
    redis_server: RedisServer,
    clients: Callable[[], redis.Redis],
    start_reader: Callable[..., tuple[EventReader, Recorder]],
) -> None:
    lease = HolderLease(clients(), KEYS, slots=1, ttl=30.0)
    log = EventLog(clients(), KEYS)
    old_fence = lease.acquire()
    assert old_fence is not None
    reader, recorder = start_reader()
    old_epoch, _ = recorder.next("epoch")
    recorder.stall()
    seen = append(log, old_fence, 1) or 0
    assert recorder.stalled.wait(WAIT)  # the reader is busy with entry 1...

    redis_server.stop()
    redis_server.start()  # same port, no data

    with pytest.raises(LeaseLost):  # the slot went with the data
        append(log, old_fence, 2)
    assert lease.renew() is False
    new_fence = lease.acquire()
    assert new_fence is not None
    assert new_fence.number > old_fence.number  # fences keep increasing across the loss
    added = [append(log, new_fence, number) for number in (3, 4)]  # ...while these arrive
    recorder.go_on()

    assert recorder.next("entry") == (seen, 1)
    new_epoch, start = recorder.next("epoch")
    assert new_epoch != old_epoch
    assert start == 0  # the new stream is read from its start: nothing appended is skipped
    assert [recorder.next("entry") for _ in range(2)] == [(added[0], 3), (added[1], 4)]
    assert log.replay(seen, old_epoch, limit=100) is None  # browsers get resumed: false
    assert reader.replay(seen, old_epoch, limit=100) is None
    assert reader.epoch == log.head().epoch == new_epoch


def test_when_redis_is_down_every_operation_fails_fast(
    redis_server: RedisServer,
    client: redis.Redis,
    start_reader: Callable[..., tuple[EventReader, Recorder]],
) -> None:
    lease = HolderLease(client, KEYS, slots=1, ttl=30.0)
    fence = lease.acquire()
    assert fence is not None
    log = EventLog(client, KEYS)
    epoch = log.head().epoch
    reader, recorder = start_reader()
    recorder.next("epoch")

    redis_server.stop(kill=True)

    operations: list[Callable[[], object]] = [
        lambda: append(log, fence, 1),
        log.head,
        lambda: log.replay(0, epoch, limit=10),
        lease.renew,
        lease.acquire,
        lease.release,
    ]
    for operation in operations:
        started = time.monotonic()
        with pytest.raises(ClusterUnavailable, match="Redis is unavailable"):
            operation()
        assert time.monotonic() - started < FAIL_FAST
    assert recorder.next("status") is False
    assert not reader.available

    redis_server.start()

    assert recorder.next("status") is True
    assert recorder.next("epoch")[0] != epoch


def test_a_hung_redis_costs_each_operation_a_bounded_time(
    redis_server: RedisServer,
    client: redis.Redis,
    start_reader: Callable[..., tuple[EventReader, Recorder]],
) -> None:
    lease = HolderLease(client, KEYS, slots=1, ttl=30.0)
    fence = lease.acquire()
    assert fence is not None
    log = EventLog(client, KEYS)
    reader, recorder = start_reader()
    epoch, _ = recorder.next("epoch")
    assert redis_server.process is not None
    pid = redis_server.process.pid

    os.kill(pid, signal.SIGSTOP)  # accepts connections, answers nothing
    try:
        for operation in (lambda: append(log, fence, 1), log.head, lease.renew):
            started = time.monotonic()
            with pytest.raises(ClusterUnavailable):
                operation()
            assert time.monotonic() - started < FAIL_FAST
        assert recorder.next("status") is False
        stopping = time.monotonic()
        reader.stop()
        assert time.monotonic() - stopping < reader.block + FAIL_FAST
    finally:
        os.kill(pid, signal.SIGCONT)

    assert log.head().epoch == epoch  # the data survived the pause
    assert append(log, fence, 2) is not None


# -- several portals on one Redis ---------------------------------------------------------------


def test_two_portals_on_one_redis_are_isolated(
    clients: Callable[[], redis.Redis],
    start_reader: Callable[..., tuple[EventReader, Recorder]],
) -> None:
    portals = [RedisKeys("thrillconnect:op:brand1:"), RedisKeys("thrillconnect:op:brand2:")]
    fences = [HolderLease(clients(), keys, slots=1, ttl=30.0).acquire() for keys in portals]
    logs = [EventLog(clients(), keys) for keys in portals]
    _, second = start_reader(portals[1])
    second_epoch, _ = second.next("epoch")

    assert None not in fences  # each portal has its own slot
    first_fence, second_fence = fences
    assert first_fence is not None
    assert second_fence is not None
    assert append(logs[0], first_fence, 1) is not None
    # The same content in the other portal is not a duplicate.
    added = append(logs[1], second_fence, 1)
    assert added is not None

    assert second.next("entry") == (added, 1)  # the first portal's entry never arrives
    assert logs[0].head().epoch != second_epoch
    with pytest.raises(LeaseLost):  # a fence of one portal is nothing in the other
        append(logs[1], first_fence, 2)
