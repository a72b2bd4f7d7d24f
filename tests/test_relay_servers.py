"""The relay under real gunicorn, with each worker class it supports: ``gthread`` (a request
thread waits for each browser's end) and ``gevent`` (monkey-patched; a browser's request ends at
once, the relay keeps the connection). Real sockets throughout."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from gunicorn_fixtures import WORKER_CLASSES, GunicornPortal, gunicorn_portal
from relay_clients import RECV_TIMEOUT, SUBSCRIBE_ALL, RelayClient
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from flask_thrillconnect.testing import Simulator

pytest.importorskip("gevent")

#: Instances with a JackpotUpdate on every tick in the simulator's world.
UPDATES_PER_TICK = 7


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(tick_interval=0, seed=1) as simulator:
        yield simulator


def portal_env(sim: Simulator) -> dict[str, str]:
    return {"THRILLCONNECT_URL": sim.url, "THRILLCONNECT_SERVICE_TOKEN": sim.service_token}


@pytest.fixture(scope="module", params=WORKER_CLASSES)
def portal(
    request: pytest.FixtureRequest, sim: Simulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GunicornPortal]:
    """One gunicorn worker of each class, shared by the module's tests."""
    with gunicorn_portal(
        request.param, portal_env(sim), tmp_dir=tmp_path_factory.mktemp("gunicorn")
    ) as running:
        yield running


@pytest.fixture
def relay_connect(portal: GunicornPortal) -> Iterator[Any]:
    """``relay_connect(origin=None, **query)`` opens a relay socket on the portal."""
    with ExitStack() as stack:

        def open_socket(origin: str | None = None, **query: str) -> RelayClient:
            url = portal.ws_url + ("?" + urlencode(query) if query else "")
            connection = stack.enter_context(
                connect(url, origin=origin or portal.url, open_timeout=5, close_timeout=2)  # type: ignore[arg-type]
            )
            return RelayClient(connection)

        yield open_socket


def subscribed(relay_connect: Any, sim: Simulator, **query: str) -> RelayClient:
    """A subscribed relay socket whose upstream subscription is in effect (a tick arrived)."""
    client: RelayClient = relay_connect(**query)
    client.subscribe()
    client.connected()
    for _ in range(20):
        sim.tick()
        try:
            client.recv_named("JackpotUpdate", timeout=0.5)
        except (AssertionError, TimeoutError):
            continue
        client.drain_quiet()
        return client
    pytest.fail("no JackpotUpdate reached the relay socket")


class RawBrowser:
    """A browser socket driven by wsproto, with a tiny receive window: it reads only when told."""

    def __init__(self, portal: GunicornPortal, receive_buffer: int = 4096) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(RECV_TIMEOUT)
        self.sock.connect(("127.0.0.1", portal.port))
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(
            self.ws.send(
                Request(
                    host=f"127.0.0.1:{portal.port}",
                    target="/thrillconnect/v1/events",
                    extra_headers=[(b"origin", portal.url.encode())],
                )
            )
        )
        self.wait_for(lambda event: isinstance(event, AcceptConnection))
        self.sock.sendall(self.ws.send(TextMessage(json.dumps(SUBSCRIBE_ALL))))

    def wait_for(self, predicate: Any, timeout: float = RECV_TIMEOUT) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.ws.events():
                if predicate(event):
                    return event
            data = self.sock.recv(65536)
            if not data:
                break
            self.ws.receive_data(data)
        pytest.fail(f"nothing matching within {timeout} s")

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


def test_health_detail_names_the_server_model(portal: GunicornPortal) -> None:
    server = portal.health()["relay"]["server"]

    assert server["worker"] == portal.worker_class
    assert server["evented"] is (portal.worker_class == "gevent")
    if portal.worker_class == "gthread":
        assert server["threads"] == 66  # worker_args: 50 browsers + 16
        assert "warning" not in server


def test_every_update_of_a_tick_reaches_every_browser(
    relay_connect: Any, sim: Simulator, portal: GunicornPortal
) -> None:
    browsers = [subscribed(relay_connect, sim) for _ in range(10)]
    before = [len(browser.seen) for browser in browsers]

    sim.tick()
    sim.win(sim.instance_ids["sitewide"])

    for browser in browsers:
        updates = {
            browser.recv_named("JackpotUpdate")["data"]["id"] for _ in range(UPDATES_PER_TICK)
        }
        assert len(updates) == UPDATES_PER_TICK
        browser.recv_named("WinEvent")
    for browser, start in zip(browsers, before, strict=True):
        seqs = [m["seq"] for m in browser.seen[start:]]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == len(seqs)
    assert sim.stats()["connections"]["service"] >= 1


def test_resuming_with_since_delivers_the_missed_wins(relay_connect: Any, sim: Simulator) -> None:
    instance = sim.instance_ids["sitewide"]
    client = subscribed(relay_connect, sim)
    relay_id = client.seen[0]["data"]["relay_id"]
    sim.win(instance)
    last_seq = client.recv_named("WinEvent")["seq"]
    client.close()

    missed = [sim.win(instance) for _ in range(3)]
    resumed = relay_connect(since=str(last_seq), relay_id=relay_id)
    first = resumed.status()
    resumed.subscribe()
    wins = [resumed.recv_named("WinEvent") for _ in range(3)]

    assert first["data"]["resumed"] is True
    assert [win["data"]["timestamp"] for win in wins] == [event["timestamp"] for event in missed]


def test_a_foreign_origin_is_refused_with_403(relay_connect: Any) -> None:
    with pytest.raises(InvalidStatus) as refused:
        relay_connect(origin="https://evil.example")

    assert refused.value.response.status_code == 403


def test_an_oversized_message_closes_with_1009(relay_connect: Any) -> None:
    client = relay_connect()
    client.status()

    client.send("x" * 5000)

    assert client.wait_closed() == 1009


def test_a_frame_that_breaks_the_protocol_is_closed_with_1002(portal: GunicornPortal) -> None:
    browser = RawBrowser(portal)
    try:
        # Frames from a browser must be masked (RFC 6455, 5.1): this one is not.
        browser.send_raw(b"\x81\x02hi")

        close = browser.wait_for(lambda e: isinstance(e, CloseConnection))
        assert close.code == 1002
        assert requests.get(portal.url + "/thrillconnect/health", timeout=5).ok
    finally:
        browser.close()


def test_the_close_a_browser_starts_is_answered_with_its_code(relay_connect: Any) -> None:
    client = relay_connect()
    client.status()

    client.connection.close(code=4000, reason="leaving")

    answer = client.connection.protocol.close_rcvd
    assert answer is not None
    assert answer.code == 4000


def test_a_flood_past_the_rate_limit_is_closed_with_1008(relay_connect: Any) -> None:
    client = relay_connect()
    client.status()

    # A burst of 20 is taken; 50 refused in a row is a flood, closed perhaps mid-burst.
    with contextlib.suppress(ConnectionClosed):
        for _ in range(100):
            client.send(SUBSCRIBE_ALL)

    assert client.wait_closed() == 1008


def test_a_stalled_browser_holds_up_only_itself_and_overflows_with_1013(
    relay_connect: Any, sim: Simulator, portal: GunicornPortal
) -> None:
    reader = subscribed(relay_connect, sim)
    stalled = RawBrowser(portal)
    try:
        time.sleep(0.5)  # its SubscribeRequest handled (nothing to await from outside)
        # Rounds within the outbox's 1000 events, in all far more than the stalled browser's
        # outbox and socket buffers hold: it reads nothing, the reader keeps up with each.
        started = time.monotonic()
        for _ in range(4):
            portal.publish(900, padding=4000)
            for _ in range(900):
                reader.recv_named("WinEvent", timeout=10)
        took = time.monotonic() - started
        sim.tick()
        reader.recv_named("JackpotUpdate")

        assert took < 30
        close = stalled.wait_for(lambda e: isinstance(e, CloseConnection), timeout=30)
        assert close.code == 1013
    finally:
        stalled.close()


def test_under_gevent_open_browsers_hold_no_worker_connection(
    sim: Simulator, tmp_path: Path
) -> None:
    """A browser's request ends once it is upgraded: four times the worker's connection slots
    stay open, are served, and ordinary requests still get through."""
    slots = 10
    with ExitStack() as stack:
        portal = stack.enter_context(
            gunicorn_portal(
                "gevent",
                portal_env(sim),
                tmp_dir=tmp_path,
                extra_args=["--worker-connections", str(slots)],
            )
        )
        clients = []
        for _ in range(4 * slots):
            connection = connect(portal.ws_url, origin=portal.url, open_timeout=5)  # type: ignore[arg-type]
            clients.append(RelayClient(stack.enter_context(connection)))
        for client in clients:
            client.subscribe()
            client.connected()
        sim.tick()

        for client in clients:
            client.recv_named("JackpotUpdate")
        assert portal.health()["relay"]["browsers"] == 4 * slots
        assert requests.get(portal.url + "/thrillconnect/health", timeout=5).ok


#: Under gevent's patches: a greenlet waits for its socket (a request) while another loops and
#: yields with the relay's :func:`yielder`; prints how many yields it took the first to run.
WAITING_FOR_ITS_SOCKET = """
from gevent import monkey

monkey.patch_all()
import socket

import gevent

from flask_thrillconnect.servers import yielder

served, client = socket.socketpair()
answered = []
waiting = gevent.spawn(lambda: answered.append(served.recv(1)))
gevent.sleep(0.01)  # the greenlet now waits for its socket
client.send(b"?")
let_others_run = yielder()
for yields in range(1, 1001):
    let_others_run()
    if answered:
        break
print(yields if answered else "never")
"""


def test_under_gevent_the_relays_yield_lets_a_request_waiting_for_its_socket_run() -> None:
    """A pass or the upstream reader yields every so often; under gevent a plain ``sleep(0)``
    only runs greenlets that are ready already, so a request waiting for its socket would wait
    out the whole pass."""
    result = subprocess.run(
        [sys.executable, "-c", WAITING_FOR_ITS_SOCKET],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in {"1", "2", "3"}


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_gunicorn_stopping_closes_browsers_with_1001(
    sim: Simulator, tmp_path: Path, worker_class: str
) -> None:
    with ExitStack() as stack:
        portal = stack.enter_context(
            gunicorn_portal(worker_class, portal_env(sim), tmp_dir=tmp_path)
        )
        client = RelayClient(
            stack.enter_context(connect(portal.ws_url, origin=portal.url, open_timeout=5))  # type: ignore[arg-type]
        )
        client.subscribe()
        client.connected()

        portal.master.send_signal(signal.SIGTERM)

        assert client.wait_closed(timeout=15) == 1001


def test_the_proxy_serves_and_caches_under_the_worker(
    portal: GunicornPortal, sim: Simulator
) -> None:
    url = (
        f"{portal.url}/thrillconnect/v1/thrillpots/instances/{sim.instance_ids['sitewide']}/ticker"
    )

    answers = [requests.get(url, timeout=10) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert answers[-1].headers["X-Cache"] in ("HIT", "STALE", "UPDATING")
