"""The REST client against the real simulator (and tiny scripted servers) over loopback."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from flask_thrillconnect import client as client_module
from flask_thrillconnect import upstream_http
from flask_thrillconnect.client import ThrillConnectClient
from flask_thrillconnect.config import derive_ws_url
from flask_thrillconnect.errors import (
    ConfigurationError,
    InvalidIdentifier,
    InvalidRequest,
    ThrillConnectError,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamForbidden,
    UpstreamNotFound,
    UpstreamTimeout,
    UpstreamUnauthorized,
    UpstreamUnavailable,
)
from flask_thrillconnect.models import CorsOrigin, Currencies, Jackpot, Ticker
from flask_thrillconnect.upstream_http import redact

BRAND1_SOURCES = {
    "egyptian-gold",
    "book-of-ra",
    "viking-runes",
    "sitewide-casino",
    "sportsbook",
    "deposit-flow",
}
CURRENCIES = {"last_updated": 1, "base_currency": "EUR", "multipliers": {"EUR": 1.0}}

ClientFactory = Callable[..., ThrillConnectClient]


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture
def make_client() -> Iterator[ClientFactory]:
    """Build clients (operator thrilltech, brand brand1 by default) and close them after."""
    made: list[ThrillConnectClient] = []

    def factory(url: str, **kwargs: Any) -> ThrillConnectClient:
        kwargs.setdefault("operator_id", "thrilltech")
        kwargs.setdefault("brand_id", "brand1")
        kwargs.setdefault("backoff", 0)
        created = ThrillConnectClient(url, **kwargs)
        made.append(created)
        return created

    yield factory
    for created in made:
        created.close()


@pytest.fixture
def sim_client(thrillconnect_sim: Any, make_client: ClientFactory) -> ThrillConnectClient:
    """A client of the simulator with its service token."""
    return make_client(thrillconnect_sim.url, service_token=thrillconnect_sim.service_token)


class ScriptedServer:
    """A loopback HTTP server answering with ``handler`` and recording each request."""

    def __init__(self, handler: Callable[[Request], Response]) -> None:
        self.requests: list[dict[str, Any]] = []
        self._handler = handler
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        self.requests.append(
            {
                "method": request.method,
                "raw_path": environ.get("RAW_URI") or environ.get("REQUEST_URI"),
                "args": request.args.to_dict(),
                "headers": dict(request.headers),
                "body": request.get_data(),
            }
        )
        return self._handler(request)(environ, start_response)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def scripted() -> Iterator[Callable[[Callable[[Request], Response]], ScriptedServer]]:
    """Start scripted servers; stop them after the test."""
    servers: list[ScriptedServer] = []

    def start(handler: Callable[[Request], Response]) -> ScriptedServer:
        server = ScriptedServer(handler)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def json_response(body: Any, status: int = 200, **headers: str) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, mimetype="application/json")


def request_counts(sim: Any) -> dict[str, int]:
    return dict(sim.stats()["requests"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------------------------
# Typed methods against the simulator
# --------------------------------------------------------------------------------------------


def test_currencies_are_loaded_as_decimal_rates(sim_client: ThrillConnectClient) -> None:
    currencies = sim_client.currencies()
    assert isinstance(currencies, Currencies)
    assert currencies.base_currency == "EUR"
    assert currencies.multipliers["SEK"] == Decimal("11.6761")


def test_sources_lists_the_sources_of_the_configured_brand(
    sim_client: ThrillConnectClient,
) -> None:
    sources = sim_client.sources()
    assert {source.source_id for source in sources} == BRAND1_SOURCES
    assert {source.owner_id for source in sources} == {"thrilltech:brand1"}


def test_sources_name_filter_is_sent_upstream(sim_client: ThrillConnectClient) -> None:
    sources = sim_client.sources(name="EGYPT")
    assert [source.source_id for source in sources] == ["egyptian-gold"]


def test_sources_of_another_brand_come_from_its_owner_id(
    thrillconnect_sim: Any, make_client: ClientFactory
) -> None:
    brand2 = make_client(thrillconnect_sim.url, brand_id="brand2")
    assert {source.source_id for source in brand2.sources()} == {
        "sitewide-casino",
        "golden-dragon",
    }


def test_jackpot_for_source_without_player_has_no_optin_status(
    thrillconnect_sim: Any, sim_client: ThrillConnectClient
) -> None:
    jackpot = sim_client.jackpot_for_source("egyptian-gold")
    assert isinstance(jackpot, Jackpot)
    assert jackpot.id == thrillconnect_sim.instance_ids["progressive"]
    assert jackpot.optin_status is None
    assert [pot.id for pot in jackpot.pots] == ["minor", "major", "mega"]
    assert all(isinstance(pot.current_value, Decimal) for pot in jackpot.pots)


def test_jackpot_for_source_sends_the_player_and_country(
    thrillconnect_sim: Any, sim_client: ThrillConnectClient
) -> None:
    jackpot = sim_client.jackpot_for_source(
        "viking-runes", player_id="player_00002", country_code="GB"
    )
    assert jackpot.id == thrillconnect_sim.instance_ids["viking_fallback"]
    assert jackpot.optin_status is not None
    assert jackpot.optin_status.player_id == "player_00002"
    assert jackpot.optin_status.opted_in is False


def test_jackpot_for_source_sends_the_segments(
    thrillconnect_sim: Any, sim_client: ThrillConnectClient
) -> None:
    vip = sim_client.jackpot_for_source(
        "sitewide-casino", player_id="player_00001", country_code="MT", segments=("vip",)
    )
    everyone = sim_client.jackpot_for_source(
        "sitewide-casino", player_id="player_00003", country_code="DE"
    )
    assert vip.id == thrillconnect_sim.instance_ids["vip"]
    assert everyone.id == thrillconnect_sim.instance_ids["sitewide"]


def test_ticker_loads_decimal_money(
    thrillconnect_sim: Any, sim_client: ThrillConnectClient
) -> None:
    ticker = sim_client.ticker(thrillconnect_sim.instance_ids["progressive"])
    assert isinstance(ticker, Ticker)
    assert ticker.currency == "EUR"
    assert ticker.allowed_brands == ("thrilltech:brand1",)
    assert all(isinstance(pot.current_value, Decimal) for pot in ticker.pots)


def test_health_answers_the_version(sim_client: ThrillConnectClient) -> None:
    assert sim_client.health().version


@pytest.mark.parametrize(
    "make_call",
    [
        lambda c, ids: c.currencies_call(),
        lambda c, ids: c.sources_call(),
        lambda c, ids: c.jackpot_call("egyptian-gold"),
        lambda c, ids: c.jackpot_call(
            "egyptian-gold", player_id="player_00001", country_code="MT", segments=["vip"]
        ),
        lambda c, ids: c.ticker_call(ids["progressive"]),
        lambda c, ids: c.ticker_call(ids["raffle"]),
        lambda c, ids: c.health_call(),
    ],
    ids=["currencies", "sources", "jackpot", "jackpot-player", "ticker", "raffle", "health"],
)
def test_simulator_answers_round_trip_through_the_call_schema(
    thrillconnect_sim: Any, sim_client: ThrillConnectClient, make_call: Callable[..., Any]
) -> None:
    # What a caching proxy does on a miss: fetch, validate, re-dump the wire shape once.
    call = make_call(sim_client, thrillconnect_sim.instance_ids)
    status, payload = sim_client.fetch_json(call)
    assert status == 200
    assert call.dump(call.load(payload)) == payload


def test_call_key_names_path_and_query(sim_client: ThrillConnectClient) -> None:
    call = sim_client.jackpot_call(
        "egyptian-gold", player_id="player_00001", country_code="MT", segments=["vip", "new"]
    )
    assert call.kind == "jackpot"
    assert call.key == (
        "/v1/thrillpots/instances/source/egyptian-gold/brand/thrilltech%3Abrand1"
        "?player_id=player_00001&country_code=MT&segments=vip%2Cnew"
    )


# --------------------------------------------------------------------------------------------
# What goes on the wire
# --------------------------------------------------------------------------------------------


def test_jackpot_request_uses_the_joined_brand_path_and_query_params(
    scripted: Callable[..., ScriptedServer], make_client: ClientFactory
) -> None:
    server = scripted(lambda request: json_response({"error": "not_found", "message": "x"}, 404))
    client = make_client(server.url)
    with pytest.raises(UpstreamNotFound):
        client.jackpot_for_source(
            "egyptian-gold", player_id="player_00001", country_code="MT", segments=("vip", "new")
        )
    (sent,) = server.requests
    assert sent["method"] == "GET"
    assert sent["raw_path"].split("?")[0] == (
        "/v1/thrillpots/instances/source/egyptian-gold/brand/thrilltech%3Abrand1"
    )
    assert sent["args"] == {
        "player_id": "player_00001",
        "country_code": "MT",
        "segments": "vip,new",
    }


def test_jackpot_request_omits_absent_player_fields(
    scripted: Callable[..., ScriptedServer], make_client: ClientFactory
) -> None:
    server = scripted(lambda request: json_response({"error": "not_found", "message": "x"}, 404))
    with pytest.raises(UpstreamNotFound):
        make_client(server.url).jackpot_for_source("egyptian-gold")
    assert server.requests[0]["args"] == {}


def test_path_ids_are_percent_encoded_as_one_segment(
    scripted: Callable[..., ScriptedServer], make_client: ClientFactory
) -> None:
    server = scripted(lambda request: json_response({"error": "not_found", "message": "x"}, 404))
    with pytest.raises(UpstreamNotFound):
        make_client(server.url).ticker("id:with@odd+chars")
    assert (
        server.requests[0]["raw_path"] == "/v1/thrillpots/instances/id%3Awith%40odd%2Bchars/ticker"
    )


def test_sources_request_sends_owner_id_from_config(
    scripted: Callable[..., ScriptedServer], make_client: ClientFactory
) -> None:
    server = scripted(lambda request: json_response([]))
    assert make_client(server.url).sources(name="Book of") == []
    assert server.requests[0]["args"] == {"owner_id": "thrilltech:brand1", "name": "Book of"}


def test_base_url_path_prefix_is_kept(
    scripted: Callable[..., ScriptedServer], make_client: ClientFactory
) -> None:
    server = scripted(lambda request: json_response(CURRENCIES))
    make_client(server.url + "/api/").currencies()
    assert server.requests[0]["raw_path"] == "/api/v1/currencies"


# --------------------------------------------------------------------------------------------
# Refused identifiers never make a request
# --------------------------------------------------------------------------------------------

BAD_IDS = ["a/b", "..", "?x", "#frag", "a%2Fb", "a\x00b", "a\nb", "x" * 129, "", "a b"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_instance_id_is_refused_without_any_request(
    thrillconnect_sim: Any, sim_client: ThrillConnectClient, bad: str
) -> None:
    before = request_counts(thrillconnect_sim)
    with pytest.raises(InvalidIdentifier, match="instance_id"):
        sim_client.ticker(bad)
    assert request_counts(thrillconnect_sim) == before


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_source_id_is_refused_without_any_request(
    thrillconnect_sim: Any, sim_client: ThrillConnectClient, bad: str
) -> None:
    before = request_counts(thrillconnect_sim)
    with pytest.raises(InvalidIdentifier, match="source_id"):
        sim_client.jackpot_for_source(bad)
    assert request_counts(thrillconnect_sim) == before


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"player_id": "../player"}, "player_id"),
        ({"player_id": "p?x=1"}, "player_id"),
        ({"country_code": "gb"}, "country_code"),
        ({"country_code": "GB&x=1"}, "country_code"),
        ({"segments": ["vip,admin"]}, "segments"),
        ({"segments": "vip"}, "segments"),
    ],
)
def test_bad_player_fields_are_refused_without_any_request(
    thrillconnect_sim: Any, sim_client: ThrillConnectClient, kwargs: dict[str, Any], field: str
) -> None:
    before = request_counts(thrillconnect_sim)
    with pytest.raises(InvalidIdentifier, match=field):
        sim_client.jackpot_for_source("egyptian-gold", **kwargs)
    assert request_counts(thrillconnect_sim) == before


def test_bad_name_filter_is_refused_without_any_request(
    thrillconnect_sim: Any, sim_client: ThrillConnectClient
) -> None:
    before = request_counts(thrillconnect_sim)
    with pytest.raises(InvalidIdentifier, match="name"):
        sim_client.sources(name="x" * 129)
    assert request_counts(thrillconnect_sim) == before


# --------------------------------------------------------------------------------------------
# Error mapping, retries, timeouts
# --------------------------------------------------------------------------------------------


def test_unknown_ticker_is_upstream_not_found_with_the_upstream_error(
    thrillconnect_sim: Any, sim_client: ThrillConnectClient
) -> None:
    with pytest.raises(UpstreamNotFound) as info:
        sim_client.ticker("00000000-0000-0000-0000-000000000000")
    assert info.value.status == 404
    assert info.value.code == 404
    assert info.value.error  # the simulator's snake_case code is kept
    assert isinstance(info.value, ThrillConnectError)


def test_a_404_is_not_retried(thrillconnect_sim: Any, make_client: ClientFactory) -> None:
    client = make_client(thrillconnect_sim.url, retries=2)
    before = request_counts(thrillconnect_sim)["ticker"]
    with pytest.raises(UpstreamNotFound):
        client.ticker("no-such-instance")
    assert request_counts(thrillconnect_sim)["ticker"] == before + 1


def test_a_400_is_not_retried_and_keeps_the_upstream_message(
    scripted: Callable[..., ScriptedServer], make_client: ClientFactory
) -> None:
    server = scripted(
        lambda request: json_response({"error": "owner_id_required", "message": "say who"}, 400)
    )
    with pytest.raises(UpstreamBadRequest) as info:
        make_client(server.url, retries=2).sources()
    assert len(server.requests) == 1
    assert info.value.error == "owner_id_required"
    assert "say who" in info.value.message
    assert info.value.code == 400


def test_a_503_is_retried_then_reported_as_unavailable_503(
    thrillconnect_sim: Any, make_client: ClientFactory
) -> None:
    client = make_client(thrillconnect_sim.url, retries=2)
    thrillconnect_sim.faults(rest={"status": 503})
    before = request_counts(thrillconnect_sim)["jackpot"]
    with pytest.raises(UpstreamUnavailable) as info:
        client.jackpot_for_source("egyptian-gold")
    thrillconnect_sim.faults()
    assert request_counts(thrillconnect_sim)["jackpot"] == before + 1 + 2
    assert info.value.status == 503
    assert info.value.code == 503


def test_retry_count_follows_the_retries_setting(
    thrillconnect_sim: Any, make_client: ClientFactory
) -> None:
    client = make_client(thrillconnect_sim.url, retries=0)
    thrillconnect_sim.faults(rest={"status": 503})
    before = request_counts(thrillconnect_sim)["currencies"]
    with pytest.raises(UpstreamUnavailable):
        client.currencies()
    thrillconnect_sim.faults()
    assert request_counts(thrillconnect_sim)["currencies"] == before + 1


def test_a_retried_get_succeeds_when_upstream_recovers(
    scripted: Callable[..., ScriptedServer], make_client: ClientFactory
) -> None:
    answers = iter([json_response({"error": "busy", "message": "later"}, 502)])
    server = scripted(lambda request: next(answers, None) or json_response(CURRENCIES))
    assert make_client(server.url, retries=2).currencies().base_currency == "EUR"
    assert len(server.requests) == 2


def test_a_500_is_unavailable_502_and_not_retried(
    scripted: Callable[..., ScriptedServer], make_client: ClientFactory
) -> None:
    server = scripted(lambda request: Response("<h1>Internal Error</h1>", status=500))
    with pytest.raises(UpstreamUnavailable) as info:
        make_client(server.url, retries=2).currencies()
    assert len(server.requests) == 1
    assert info.value.status == 500
    assert info.value.code == 502
    assert info.value.error is None  # a non-JSON body is tolerated


def test_a_put_is_never_retried_on_503(
    scripted: Callable[..., ScriptedServer], make_client: ClientFactory
) -> None:
    server = scripted(lambda request: json_response({"error": "down", "message": "x"}, 503))
    client = make_client(server.url, service_token="service-token-value", retries=2)
    with pytest.raises(UpstreamUnavailable):
        client.cors_upsert([{"pattern": "https://casino.example", "match_mode": "Exact"}])
    assert len(server.requests) == 1


def test_a_slow_answer_is_an_upstream_timeout(
    thrillconnect_sim: Any, make_client: ClientFactory
) -> None:
    client = make_client(thrillconnect_sim.url, timeout=(1.0, 0.2))
    thrillconnect_sim.faults(rest={"delay": 1})
    started = time.monotonic()
    try:
        with pytest.raises(UpstreamTimeout) as info:
            client.currencies()
    finally:
        thrillconnect_sim.faults()
    assert time.monotonic() - started < 0.9
    assert info.value.code == 504


def test_a_hanging_upstream_is_an_upstream_timeout(
    thrillconnect_sim: Any, make_client: ClientFactory
) -> None:
    client = make_client(thrillconnect_sim.url, timeout=(1.0, 0.2), retries=2)
    thrillconnect_sim.faults(rest={"hang": True})
    started = time.monotonic()
    try:
        with pytest.raises(UpstreamTimeout):
            client.ticker(thrillconnect_sim.instance_ids["progressive"])
    finally:
        thrillconnect_sim.faults()
    # Read timeouts are not retried: one read timeout, not three.
    assert time.monotonic() - started < 0.9


def test_a_refused_connection_is_unavailable(make_client: ClientFactory) -> None:
    client = make_client(f"http://127.0.0.1:{free_port()}", retries=1, timeout=(0.5, 0.5))
    with pytest.raises(UpstreamUnavailable, match="could not reach ThrillConnect") as info:
        client.currencies()
    assert info.value.status is None
    assert info.value.code == 502


def test_a_2xx_that_does_not_load_is_unavailable(
    scripted: Callable[..., ScriptedServer], make_client: ClientFactory
) -> None:
    server = scripted(lambda request: json_response({"base_currency": 5}))
    with pytest.raises(UpstreamUnavailable, match="invalid response") as info:
        make_client(server.url).currencies()
    assert "base_currency" in str(info.value)


def test_a_2xx_that_is_not_json_is_unavailable(
    scripted: Callable[..., ScriptedServer], make_client: ClientFactory
) -> None:
    server = scripted(lambda request: Response("<html>login</html>", mimetype="text/html"))
    with pytest.raises(UpstreamUnavailable, match="invalid response"):
        make_client(server.url).currencies()


def test_an_oversized_answer_is_unavailable(
    scripted: Callable[..., ScriptedServer],
    make_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(upstream_http, "MAX_RESPONSE_BYTES", 64)
    server = scripted(lambda request: json_response({**CURRENCIES, "pad": "x" * 200}))
    with pytest.raises(UpstreamUnavailable, match="too large"):
        make_client(server.url).currencies()


def test_other_4xx_answers_are_generic_upstream_errors(
    scripted: Callable[..., ScriptedServer], make_client: ClientFactory
) -> None:
    server = scripted(lambda request: json_response({"error": "slow_down", "message": "x"}, 429))
    with pytest.raises(UpstreamError) as info:
        make_client(server.url).currencies()
    assert type(info.value) is UpstreamError
    assert info.value.status == 429
    assert info.value.error == "slow_down"


# --------------------------------------------------------------------------------------------
# Redirects
# --------------------------------------------------------------------------------------------


def test_a_redirect_to_another_host_is_refused(
    scripted: Callable[..., ScriptedServer], make_client: ClientFactory
) -> None:
    elsewhere = scripted(lambda request: json_response(CURRENCIES))
    server = scripted(
        lambda request: Response(status=302, headers={"Location": f"{elsewhere.url}/v1/x"})
    )
    with pytest.raises(UpstreamUnavailable, match="redirect refused") as info:
        make_client(server.url).currencies()
    assert info.value.status == 302
    assert elsewhere.requests == []
    assert elsewhere.url not in str(info.value)


def test_a_redirect_to_the_same_origin_is_followed_once(
    scripted: Callable[..., ScriptedServer], make_client: ClientFactory
) -> None:
    def handler(request: Request) -> Response:
        if request.path == "/v1/currencies":
            return Response(status=301, headers={"Location": "/v2/currencies"})
        return json_response(CURRENCIES)

    server = scripted(handler)
    assert make_client(server.url).currencies().base_currency == "EUR"
    assert [sent["raw_path"] for sent in server.requests] == ["/v1/currencies", "/v2/currencies"]


def test_a_second_redirect_is_refused(
    scripted: Callable[..., ScriptedServer], make_client: ClientFactory
) -> None:
    server = scripted(lambda request: Response(status=302, headers={"Location": "/elsewhere"}))
    with pytest.raises(UpstreamUnavailable, match="redirect refused"):
        make_client(server.url).currencies()
    assert len(server.requests) == 2


def test_a_redirect_of_a_put_is_refused(
    scripted: Callable[..., ScriptedServer], make_client: ClientFactory
) -> None:
    server = scripted(lambda request: Response(status=307, headers={"Location": "/v1/cors2"}))
    client = make_client(server.url, service_token="service-token-value")
    with pytest.raises(UpstreamUnavailable, match="redirect refused"):
        client.cors_upsert([CorsOrigin("https://casino.example", "Exact")])
    assert len(server.requests) == 1


# --------------------------------------------------------------------------------------------
# CORS rules (service token)
# --------------------------------------------------------------------------------------------


def test_cors_rules_can_be_added_listed_and_removed(sim_client: ThrillConnectClient) -> None:
    rule = CorsOrigin("https://*.casino.example", "Wildcard")
    after_upsert = sim_client.cors_upsert(
        [rule, {"pattern": "https://casino.example", "match_mode": "Exact"}]
    )
    assert rule in after_upsert
    assert rule in sim_client.cors_list()
    removed, remaining = sim_client.cors_remove(["https://*.casino.example"])
    assert removed == 1
    assert rule not in remaining
    assert CorsOrigin("https://casino.example", "Exact") in remaining


def test_cors_calls_send_the_service_token_as_bearer(
    scripted: Callable[..., ScriptedServer], make_client: ClientFactory
) -> None:
    server = scripted(lambda request: json_response({"cors_origin_list": []}))
    assert make_client(server.url, service_token="the-token").cors_list() == []
    assert server.requests[0]["headers"]["Authorization"] == "Bearer the-token"


def test_read_calls_never_send_the_service_token(
    scripted: Callable[..., ScriptedServer], make_client: ClientFactory
) -> None:
    server = scripted(lambda request: json_response(CURRENCIES))
    make_client(server.url, service_token="the-token").currencies()
    assert "Authorization" not in server.requests[0]["headers"]


def test_cors_with_a_bad_token_is_unauthorized_502(
    thrillconnect_sim: Any, make_client: ClientFactory
) -> None:
    token = thrillconnect_sim.make_service_token(secret="not-the-platform-secret")
    with pytest.raises(UpstreamUnauthorized) as info:
        make_client(thrillconnect_sim.url, service_token=token).cors_list()
    assert info.value.status == 401
    assert info.value.code == 502


def test_cors_with_an_expired_token_is_unauthorized(
    thrillconnect_sim: Any, make_client: ClientFactory
) -> None:
    token = thrillconnect_sim.make_service_token(expires_in=-60)
    with pytest.raises(UpstreamUnauthorized):
        make_client(thrillconnect_sim.url, service_token=token).cors_list()


def test_cors_with_another_operators_token_is_forbidden_502(
    thrillconnect_sim: Any, make_client: ClientFactory
) -> None:
    token = thrillconnect_sim.make_service_token(org_id="otheroperator")
    with pytest.raises(UpstreamForbidden) as info:
        make_client(thrillconnect_sim.url, service_token=token).cors_list()
    assert info.value.status == 403
    assert info.value.code == 502


def test_cors_without_a_service_token_is_a_configuration_error_without_request(
    thrillconnect_sim: Any, make_client: ClientFactory
) -> None:
    client = make_client(thrillconnect_sim.url)
    before = request_counts(thrillconnect_sim)
    with pytest.raises(ConfigurationError, match="THRILLCONNECT_SERVICE_TOKEN"):
        client.cors_list()
    assert request_counts(thrillconnect_sim) == before


@pytest.mark.parametrize(
    "rules",
    [
        [{"pattern": "https://casino.example", "match_mode": "Prefix"}],
        [{"pattern": "https://(", "match_mode": "Regex"}],
        [{"pattern": "a b", "match_mode": "Exact"}],
        "https://casino.example",
    ],
)
def test_invalid_cors_rules_are_refused_without_request(
    thrillconnect_sim: Any, sim_client: ThrillConnectClient, rules: Any
) -> None:
    before = request_counts(thrillconnect_sim)
    with pytest.raises(InvalidRequest):
        sim_client.cors_upsert(rules)
    assert request_counts(thrillconnect_sim) == before


def test_cors_remove_refuses_a_bare_string(sim_client: ThrillConnectClient) -> None:
    with pytest.raises(InvalidRequest, match="must be a list"):
        sim_client.cors_remove("https://casino.example")


# --------------------------------------------------------------------------------------------
# Tokens stay secret
# --------------------------------------------------------------------------------------------


def test_no_token_in_exception_messages_or_logs(
    thrillconnect_sim: Any,
    make_client: ClientFactory,
    scripted: Callable[..., ScriptedServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    bad_token = thrillconnect_sim.make_service_token(secret="wrong-secret")
    # A careless upstream that echoes the credentials in its error message.
    echo = scripted(
        lambda request: json_response(
            {
                "error": "bad_token",
                "message": f"refused {request.headers.get('Authorization')} token={bad_token}",
            },
            401,
        )
    )
    errors: list[BaseException] = []
    for url in (thrillconnect_sim.url, echo.url):
        client = make_client(url, service_token=bad_token)
        assert bad_token not in repr(client)
        with pytest.raises(UpstreamUnauthorized) as info:
            client.cors_list()
        errors.append(info.value)
    texts = [str(error) for error in errors] + [repr(error) for error in errors]
    texts += [record.getMessage() for record in caplog.records]
    assert any("GET /v1/cors" in text for text in texts)  # the client did log
    for text in texts:
        assert bad_token not in text
        assert "Bearer ey" not in text


def test_requests_are_logged_at_debug_without_query_strings(
    thrillconnect_sim: Any, sim_client: ThrillConnectClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="flask_thrillconnect.client")
    sim_client.jackpot_for_source("egyptian-gold", player_id="player_00001", country_code="MT")
    (record,) = [r for r in caplog.records if r.name == "flask_thrillconnect.client"]
    assert record.levelno == logging.DEBUG
    message = record.getMessage()
    assert "GET /v1/thrillpots/instances/source/egyptian-gold/brand/thrilltech%3Abrand1" in message
    assert "-> 200" in message
    assert "player_id" not in message


# --------------------------------------------------------------------------------------------
# WebSocket URLs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("http://127.0.0.1:8600", "ws://127.0.0.1:8600"),
        ("https://tc.example/", "wss://tc.example"),
        ("https://tc.example/api", "wss://tc.example/api"),
    ],
)
def test_ws_url_is_derived_from_the_base_url(base: str, expected: str) -> None:
    assert derive_ws_url(base) == expected


def test_service_stream_url_carries_the_token_and_redacts(make_client: ClientFactory) -> None:
    client = make_client("https://tc.example", service_token="abc.def-ghi")
    url = client.service_stream_url()
    assert url == "wss://tc.example/v1/events/service?token=abc.def-ghi"
    assert redact(url) == "wss://tc.example/v1/events/service?token=***"


def test_player_stream_url_uses_bare_ids_and_encodes_the_query(
    make_client: ClientFactory,
) -> None:
    client = make_client("http://127.0.0.1:8600", ws_url="ws://stream.example:9000/")
    url = client.player_stream_url("tok+en/1=", "EUR")
    assert (
        url
        == "ws://stream.example:9000/v1/events/thrilltech/brand1?token=tok%2Ben%2F1%3D&currency=EUR"
    )
    assert (
        redact(url) == "ws://stream.example:9000/v1/events/thrilltech/brand1?token=***&currency=EUR"
    )


def test_player_stream_url_validates_its_inputs(make_client: ClientFactory) -> None:
    client = make_client("http://127.0.0.1:8600")
    with pytest.raises(InvalidIdentifier, match="currency"):
        client.player_stream_url("token_00001", "eur")
    with pytest.raises(InvalidIdentifier, match="token"):
        client.player_stream_url("token with spaces", "EUR")


def test_service_stream_url_needs_a_service_token(make_client: ClientFactory) -> None:
    with pytest.raises(ConfigurationError):
        make_client("http://127.0.0.1:8600").service_stream_url()


# --------------------------------------------------------------------------------------------
# Configuration and the session
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"base_url": "ftp://tc.example"}, "THRILLCONNECT_URL"),
        ({"base_url": "tc.example"}, "THRILLCONNECT_URL"),
        ({"base_url": "https://tc.example/?key=1"}, "THRILLCONNECT_URL"),
        ({"base_url": "https://user:pw@tc.example"}, "THRILLCONNECT_URL"),
        ({"base_url": "https://tc.example:99999"}, "THRILLCONNECT_URL"),
        ({"operator_id": "thrill/tech"}, "THRILLCONNECT_OPERATOR_ID"),
        ({"brand_id": "thrilltech:brand1"}, "THRILLCONNECT_BRAND_ID"),
        ({"ws_url": "http://tc.example"}, "THRILLCONNECT_WS_URL"),
        ({"timeout": (0, 1)}, "THRILLCONNECT_TIMEOUT"),
        ({"timeout": "10"}, "THRILLCONNECT_TIMEOUT"),
        ({"timeout": (1, 301)}, "THRILLCONNECT_TIMEOUT"),
        ({"timeout": float("nan")}, "THRILLCONNECT_TIMEOUT"),
        ({"retries": -1}, "retries"),
        ({"retries": 100}, "retries"),
        ({"service_token": "two words"}, "THRILLCONNECT_SERVICE_TOKEN"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, Any], match: str) -> None:
    arguments: dict[str, Any] = {
        "base_url": "https://tc.example",
        "operator_id": "thrilltech",
        "brand_id": "brand1",
        **kwargs,
    }
    with pytest.raises(ConfigurationError, match=match):
        ThrillConnectClient(arguments.pop("base_url"), **arguments)


def test_service_token_is_not_echoed_by_configuration_errors() -> None:
    with pytest.raises(ConfigurationError) as info:
        ThrillConnectClient(
            "https://tc.example", operator_id="t", brand_id="b", service_token="sec ret"
        )
    assert "sec ret" not in str(info.value)


def test_a_single_timeout_number_applies_to_connect_and_read(make_client: ClientFactory) -> None:
    assert make_client("https://tc.example", timeout=5).timeout == (5.0, 5.0)


def test_one_session_per_process_recreated_after_fork(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client("https://tc.example")
    first = client.session
    assert client.session is first
    monkeypatch.setattr(client_module.os, "getpid", lambda: -1)
    assert client.session is not first


def test_session_retries_only_gets_on_gateway_statuses(make_client: ClientFactory) -> None:
    retry = (
        make_client("https://tc.example", retries=3).session.get_adapter("https://x").max_retries
    )
    assert retry.total == 3
    assert set(retry.allowed_methods) == {"GET"}
    assert set(retry.status_forcelist) == {502, 503, 504}
    assert retry.read is False
    assert retry.raise_on_status is False
