"""The extension object: configuration, start-up checks, several apps, server-side helpers."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import pytest
from flask import Flask

from flask_thrillconnect import Player, ThrillConnect
from flask_thrillconnect.errors import ConfigurationError, InvalidIdentifier

REQUIRED = {
    "THRILLCONNECT_URL": "http://127.0.0.1:9",
    "THRILLCONNECT_OPERATOR_ID": "thrilltech",
    "THRILLCONNECT_BRAND_ID": "brand1",
}


def make_app(**config) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="s", **{**REQUIRED, **config})
    return app


@pytest.mark.parametrize("key", sorted(REQUIRED))
def test_a_missing_required_key_fails_init_app_naming_it(key):
    app = make_app()
    del app.config[key]

    with pytest.raises(ConfigurationError, match=key):
        ThrillConnect(app)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("THRILLCONNECT_URL", "ftp://example"),
        ("THRILLCONNECT_WS_URL", "http://example"),
        ("THRILLCONNECT_OPERATOR_ID", "thrilltech:brand1"),
        ("THRILLCONNECT_BRAND_ID", "a/b"),
        ("THRILLCONNECT_URL_PREFIX", "no-slash"),
        ("THRILLCONNECT_URL_PREFIX", "/"),
        ("THRILLCONNECT_URL_PREFIX", ""),
        ("THRILLCONNECT_CACHE_TTL", {"tickers": 2}),
        ("THRILLCONNECT_CACHE_TTL", {"ticker": -1}),
        ("THRILLCONNECT_STALE_TTL", "soon"),
        ("THRILLCONNECT_TIMEOUT", (1, 2, 3)),
        ("THRILLCONNECT_TIMEOUT", 0),
        ("THRILLCONNECT_ALLOWED_ORIGINS", ["casino.example"]),
        ("THRILLCONNECT_CACHE_MAX_ENTRIES", 0),
    ],
)
def test_a_wrong_value_fails_init_app_naming_the_key(key, value):
    with pytest.raises(ConfigurationError, match=key):
        ThrillConnect(make_app(**{key: value}))


@pytest.mark.parametrize(
    ("key", "value", "field", "expected"),
    [
        ("THRILLCONNECT_TIMEOUT", "5", "timeout", (5.0, 5.0)),
        ("THRILLCONNECT_TIMEOUT", "3.05, 10", "timeout", (3.05, 10.0)),
        ("THRILLCONNECT_STALE_TTL", "60", "stale_ttl", 60.0),
        ("THRILLCONNECT_OPTIN_TIMEOUT", "2.5", "optin_timeout", 2.5),
        ("THRILLCONNECT_CACHE_MAX_ENTRIES", "500", "cache_max_entries", 500),
        ("THRILLCONNECT_CSRF_MAX_AGE", "600", "csrf_max_age", 600),
    ],
)
def test_numeric_keys_accept_strings_from_the_environment(key, value, field, expected):
    app = make_app(**{key: value})
    ThrillConnect(app)

    assert getattr(app.extensions["thrillconnect"].settings, field) == expected


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("THRILLCONNECT_TIMEOUT", "soon"),
        ("THRILLCONNECT_TIMEOUT", "1,2,3"),
        ("THRILLCONNECT_STALE_TTL", True),
        ("THRILLCONNECT_CACHE_MAX_ENTRIES", "-3"),
        ("THRILLCONNECT_CACHE_MAX_ENTRIES", "1.5"),
        ("THRILLCONNECT_OPTIN_TIMEOUT", "nan"),
    ],
)
def test_bad_strings_fail_init_app_naming_the_key(key, value):
    with pytest.raises(ConfigurationError, match=key):
        ThrillConnect(make_app(**{key: value}))


def test_defaults_are_filled_into_the_config():
    app = make_app()
    ThrillConnect(app)

    assert app.config["THRILLCONNECT_URL_PREFIX"] == "/thrillconnect"
    assert app.config["THRILLCONNECT_CACHE_TTL"] == {
        "ticker": 2,
        "jackpot": 5,
        "sources": 60,
        "currencies": 300,
    }
    assert app.config["THRILLCONNECT_STALE_TTL"] == 300
    assert app.config["THRILLCONNECT_TIMEOUT"] == (3.05, 10)
    settings = app.extensions["thrillconnect"].settings
    assert settings.ws_url == "ws://127.0.0.1:9"
    assert settings.owner_id == "thrilltech:brand1"


def test_partial_cache_ttl_keeps_the_other_defaults():
    app = make_app(THRILLCONNECT_CACHE_TTL={"ticker": 1})
    ThrillConnect(app)

    assert app.extensions["thrillconnect"].settings.cache_ttl["jackpot"] == 5
    assert app.extensions["thrillconnect"].settings.cache_ttl["ticker"] == 1


def test_init_app_twice_on_one_app_is_an_error_with_a_hint():
    app = make_app()
    tc = ThrillConnect(app)

    with pytest.raises(RuntimeError, match="once per app"):
        tc.init_app(app)


def test_the_service_token_is_not_in_the_settings_repr():
    app = make_app(THRILLCONNECT_SERVICE_TOKEN="secret-service-jwt")
    ThrillConnect(app)

    assert "secret-service-jwt" not in repr(app.extensions["thrillconnect"].settings)


def test_a_players_token_is_not_in_its_repr():
    player = Player(id="player_00001", token="token_00001", currency="EUR", country_code="MT")

    assert "token_00001" not in repr(player)


@pytest.mark.parametrize(
    "fields",
    [
        {"id": "a/b"},
        {"currency": "euro"},
        {"country_code": "Malta"},
        {"segments": ("vip", "a b")},
        {"token": ""},
    ],
)
def test_a_player_with_bad_fields_is_refused(fields):
    values = {"id": "player_00001", "token": "t", "currency": "EUR", "country_code": "MT"}
    values.update(fields)

    with pytest.raises((InvalidIdentifier, TypeError)):
        Player(**values)


def test_one_extension_object_serves_two_apps_with_their_own_config(thrillconnect_sim):
    tc = ThrillConnect()
    apps = {
        brand: make_app(THRILLCONNECT_URL=thrillconnect_sim.url, THRILLCONNECT_BRAND_ID=brand)
        for brand in ("brand1", "brand2")
    }
    for app in apps.values():
        tc.init_app(app)

    with apps["brand1"].app_context():
        brand1 = {source.source_id for source in tc.sources()}
    with apps["brand2"].app_context():
        brand2 = {source.source_id for source in tc.sources()}

    assert "egyptian-gold" in brand1
    assert brand2 == {"sitewide-casino", "golden-dragon"}
    assert (
        apps["brand1"].extensions["thrillconnect"] is not apps["brand2"].extensions["thrillconnect"]
    )


def test_a_custom_prefix_moves_the_blueprint(thrillconnect_sim):
    app = make_app(THRILLCONNECT_URL=thrillconnect_sim.url, THRILLCONNECT_URL_PREFIX="/jackpots")
    ThrillConnect(app)

    with app.test_client() as client:
        assert client.get("/jackpots/v1/currencies").status_code == 200
        assert client.get("/thrillconnect/v1/currencies").status_code == 404


def test_server_side_helpers_return_typed_objects_from_the_shared_cache(thrillconnect_sim):
    app = make_app(THRILLCONNECT_URL=thrillconnect_sim.url)
    tc = ThrillConnect(app)
    instance_id = thrillconnect_sim.instance_ids["progressive"]

    with app.test_request_context():
        ticker = tc.ticker(instance_id)
        jackpot = tc.jackpot_for_source("egyptian-gold")
        rates = tc.currencies()
    with app.test_client() as client:
        proxied = client.get(f"/thrillconnect/v1/thrillpots/instances/{instance_id}/ticker")

    assert isinstance(ticker.pots[0].current_value, Decimal)
    assert jackpot.id == instance_id
    assert rates.multipliers["GBP"] == Decimal("0.8592")
    assert proxied.headers["X-Cache"] == "HIT"
    assert thrillconnect_sim.stats()["requests"]["ticker"] == 1


def test_helpers_outside_an_initialised_app_say_so():
    tc = ThrillConnect()
    app = Flask(__name__)

    with app.app_context(), pytest.raises(RuntimeError, match="init_app"):
        tc.currencies()


def test_cluster_keys_default_to_per_process_mode_with_a_derived_prefix():
    app = make_app()
    ThrillConnect(app)

    settings = app.extensions["thrillconnect"].settings
    assert settings.redis_url is None
    assert settings.redis_prefix == "thrillconnect:thrilltech:brand1:"
    assert settings.stream_holders == 2


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("THRILLCONNECT_REDIS_URL", "http://127.0.0.1:6379"),
        ("THRILLCONNECT_REDIS_URL", 6379),
        ("THRILLCONNECT_STREAM_HOLDERS", 3),
        ("THRILLCONNECT_STREAM_HOLDERS", "0"),
        ("THRILLCONNECT_REDIS_PREFIX", "x" * 200),
    ],
)
def test_bad_cluster_keys_fail_init_app_naming_the_key(key, value):
    with pytest.raises(ConfigurationError, match=key):
        ThrillConnect(make_app(**{key: value}))


def test_a_redis_password_never_reaches_the_error():
    with pytest.raises(ConfigurationError) as info:
        ThrillConnect(make_app(THRILLCONNECT_REDIS_URL="http://user:s3cret@127.0.0.1:6379"))

    assert "s3cret" not in str(info.value)


def test_without_cluster_mode_redis_py_is_never_needed():
    # redis-py is an extra: an app, its CLI and its routes must load without it.
    script = (
        "import sys; sys.modules['redis'] = None\n"
        "from flask import Flask\n"
        "from flask_thrillconnect import ThrillConnect\n"
        "app = Flask('x'); app.config.update(THRILLCONNECT_URL='http://127.0.0.1:9',"
        " THRILLCONNECT_OPERATOR_ID='op', THRILLCONNECT_BRAND_ID='b')\n"
        "ThrillConnect(app)\n"
        "print(app.test_client().get('/thrillconnect/openapi.json').status_code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "200"
