"""A wallet token found in Flask's cookie session is warned about: once per app, never logged."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, Response, session
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from flask_thrillconnect import Player, ThrillConnect

PLAYER_ID = "player_00001"
JACKPOT = "/thrillconnect/v1/thrillpots/instances/source/egyptian-gold"

Loader = Callable[[], "Player | None"]


class ServerSideSession(CallbackDict[str, Any], SessionMixin):
    """A session whose data stays on the server; the cookie holds its id only."""

    def __init__(self, initial: dict[str, Any], sid: str) -> None:
        super().__init__(initial)
        self.sid = sid


class MemorySessionInterface(SessionInterface):
    """Flask-Session's idea in a few lines: sessions in a dict, keyed by the cookie."""

    def __init__(self) -> None:
        self.store: dict[str, dict[str, Any]] = {}

    def open_session(self, app: Flask, request: Any) -> ServerSideSession:
        sid = request.cookies.get(self.get_cookie_name(app), "")
        return ServerSideSession(self.store.get(sid, {}), sid)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        assert isinstance(session, ServerSideSession)
        self.store[session.sid] = dict(session)


@pytest.fixture
def make_app(thrillconnect_sim: Any) -> Iterator[Callable[[Loader], Flask]]:
    """Factory: a portal whose ``player_loader`` is the given callable."""
    apps: list[Flask] = []

    def make(loader: Loader) -> Flask:
        app = Flask("session_check_portal")
        app.config.update(
            SECRET_KEY="test-secret",
            THRILLCONNECT_URL=thrillconnect_sim.url,
            THRILLCONNECT_OPERATOR_ID="thrilltech",
            THRILLCONNECT_BRAND_ID="brand1",
            THRILLCONNECT_TIMEOUT=(1, 2),
        )
        tc = ThrillConnect(app)
        tc.player_loader(loader)

        @app.get("/lobby")
        def lobby() -> dict[str, list[str]]:  # the portal's own view: no ``Vary`` of its own
            return {"pots": [pot.id for pot in tc.jackpot_for_source("egyptian-gold").pots]}

        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["thrillconnect"].close()


@pytest.fixture
def token(thrillconnect_sim: Any) -> str:
    return thrillconnect_sim.players[PLAYER_ID]["token"]


@pytest.fixture
def token_from_session(thrillconnect_sim: Any) -> Loader:
    """The mistake: the wallet token read back from the session."""

    def load_player() -> Player | None:
        if "wallet_token" not in session:
            return None
        wallet = thrillconnect_sim.players[PLAYER_ID]
        return Player(id=PLAYER_ID, token=session["wallet_token"], currency=wallet["currency"])

    return load_player


def session_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "flask_thrillconnect"
        and record.levelno == logging.WARNING
        and "session" in record.getMessage()
    ]


@pytest.fixture(autouse=True)
def _capture(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="flask_thrillconnect")


def test_a_token_in_the_cookie_session_is_warned_about_once_without_the_token(
    make_app: Callable[[Loader], Flask],
    token_from_session: Loader,
    token: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(token_from_session)

    with app.test_client() as client:
        with client.session_transaction() as cookie_session:
            cookie_session["wallet_token"] = token
        answers = [client.get(JACKPOT) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 200]
    [warning] = session_warnings(caplog)
    assert "'wallet_token'" in warning.getMessage()
    assert token not in caplog.text
    assert all(token not in record.getMessage() for record in caplog.records)


def test_each_app_is_warned_about_on_its_own(
    make_app: Callable[[Loader], Flask],
    token_from_session: Loader,
    token: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for app in (make_app(token_from_session), make_app(token_from_session)):
        for _ in range(2):
            with app.test_client() as client:
                with client.session_transaction() as cookie_session:
                    cookie_session["wallet_token"] = token
                assert client.get(JACKPOT).status_code == 200

    assert len(session_warnings(caplog)) == 2


def test_the_check_leaves_the_session_cookie_alone(
    make_app: Callable[[Loader], Flask],
    token_from_session: Loader,
    token: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(token_from_session)

    with app.test_client() as client:
        with client.session_transaction() as cookie_session:
            cookie_session.update(wallet_token=token, theme="dark")
        answer = client.get(JACKPOT)
        with client.session_transaction() as cookie_session:
            assert dict(cookie_session) == {"wallet_token": token, "theme": "dark"}

    assert len(session_warnings(caplog)) == 1
    assert "Set-Cookie" not in answer.headers


def test_a_session_the_request_did_not_read_is_not_read_for_the_check(
    make_app: Callable[[Loader], Flask],
    thrillconnect_sim: Any,
    token: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Reading it would add ``Vary: Cookie`` to a response that does not depend on the session.
    app = make_app(lambda: thrillconnect_sim.player(PLAYER_ID))

    with app.test_client() as client:
        with client.session_transaction() as cookie_session:
            cookie_session["wallet_token"] = token
        answer = client.get("/lobby")

    assert answer.status_code == 200
    assert "cookie" not in answer.vary
    assert "Set-Cookie" not in answer.headers


def test_a_token_kept_on_the_server_is_not_warned_about(
    make_app: Callable[[Loader], Flask],
    thrillconnect_sim: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    users = {"u1": thrillconnect_sim.player(PLAYER_ID)}  # the portal's user records
    app = make_app(lambda: users.get(session.get("user_id")))

    with app.test_client() as client:
        with client.session_transaction() as cookie_session:
            cookie_session["user_id"] = "u1"
        answer = client.get(JACKPOT)

    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "private, no-store"  # the player was loaded
    assert session_warnings(caplog) == []


def test_a_server_side_session_may_hold_the_token(
    make_app: Callable[[Loader], Flask],
    token_from_session: Loader,
    token: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(token_from_session)
    app.session_interface = interface = MemorySessionInterface()
    interface.store["sid1"] = {"wallet_token": token}

    with app.test_client() as client:
        client.set_cookie(app.config["SESSION_COOKIE_NAME"], "sid1")
        answer = client.get(JACKPOT)

    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "private, no-store"  # the player was loaded
    assert session_warnings(caplog) == []
