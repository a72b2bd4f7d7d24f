"""Structured log records: stable event names and fields, one line each, and no secret in
any record of a run with upstream failures, stream reconnects and a relay overflow."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from portal_fixtures import Browser

from flask_thrillconnect.log_events import RateLimit, log_event

REDIS_PASSWORD = "hunter2-redis-pw"
WIN = {"msg_type": "Event", "source": "thrillpots", "msg_name": "WinEvent",
       "operator_id": "thrilltech", "brand_id": "brand1", "player_id": None,
       "data": {"padding": "x" * 2000}, "timestamp": 0}  # fmt: skip


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.02)
    pytest.fail(f"condition not met within {timeout} s")


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == name]


def ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("flask_thrillconnect")]


def test_failures_reconnects_and_overflows_are_logged_as_events_without_secrets(
    make_live_portal, relay_socket, thrillconnect_sim, caplog
):
    caplog.set_level(logging.DEBUG, logger="flask_thrillconnect")
    service = make_live_portal(THRILLCONNECT_TIMEOUT=(0.5, 0.5))
    # Without a service token: a player stream, with the player's wallet token in its URL.
    players = make_live_portal(THRILLCONNECT_SERVICE_TOKEN=None)
    player = Browser(players.url).login("player_00001")
    # Cluster mode with a Redis that is down: its URL carries a password.
    clustered = make_live_portal(
        THRILLCONNECT_REDIS_URL=f"redis://default:{REDIS_PASSWORD}@127.0.0.1:{closed_port()}/0"
    )
    service_client = relay_socket(service).live()
    player_client = relay_socket(players, player).live()
    assert Browser(clustered.url).api("GET", "/v1/currencies").status_code == 200
    relay_socket(clustered).live()

    # An upstream failure (REST), logged once with its fields.
    thrillconnect_sim.faults(rest={"status": 503})
    assert Browser(service.url).api("GET", "/v1/currencies").status_code == 503
    (failure,) = events(caplog, "upstream_failure")
    assert failure.levelno == logging.WARNING
    assert (failure.kind, failure.error, failure.status) == (
        "currencies",
        "UpstreamUnavailable",
        503,
    )
    assert failure.getMessage().startswith(
        "event=upstream_failure kind=currencies error=UpstreamUnavailable status=503 "
        "suppressed=0: ThrillConnect answered 503 to GET /v1/currencies"
    )
    thrillconnect_sim.faults()

    # Every upstream stream is dropped once: lost, retried, back.
    thrillconnect_sim.faults(ws="drop")
    for client in (service_client, player_client):
        client.recv_until(lambda m: m.get("data", {}).get("upstream") == "reconnecting")
        client.connected()
    streams = {r.stream for r in events(caplog, "stream_lost")}
    assert {"thrillconnect-service", "thrillconnect-player-player_00001"} <= streams
    back = events(caplog, "stream_reconnected")
    assert {"thrillconnect-service", "thrillconnect-player-player_00001"} <= {
        r.stream for r in back
    }
    assert all(r.down_seconds >= 0 for r in back)
    assert events(caplog, "stream_retry")
    lost = events(caplog, "stream_lost")[0]
    assert lost.levelno == logging.WARNING
    assert lost.getMessage().startswith(f"event=stream_lost stream={lost.stream} cause=")

    # A browser that reads nothing falls behind and is closed with 1013.
    slow = relay_socket(service).live()
    for _ in range(6000):
        service.app.extensions["thrillconnect"].relay.hub.publish(WIN, "broadcast")
    assert slow.wait_closed() == 1013
    (overflow,) = wait_for(lambda: events(caplog, "relay_overflow"))
    assert (overflow.code, overflow.limit, overflow.audience) == (1013, 1000, "broadcast")
    assert overflow.getMessage().startswith(
        "event=relay_overflow code=1013 limit=1000 audience=broadcast suppressed=0: "
    )

    # No secret in any record of ours: message, fields, arguments or traceback.
    secrets = {
        "service token": thrillconnect_sim.service_token,
        "wallet token": thrillconnect_sim.players["player_00001"]["token"],
        "Redis password": REDIS_PASSWORD,
    }
    records = ours(caplog)
    assert len(records) > 20
    formatter = logging.Formatter("%(message)s")
    for record in records:
        text = " ".join([formatter.format(record), repr(vars(record))])
        for what, secret in secrets.items():
            assert secret not in text, f"{what} in {record.name}: {record.getMessage()}"
    player.close()


def test_a_line_shows_the_event_and_fields_and_the_record_carries_them(caplog):
    logger = logging.getLogger("flask_thrillconnect.test")
    caplog.set_level(logging.INFO, logger="flask_thrillconnect.test")

    log_event(
        logger,
        logging.INFO,
        "stream_retry",
        "stream ended",
        stream="thrillconnect-service",
        cause="OSError: [Errno 111] refused",
        retry_in=0.25,
        status=None,
    )

    (record,) = caplog.records
    assert record.getMessage() == (
        'event=stream_retry stream=thrillconnect-service cause="OSError: [Errno 111] refused" '
        "retry_in=0.250 status=-: stream ended"
    )
    assert record.event == "stream_retry"
    assert record.retry_in == 0.25
    assert record.status is None


def test_nothing_is_formatted_when_the_level_is_off(caplog):
    caplog.set_level(logging.WARNING, logger="flask_thrillconnect.test")

    class Exploding:
        def __str__(self) -> str:
            raise AssertionError("formatted")

    log_event(logging.getLogger("flask_thrillconnect.test"), logging.INFO, "x", "y", v=Exploding())

    assert caplog.records == []


def test_a_rate_limit_lets_one_through_per_interval_and_counts_the_rest():
    clock = [0.0]
    limit = RateLimit(10, clock=lambda: clock[0])

    assert limit.admit("a") == 0
    assert [limit.admit("a") for _ in range(3)] == [None, None, None]
    assert limit.admit("b") == 0
    clock[0] = 10.0
    assert limit.admit("a") == 3
    assert limit.admit("a") is None
