"""Fixtures for the browser tests: the example portal on a loopback port and Chromium tabs.

Every tab records what a test must be able to check afterwards: console errors and uncaught
exceptions, every HTTP response the page loaded, every WebSocket frame it received.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Response,
    WebSocket,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError
from portal_fixtures import LiveServer

from example_portal import create_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Every wait on the browser is bounded by this (milliseconds).
WAIT_MS = 10_000


@dataclass
class ExamplePortal:
    """The example portal served on 127.0.0.1 against a simulator."""

    server: LiveServer
    sim: Any

    @property
    def url(self) -> str:
        return self.server.url


def portal_config(sim: Any, *, simulator_mode: bool = True, **extra: Any) -> dict[str, Any]:
    """The portal's settings for ``sim`` (``simulator_mode=False``: the real-platform login)."""
    return {
        "SECRET_KEY": "browser-test-secret",
        "THRILLCONNECT_URL": sim.url,
        "THRILLCONNECT_OPERATOR_ID": "thrilltech",
        "THRILLCONNECT_BRAND_ID": "brand1",
        "THRILLCONNECT_SERVICE_TOKEN": sim.service_token,
        "THRILLCONNECT_TIMEOUT": (1, 2),
        "PORTAL_SIMULATOR": sim if simulator_mode else None,
        **extra,
    }


@pytest.fixture
def make_example_portal(thrillconnect_sim: Any) -> Iterator[Callable[..., ExamplePortal]]:
    """Factory: ``make_example_portal(simulator_mode=True, **config)`` serves a portal."""
    portals: list[ExamplePortal] = []

    def make(*, sim: Any = None, simulator_mode: bool = True, **config: Any) -> ExamplePortal:
        sim = sim or thrillconnect_sim
        app = create_app(portal_config(sim, simulator_mode=simulator_mode, **config))
        portals.append(ExamplePortal(LiveServer(app).start(), sim))
        return portals[-1]

    yield make
    for portal in portals:
        portal.server.stop()
        portal.server.app.extensions["thrillconnect"].close()


@pytest.fixture
def example_portal(make_example_portal: Callable[..., ExamplePortal]) -> ExamplePortal:
    """The portal in simulator mode, on the test's simulator (manual ticks, no random wins)."""
    return make_example_portal()


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@dataclass(frozen=True)
class LoadedResponse:
    """An HTTP response a page loaded: what was asked, the headers and the body text."""

    where: str
    headers: str
    body: str


@dataclass
class Tab:
    """One Chromium (own profile, so own cookies) with one page and what it has seen."""

    context: BrowserContext
    page: Page
    portal: ExamplePortal
    console_errors: list[str] = field(default_factory=list)
    responses: list[LoadedResponse] = field(default_factory=list)
    frames: list[str] = field(default_factory=list)

    def attach(self) -> Tab:
        self.page.set_default_timeout(WAIT_MS)
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda error: self.console_errors.append(f"pageerror: {error}"))
        self.page.on("response", self._on_response)
        self.page.on("websocket", self._on_websocket)
        return self

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(f"console: {message.text} ({message.location})")

    def _on_response(self, response: Response) -> None:
        # Read now: a body is gone once the page navigates away.
        where = f"{response.request.method} {response.url} ({response.status})"
        try:
            body = (
                "" if 300 <= response.status < 400 else response.body().decode("utf-8", "replace")
            )
        except PlaywrightError as exc:
            body = f"<unreadable: {exc.message}>"
        self.responses.append(LoadedResponse(where, repr(response.headers), body))

    def _on_websocket(self, socket: WebSocket) -> None:
        socket.on("framereceived", self._on_frame)

    def _on_frame(self, payload: str | bytes) -> None:
        self.frames.append(payload if isinstance(payload, str) else payload.decode())

    def goto(self, path: str = "/") -> Tab:
        response = self.page.goto(self.portal.url + path)
        assert response is not None, f"GET {path}: no response"
        assert response.ok, f"GET {path}: {response.status}"
        return self

    def login(self, player_id: str | None, *, admin: bool = False) -> Tab:
        """Log in through the login page (``None``: an administrator who does not play)."""
        self.goto("/login")
        self.page.locator(f'input[name="player_id"][value="{player_id or ""}"]').check()
        if admin:
            self.page.get_by_label("Administrator").check()
        with self.page.expect_navigation():
            self.page.get_by_role("button", name="Log in").click()
        return self

    def relay_messages(self) -> list[dict[str, Any]]:
        """Every message the page's WebSockets received so far, decoded."""
        return [json.loads(frame) for frame in self.frames]

    def upstream_statuses(self, status: str) -> int:
        """How many ``RelayStatus`` messages saying ``upstream: status`` the page received."""
        return sum(
            message.get("msg_name") == "RelayStatus"
            and message.get("data", {}).get("upstream") == status
            for message in self.relay_messages()
        )

    def wait_for_upstream(self, status: str, *, more_than: int = 0) -> None:
        """Poll (bounded) until the page has received more than ``more_than`` ``RelayStatus``
        messages saying ``upstream: status``."""
        deadline = time.monotonic() + WAIT_MS / 1000
        while self.upstream_statuses(status) <= more_than:
            assert time.monotonic() < deadline, f"the page never heard upstream {status!r}"
            self.page.wait_for_timeout(50)  # lets Playwright deliver the frames

    def jackpot_updates(self) -> int:
        """How many ``JackpotUpdate`` messages the page received."""
        return sum(m.get("msg_name") == "JackpotUpdate" for m in self.relay_messages())

    def wait_until_live(self) -> None:
        """Until events flow from the simulator to this page.

        ThrillConnect does not acknowledge a ``SubscribeRequest`` (neither the upstream one
        the relay sends, nor the page's own to the relay), so ``RelayStatus connected`` alone
        does not mean that an event published now reaches the page: tick (bounded) until a
        ``JackpotUpdate`` does.
        """
        self.wait_for_upstream("connected")
        deadline = time.monotonic() + WAIT_MS / 1000
        while True:
            before = self.jackpot_updates()
            self.portal.sim.tick()
            tick_deadline = min(deadline, time.monotonic() + 1.0)
            while time.monotonic() < tick_deadline:
                if self.jackpot_updates() > before:
                    return
                self.page.wait_for_timeout(50)
            assert time.monotonic() < deadline, "no JackpotUpdate reached the page"


@pytest.fixture
def open_tab(playwright_driver: Playwright, tmp_path: Path) -> Iterator[Callable[..., Tab]]:
    """Factory: ``open_tab(portal, javascript=True, locale="en-US")`` opens a fresh Chromium.

    After the test, every tab must have logged no console error and no uncaught exception.
    """
    tabs: list[Tab] = []

    def open_one(portal: ExamplePortal, *, javascript: bool = True, locale: str = "en-US") -> Tab:
        context = playwright_driver.chromium.launch_persistent_context(
            tmp_path / f"profile-{len(tabs)}",
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            java_script_enabled=javascript,
            locale=locale,
            viewport={"width": 1280, "height": 900},
        )
        page = context.pages[0] if context.pages else context.new_page()
        tabs.append(Tab(context, page, portal).attach())
        return tabs[-1]

    yield open_one
    errors = [error for tab in tabs for error in tab.console_errors]
    for tab in tabs:
        tab.context.close()
    assert errors == [], "the pages logged errors"
