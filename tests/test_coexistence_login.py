"""The docs' ``player_loader`` and ``admin_check`` written with Flask-Login (issue 11).

The README's and the quickstart's examples run as written, with real Flask-Login: the test adds
only the portal's login and logout views (``login_user``/``logout_user``) and serves the app on
127.0.0.1. Anonymous users are nobody to the extension, a logged-in user is their player, the
admin role comes from ``current_user``, and logging out makes the next request anonymous again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, render_template_string
from flask_login import login_user, logout_user
from portal_fixtures import Browser, LiveServer
from test_docs_examples import readme_python, rst_python, run_example

OPTIN = "/v1/thrillpots/optin"
BODY = {"source_id": "egyptian-gold", "opt_in": True}
PAGE = "{{ thrillconnect.player_id() or 'anonymous' }} {{ thrillconnect.csrf_token() }}"
USERS = {
    "u1": {"player_id": "player_00001", "wallet_token": "token_00001",
           "currency": "EUR", "country": "MT"},
    "u4": {"player_id": "player_00004", "wallet_token": "token_00004",
           "currency": "SEK", "country": "SE", "role": "admin"},
}  # fmt: skip


def docs_portal(source: str, sim: Any) -> Flask:
    """The docs example of ``source``, with a service token (for CORS) and login views."""
    code = readme_python() if source == "README.md" else rst_python(source)
    code = code.replace(
        'THRILLCONNECT_BRAND_ID="brand1",',
        f'THRILLCONNECT_BRAND_ID="brand1", THRILLCONNECT_SERVICE_TOKEN={sim.service_token!r},',
        1,
    )
    namespace = run_example(code, sim)
    namespace["USERS"].update(USERS)
    app: Flask = namespace["app"]
    load_user = namespace["load_user"]

    @app.get("/login/<user_id>")
    def login(user_id: str) -> dict[str, bool]:
        return {"ok": login_user(load_user(user_id))}

    @app.get("/logout")
    def logout() -> dict[str, bool]:
        return {"ok": logout_user()}

    @app.get("/page")
    def page() -> str:
        return render_template_string(PAGE)

    return app


@pytest.fixture(params=["README.md", "quickstart.rst"])
def served(request: pytest.FixtureRequest, thrillconnect_sim: Any) -> Iterator[LiveServer]:
    server = LiveServer(docs_portal(request.param, thrillconnect_sim)).start()
    yield server
    server.stop()
    server.app.extensions["thrillconnect"].close()


@pytest.fixture
def browser(served: LiveServer) -> Iterator[Browser]:
    with Browser(served.url) as opened:
        yield opened


def whoami(browser: Browser) -> tuple[str, str]:
    """``(player id or "anonymous", our CSRF token)`` as the templates see them."""
    who, token = browser.get("/page").text.split()
    return who, token


def test_an_anonymous_user_is_no_player(browser: Browser) -> None:
    who, token = whoami(browser)

    optin = browser.api("POST", OPTIN, json=BODY, headers={"X-CSRFToken": token})
    cors = browser.api("GET", "/v1/cors")

    assert who == "anonymous"
    assert optin.status_code == 401
    assert cors.status_code == 403


def test_a_logged_in_user_is_their_player_and_opts_in(browser: Browser) -> None:
    assert browser.get("/login/u1").json() == {"ok": True}
    who, token = whoami(browser)

    optin = browser.api("POST", OPTIN, json=BODY, headers={"X-CSRFToken": token})
    jackpot = browser.api("GET", "/v1/thrillpots/instances/source/egyptian-gold")

    assert who == "player_00001"
    assert optin.status_code == 200, optin.text
    assert optin.json()["player_id"] == "player_00001"
    assert jackpot.json()["optin_status"]["opted_in"] is True
    assert "token_00001" not in repr(browser.cookies.get_dict())


def test_admin_check_follows_current_user(browser: Browser) -> None:
    browser.get("/login/u1")
    as_player = browser.api("GET", "/v1/cors")
    browser.get("/login/u4")
    as_admin = browser.api("GET", "/v1/cors")

    assert as_player.status_code == 403
    assert as_admin.status_code == 200, as_admin.text
    assert "cors_origin_list" in as_admin.json()


def test_logging_out_makes_the_next_request_anonymous(browser: Browser) -> None:
    browser.get("/login/u4")
    assert whoami(browser)[0] == "player_00004"

    browser.get("/logout")
    who, token = whoami(browser)

    assert who == "anonymous"
    assert browser.api("GET", "/v1/cors").status_code == 403
    assert browser.api("POST", OPTIN, json=BODY, headers={"X-CSRFToken": token}).status_code == 401
