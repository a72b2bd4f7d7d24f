"""The relay WebSocket ``<prefix>/v1/events``: real portal, real simulator, real sockets."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from contextlib import ExitStack
from urllib.parse import urlencode

import pytest
from relay_clients import RECV_TIMEOUT, SUBSCRIBE_ALL, RelayClient
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Ping, Pong, Request, TextMessage

from flask_thrillconnect import shutdown


@pytest.fixture
def relay_connect(portal):
    """``relay_connect(browser=None, server=None, **query)`` opens a relay socket."""
    stack = ExitStack()

    def open_socket(browser=None, server=None, origin=None, **query):
        base = (server or portal).url
        url = base.replace("http://", "ws://") + "/thrillconnect/v1/events"
        if query:
            url += "?" + urlencode(query)
        headers = {}
        if browser is not None:
            headers["Cookie"] = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
        connection = stack.enter_context(
            connect(
                url,
                origin=origin or base,
                additional_headers=headers,
                open_timeout=5,
                close_timeout=2,
            )
        )
        return RelayClient(connection)

    open_socket.primed = set()
    with stack:
        yield open_socket


def subscribed_client(relay_connect, sim=None, **kwargs) -> RelayClient:
    """A subscribed relay socket; with ``sim``, one whose upstream subscription is in effect.

    ThrillConnect never acknowledges a ``SubscribeRequest``, so "connected" can come a moment
    before the upstream routes events to the portal: a tick that arrives proves it does.
    """
    client = relay_connect(**kwargs)
    client.subscribe()
    client.recv_until(
        lambda m: m["msg_name"] == "RelayStatus" and m["data"]["upstream"] == "connected"
    )
    server = kwargs.get("server")
    if sim is None or server in relay_connect.primed:
        return client
    relay_connect.primed.add(server)  # the portal's one upstream stream: once is enough
    for _ in range(20):
        sim.tick()
        try:
            client.recv_named("JackpotUpdate", timeout=0.5)
        except (AssertionError, TimeoutError):
            continue
        client.drain_quiet()  # the rest of that tick: tests start from a quiet socket
        break
    return client


def opt_in_request(instance_id: str, player_id: str, country: str) -> dict:
    """A browser's ``PlayerOptInRequest``, as ThrillConnect's protocol spells it."""
    return {
        "PlayerOptInRequest": {
            "instance_id": instance_id,
            "player_id": player_id,
            "brand_id": "thrilltech:brand1",
            "player_country": country,
            "opt_in": True,
        }
    }


def closed_with(client: RelayClient, timeout: float = 10.0) -> int:
    """Read until the relay closes the socket; the close code it sent."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            client.recv(timeout=max(0.01, deadline - time.monotonic()))
    except ConnectionClosed as closed:
        return closed.rcvd.code
    pytest.fail(f"the relay did not close the socket within {timeout} s")


def wait_for(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.02)
    pytest.fail(f"condition not met within {timeout} s")


def test_the_first_message_is_a_relay_status_with_the_relay_id(relay_connect):
    client = relay_connect()

    status = client.recv()

    assert status["msg_name"] == "RelayStatus"
    assert status["source"] == "relay"
    assert status["data"]["relay_id"]
    assert isinstance(status["seq"], int)


def test_jackpot_updates_fan_out_to_every_browser(relay_connect, thrillconnect_sim):
    browsers = [subscribed_client(relay_connect, sim=thrillconnect_sim) for _ in range(20)]

    thrillconnect_sim.tick()

    progressive = thrillconnect_sim.instance_ids["progressive"]
    for browser in browsers:
        update = browser.recv_until(
            lambda m: m["msg_name"] == "JackpotUpdate" and m["data"]["id"] == progressive
        )
        assert update["brand_id"] == "brand1"
        assert update["player_id"] is None
    assert thrillconnect_sim.stats()["connections"]["service"] == 1


def test_seq_increases_on_each_connection(relay_connect, thrillconnect_sim):
    client = subscribed_client(relay_connect, sim=thrillconnect_sim)
    instance = thrillconnect_sim.instance_ids["sitewide"]

    seqs = []
    for _ in range(5):
        thrillconnect_sim.win(instance)
        seqs.append(client.recv_named("WinEvent")["seq"])

    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)


def test_nothing_arrives_before_a_subscription(relay_connect, thrillconnect_sim):
    client = relay_connect()
    client.status()
    thrillconnect_sim.tick()

    with pytest.raises(TimeoutError):
        client.recv_named("JackpotUpdate", timeout=0.5)


def test_subscriptions_filter_by_event_name(relay_connect, thrillconnect_sim):
    client = relay_connect()
    client.subscribe(
        {"SubscribeRequest": {"events": [{"source": "thrillpots", "event_type": "WinEvent"}]}}
    )
    client.recv_until(
        lambda m: m["msg_name"] == "RelayStatus" and m["data"]["upstream"] == "connected"
    )
    thrillconnect_sim.tick()
    thrillconnect_sim.win(thrillconnect_sim.instance_ids["sitewide"])

    message = client.recv_until(lambda m: m["msg_type"] == "Event")

    assert message["msg_name"] == "WinEvent"


def test_no_browser_misses_a_win(relay_connect, thrillconnect_sim):
    browsers = [subscribed_client(relay_connect, sim=thrillconnect_sim) for _ in range(10)]
    instance = thrillconnect_sim.instance_ids["sitewide"]

    for _ in range(30):
        thrillconnect_sim.win(instance)

    for browser in browsers:
        wins = [browser.recv_named("WinEvent") for _ in range(30)]
        assert all(win["data"]["instance_id"] == instance for win in wins)


def test_targeted_events_reach_only_their_player(relay_connect, make_browser, thrillconnect_sim):
    one = make_browser().login("player_00001")
    three = make_browser().login("player_00003")
    player_one = subscribed_client(relay_connect, sim=thrillconnect_sim, browser=one)
    player_three = subscribed_client(relay_connect, sim=thrillconnect_sim, browser=three)
    anonymous = subscribed_client(relay_connect, sim=thrillconnect_sim)

    player_one.send(
        opt_in_request(thrillconnect_sim.instance_ids["progressive"], "player_00001", "MT")
    )
    event = player_one.recv_named("OptInEvent")
    thrillconnect_sim.win(thrillconnect_sim.instance_ids["sitewide"])  # a broadcast as a marker

    assert event["player_id"] == "player_00001"
    assert event["data"]["opted_in"] is True
    for other in (player_three, anonymous):
        until_marker = other.recv_named("WinEvent")
        names = [m["msg_name"] for m in other.seen[: other.seen.index(until_marker)]]
        assert "OptInEvent" not in names


def test_an_opt_in_for_another_player_is_an_error_envelope(
    relay_connect, make_browser, thrillconnect_sim
):
    client = subscribed_client(
        relay_connect, sim=thrillconnect_sim, browser=make_browser().login("player_00001")
    )

    client.send(opt_in_request(thrillconnect_sim.instance_ids["progressive"], "player_00002", "GB"))
    error = client.recv_until(lambda m: m["msg_type"] == "Error")

    assert error["data"]["code"] == "player_mismatch"


def test_anonymous_visitors_cannot_opt_in(relay_connect, thrillconnect_sim):
    client = subscribed_client(relay_connect, sim=thrillconnect_sim)

    client.send(opt_in_request(thrillconnect_sim.instance_ids["progressive"], "player_00001", "MT"))

    assert client.recv_until(lambda m: m["msg_type"] == "Error")["data"]["code"] == "unauthorized"


def test_a_refused_opt_in_comes_back_as_an_error(relay_connect, make_browser, thrillconnect_sim):
    client = subscribed_client(
        relay_connect, sim=thrillconnect_sim, browser=make_browser().login("player_00002")
    )

    client.send(opt_in_request(thrillconnect_sim.instance_ids["no_gb"], "player_00002", "GB"))

    assert client.recv_until(lambda m: m["msg_type"] == "Error")["data"]["code"] == "not_eligible"


@pytest.mark.parametrize("origin", ["https://evil.example", "http://127.0.0.1:1"])
def test_a_foreign_origin_is_refused_before_the_upgrade(relay_connect, origin):
    with pytest.raises(InvalidStatus) as refused:
        relay_connect(origin=origin)

    assert refused.value.response.status_code == 403


@pytest.mark.parametrize(
    "query",
    [
        {"since": "-1"},
        {"since": "abc"},
        {"since": "٣"},  # a digit, but not an ASCII one
        {"since": str(2**53)},  # past JavaScript's exact integers: no seq is that large
        {"since": "1" * 40},
        {"relay_id": "a/b"},
    ],
)
def test_bad_resume_parameters_are_refused_before_the_upgrade(relay_connect, query):
    with pytest.raises(InvalidStatus) as refused:
        relay_connect(**query)

    assert refused.value.response.status_code == 400


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        "{}",
        '{"Unknown": {}}',
        '{"SubscribeRequest": 1}',
        "[" * 2000 + "]" * 2000,  # RecursionError in the JSON parser (audit, issue 8)
        '{"a":' * 600 + "1" + "}" * 600,
        '{"SubscribeRequest": {"events": [{"source": "\\ud800", "event_type": "*"}]}}',
    ],
    ids=["text", "empty", "unknown", "not-object", "nested-arrays", "nested-objects", "surrogate"],
)
def test_bad_requests_get_an_error_envelope_and_the_socket_stays_open(
    relay_connect, thrillconnect_sim, caplog, message
):
    client = subscribed_client(relay_connect, sim=thrillconnect_sim)

    client.send(message)
    error = client.recv_until(lambda m: m["msg_type"] == "Error")
    thrillconnect_sim.tick()

    assert error["data"]["code"] == "bad_request"
    assert client.recv_named("JackpotUpdate")["msg_type"] == "Event"
    assert not [record for record in caplog.records if record.levelname in ("ERROR", "CRITICAL")]


def test_an_oversized_message_closes_with_1009(relay_connect):
    client = relay_connect()
    client.status()

    client.send("x" * 5000)

    assert closed_with(client) == 1009


def test_a_flood_of_requests_is_rate_limited(relay_connect):
    client = relay_connect()
    client.status()

    for _ in range(40):
        client.send(SUBSCRIBE_ALL)

    error = client.recv_until(lambda m: m["msg_type"] == "Error")
    assert error["data"]["code"] == "rate_limited"


def test_a_flood_past_the_rate_limit_is_closed_with_1008(relay_connect):
    client = relay_connect()
    client.status()

    # A burst of 20 is taken; 50 refused in a row is a flood, closed perhaps mid-burst.
    with contextlib.suppress(ConnectionClosed):
        for _ in range(100):
            client.send(SUBSCRIBE_ALL)

    assert closed_with(client) == 1008


def test_resuming_with_since_delivers_the_missed_wins(relay_connect, thrillconnect_sim):
    instance = thrillconnect_sim.instance_ids["sitewide"]
    client = subscribed_client(relay_connect, sim=thrillconnect_sim)
    relay_id = client.seen[0]["data"]["relay_id"]
    thrillconnect_sim.win(instance)
    last_seq = client.recv_named("WinEvent")["seq"]
    client.close()

    missed = [thrillconnect_sim.win(instance) for _ in range(3)]
    resumed = relay_connect(since=str(last_seq), relay_id=relay_id)
    first = resumed.status()
    resumed.subscribe()
    wins = [resumed.recv_named("WinEvent") for _ in range(3)]

    assert first["data"]["resumed"] is True
    assert [win["data"]["timestamp"] for win in wins] == [event["timestamp"] for event in missed]
    assert all(win["seq"] > last_seq for win in wins)


def test_resuming_from_another_relay_starts_fresh(relay_connect):
    client = relay_connect(since="5", relay_id="someotherrelay")

    assert client.status()["data"]["resumed"] is False


def test_an_upstream_drop_is_reported_and_healed_without_the_browser_reconnecting(
    relay_connect, thrillconnect_sim
):
    client = subscribed_client(relay_connect, sim=thrillconnect_sim)

    thrillconnect_sim.faults(ws="drop")
    down = client.recv_until(lambda m: m["msg_name"] == "RelayStatus")
    up = client.recv_until(lambda m: m["msg_name"] == "RelayStatus", timeout=10)
    thrillconnect_sim.tick()
    update = client.recv_named("JackpotUpdate")

    assert down["data"]["upstream"] == "reconnecting"
    assert up["data"]["upstream"] == "connected"
    assert update["msg_type"] == "Event"
    assert thrillconnect_sim.stats()["connects"]["service"] == 2


def test_a_refused_service_token_is_reported_to_browsers_and_health(
    make_live_portal, make_browser, relay_connect, thrillconnect_sim
):
    portal = make_live_portal(
        THRILLCONNECT_SERVICE_TOKEN=thrillconnect_sim.make_service_token(secret="not-the-secret")
    )
    client = relay_connect(server=portal)
    client.subscribe()

    assert client.status()["data"]["upstream"] == "reconnecting"
    admin = make_browser(portal)
    admin.get("/admin/login")
    health = wait_for(
        lambda: (
            (h := admin.api("GET", "/health/detail").json())["upstream"]["stream"]["state"]
            == "unauthorized"
            and h
        )
    )
    assert health["status"] == "degraded"
    assert thrillconnect_sim.stats()["connections"]["service"] == 0


def test_the_stream_feeds_the_ticker_cache(relay_connect, browser, thrillconnect_sim):
    instance = thrillconnect_sim.instance_ids["progressive"]
    path = f"/v1/thrillpots/instances/{instance}/ticker"
    client = subscribed_client(relay_connect, sim=thrillconnect_sim)
    before = browser.api("GET", path).json()

    thrillconnect_sim.tick()
    update = client.recv_until(
        lambda m: m["msg_name"] == "JackpotUpdate" and m["data"]["id"] == instance
    )
    after = wait_for(lambda: (r := browser.api("GET", path).json()) != before and r)

    assert float(after["pots"][0]["current_value"]) == update["data"]["pots"][0]["current_value"]
    assert thrillconnect_sim.stats()["requests"]["ticker"] == 1


def test_without_a_service_token_players_share_one_upstream_connection(
    make_live_portal, make_browser, relay_connect, thrillconnect_sim
):
    portal = make_live_portal(THRILLCONNECT_SERVICE_TOKEN=None)
    player = make_browser(portal).login("player_00001")
    tabs = [
        subscribed_client(relay_connect, sim=thrillconnect_sim, browser=player, server=portal)
        for _ in range(3)
    ]

    thrillconnect_sim.tick()
    for tab in tabs:
        tab.recv_named("JackpotUpdate")
    assert thrillconnect_sim.stats()["connections"] == {"service": 0, "player": 1}

    for tab in tabs:
        tab.close()
    wait_for(lambda: thrillconnect_sim.stats()["connections"]["player"] == 0)


def test_without_a_service_token_opt_in_goes_over_the_players_stream(
    make_live_portal, make_browser, relay_connect, thrillconnect_sim
):
    portal = make_live_portal(THRILLCONNECT_SERVICE_TOKEN=None)
    client = subscribed_client(
        relay_connect, browser=make_browser(portal).login("player_00001"), server=portal
    )

    client.send(opt_in_request(thrillconnect_sim.instance_ids["progressive"], "player_00001", "MT"))

    assert client.recv_named("OptInEvent")["data"]["opted_in"] is True
    assert thrillconnect_sim.stats()["connects"]["player"] == 1


def test_closing_the_app_closes_browsers_with_1001(portal, relay_connect):
    client = subscribed_client(relay_connect)

    portal.app.extensions["thrillconnect"].close()

    assert closed_with(client) == 1001


def test_a_browser_arriving_after_shutdown_is_turned_away_with_1001(portal, relay_connect):
    portal.app.extensions["thrillconnect"].close()

    client = relay_connect()

    assert closed_with(client) == 1001


def test_a_browser_that_falls_too_far_behind_is_closed_with_1013(portal, relay_connect):
    relay = portal.app.extensions["thrillconnect"].relay
    client = subscribed_client(relay_connect)
    win = {"msg_type": "Event", "source": "thrillpots", "msg_name": "WinEvent",
           "operator_id": "thrilltech", "brand_id": "brand1", "player_id": None,
           "data": {"padding": "x" * 2000}, "timestamp": 0}  # fmt: skip

    # The browser reads nothing while far more wins than its outbox holds are relayed.
    for _ in range(6000):
        relay.hub.publish(win, "broadcast")

    assert closed_with(client) == 1013


@pytest.mark.parametrize("size", [10, 200, 70_000])
def test_messages_of_every_frame_length_arrive_intact(portal, relay_connect, size):
    relay = portal.app.extensions["thrillconnect"].relay
    client = subscribed_client(relay_connect)
    win = {"msg_type": "Event", "source": "thrillpots", "msg_name": "WinEvent",
           "operator_id": "thrilltech", "brand_id": "brand1", "player_id": None,
           "data": {"padding": "é" * size}, "timestamp": 0}  # fmt: skip

    relay.hub.publish(win, "broadcast")

    assert client.recv_named("WinEvent")["data"]["padding"] == "é" * size


def test_a_quiet_browser_is_pinged(portal):
    """Proxies with idle timeouts must see traffic even when no event flows."""
    portal.app.extensions["thrillconnect"].relay.writer.ping_interval = 0.2
    host, port = portal.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(
            b"GET /thrillconnect/v1/events HTTP/1.1\r\n"
            + f"Host: {host}:{port}\r\nOrigin: {portal.url}\r\n".encode()
            + b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        received = b""
        deadline = time.monotonic() + 5
        # The handshake, the RelayStatus text frame (0x81), then a ping frame (0x89, empty).
        while b"\x89\x00" not in received.partition(b"\r\n\r\n")[2] and time.monotonic() < deadline:
            received += raw.recv(4096)

    assert received.startswith(b"HTTP/1.1 101")
    assert b"\x89\x00" in received.partition(b"\r\n\r\n")[2]


def test_shutdown_closes_every_relay_in_the_process(relay_connect):
    client = subscribed_client(relay_connect)

    shutdown()

    assert closed_with(client) == 1001


class RawClient:
    """A browser socket driven frame by frame (wsproto), to see exactly what the relay wrote."""

    def __init__(self, portal, receive_buffer: int) -> None:
        host, port = portal.url.removeprefix("http://").split(":")
        self.sock = socket.socket()
        # A small window, so the relay's writer is left holding the rest of a big frame.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(RECV_TIMEOUT)
        self.sock.connect((host, int(port)))
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(
            self.ws.send(
                Request(
                    host=f"{host}:{port}",
                    target="/thrillconnect/v1/events",
                    extra_headers=[(b"origin", portal.url.encode())],
                )
            )
        )
        self.events: list = []
        self.wait_for(lambda event: isinstance(event, AcceptConnection))

    def send(self, event) -> None:
        self.sock.sendall(self.ws.send(event))

    def wait_for(self, predicate, timeout: float = RECV_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.ws.events():  # raises on a malformed frame
                self.events.append(event)
                if predicate(event):
                    return event
            data = self.sock.recv(65536)
            assert data, "the relay closed the connection"
            self.ws.receive_data(data)
        pytest.fail(f"nothing matching within {timeout} s")


def test_a_pong_never_lands_inside_a_frame_the_writer_has_half_sent(portal):
    relay = portal.app.extensions["thrillconnect"].relay
    client = RawClient(portal, receive_buffer=4096)
    client.send(TextMessage(json.dumps(SUBSCRIBE_ALL)))
    wait_for(lambda: relay.hub.stats().subscribed_connections == 1)
    padding = "x" * 2_000_000
    win = {"msg_type": "Event", "source": "thrillpots", "msg_name": "WinEvent",
           "operator_id": "thrilltech", "brand_id": "brand1", "player_id": None,
           "data": {"padding": padding}, "timestamp": 0}  # fmt: skip

    # More than the socket buffers hold, unread: the writer keeps part of a frame for later.
    for _ in range(4):
        relay.hub.publish(win, "broadcast")
    time.sleep(0.2)
    client.send(Ping(b"are you there"))  # simple-websocket's reader answers this one

    texts: list[str] = []
    parts: list[str] = []

    def whole_wins_and_the_pong(event) -> bool:
        if isinstance(event, TextMessage):
            parts.append(event.data)
            if event.message_finished:
                texts.append("".join(parts))
                parts.clear()
        wins = [t for t in texts if '"WinEvent"' in t]
        return len(wins) == 4 and any(isinstance(e, Pong) for e in client.events)

    client.wait_for(whole_wins_and_the_pong, timeout=20)
    wins = [json.loads(t) for t in texts if '"WinEvent"' in t]
    assert all(w["data"]["padding"] == padding for w in wins)
    assert [e.payload for e in client.events if isinstance(e, Pong)] == [b"are you there"]
    client.sock.close()
