"""The example portal's logins: kept on the server, in Redis in cluster mode so that every
worker of every node knows them (issue 10), never in the browser's cookie."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from example_portal import create_app
from example_portal.players import Login, LoginStore, RedisLogins
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


def test_unknown_or_oversized_handles_are_nobody(redis_server: RedisServer) -> None:
    logins = RedisLogins(connect(redis_server.url), "p:")

    assert logins.get("no-such-handle") is None
    assert logins.get("x" * 10_000) is None
    assert logins.get(None) is None


def test_cluster_mode_keeps_logins_in_redis_and_only_a_handle_in_the_cookie(
    redis_server: RedisServer, thrillconnect_sim: Any
) -> None:
    app = portal(thrillconnect_sim, THRILLCONNECT_REDIS_URL=redis_server.url)
    other_worker = portal(thrillconnect_sim, THRILLCONNECT_REDIS_URL=redis_server.url)
    state = app.extensions["example_portal"]
    assert isinstance(state.logins, RedisLogins)
    handle = state.logins.add(Login(thrillconnect_sim.player("player_00001"), is_admin=False))

    with other_worker.test_client() as client:
        with client.session_transaction() as session:
            session["login"] = handle
        page = client.get("/")
        cookie = client.get_cookie("session")

    assert page.status_code == 200
    assert "player_00001" in page.get_data(as_text=True)
    token = thrillconnect_sim.player("player_00001").token
    assert cookie is not None
    payload = cookie.value.split(".")[0]
    assert token not in base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    app.extensions["thrillconnect"].close()
    other_worker.extensions["thrillconnect"].close()


def test_without_redis_logins_stay_in_the_process(thrillconnect_sim: Any) -> None:
    app = portal(thrillconnect_sim)

    assert isinstance(app.extensions["example_portal"].logins, LoginStore)
    app.extensions["thrillconnect"].close()
