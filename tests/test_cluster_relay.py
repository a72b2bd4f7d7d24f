"""Cluster mode of the relay: two portals ("processes") on one Redis, real sockets."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from portal_fixtures import LiveServer
from relay_clients import SUBSCRIBE_ALL, RelayClient
from websockets.sync.client import connect

pytest_plugins = ("redis_fixtures",)


@pytest.fixture
def open_relay() -> Iterator[Callable[..., RelayClient]]:
    with ExitStack() as stack:

        def open_socket(server: LiveServer, subscribe: bool = True, **query: Any) -> RelayClient:
            url = server.url.replace("http://", "ws://") + "/thrillconnect/v1/events"
            if query:
                url += "?" + urlencode(query)
            connection = stack.enter_context(
                connect(url, origin=server.url, open_timeout=5, close_timeout=2)
            )
            client = RelayClient(connection)
            if subscribe:
                client.connection.send(json.dumps(SUBSCRIBE_ALL))
            return client

        yield open_socket


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        time.sleep(0.05)


def service_connections(sim: Any) -> int:
    count: int = sim.stats()["connections"]["service"]
    return count


def primed(client: RelayClient, sim: Any) -> RelayClient:
    """Wait until events from upstream reach ``client`` (a tick arrives), then drain."""
    # The first browser of a process starts its cluster node: generous on a busy machine.
    client.connected(timeout=20)
    for _ in range(40):
        sim.tick()
        try:
            client.recv_named("JackpotUpdate", timeout=0.5)
            break
        except (AssertionError, TimeoutError):
            continue
    else:
        raise AssertionError("no tick reached the browser")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            client.recv(timeout=0.3)
        except TimeoutError:
            break
    return client


def two_portals(make_live_portal: Any, url: str, **config: Any) -> tuple[LiveServer, LiveServer]:
    return (
        make_live_portal(THRILLCONNECT_REDIS_URL=url, **config),
        make_live_portal(THRILLCONNECT_REDIS_URL=url, **config),
    )


@pytest.mark.parametrize("holders", [1, 2])
def test_two_portals_share_the_holders_service_connections(
    make_live_portal, redis_server, thrillconnect_sim, open_relay, holders
):
    a, b = two_portals(make_live_portal, redis_server.url, THRILLCONNECT_STREAM_HOLDERS=holders)
    primed(open_relay(a), thrillconnect_sim)
    primed(open_relay(b), thrillconnect_sim)

    wait_for(lambda: service_connections(thrillconnect_sim) == holders)
    time.sleep(1.0)  # a settled cluster: no further connection opens

    assert service_connections(thrillconnect_sim) == holders
    stats = [portal.app.extensions["thrillconnect"].relay.stats() for portal in (a, b)]
    assert [s["cluster"] for s in stats] == ["redis", "redis"]
    assert sum(s["holder"] for s in stats) == holders


def test_without_redis_each_portal_has_its_own_service_connection(
    make_live_portal, thrillconnect_sim, open_relay
):
    a, b = make_live_portal(), make_live_portal()
    primed(open_relay(a), thrillconnect_sim)
    primed(open_relay(b), thrillconnect_sim)

    wait_for(lambda: service_connections(thrillconnect_sim) == 2)


def test_a_win_reaches_browsers_of_both_portals_with_the_same_seq(
    make_live_portal, redis_server, thrillconnect_sim, open_relay
):
    a, b = two_portals(make_live_portal, redis_server.url, THRILLCONNECT_STREAM_HOLDERS=1)
    on_a = primed(open_relay(a), thrillconnect_sim)
    on_b = primed(open_relay(b), thrillconnect_sim)

    event = thrillconnect_sim.win(thrillconnect_sim.instance_ids["sitewide"])
    win_a, win_b = on_a.recv_named("WinEvent"), on_b.recv_named("WinEvent")

    assert win_a["data"]["timestamp"] == win_b["data"]["timestamp"] == event["timestamp"]
    assert win_a["seq"] == win_b["seq"]
    assert on_a.seen[0]["data"]["relay_id"] == on_b.seen[0]["data"]["relay_id"]


def test_a_browser_resumes_on_another_portal_without_missing_a_win(
    make_live_portal, redis_server, thrillconnect_sim, open_relay
):
    instance = thrillconnect_sim.instance_ids["sitewide"]
    a, b = two_portals(make_live_portal, redis_server.url, THRILLCONNECT_STREAM_HOLDERS=1)
    watcher = primed(open_relay(b), thrillconnect_sim)  # b is up and reading
    leaving = primed(open_relay(a), thrillconnect_sim)
    relay_id = leaving.seen[0]["data"]["relay_id"]
    thrillconnect_sim.win(instance)
    last_seq = leaving.recv_named("WinEvent")["seq"]
    leaving.connection.close()

    missed = [thrillconnect_sim.win(instance) for _ in range(3)]
    for _ in missed:
        watcher.recv_named("WinEvent")  # b has published them all
    resumed = open_relay(b, subscribe=False, since=str(last_seq), relay_id=relay_id)
    first = resumed.recv_named("RelayStatus")
    resumed.connection.send(json.dumps(SUBSCRIBE_ALL))
    wins = [resumed.recv_named("WinEvent") for _ in range(3)]

    assert first["data"]["resumed"] is True
    assert [w["data"]["timestamp"] for w in wins] == [e["timestamp"] for e in missed]
    assert all(w["seq"] > last_seq for w in wins)


def test_without_redis_at_start_a_portal_falls_back_to_its_own_stream(
    make_live_portal, redis_server, thrillconnect_sim, open_relay
):
    url = redis_server.url
    redis_server.stop()
    portal = make_live_portal(THRILLCONNECT_REDIS_URL=url)

    client = primed(open_relay(portal), thrillconnect_sim)
    thrillconnect_sim.win(thrillconnect_sim.instance_ids["sitewide"])

    assert client.recv_named("WinEvent")["msg_name"] == "WinEvent"
    assert portal.app.extensions["thrillconnect"].relay.stats()["cluster"] == "fallback"
    # Connections of an earlier test's portals may take a moment to be counted as closed.
    wait_for(lambda: service_connections(thrillconnect_sim) == 1)


def test_every_portals_health_follows_the_holders_stream(
    make_live_portal, redis_server, thrillconnect_sim, open_relay
):
    a, b = two_portals(make_live_portal, redis_server.url, THRILLCONNECT_STREAM_HOLDERS=1)
    primed(open_relay(a), thrillconnect_sim)
    primed(open_relay(b), thrillconnect_sim)

    def health(portal: LiveServer) -> dict[str, Any]:
        return portal.app.extensions["thrillconnect"].health()

    wait_for(lambda: health(a)["status"] == health(b)["status"] == "ok")
    # One ws fault at a time: drop the holder's stream, then refuse it coming back (a
    # reconnect waits at least a few ms after a healthy connection, usually far more).
    thrillconnect_sim.faults(ws="drop")
    thrillconnect_sim.faults(ws="refuse")
    try:
        # The holder's stream is down: the other portal says so too, though it holds none.
        wait_for(lambda: health(a)["status"] == health(b)["status"] == "degraded")
    finally:
        thrillconnect_sim.faults()
    wait_for(lambda: health(a)["status"] == health(b)["status"] == "ok", timeout=20)


# -- Redis failing under a running cluster ------------------------------------------------------


def cluster_modes(*portals: LiveServer) -> list[str]:
    return [portal.app.extensions["thrillconnect"].relay.stats()["cluster"] for portal in portals]


def get_status(portal: LiveServer, path: str) -> int:
    response = requests.get(portal.url + "/thrillconnect" + path, timeout=5)
    return response.status_code


def test_redis_stopped_then_back_the_relay_falls_back_and_rejoins_the_cluster(
    make_live_portal, redis_server, thrillconnect_sim, open_relay
):
    sim = thrillconnect_sim
    a, b = two_portals(make_live_portal, redis_server.url, THRILLCONNECT_STREAM_HOLDERS=1)
    primed(open_relay(a), sim)
    primed(open_relay(b), sim)
    wait_for(lambda: service_connections(sim) == 1)

    redis_server.stop()
    # Each portal serves its browsers on its own stream: no 5xx, events still flow.
    wait_for(lambda: cluster_modes(a, b) == ["fallback", "fallback"], timeout=15)
    wait_for(lambda: service_connections(sim) == 2)
    assert [get_status(p, "/v1/currencies") for p in (a, b)] == [200, 200]
    during = primed(open_relay(a), sim)
    sim.win(sim.instance_ids["sitewide"])
    fallback_seq = during.recv_named("WinEvent")["seq"]
    fallback_relay_id = during.seen[0]["data"]["relay_id"]
    assert a.app.extensions["thrillconnect"].health()["status"] == "degraded"

    redis_server.start()  # empty: a Redis that lost its data
    wait_for(lambda: cluster_modes(a, b) == ["redis", "redis"], timeout=30)
    # The browsers of the fallback are sent to reconnect into the cluster's seq space...
    assert during.wait_closed(timeout=20) == 1012
    wait_for(lambda: service_connections(sim) == 1, timeout=15)
    # ...where the fallback's position means nothing.
    resumed = open_relay(a, subscribe=False, since=str(fallback_seq), relay_id=fallback_relay_id)
    assert resumed.recv_named("RelayStatus")["data"]["resumed"] is False

    on_a, on_b = primed(open_relay(a), sim), primed(open_relay(b), sim)
    sim.win(sim.instance_ids["sitewide"])
    assert on_a.recv_named("WinEvent")["seq"] == on_b.recv_named("WinEvent")["seq"]
    wait_for(
        lambda: all(p.app.extensions["thrillconnect"].health()["status"] == "ok" for p in (a, b))
    )


def test_redis_restarted_empty_under_the_cluster_is_a_new_epoch_and_nothing_crashes(
    make_live_portal, redis_server, thrillconnect_sim, open_relay
):
    sim = thrillconnect_sim
    a, b = two_portals(make_live_portal, redis_server.url, THRILLCONNECT_STREAM_HOLDERS=2)
    watchers = [primed(open_relay(a), sim), primed(open_relay(b), sim)]
    sim.win(sim.instance_ids["sitewide"])
    old_seq = watchers[1].recv_named("WinEvent")["seq"]
    old_relay_id = watchers[1].seen[0]["data"]["relay_id"]

    redis_server.stop()
    redis_server.start()  # at once, on the same port, with nothing in it

    # Every browser is sent to reconnect; its old position cannot be resumed.
    assert [watcher.wait_closed(timeout=20) for watcher in watchers] == [1012, 1012]
    wait_for(lambda: cluster_modes(a, b) == ["redis", "redis"], timeout=30)
    resumed = open_relay(b, subscribe=False, since=str(old_seq), relay_id=old_relay_id)
    first = resumed.recv_named("RelayStatus")
    assert first["data"]["resumed"] is False
    assert first["data"]["relay_id"] != old_relay_id
    # The cluster is one again: the same win, the same seq, on both portals.
    wait_for(lambda: service_connections(sim) == 2, timeout=15)
    on_a, on_b = primed(open_relay(a), sim), primed(open_relay(b), sim)
    sim.win(sim.instance_ids["sitewide"])
    assert on_a.recv_named("WinEvent")["seq"] == on_b.recv_named("WinEvent")["seq"]
    assert [get_status(p, "/v1/currencies") for p in (a, b)] == [200, 200]


def test_a_frozen_redis_costs_no_5xx_and_no_hang_and_the_cluster_comes_back(
    make_live_portal, redis_server, thrillconnect_sim, open_relay
):
    sim = thrillconnect_sim
    a, b = two_portals(make_live_portal, redis_server.url, THRILLCONNECT_STREAM_HOLDERS=1)
    primed(open_relay(a), sim)
    primed(open_relay(b), sim)

    redis_server.pause()
    try:
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:  # REST and health answer, in bounded time
            for portal in (a, b):
                started = time.monotonic()
                assert get_status(portal, "/v1/currencies") == 200
                assert get_status(portal, "/health") == 200
                assert time.monotonic() - started < 4.0
            time.sleep(0.2)
        wait_for(lambda: cluster_modes(a, b) == ["fallback", "fallback"], timeout=15)
        client = primed(open_relay(b), sim)
        sim.win(sim.instance_ids["sitewide"])
        assert client.recv_named("WinEvent")["msg_name"] == "WinEvent"
    finally:
        redis_server.resume()
    wait_for(lambda: cluster_modes(a, b) == ["redis", "redis"], timeout=30)
    wait_for(lambda: service_connections(sim) == 1, timeout=15)
