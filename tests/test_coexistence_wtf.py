"""Flask-WTF's ``CSRFProtect`` and the blueprint on one portal (issue 11).

``CSRFProtect`` checks every state-changing request of the app and reads ``X-CSRFToken`` too.
The extension exempts its blueprint, whichever ``init_app`` runs first, and keeps its own check
(bound to the player, refused with its own JSON 403); the portal's own forms stay Flask-WTF's.
Real Flask-WTF, a real server on 127.0.0.1.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, render_template_string, session
from flask_wtf.csrf import CSRFProtect
from portal_fixtures import Browser, LiveServer

from flask_thrillconnect import Player, ThrillConnect

OPTIN = "/v1/thrillpots/optin"
BODY = {"source_id": "egyptian-gold", "opt_in": True}

#: The portal's page: its own form with Flask-WTF's token, and ours for the blueprint.
PAGE = """
<form method="post" action="/profile"><input name="csrf_token" value="{{ csrf_token() }}"></form>
<p id="ours">{{ thrillconnect.csrf_token() }}</p>
"""


def wtf_portal(sim: Any, *, csrf_first: bool) -> Flask:
    """A portal with ``CSRFProtect`` set up before or after ``ThrillConnect``."""
    app = Flask("wtf_portal")
    app.config.update(
        SECRET_KEY="wtf-secret",
        THRILLCONNECT_URL=sim.url,
        THRILLCONNECT_OPERATOR_ID="thrilltech",
        THRILLCONNECT_BRAND_ID="brand1",
        THRILLCONNECT_SERVICE_TOKEN=sim.service_token,
        THRILLCONNECT_TIMEOUT=(1, 2),
    )
    csrf = CSRFProtect()
    tc = ThrillConnect()
    for extension in (csrf, tc) if csrf_first else (tc, csrf):
        extension.init_app(app)

    @tc.player_loader
    def load_player() -> Player | None:
        player_id = session.get("player_id")
        return sim.player(player_id) if player_id in sim.players else None

    @tc.admin_check
    def is_admin() -> bool:
        return bool(session.get("admin"))

    @app.get("/login/<player_id>")
    def login(player_id: str) -> dict[str, str]:
        session["player_id"] = player_id
        return {"player_id": player_id}

    @app.get("/admin/login")
    def admin_login() -> dict[str, bool]:
        session["admin"] = True
        return {"admin": True}

    @app.get("/page")
    def page() -> str:
        return render_template_string(PAGE)

    @app.post("/profile")
    def profile() -> dict[str, bool]:
        return {"saved": True}

    return app


@pytest.fixture(params=["csrf-protect-first", "thrillconnect-first"])
def portal_with_wtf(request: pytest.FixtureRequest, thrillconnect_sim: Any) -> Iterator[LiveServer]:
    server = LiveServer(
        wtf_portal(thrillconnect_sim, csrf_first=request.param == "csrf-protect-first")
    ).start()
    yield server
    server.stop()
    server.app.extensions["thrillconnect"].close()


@pytest.fixture
def open_browser(portal_with_wtf: LiveServer) -> Iterator[Callable[..., Browser]]:
    browsers: list[Browser] = []

    def open_one(player_id: str | None = None) -> Browser:
        browsers.append(Browser(portal_with_wtf.url))
        if player_id is not None:
            browsers[-1].login(player_id)
        return browsers[-1]

    yield open_one
    for browser in browsers:
        browser.close()


def tokens(browser: Browser) -> tuple[str, str]:
    """``(Flask-WTF's token, ours)`` from the portal's page."""
    html = browser.get("/page").text
    wtf = re.search(r'name="csrf_token" value="([^"]+)"', html)
    ours = re.search(r'<p id="ours">([^<]+)</p>', html)
    assert wtf is not None, html
    assert ours is not None, html
    return wtf.group(1), ours.group(1)


def test_the_opt_in_succeeds_with_our_token(open_browser: Callable[..., Browser]) -> None:
    player = open_browser("player_00001")
    _, ours = tokens(player)

    response = player.api("POST", OPTIN, json=BODY, headers={"X-CSRFToken": ours})

    assert response.status_code == 200, response.text
    assert response.json()["opted_in"] is True


def test_an_admin_changes_cors_rules_with_our_token(open_browser: Callable[..., Browser]) -> None:
    admin = open_browser()
    assert admin.get("/admin/login").status_code == 200
    _, ours = tokens(admin)
    rule = {"pattern": "https://*.casino.example", "match_mode": "Wildcard"}

    added = admin.api("PUT", "/v1/cors", json={"cors_origin_list": [rule]},
                      headers={"X-CSRFToken": ours})  # fmt: skip
    removed = admin.api("DELETE", "/v1/cors", json={"cors_origin_list": [rule["pattern"]]},
                        headers={"X-CSRFToken": ours})  # fmt: skip

    assert added.status_code == 200, added.text
    assert removed.status_code == 200, removed.text


@pytest.mark.parametrize("token", [None, "forged", "another player's"])
def test_a_missing_or_wrong_token_is_refused_with_our_json_403(
    open_browser: Callable[..., Browser], token: str | None
) -> None:
    player = open_browser("player_00001")
    headers = {}
    if token == "forged":
        headers["X-CSRFToken"] = tokens(player)[1][:-2] + "xx"
    elif token is not None:
        headers["X-CSRFToken"] = tokens(open_browser("player_00003"))[1]

    response = player.api("POST", OPTIN, json=BODY, headers=headers)

    assert response.status_code == 403, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"] == "forbidden"
    assert "CSRF token is invalid" not in response.text  # not Flask-WTF's answer


def test_flask_wtfs_token_is_refused_with_a_hint(open_browser: Callable[..., Browser]) -> None:
    player = open_browser("player_00001")
    wtf, _ = tokens(player)

    response = player.api("POST", OPTIN, json=BODY, headers={"X-CSRFToken": wtf})

    assert response.status_code == 403
    assert "thrillconnect.csrf_token()" in response.json()["message"]


def test_the_portals_own_forms_stay_protected_by_flask_wtf(
    open_browser: Callable[..., Browser],
) -> None:
    visitor = open_browser("player_00001")
    wtf, ours = tokens(visitor)

    without = visitor.post("/profile", data={})
    with_ours = visitor.post("/profile", data={"csrf_token": ours})
    with_wtf = visitor.post("/profile", data={"csrf_token": wtf})

    assert without.status_code == with_ours.status_code == 400
    assert "CSRF" in without.text
    assert with_wtf.status_code == 200
    assert with_wtf.json() == {"saved": True}


def test_csrf_protect_is_left_alone_on_apps_without_thrillconnect(thrillconnect_sim: Any) -> None:
    """The exemption is per app: another app's ``CSRFProtect`` exempts nothing."""
    ours = wtf_portal(thrillconnect_sim, csrf_first=True)
    other = Flask("other")
    other.config["SECRET_KEY"] = "other"
    other_csrf = CSRFProtect(other)

    @other.post("/thrillconnect/v1/thrillpots/optin")
    def lookalike() -> dict[str, bool]:
        return {"ok": True}

    assert other.test_client().post("/thrillconnect/v1/thrillpots/optin").status_code == 400
    assert other_csrf._exempt_blueprints == set()
    ours.extensions["thrillconnect"].close()
