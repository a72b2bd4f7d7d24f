"""What an operator acts on (issue 11): unknown keys, the start-up check, the server-side
helpers' errors and defaults, errors without upstream paths, one log line per upstream failure,
and the cache helpers for tests."""

from __future__ import annotations

import logging
import socket
import time
import warnings

import pytest
from flask import Flask

from flask_thrillconnect import ThrillConnect
from flask_thrillconnect.errors import (
    ConfigurationError,
    ConfigurationWarning,
    InvalidIdentifier,
    ThrillConnectError,
    UpstreamNotFound,
    UpstreamUnavailable,
)
from flask_thrillconnect.upstream_http import FailureLog

pytest_plugins = ("redis_fixtures",)


def make_app(sim, **config) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="s",
        THRILLCONNECT_URL=sim.url,
        THRILLCONNECT_OPERATOR_ID="thrilltech",
        THRILLCONNECT_BRAND_ID="brand1",
        THRILLCONNECT_TIMEOUT=(0.5, 1),
    )
    app.config.update(config)
    return app


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- unknown keys ------------------------------------------------------------------------------


def test_an_unknown_key_is_warned_about_with_the_closest_known_key(thrillconnect_sim):
    app = make_app(thrillconnect_sim, THRILLCONNECT_SERVICE_TOKN="secret-value")

    with pytest.warns(ConfigurationWarning) as caught:
        ThrillConnect(app)

    (warning,) = caught
    message = str(warning.message)
    assert "THRILLCONNECT_SERVICE_TOKN" in message
    assert "did you mean THRILLCONNECT_SERVICE_TOKEN?" in message
    assert "secret-value" not in message
    assert warning.filename == __file__  # points at the portal's own init_app call


def test_known_keys_and_other_prefixes_are_not_warned_about(thrillconnect_sim):
    app = make_app(
        thrillconnect_sim,
        THRILLCONNECT_CACHE_TTL={"ticker": 1},
        THRILLCONNECT_CHECK_ON_START=False,
        THRILLCONNECTOR="not ours",
        SQLALCHEMY_DATABASE_URI="sqlite://",
    )

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ThrillConnect(app)


# -- THRILLCONNECT_CHECK_ON_START ----------------------------------------------------------------


def test_the_start_up_check_is_off_by_default(thrillconnect_sim):
    ThrillConnect(make_app(thrillconnect_sim, THRILLCONNECT_BRAND_ID="brand9"))

    assert thrillconnect_sim.stats()["requests"]["sources"] == 0


@pytest.mark.parametrize("flag", [True, "true", "1"])
def test_the_start_up_check_refuses_an_unknown_brand(thrillconnect_sim, flag):
    app = make_app(
        thrillconnect_sim, THRILLCONNECT_BRAND_ID="brand9", THRILLCONNECT_CHECK_ON_START=flag
    )

    with pytest.raises(ConfigurationError, match="no sources for thrilltech:brand9"):
        ThrillConnect(app)
    assert "thrillconnect" not in app.extensions


def test_the_start_up_check_passes_for_a_known_brand(thrillconnect_sim):
    app = make_app(thrillconnect_sim, THRILLCONNECT_CHECK_ON_START="yes")

    ThrillConnect(app)

    assert thrillconnect_sim.stats()["requests"]["sources"] == 1


def test_the_start_up_check_lets_the_portal_start_while_upstream_is_unreachable(
    thrillconnect_sim, caplog
):
    app = make_app(
        thrillconnect_sim,
        THRILLCONNECT_URL=f"http://127.0.0.1:{closed_port()}",
        THRILLCONNECT_CHECK_ON_START=True,
    )

    ThrillConnect(app)

    assert "thrillconnect" in app.extensions
    assert any("starting anyway" in record.getMessage() for record in caplog.records)


def test_a_wrong_start_up_check_value_fails_naming_the_key(thrillconnect_sim):
    with pytest.raises(ConfigurationError, match="THRILLCONNECT_CHECK_ON_START"):
        ThrillConnect(make_app(thrillconnect_sim, THRILLCONNECT_CHECK_ON_START="maybe"))


# -- server-side helpers -------------------------------------------------------------------------


def portal_with_pages(sim, **config) -> tuple[Flask, ThrillConnect]:
    app = make_app(sim, **config)
    tc = ThrillConnect(app)

    @app.get("/jackpot/<source_id>")
    def jackpot_page(source_id: str) -> str:
        return f"jackpot {tc.jackpot_for_source(source_id).id}"

    @app.get("/maybe/<source_id>")
    def maybe_page(source_id: str) -> str:
        jackpot = tc.jackpot_for_source(source_id, default=None)
        return "unavailable" if jackpot is None else f"jackpot {jackpot.id}"

    return app, tc


def test_helpers_raise_one_family_and_default_stands_in(thrillconnect_sim):
    app, tc = portal_with_pages(thrillconnect_sim)
    instance_id = thrillconnect_sim.instance_ids["progressive"]

    with app.test_request_context():
        with pytest.raises(UpstreamNotFound):
            tc.jackpot_for_source("no-such-source")
        with pytest.raises(InvalidIdentifier):
            tc.ticker("a/b")
        assert tc.jackpot_for_source("no-such-source", default=None) is None
        assert tc.ticker("a/b", default=None) is None
        assert tc.ticker("no-such-instance", default=None) is None
        assert tc.jackpot_for_source("egyptian-gold", default=None).id == instance_id
        thrillconnect_sim.faults(rest={"status": 503})
        tc.cache_clear()
        with pytest.raises(UpstreamUnavailable):
            tc.currencies()
        assert tc.currencies(default=None) is None
        assert tc.sources(default=[]) == []


def test_an_unknown_source_is_the_portals_404_page_not_a_500(thrillconnect_sim):
    app, _ = portal_with_pages(thrillconnect_sim)

    @app.errorhandler(404)
    def not_found(error):
        return f"portal 404: {error.description}", 404

    response = app.test_client().get("/jackpot/no-such-source")

    assert response.status_code == 404
    assert response.text == "portal 404: no such jackpot"


def test_upstream_failure_in_a_portal_page_names_no_upstream_path(thrillconnect_sim, caplog):
    app, _ = portal_with_pages(thrillconnect_sim)
    thrillconnect_sim.faults(rest={"status": 503})

    response = app.test_client().get("/jackpot/egyptian-gold")

    assert response.status_code == 503
    assert "/v1/" not in response.text
    assert "brand1" not in response.text
    assert "ThrillConnect is unavailable" in response.text
    # The operator's log has the detail.
    assert any("/v1/" in record.getMessage() for record in caplog.records)


def test_default_renders_a_page_while_upstream_is_down(thrillconnect_sim):
    app, _ = portal_with_pages(thrillconnect_sim)
    client = app.test_client()
    thrillconnect_sim.faults(rest={"status": 503})

    assert client.get("/maybe/egyptian-gold").text == "unavailable"
    assert client.get("/maybe/no-such-source").text == "unavailable"


@pytest.mark.parametrize("registered", ["before", "after"])
def test_the_portals_own_handler_of_the_family_wins(thrillconnect_sim, registered):
    app = make_app(thrillconnect_sim)
    tc = ThrillConnect()

    def handler(error: ThrillConnectError) -> tuple[str, int]:
        return f"portal handled {type(error).__name__}", 418

    if registered == "before":
        app.register_error_handler(ThrillConnectError, handler)
    tc.init_app(app)
    if registered == "after":
        app.register_error_handler(ThrillConnectError, handler)

    @app.get("/jackpot/<source_id>")
    def jackpot_page(source_id: str) -> str:
        return str(tc.jackpot_for_source(source_id))

    response = app.test_client().get("/jackpot/no-such-source")

    assert (response.status_code, response.text) == (418, "portal handled UpstreamNotFound")


def test_the_blueprints_json_errors_name_no_upstream_path(thrillconnect_sim):
    app, _ = portal_with_pages(thrillconnect_sim)
    thrillconnect_sim.faults(rest={"status": 503})

    response = app.test_client().get("/thrillconnect/v1/currencies")

    assert response.status_code == 503
    assert response.json["message"] == "ThrillConnect is unavailable; try again shortly"
    assert "/v1/" not in response.text


# -- one log line per upstream failure -----------------------------------------------------------


def test_a_failed_call_logs_one_line_of_ours_and_no_urllib3_retry_warning(
    thrillconnect_sim, caplog
):
    app = make_app(
        thrillconnect_sim,
        THRILLCONNECT_URL=f"http://127.0.0.1:{closed_port()}",
        THRILLCONNECT_SERVICE_TOKEN=thrillconnect_sim.service_token,
    )
    ThrillConnect(app)
    caplog.set_level(logging.DEBUG, logger="urllib3")

    response = app.test_client().get("/thrillconnect/v1/currencies")

    assert response.status_code == 502
    warnings_logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in warnings_logged] == ["flask_thrillconnect.upstream"]
    assert "could not reach ThrillConnect for GET /v1/currencies" in warnings_logged[0].message
    for record in caplog.records:
        assert thrillconnect_sim.service_token not in record.getMessage()


def test_failures_of_one_kind_are_logged_at_most_once_per_interval(caplog):
    clock = [0.0]
    log = FailureLog(logging.getLogger("test.failures"), interval=10, clock=lambda: clock[0])
    caplog.set_level(logging.WARNING, logger="test.failures")

    for _ in range(5):
        log.log(UpstreamUnavailable("could not reach ThrillConnect for GET /v1/currencies"))
    log.log(UpstreamNotFound("ThrillConnect answered 404 to GET /v1/x"))
    clock[0] = 10.5
    log.log(UpstreamUnavailable("could not reach ThrillConnect for GET /v1/currencies"))

    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3
    assert "more like it" not in lines[0]
    assert "UpstreamNotFound" in lines[1]
    assert "(4 more like it in the last 10 s)" in lines[2]


def test_a_token_in_a_failure_message_is_redacted_in_the_log(caplog):
    log = FailureLog(logging.getLogger("test.failures"))
    caplog.set_level(logging.WARNING, logger="test.failures")

    log.log(UpstreamUnavailable("refused /v1/events?token=token_00001&currency=EUR"))

    assert "token_00001" not in caplog.text
    assert "token=***" in caplog.text


# -- cache helpers for tests ---------------------------------------------------------------------


def test_cache_clear_makes_the_next_read_ask_upstream(thrillconnect_sim):
    app = make_app(thrillconnect_sim)
    tc = ThrillConnect(app)
    instance_id = thrillconnect_sim.instance_ids["progressive"]
    url = f"/thrillconnect/v1/thrillpots/instances/{instance_id}/ticker"
    client = app.test_client()

    first = client.get(url)
    thrillconnect_sim.tick()
    cached = client.get(url)
    with app.app_context():
        tc.cache_clear()
    fresh = client.get(url)

    assert [first.headers["X-Cache"], cached.headers["X-Cache"]] == ["MISS", "HIT"]
    assert cached.json == first.json
    assert fresh.headers["X-Cache"] == "MISS"
    assert fresh.json != first.json
    assert thrillconnect_sim.stats()["requests"]["ticker"] == 2


def test_cache_clear_forgets_what_it_knew_of_the_brands_ids(thrillconnect_sim):
    app = make_app(thrillconnect_sim)
    tc = ThrillConnect(app)

    with app.test_request_context():
        assert tc.jackpot_for_source("no-such-source", default=None) is None
        asked = thrillconnect_sim.stats()["requests"]["sources"]
        tc.cache_clear()
        assert tc.jackpot_for_source("no-such-source", default=None) is None

    # The brand's sources were asked for again (without the clear: never, for 10 s).
    assert thrillconnect_sim.stats()["requests"]["sources"] > asked


def test_cache_expire_serves_the_stale_copy_and_refreshes(thrillconnect_sim):
    app = make_app(thrillconnect_sim)
    tc = ThrillConnect(app)
    client = app.test_client()

    first = client.get("/thrillconnect/v1/currencies")
    with app.app_context():
        tc.cache_expire()
    stale = client.get("/thrillconnect/v1/currencies")

    assert first.headers["X-Cache"] == "MISS"
    assert stale.headers["X-Cache"] == "UPDATING"
    assert stale.json == first.json
    with app.app_context():
        app.extensions["thrillconnect"].service.close()  # waits for the background refresh
    assert client.get("/thrillconnect/v1/currencies").headers["X-Cache"] == "HIT"
    assert thrillconnect_sim.stats()["requests"]["currencies"] == 2


def test_in_cluster_mode_cache_clear_and_expire_reach_redis(thrillconnect_sim, redis_server):
    import redis

    from flask_thrillconnect.cache.redis_storage import decode_entry

    app = make_app(thrillconnect_sim, THRILLCONNECT_REDIS_URL=redis_server.url)
    tc = ThrillConnect(app)
    other = redis.Redis.from_url(redis_server.url)
    other.set("someone-else:cache:entry:x", b"kept")  # another portal's key, same Redis
    entry = "thrillconnect:thrilltech:brand1:cache:entry:s:currencies"
    client = app.test_client()
    try:
        assert client.get("/thrillconnect/v1/currencies").headers["X-Cache"] == "MISS"
        with app.app_context():
            tc.cache_expire()
        expired = decode_entry(other.get(entry))
        with app.app_context():
            tc.cache_clear()

        assert not expired.is_fresh(time.time())
        assert expired.is_usable(time.time())
        assert not other.exists(entry)
        assert other.get("someone-else:cache:entry:x") == b"kept"
        assert client.get("/thrillconnect/v1/currencies").headers["X-Cache"] == "MISS"
    finally:
        app.extensions["thrillconnect"].close()
