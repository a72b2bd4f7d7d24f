"""The relay's socket thread on its own: when a pass starts, and what each browser receives."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from flask_thrillconnect.relay.writer import (
    BURST_MEMORY,
    GATHER_MAX,
    GATHER_QUIET_BOUNDS,
    GATHER_QUIET_SHARE,
    GATHER_SHARE,
    WRITE_GATHER,
    Peer,
    SocketWriter,
    burst_pause,
    gather_until,
    text_frame,
)

STARTED = 1000.0


# -- when a woken writer starts its pass -----------------------------------------------------
def test_a_pass_over_few_browsers_waits_the_least_even_while_publishing_goes_on():
    still_publishing = STARTED + WRITE_GATHER
    assert gather_until(STARTED, still_publishing, expected_pass=0.0001) == (STARTED + WRITE_GATHER)


@pytest.mark.parametrize("expected_pass", [0.030, 0.100])
def test_a_costly_pass_waits_until_the_burst_pauses(expected_pass):
    last_publish = STARTED + 0.003
    shortest, longest = GATHER_QUIET_BOUNDS
    quiet = min(longest, max(shortest, GATHER_QUIET_SHARE * expected_pass))
    until = gather_until(STARTED, last_publish, expected_pass)
    assert until == pytest.approx(last_publish + quiet)


def test_the_pause_that_ends_a_burst_is_longer_before_a_costlier_pass():
    last_publish = STARTED + 0.003
    small = gather_until(STARTED, last_publish, expected_pass=0.030) - last_publish
    large = gather_until(STARTED, last_publish, expected_pass=0.100) - last_publish
    assert small < large
    assert small == pytest.approx(GATHER_QUIET_SHARE * 0.030)
    assert large == pytest.approx(GATHER_QUIET_BOUNDS[1])  # a tenth of 0.1 s, capped


def test_a_burst_that_ended_before_the_wake_up_waits_the_least():
    until = gather_until(STARTED, STARTED - 1.0, expected_pass=1.0)
    assert until == STARTED + WRITE_GATHER


def test_publishing_that_never_pauses_is_waited_for_a_share_of_the_pass_at_most():
    endless = STARTED + 10.0
    expected_pass = 0.030
    until = gather_until(STARTED, endless, expected_pass)
    assert until == pytest.approx(STARTED + GATHER_SHARE * expected_pass)
    assert GATHER_SHARE * expected_pass < GATHER_MAX  # the share, not the cap, bounded it
    assert gather_until(STARTED, endless, expected_pass=60.0) == STARTED + GATHER_MAX


# -- what each browser receives ---------------------------------------------------------------
class ListSource:
    """A source whose texts are given up front (the hub's connection, reduced to its drain)."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.close_code: int | None = None
        self._lock = threading.Lock()

    def drain(self, max_items: int) -> list[str]:
        with self._lock:
            taken, self.texts = self.texts[:max_items], self.texts[max_items:]
        return taken


@pytest.fixture
def writer() -> Iterator[SocketWriter]:
    writer = SocketWriter(name="test-writer")
    yield writer
    writer.close()


@pytest.fixture
def socket_pair() -> Iterator[Callable[[], tuple[socket.socket, socket.socket]]]:
    """Connected pairs: the end the writer serves (non-blocking), and the browser's end."""
    opened: list[socket.socket] = []

    def make() -> tuple[socket.socket, socket.socket]:
        served, browser = socket.socketpair()
        served.setblocking(False)
        browser.settimeout(5)
        opened.extend((served, browser))
        return served, browser

    yield make
    for sock in opened:
        sock.close()


def peer_of(writer: SocketWriter, served: socket.socket, source: ListSource) -> Peer:
    return Peer(
        writer,
        served,
        source,
        on_input=lambda: None,
        on_release=lambda _flushed: None,
        on_timeout=lambda: None,
    )


def receive(browser: socket.socket, size: int) -> bytes:
    """``size`` bytes, or what came within 5 s."""
    data = b""
    deadline = time.monotonic() + 5
    while len(data) < size and time.monotonic() < deadline:
        data += browser.recv(size - len(data))
    return data


def frames(*texts: str) -> bytes:
    return b"".join(text_frame(text) for text in texts)


def test_each_browser_receives_its_own_batch_when_batches_differ(writer, socket_pair):
    # Most browsers take the same batch (the writer reuses its bytes); these must not mix.
    shared = ["tick 1", "tick 2"]
    batches = {
        "same objects": list(shared),
        "equal text, other objects": ["tick " + str(n) for n in (1, 2)],
        "another batch": ["a win for this player", "tick 2"],
        "same objects again": list(shared),
    }
    browsers = {}
    for name, texts in batches.items():
        served, browsers[name] = socket_pair()
        writer.attach(peer_of(writer, served, ListSource(texts)))
    for name, browser in browsers.items():
        expected = frames(*batches[name])
        assert receive(browser, len(expected)) == expected, name


def test_a_frame_queued_for_one_browser_goes_before_its_batch(writer, socket_pair):
    served, browser = socket_pair()
    peer = peer_of(writer, served, ListSource(["tick 1"]))
    assert peer.send_frame(b"\x81\x05hello")  # before attach: waits for the first flush
    writer.attach(peer)
    expected = b"\x81\x05hello" + frames("tick 1")
    assert receive(browser, len(expected)) == expected


def test_the_writer_learns_what_a_browser_costs_in_a_pass(writer, socket_pair):
    guess = writer.flush_cost
    sources, browsers = [], []
    for _ in range(40):  # a pass over 32 browsers or more teaches it
        served, browser = socket_pair()
        source = ListSource([])
        writer.attach(peer_of(writer, served, source))
        sources.append(source)
        browsers.append(browser)
    for source in sources:
        source.texts = ["tick 1", "tick 2"]
    writer.sources_ready(sources)  # all 40 in one pass, as a fan-out reports them
    expected = frames("tick 1", "tick 2")
    for browser in browsers:
        assert receive(browser, len(expected)) == expected
    deadline = time.monotonic() + 5
    while writer.flush_cost == guess and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.flush_cost != guess
    assert 0 < writer.flush_cost < 0.01


def test_a_burst_as_large_as_recent_ones_starts_the_pass_at_once():
    still_publishing = STARTED + 0.003
    assert gather_until(STARTED, still_publishing, 0.030, burst_complete=True) == STARTED


@pytest.mark.parametrize(
    ("expected_pass", "pause"),
    [(0.0, GATHER_QUIET_BOUNDS[0]), (0.030, 0.003), (1.0, GATHER_QUIET_BOUNDS[1])],
)
def test_the_pause_that_ends_a_burst_is_a_share_of_the_pass_within_bounds(expected_pass, pause):
    assert burst_pause(expected_pass) == pytest.approx(pause)


# -- how large a burst is expected to be ----------------------------------------------------------
def publish_burst(writer: SocketWriter, size: int) -> None:
    """``size`` publishes at once, then a pause longer than any that ends a burst."""
    for _ in range(size):
        writer.published()
    time.sleep(2 * GATHER_QUIET_BOUNDS[1])


def test_the_writer_expects_the_size_of_the_bursts_before(writer):
    assert writer.expected_burst == 0  # nothing to go by: the pause ends the first bursts
    publish_burst(writer, 7)
    assert writer.expected_burst == 0  # a burst is known to be over once the next one starts
    publish_burst(writer, 7)
    assert writer.expected_burst == 7


def test_a_lone_message_between_bursts_does_not_shrink_the_expected_burst(writer):
    for size in (7, 1, 7, 1):  # ticks, and an opt-in answer between them
        publish_burst(writer, size)
    writer.published()
    assert writer.expected_burst == 7


def test_a_larger_burst_is_learned_and_the_largest_recent_one_is_expected(writer):
    for size in (7, 8, *[7] * BURST_MEMORY):
        publish_burst(writer, size)
    publish_burst(writer, 1)
    assert writer.expected_burst == 7  # the burst of 8 is forgotten after BURST_MEMORY more
    publish_burst(writer, 9)
    writer.published()
    assert writer.expected_burst == 9
