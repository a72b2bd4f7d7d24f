"""Shared fixtures. The simulator itself is the plugin's ``thrillconnect_sim`` fixture; these
add WebSocket clients for it (``websockets``, independent of the code under test)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any
from urllib.parse import urlencode

import pytest
from websockets.sync.client import ClientConnection, connect

#: Every receive in the tests waits at most this long.
RECV_TIMEOUT = 5.0
#: A request name the simulator does not know: its Error answer marks "all before is done".
BARRIER = "TestBarrier"


class WsClient:
    """A WebSocket client speaking ThrillConnect JSON, every receive bounded."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    def send(self, message: dict[str, Any]) -> None:
        self.connection.send(json.dumps(message))

    def recv(self, timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
        return json.loads(self.connection.recv(timeout=timeout))

    def recv_named(self, msg_name: str, timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
        """The next message called ``msg_name``, skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv(timeout=max(0.01, deadline - time.monotonic()))
            if message["msg_name"] == msg_name:
                return message

    def sync(self) -> list[dict[str, Any]]:
        """Wait until the server has handled everything sent so far (requests are handled in
        order and the barrier's Error answer comes last); answer what arrived before it."""
        self.send({BARRIER: {}})
        before = []
        deadline = time.monotonic() + RECV_TIMEOUT
        while True:
            message = self.recv(timeout=max(0.01, deadline - time.monotonic()))
            if message["msg_type"] == "Error" and message["msg_name"] == BARRIER:
                return before
            before.append(message)

    def subscribe(self, *pairs: tuple[str, str]) -> None:
        """Subscribe to ``(source, event_type)`` pairs and wait until it is in effect."""
        events = [{"source": source, "event_type": event_type} for source, event_type in pairs]
        self.send({"SubscribeRequest": {"events": events}})
        assert self.sync() == []


WsConnect = Callable[..., WsClient]


@pytest.fixture
def ws_connect(thrillconnect_sim: Any) -> Iterator[WsConnect]:
    """Open ``ws_connect(path, **query)`` on the simulator; all are closed after the test."""
    with ExitStack() as opened:

        def open_client(path: str, **query: str) -> WsClient:
            url = thrillconnect_sim.ws_url + path + ("?" + urlencode(query) if query else "")
            return WsClient(
                # Room for every event a test leaves unread: closing never waits on flow control.
                opened.enter_context(
                    connect(url, open_timeout=RECV_TIMEOUT, close_timeout=2, max_queue=4096)
                )
            )

        yield open_client


@pytest.fixture
def player_ws(thrillconnect_sim: Any, ws_connect: WsConnect) -> WsConnect:
    """``player_ws(player_id)``: a wallet player's connection subscribed to all thrillpots
    events (``subscribe=()`` for none, ``prefix`` for the other path spellings)."""

    def open_player(
        player_id: str = "player_00001",
        *,
        prefix: str = "/v1/events",
        subscribe: tuple[tuple[str, str], ...] = (("thrillpots", "*"),),
    ) -> WsClient:
        player = thrillconnect_sim.players[player_id]
        client = ws_connect(
            f"{prefix}/{player['operator_id']}/{player['brand_id']}",
            token=player["token"],
            currency=player["currency"],
        )
        if subscribe:
            client.subscribe(*subscribe)
        return client

    return open_player


@pytest.fixture
def service_ws(thrillconnect_sim: Any, ws_connect: WsConnect) -> WsConnect:
    """``service_ws()``: a service connection subscribed to all thrillpots events."""

    def open_service(
        *,
        path: str = "/v1/events/service",
        subscribe: tuple[tuple[str, str], ...] = (("thrillpots", "*"),),
    ) -> WsClient:
        client = ws_connect(path, token=thrillconnect_sim.service_token)
        if subscribe:
            client.subscribe(*subscribe)
        return client

    return open_service


# The portal side: a small Flask portal served on a real socket, and browsers for it.
from portal_fixtures import (  # noqa: E402, F401
    browser,
    make_browser,
    make_live_portal,
    portal,
    relay_socket,
)
