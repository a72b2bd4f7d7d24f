"""Fixtures for tests of the extension: a small portal served on a real loopback socket."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import requests
from flask import Flask, abort, session
from relay_clients import RelayClient
from websockets.sync.client import connect
from werkzeug.serving import make_server

from flask_thrillconnect import Player, ThrillConnect
from flask_thrillconnect.state import current_state


class LiveServer:
    """A WSGI app served threaded on 127.0.0.1 in a background thread."""

    def __init__(self, app: Flask):
        self.app = app
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> LiveServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def make_portal(sim: Any, **config: Any) -> Flask:
    """A portal whose ``/login/<id>`` logs in a simulator player and ``/admin/login`` an admin."""
    app = Flask("test_portal")
    app.config.update(
        SECRET_KEY="test-secret",
        THRILLCONNECT_URL=sim.url,
        THRILLCONNECT_OPERATOR_ID="thrilltech",
        THRILLCONNECT_BRAND_ID="brand1",
        THRILLCONNECT_SERVICE_TOKEN=sim.service_token,
        THRILLCONNECT_TIMEOUT=(1, 2),
    )
    app.config.update(config)
    tc = ThrillConnect(app)

    @tc.player_loader
    def load_player() -> Player | None:
        player_id = session.get("player_id")
        return sim.player(player_id) if player_id in sim.players else None

    @tc.admin_check
    def is_admin() -> bool:
        return bool(session.get("admin"))

    @app.get("/login/<player_id>")
    def login(player_id: str) -> dict[str, str]:
        if player_id not in sim.players:
            abort(404)
        session["player_id"] = player_id
        return {"player_id": player_id}

    @app.get("/admin/login")
    def admin_login() -> dict[str, bool]:
        session["admin"] = True
        return {"admin": True}

    @app.get("/csrf")
    def csrf() -> dict[str, str]:
        from flask_thrillconnect.security import make_csrf_token

        player = current_state().load_player()
        return {"token": make_csrf_token(player.id if player else None)}

    app.extensions["test_tc"] = tc
    return app


class Browser(requests.Session):
    """A browser stand-in: a cookie jar, the portal's origin and a base URL."""

    def __init__(self, base_url: str, prefix: str = "/thrillconnect"):
        super().__init__()
        self.base_url = base_url
        self.prefix = prefix
        self.headers["Origin"] = base_url

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs.setdefault("timeout", 10)
        return super().request(method, f"{self.base_url}{url}", *args, **kwargs)

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.request(method, f"{self.prefix}{path}", **kwargs)

    def login(self, player_id: str) -> Browser:
        assert self.get(f"/login/{player_id}").status_code == 200
        return self

    def csrf_token(self) -> str:
        return self.get("/csrf").json()["token"]


@pytest.fixture
def make_live_portal(thrillconnect_sim: Any) -> Iterator[Callable[..., LiveServer]]:
    """Factory: ``make_live_portal(**config)`` serves a portal against the simulator."""
    servers: list[LiveServer] = []

    def make(sim: Any = None, **config: Any) -> LiveServer:
        server = LiveServer(make_portal(sim or thrillconnect_sim, **config)).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
        server.app.extensions["thrillconnect"].close()


@pytest.fixture
def portal(make_live_portal: Callable[..., LiveServer]) -> LiveServer:
    """The default portal: brand1, service token, timeouts (1, 2)."""
    return make_live_portal()


@pytest.fixture
def browser(portal: LiveServer) -> Iterator[Browser]:
    with Browser(portal.url) as session:
        yield session


@pytest.fixture
def make_browser(portal: LiveServer) -> Iterator[Callable[..., Browser]]:
    browsers: list[Browser] = []

    def make(server: LiveServer | None = None) -> Browser:
        browsers.append(Browser((server or portal).url))
        return browsers[-1]

    yield make
    for opened in browsers:
        opened.close()


@pytest.fixture
def relay_socket() -> Iterator[Callable[..., RelayClient]]:
    """``relay_socket(server, browser=None)``: a relay WebSocket of ``server`` (with the
    browser's cookies), closed at the end of the test."""
    with ExitStack() as stack:

        def open_socket(server: LiveServer, browser: Browser | None = None) -> RelayClient:
            headers = {}
            if browser is not None:
                headers["Cookie"] = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
            url = server.url.replace("http://", "ws://") + "/thrillconnect/v1/events"
            connection = stack.enter_context(
                connect(
                    url,
                    origin=server.url,
                    additional_headers=headers,
                    open_timeout=5,
                    close_timeout=2,
                )
            )
            return RelayClient(connection)

        yield open_socket
