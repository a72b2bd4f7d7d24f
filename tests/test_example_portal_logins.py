"""The example portal's logins: Flask-Login users whose records stay on the server, where every
worker reads them (Redis in cluster mode, else a SQLite file), never in the browser's cookie."""

from __future__ import annotations

import base64
import os
import stat
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from example_portal import create_app
from example_portal.players import Login, RedisLogins, SqliteLogins
from flask_thrillconnect.redis_connection import connect

if TYPE_CHECKING:
    from redis_fixtures import RedisServer

pytest_plugins = ("redis_fixtures",)


def portal(sim: Any, **config: Any) -> Any:
    return create_app(
        {
            "SECRET_KEY": "logins-test",
            "THRILLCONNECT_URL": sim.url,
            "THRILLCONNECT_OPERATOR_ID": "thrilltech",
            "THRILLCONNECT_BRAND_ID": "brand1",
            "PORTAL_SIMULATOR": sim,
            **config,
        }
    )


def cookie_text(client: Any) -> str:
    """What the browser can read in the session cookie (signed, not encrypted)."""
    cookie = client.get_cookie("session")
    assert cookie is not None
    compressed = cookie.value.startswith(".")  # itsdangerous marks zlib-compressed payloads
    payload = cookie.value.lstrip(".").split(".")[0]
    data = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    return (zlib.decompress(data) if compressed else data).decode()


def test_a_login_on_one_worker_is_known_to_another(
    redis_server: RedisServer, thrillconnect_sim: Any
) -> None:
    prefix = "thrillconnect:thrilltech:brand1:"
    worker_a = RedisLogins(connect(redis_server.url), prefix)
    worker_b = RedisLogins(connect(redis_server.url), prefix)
    player = thrillconnect_sim.player("player_00001")

    handle = worker_a.add(Login(player, is_admin=False))
    seen = worker_b.get(handle)
    worker_b.remove(handle)

    assert seen == Login(player, is_admin=False)
    assert seen is not None
    assert seen.player is not None
    assert seen.player.token == player.token
    assert worker_a.get(handle) is None


def test_a_login_in_the_sqlite_file_is_known_to_another_process(
    tmp_path: Path, thrillconnect_sim: Any
) -> None:
    path = str(tmp_path / "instance" / "logins.sqlite3")
    worker_a, worker_b = SqliteLogins(path), SqliteLogins(path)
    player = thrillconnect_sim.player("player_00004")

    handle = worker_a.add(Login(player, is_admin=True))
    seen = worker_b.get(handle)
    worker_b.remove(handle)

    assert seen == Login(player, is_admin=True)
    assert worker_a.get(handle) is None
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # it holds wallet tokens


def test_expired_sqlite_logins_are_nobody(tmp_path: Path, thrillconnect_sim: Any) -> None:
    logins = SqliteLogins(str(tmp_path / "logins.sqlite3"), max_age=-1)

    handle = logins.add(Login(thrillconnect_sim.player("player_00001"), is_admin=False))

    assert logins.get(handle) is None


@pytest.mark.parametrize("store", ["redis", "sqlite"])
def test_unknown_or_oversized_handles_are_nobody(
    store: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    if store == "redis":
        logins: Any = RedisLogins(connect(redis_server.url), "p:")
    else:
        logins = SqliteLogins(str(tmp_path / "logins.sqlite3"))

    assert logins.get("no-such-handle") is None
    assert logins.get("x" * 10_000) is None
    assert logins.get(None) is None
    assert logins.get("") is None


def test_cluster_mode_keeps_logins_in_redis_and_only_a_login_id_in_the_cookie(
    redis_server: RedisServer, thrillconnect_sim: Any
) -> None:
    app = portal(thrillconnect_sim, THRILLCONNECT_REDIS_URL=redis_server.url)
    other_worker = portal(thrillconnect_sim, THRILLCONNECT_REDIS_URL=redis_server.url)
    state = app.extensions["example_portal"]
    assert isinstance(state.logins, RedisLogins)
    handle = state.logins.add(Login(thrillconnect_sim.player("player_00001"), is_admin=False))

    with other_worker.test_client() as client:
        with client.session_transaction() as session:
            session["_user_id"] = handle  # what Flask-Login's login_user() stores
        page = client.get("/")
        cookie = cookie_text(client)

    assert page.status_code == 200
    assert "player_00001" in page.get_data(as_text=True)
    assert thrillconnect_sim.player("player_00001").token not in cookie
    app.extensions["thrillconnect"].close()
    other_worker.extensions["thrillconnect"].close()


def test_without_redis_logins_live_in_a_sqlite_file_in_the_instance_folder(
    thrillconnect_sim: Any, tmp_path: Path
) -> None:
    default = portal(thrillconnect_sim)
    configured = portal(thrillconnect_sim, PORTAL_LOGINS_DB=str(tmp_path / "logins.sqlite3"))

    logins = default.extensions["example_portal"].logins
    assert isinstance(logins, SqliteLogins)
    assert logins.path == os.path.join(default.instance_path, "logins.sqlite3")
    assert configured.extensions["example_portal"].logins.path == str(tmp_path / "logins.sqlite3")
    default.extensions["thrillconnect"].close()
    configured.extensions["thrillconnect"].close()


def test_logging_in_through_the_form_keeps_the_token_out_of_the_cookie(
    thrillconnect_sim: Any, tmp_path: Path
) -> None:
    app = portal(thrillconnect_sim, PORTAL_LOGINS_DB=str(tmp_path / "logins.sqlite3"))
    app.config["WTF_CSRF_ENABLED"] = False  # the form's token is tested in Chromium

    with app.test_client() as client:
        answer = client.post("/login", data={"player_id": "player_00002", "admin": "y"})
        page = client.get("/").get_data(as_text=True)
        cookie = cookie_text(client)
        client.post("/logout")
        after = client.get("/").get_data(as_text=True)

    assert answer.status_code == 302
    assert 'data-portal-player="player_00002"' in page
    assert "CORS rules" in page  # admin_check from current_user
    assert thrillconnect_sim.player("player_00002").token not in cookie
    assert "_user_id" in cookie
    assert "data-portal-player" not in after
    app.extensions["thrillconnect"].close()
