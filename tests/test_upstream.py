"""The upstream stream supervisor against the real simulator: connecting, subscribing,
reconnecting with back-off, recovery probing, the watchdog, 401 handling, stopping, sending,
fork safety."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import random
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flask_thrillconnect.client import ThrillConnectClient
from flask_thrillconnect.relay import upstream
from flask_thrillconnect.relay.upstream import UpstreamSupervisor, backoff_delay
from flask_thrillconnect.testing import Simulator

#: Every wait in these tests is bounded by this many seconds.
WAIT = 5.0
#: A request name the simulator does not know: its Error answer proves that everything sent
#: before it (the SubscribeRequest) has been handled.
BARRIER = "TestBarrier"
ALL_THRILLPOTS = ({"source": "thrillpots", "event_type": "*"},)
# Small timings keep the suite fast; tests that need others pass them.
FAST = {
    "open_timeout": 2.0,
    "watchdog": 5.0,
    "backoff_base": 0.05,
    "backoff_cap": 0.2,
    "unauthorized_backoff": 10.0,
}


class Recorder:
    """Collects what a supervisor reports, every wait bounded."""

    def __init__(self) -> None:
        self.messages: queue.Queue[str] = queue.Queue()
        self.states: list[tuple[str, bool]] = []
        self._changed = threading.Condition()

    def on_message(self, text: str) -> None:
        self.messages.put(text)

    def on_state(self, state: str, reconnected: bool) -> None:
        with self._changed:
            self.states.append((state, reconnected))
            self._changed.notify_all()

    def wait_state(self, state: str, reconnected: bool | None = None) -> bool:
        """Whether ``state`` (with that ``reconnected`` flag) was reported within :data:`WAIT`."""

        def seen() -> bool:
            return any(
                name == state and (reconnected is None or flag == reconnected)
                for name, flag in self.states
            )

        with self._changed:
            return self._changed.wait_for(seen, WAIT)

    def next_named(self, msg_name: str, timeout: float = WAIT) -> dict[str, Any]:
        """The next message called ``msg_name``, skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.messages.get(timeout=max(0.01, deadline - time.monotonic())))
            if message["msg_name"] == msg_name:
                return message


def sync(supervisor: UpstreamSupervisor, recorder: Recorder) -> None:
    """Wait until the simulator has handled everything the supervisor sent so far."""
    assert supervisor.send(json.dumps({BARRIER: {}}))
    assert recorder.next_named(BARRIER)["msg_type"] == "Error"


def service_url(sim: Any, token: str | None = None) -> Callable[[], str]:
    client = ThrillConnectClient(
        sim.url,
        operator_id="thrilltech",
        brand_id="brand1",
        service_token=token or sim.service_token,
    )
    return client.service_stream_url


def player_url(sim: Any, player_id: str = "player_00001") -> Callable[[], str]:
    player = sim.players[player_id]
    client = ThrillConnectClient(sim.url, operator_id="thrilltech", brand_id="brand1")
    return lambda: client.player_stream_url(player["token"], player["currency"])


def open_service_connections(sim: Any) -> int:
    return sim.stats()["connections"]["service"]


def wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes (for remote state only)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


MakeSupervisor = Callable[..., tuple[UpstreamSupervisor, Recorder]]


@pytest.fixture
def make_supervisor(thrillconnect_sim: Any) -> Iterator[MakeSupervisor]:
    """``make_supervisor(url=None, **options)``: a started supervisor (service stream and all
    thrillpots events by default) and its recorder; all are stopped after the test."""
    made: list[UpstreamSupervisor] = []

    def make(
        url: Callable[[], str] | None = None, *, start: bool = True, **options: Any
    ) -> tuple[UpstreamSupervisor, Recorder]:
        recorder = Recorder()
        supervisor = UpstreamSupervisor(
            url or service_url(thrillconnect_sim),
            subscriptions=options.pop("subscriptions", ALL_THRILLPOTS),
            on_message=options.pop("on_message", recorder.on_message),
            on_state=options.pop("on_state", recorder.on_state),
            **{**FAST, **options},
        )
        made.append(supervisor)
        if start:
            supervisor.start()
        return supervisor, recorder

    yield make
    for supervisor in made:
        supervisor.stop(timeout=WAIT)


@pytest.fixture
def connected(make_supervisor: MakeSupervisor) -> tuple[UpstreamSupervisor, Recorder]:
    """A service supervisor whose subscription is in effect."""
    supervisor, recorder = make_supervisor()
    assert supervisor.wait_connected(WAIT)
    sync(supervisor, recorder)
    return supervisor, recorder


# -- connecting and delivering -----------------------------------------------------------------
def test_connects_subscribes_and_delivers_jackpot_updates(
    thrillconnect_sim: Any, connected: tuple[UpstreamSupervisor, Recorder]
) -> None:
    supervisor, recorder = connected
    thrillconnect_sim.tick()
    update = recorder.next_named("JackpotUpdate")
    assert update["source"] == "thrillpots"
    assert recorder.states[:2] == [("connecting", False), ("connected", False)]
    assert supervisor.state == "connected"


def test_keeps_exactly_one_upstream_connection(
    thrillconnect_sim: Any, connected: tuple[UpstreamSupervisor, Recorder]
) -> None:
    supervisor, _ = connected
    supervisor.start()  # idempotent: no second thread, no second connection
    assert open_service_connections(thrillconnect_sim) == 1
    assert supervisor.stats()["connects"] == 1


def test_stats_count_messages_without_errors(
    thrillconnect_sim: Any, connected: tuple[UpstreamSupervisor, Recorder]
) -> None:
    supervisor, recorder = connected
    thrillconnect_sim.tick()
    recorder.next_named("JackpotUpdate")
    stats = supervisor.stats()
    assert stats["state"] == "connected"
    assert stats["messages"] >= 2  # the barrier's answer and the update
    assert stats["last_message_at"] is not None
    assert stats["last_error"] is None
    assert stats["since"] <= time.time()


# -- reconnecting --------------------------------------------------------------------------------
def test_reconnects_and_resubscribes_after_a_drop(
    thrillconnect_sim: Any, connected: tuple[UpstreamSupervisor, Recorder]
) -> None:
    supervisor, recorder = connected
    thrillconnect_sim.faults(ws="drop")
    assert recorder.wait_state("connected", reconnected=True)
    sync(supervisor, recorder)
    thrillconnect_sim.tick()
    assert recorder.next_named("JackpotUpdate")["msg_type"] == "Event"
    assert recorder.states[1:] == [
        ("connected", False),
        ("reconnecting", False),
        ("connected", True),
    ]
    assert supervisor.stats()["reconnects"] == 1
    assert open_service_connections(thrillconnect_sim) == 1


def test_retries_with_backoff_while_refused_then_recovers(
    thrillconnect_sim: Any, make_supervisor: MakeSupervisor
) -> None:
    thrillconnect_sim.faults(ws="refuse")
    supervisor, recorder = make_supervisor(backoff_base=0.05, backoff_cap=0.4)
    assert recorder.wait_state("reconnecting")
    started = supervisor.stats()["attempts"]
    time.sleep(1.5)  # a measuring window, not a wait for an event
    attempts = supervisor.stats()["attempts"] - started
    # Keeps trying, but paced: a refused local upgrade takes milliseconds, so a loop without
    # back-off would make hundreds of attempts in the window (the mean here is about 8).
    assert 2 <= attempts <= 40
    assert supervisor.state == "reconnecting"
    assert "UpstreamUnavailable" in supervisor.stats()["last_error"]

    thrillconnect_sim.faults()
    assert recorder.wait_state("connected", reconnected=True)
    sync(supervisor, recorder)
    thrillconnect_sim.tick()
    assert recorder.next_named("JackpotUpdate")["msg_type"] == "Event"


def test_watchdog_reconnects_a_stalled_connection(
    thrillconnect_sim: Any, make_supervisor: MakeSupervisor
) -> None:
    supervisor, recorder = make_supervisor(watchdog=0.5)
    assert supervisor.wait_connected(WAIT)
    thrillconnect_sim.faults(ws="stall")  # no events and no pongs from now on
    assert recorder.wait_state("reconnecting")
    assert "WatchdogExpired" in supervisor.stats()["last_error"]

    thrillconnect_sim.faults()
    assert wait_until(lambda: supervisor.state == "connected")
    sync(supervisor, recorder)
    thrillconnect_sim.tick()
    assert recorder.next_named("JackpotUpdate")["msg_type"] == "Event"


def test_watchdog_keeps_a_quiet_connection_that_answers_pings(
    thrillconnect_sim: Any, make_supervisor: MakeSupervisor
) -> None:
    supervisor, recorder = make_supervisor(watchdog=0.3)
    assert supervisor.wait_connected(WAIT)
    time.sleep(1.5)  # five watchdog periods without a single event
    assert supervisor.state == "connected"
    assert supervisor.stats()["connects"] == 1
    assert ("reconnecting", False) not in recorder.states


# -- bad credentials -----------------------------------------------------------------------------
def test_bad_token_is_unauthorized_and_retried_slowly_without_logging_the_token(
    thrillconnect_sim: Any, make_supervisor: MakeSupervisor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bad_token = thrillconnect_sim.make_service_token(secret="not-the-simulators-secret")
    supervisor, recorder = make_supervisor(
        service_url(thrillconnect_sim, bad_token), unauthorized_backoff=10.0
    )
    assert recorder.wait_state("unauthorized")
    time.sleep(2.0)  # a measuring window
    assert supervisor.stats()["attempts"] <= 2
    assert supervisor.state == "unauthorized"
    assert "UpstreamUnauthorized" in supervisor.stats()["last_error"]
    warnings = [
        record
        for record in caplog.records
        if record.name == "flask_thrillconnect.relay.upstream" and record.levelno >= logging.WARNING
    ]
    assert len(warnings) == 1
    assert "401" in warnings[0].getMessage()
    for record in caplog.records:
        assert bad_token not in record.getMessage()
        assert bad_token not in (record.exc_text or "")
    assert bad_token not in json.dumps(supervisor.stats())


# -- stopping ------------------------------------------------------------------------------------
def test_stop_during_backoff_returns_within_its_timeout(
    thrillconnect_sim: Any, make_supervisor: MakeSupervisor
) -> None:
    thrillconnect_sim.faults(ws="refuse")
    supervisor, recorder = make_supervisor(backoff_base=30.0, backoff_cap=30.0)
    assert recorder.wait_state("reconnecting")
    began = time.monotonic()
    supervisor.stop(timeout=2.0)
    assert time.monotonic() - began < 2.0
    assert supervisor.state == "stopped"
    assert recorder.states[-1] == ("stopped", False)


def test_stop_during_unauthorized_wait_returns_within_its_timeout(
    thrillconnect_sim: Any, make_supervisor: MakeSupervisor
) -> None:
    bad_token = thrillconnect_sim.make_service_token(secret="not-the-simulators-secret")
    supervisor, recorder = make_supervisor(
        service_url(thrillconnect_sim, bad_token), unauthorized_backoff=60.0
    )
    assert recorder.wait_state("unauthorized")
    began = time.monotonic()
    supervisor.stop(timeout=2.0)
    assert time.monotonic() - began < 2.0
    assert supervisor.state == "stopped"


def test_stop_while_reading_closes_the_connection_within_its_timeout(
    thrillconnect_sim: Any, connected: tuple[UpstreamSupervisor, Recorder]
) -> None:
    supervisor, recorder = connected
    began = time.monotonic()
    supervisor.stop(timeout=2.0)
    assert time.monotonic() - began < 2.0
    assert supervisor.state == "stopped"
    assert wait_until(lambda: open_service_connections(thrillconnect_sim) == 0)
    supervisor.stop(timeout=2.0)  # idempotent
    supervisor.start()  # stopped for good: no new thread
    assert supervisor.state == "stopped"
    assert recorder.states.count(("stopped", False)) == 1


def test_stop_before_start_just_marks_it_stopped(make_supervisor: MakeSupervisor) -> None:
    supervisor, _ = make_supervisor(start=False)
    assert supervisor.state == "idle"
    supervisor.stop(timeout=1.0)
    assert supervisor.state == "stopped"
    began = time.monotonic()
    assert supervisor.wait_connected(WAIT) is False
    assert time.monotonic() - began < 1.0  # a stopped supervisor is not waited for


# -- sending -------------------------------------------------------------------------------------
def test_send_on_a_player_connection_gets_the_opt_in_event(
    thrillconnect_sim: Any, make_supervisor: MakeSupervisor
) -> None:
    supervisor, recorder = make_supervisor(player_url(thrillconnect_sim))
    assert supervisor.wait_connected(WAIT)
    request = {
        "PlayerOptInRequest": {
            "instance_id": thrillconnect_sim.instance_ids["progressive"],
            "player_id": "player_00001",
            "brand_id": "thrilltech:brand1",
            "player_country": "MT",
            "opt_in": True,
            "contribution_value": 0.3,
        }
    }
    assert supervisor.send(json.dumps(request))
    event = recorder.next_named("OptInEvent")
    assert event["player_id"] == "player_00001"
    assert event["data"]["opted_in"] is True


def test_send_returns_false_when_not_connected(
    thrillconnect_sim: Any, make_supervisor: MakeSupervisor
) -> None:
    thrillconnect_sim.faults(ws="refuse")
    supervisor, recorder = make_supervisor(start=False)
    assert supervisor.send("{}") is False  # not started
    supervisor.start()
    assert recorder.wait_state("reconnecting")
    assert supervisor.send("{}") is False  # refused upstream
    supervisor.stop(timeout=2.0)
    assert supervisor.send("{}") is False  # stopped


# -- callbacks -----------------------------------------------------------------------------------
def test_a_raising_message_callback_does_not_kill_the_loop(
    thrillconnect_sim: Any, make_supervisor: MakeSupervisor
) -> None:
    received: queue.Queue[str] = queue.Queue()

    def explode(text: str) -> None:
        received.put(text)
        raise RuntimeError("portal bug")

    supervisor, _ = make_supervisor(on_message=explode)
    assert supervisor.wait_connected(WAIT)
    assert supervisor.send(json.dumps({BARRIER: {}}))
    assert json.loads(received.get(timeout=WAIT))["msg_name"] == BARRIER
    thrillconnect_sim.tick()
    assert json.loads(received.get(timeout=WAIT))["msg_name"] == "JackpotUpdate"
    assert supervisor.state == "connected"
    assert supervisor.stats()["connects"] == 1


def test_a_raising_state_callback_does_not_stop_the_supervisor(
    make_supervisor: MakeSupervisor,
) -> None:
    def explode(state: str, reconnected: bool) -> None:
        raise RuntimeError("portal bug")

    supervisor, recorder = make_supervisor(on_state=explode)
    assert supervisor.wait_connected(WAIT)
    sync(supervisor, recorder)


# -- fork safety ---------------------------------------------------------------------------------
# Python >= 3.12 warns about fork() in a threaded process; forking one is this test's point.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_starts_its_own_connection_and_leaves_the_parents_alone(
    thrillconnect_sim: Any, connected: tuple[UpstreamSupervisor, Recorder]
) -> None:
    supervisor, recorder = connected
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave at once, skipping pytest's teardown
        code = 1
        try:
            os.close(read_end)
            report = {"send_before_start": supervisor.send(json.dumps({BARRIER: {}}))}
            supervisor.start()
            report["connected"] = supervisor.wait_connected(WAIT)
            report["connects"] = supervisor.stats()["connects"]
            os.write(write_end, json.dumps(report).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], WAIT * 2)
        assert ready, "the child did not report"
        report = json.loads(os.read(read_end, 4096))
    finally:
        os.close(read_end)
        with contextlib.suppress(ProcessLookupError):  # it may have exited already
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert report == {"send_before_start": False, "connected": True, "connects": 1}
    # The child made a connection of its own; the parent's is untouched and still works.
    assert thrillconnect_sim.stats()["connects"]["service"] == 2
    sync(supervisor, recorder)
    assert supervisor.stats()["connects"] == 1


# -- recovery probing ------------------------------------------------------------------------
#: A back-off far longer than any wait in these tests: a reconnect within WAIT is the probe's.
LONG_BACKOFF = {"backoff_base": 60.0, "backoff_cap": 60.0}
#: The goal: events flow again within this long of the platform accepting connections.
RECOVERY_GOAL = 2.0


@pytest.fixture
def worst_case_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every back-off delay is its ceiling (the jitter's worst draw), so that a test can tell a
    reconnect the back-off allows from one it does not."""

    def ceiling(attempt: int, *, base: float, cap: float, rng: Any = None) -> float:
        return min(cap, base * 2 ** min(attempt, 32))

    monkeypatch.setattr(upstream, "backoff_delay", ceiling)


def closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def front_end_without_platform() -> Iterator[int]:
    """A loopback port that accepts TCP connections and closes each at once, like a proxy
    with no backend behind it; answers the port."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            connection.close()

    thread = threading.Thread(target=serve, name="front-end", daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stopping.set()
        thread.join(WAIT)
        server.close()


def test_a_platform_back_after_an_outage_is_reconnected_long_before_the_backoff_ends(
    thrillconnect_sim: Any,
    make_supervisor: MakeSupervisor,
    worst_case_jitter: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    supervisor, recorder = make_supervisor(**LONG_BACKOFF)
    assert supervisor.wait_connected(WAIT)
    port = thrillconnect_sim.port
    thrillconnect_sim.stop()  # the outage: the platform's port now refuses connections
    assert recorder.wait_state("reconnecting")
    assert wait_until(lambda: supervisor.stats()["probes"] >= 2)
    assert supervisor.stats()["attempts"] == 1  # while it is down, the back-off holds

    with Simulator(port=port, tick_interval=0, seed=1) as revived:  # accepting again
        back_at = time.monotonic()
        assert recorder.wait_state("connected", reconnected=True)
        assert time.monotonic() - back_at < RECOVERY_GOAL  # the back-off alone: 60 s
        sync(supervisor, recorder)
        revived.tick()
        assert recorder.next_named("JackpotUpdate")["msg_type"] == "Event"
        assert supervisor.stats()["attempts"] == 2
    token = thrillconnect_sim.service_token
    assert any("accepts connections again" in record.getMessage() for record in caplog.records)
    for record in caplog.records:
        assert token not in record.getMessage()
        assert token not in (record.exc_text or "")


def test_a_refused_attempt_counts_as_down_so_the_first_accepted_probe_reconnects(
    make_supervisor: MakeSupervisor, worst_case_jitter: None
) -> None:
    platform = Simulator(port=closed_port(), tick_interval=0, seed=1)  # not started yet
    supervisor, recorder = make_supervisor(
        service_url(platform), probe_interval=1.0, **LONG_BACKOFF
    )
    assert recorder.wait_state("reconnecting")
    assert "ConnectionRefusedError" in supervisor.stats()["last_error"]
    # Up before the first probe (1 s after the refusal): no probe ever saw it down.
    with platform:
        assert supervisor.wait_connected(WAIT)
        sync(supervisor, recorder)
    assert supervisor.stats()["probes"] == 1


def test_an_http_refusal_keeps_the_backoff_and_is_not_probed(
    thrillconnect_sim: Any, make_supervisor: MakeSupervisor, worst_case_jitter: None
) -> None:
    thrillconnect_sim.faults(ws="refuse")  # upgrades answered with 503: the platform is up
    supervisor, recorder = make_supervisor(**LONG_BACKOFF)
    assert recorder.wait_state("reconnecting")
    time.sleep(1.5)  # a measuring window of three probe intervals
    stats = supervisor.stats()
    assert stats["probes"] == 0
    assert stats["attempts"] == 1  # no rapid reconnect attempts
    assert "(503)" in stats["last_error"]
    assert supervisor.state == "reconnecting"


def test_a_front_end_accepting_connections_but_failing_the_stream_keeps_the_backoff(
    make_supervisor: MakeSupervisor, worst_case_jitter: None
) -> None:
    with front_end_without_platform() as port:
        supervisor, recorder = make_supervisor(
            lambda: f"ws://127.0.0.1:{port}/v1/events/service?token=t0ken", **LONG_BACKOFF
        )
        assert recorder.wait_state("reconnecting")
        assert wait_until(lambda: supervisor.stats()["probes"] >= 1)
        time.sleep(1.5)  # a measuring window of three probe intervals
        stats = supervisor.stats()
    # It accepted the probe as it accepted the attempt: no recovery to notice, so one probe
    # and no second attempt.
    assert stats["probes"] == 1
    assert stats["attempts"] == 1
    assert supervisor.state == "reconnecting"


def test_without_probing_the_backoff_is_slept_out(
    make_supervisor: MakeSupervisor, worst_case_jitter: None
) -> None:
    platform = Simulator(port=closed_port(), tick_interval=0, seed=1)
    supervisor, recorder = make_supervisor(
        service_url(platform), probe_interval=None, **LONG_BACKOFF
    )
    assert recorder.wait_state("reconnecting")
    with platform:
        time.sleep(1.5)  # a measuring window
        assert supervisor.state == "reconnecting"
    assert supervisor.stats()["probes"] == 0
    assert supervisor.stats()["attempts"] == 1


def test_stop_while_probing_returns_within_its_timeout(
    make_supervisor: MakeSupervisor, worst_case_jitter: None
) -> None:
    platform = Simulator(port=closed_port(), tick_interval=0, seed=1)
    supervisor, recorder = make_supervisor(service_url(platform), **LONG_BACKOFF)
    assert wait_until(lambda: supervisor.stats()["probes"] >= 1)
    began = time.monotonic()
    supervisor.stop(timeout=2.0)
    assert time.monotonic() - began < 2.0
    assert supervisor.state == "stopped"
    assert recorder.states[-1] == ("stopped", False)


def test_probe_interval_must_be_positive_or_none() -> None:
    with pytest.raises(ValueError, match="probe_interval"):
        UpstreamSupervisor(
            lambda: "ws://127.0.0.1:1/", subscriptions=(), on_message=print, probe_interval=0
        )


# -- the back-off ----------------------------------------------------------------------------
def test_backoff_is_full_jitter_under_a_growing_capped_ceiling() -> None:
    rng, twin = random.Random(1234), random.Random(1234)
    for attempt in range(12):
        ceiling = min(30.0, 0.5 * 2**attempt)
        delay = backoff_delay(attempt, base=0.5, cap=30.0, rng=rng)
        assert delay == twin.uniform(0.0, ceiling)
        assert 0.0 <= delay <= ceiling


def test_backoff_spreads_over_the_whole_range_from_zero() -> None:
    rng = random.Random(99)
    delays = [backoff_delay(3, base=0.5, cap=30.0, rng=rng) for _ in range(2000)]
    assert min(delays) < 0.1  # full jitter: not "half fixed, half random"
    assert max(delays) > 3.9
    assert max(delays) <= 4.0


def test_backoff_stays_at_the_cap_for_huge_attempt_counts() -> None:
    rng = random.Random(5)
    assert all(
        0.0 <= backoff_delay(10_000, base=0.5, cap=30.0, rng=rng) <= 30.0 for _ in range(100)
    )
