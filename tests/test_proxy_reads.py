"""The caching REST proxy against the real simulator: shapes, identity, caching headers, errors."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest


def upstream_requests(sim, kind: str) -> int:
    return sim.stats()["requests"][kind]


def test_currencies_are_proxied_then_served_from_the_cache(browser, thrillconnect_sim):
    first = browser.api("GET", "/v1/currencies")
    second = browser.api("GET", "/v1/currencies")

    assert first.status_code == second.status_code == 200
    assert first.json()["base_currency"] == "EUR"
    assert first.json()["multipliers"]["GBP"] == 0.8592
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    assert first.headers["ETag"] == second.headers["ETag"]
    assert second.headers["Cache-Control"].startswith("public, max-age=")
    assert upstream_requests(thrillconnect_sim, "currencies") == 1


def test_a_matching_if_none_match_gets_304_without_a_body(browser):
    etag = browser.api("GET", "/v1/currencies").headers["ETag"]

    response = browser.api("GET", "/v1/currencies", headers={"If-None-Match": etag})

    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["ETag"] == etag


def test_a_stale_if_none_match_gets_the_full_body(browser):
    response = browser.api("GET", "/v1/currencies", headers={"If-None-Match": '"nope"'})

    assert response.status_code == 200
    assert response.json()["multipliers"]


def test_sources_use_the_configured_owner(browser):
    sources = browser.api("GET", "/v1/thrillpots/sources").json()

    assert {source["owner_id"] for source in sources} == {"thrilltech:brand1"}
    assert {"egyptian-gold", "viking-runes", "sportsbook"} <= {s["source_id"] for s in sources}


def test_sources_filter_by_name_with_its_own_cache_entry(browser, thrillconnect_sim):
    everything = browser.api("GET", "/v1/thrillpots/sources").json()
    egyptian = browser.api("GET", "/v1/thrillpots/sources", params={"name": "egyptian"}).json()

    assert [source["source_id"] for source in egyptian] == ["egyptian-gold"]
    assert len(everything) > 1
    assert upstream_requests(thrillconnect_sim, "sources") == 2


def test_another_brand_gets_its_own_sources(make_live_portal, make_browser):
    brand2 = make_live_portal(THRILLCONNECT_BRAND_ID="brand2")

    sources = make_browser(brand2).api("GET", "/v1/thrillpots/sources").json()

    assert {source["source_id"] for source in sources} == {"sitewide-casino", "golden-dragon"}


def test_ticker_money_stays_decimal_strings(browser, thrillconnect_sim):
    instance_id = thrillconnect_sim.instance_ids["progressive"]

    ticker = browser.api("GET", f"/v1/thrillpots/instances/{instance_id}/ticker").json()

    assert ticker["id"] == instance_id
    assert [pot["id"] for pot in ticker["pots"]] == ["minor", "major", "mega"]
    assert all(isinstance(pot["current_value"], str) for pot in ticker["pots"])
    assert Decimal(ticker["pots"][0]["current_value"]) > 0


def test_anonymous_jackpot_is_public_and_has_no_optin_status(browser):
    response = browser.api("GET", "/v1/thrillpots/instances/source/egyptian-gold")

    assert response.status_code == 200
    assert response.json()["optin_status"] is None
    assert response.headers["Cache-Control"].startswith("public")
    assert "Cookie" in response.headers["Vary"]


def test_a_players_jackpot_is_private_and_carries_their_status(make_browser, thrillconnect_sim):
    browser = make_browser().login("player_00001")

    response = browser.api("GET", "/v1/thrillpots/instances/source/egyptian-gold")

    assert response.headers["Cache-Control"] == "private, no-store"
    body = response.json()
    assert body["id"] == thrillconnect_sim.instance_ids["progressive"]
    assert body["optin_status"]["player_id"] == "player_00001"


def test_country_from_the_player_loader_picks_the_instance(make_browser, thrillconnect_sim):
    maltese = make_browser().login("player_00001")
    british = make_browser().login("player_00002")

    mt = maltese.api("GET", "/v1/thrillpots/instances/source/viking-runes").json()
    gb = british.api("GET", "/v1/thrillpots/instances/source/viking-runes").json()

    assert mt["id"] == thrillconnect_sim.instance_ids["no_gb"]
    assert gb["id"] == thrillconnect_sim.instance_ids["viking_fallback"]


def test_segments_from_the_player_loader_pick_the_instance(make_browser, thrillconnect_sim):
    vip = make_browser().login("player_00001")
    regular = make_browser().login("player_00003")

    assert (
        vip.api("GET", "/v1/thrillpots/instances/source/sitewide-casino").json()["id"]
        == thrillconnect_sim.instance_ids["vip"]
    )
    assert (
        regular.api("GET", "/v1/thrillpots/instances/source/sitewide-casino").json()["id"]
        == thrillconnect_sim.instance_ids["sitewide"]
    )


def test_player_entries_are_never_served_to_another_player(make_browser, thrillconnect_sim):
    one = make_browser().login("player_00001")
    three = make_browser().login("player_00003")
    path = "/v1/thrillpots/instances/source/egyptian-gold"

    first = one.api("GET", path).json()
    other = three.api("GET", path).json()
    again = one.api("GET", path)

    assert first["optin_status"]["player_id"] == "player_00001"
    assert other["optin_status"]["player_id"] == "player_00003"
    assert again.json()["optin_status"]["player_id"] == "player_00001"
    assert again.headers["X-Cache"] == "HIT"
    assert upstream_requests(thrillconnect_sim, "jackpot") == 2


@pytest.mark.parametrize("param", ["player_id", "country_code", "segments", "brand_id"])
def test_identity_sent_by_the_browser_is_ignored(make_browser, thrillconnect_sim, param):
    anonymous = make_browser()
    player = make_browser().login("player_00003")
    path = "/v1/thrillpots/instances/source/sitewide-casino"
    forged = {
        "player_id": "player_00001",
        "country_code": "MT",
        "segments": "vip",
        "brand_id": "thrilltech:brand2",
    }

    as_anonymous = anonymous.api("GET", path, params={param: forged[param]}).json()
    as_player = player.api("GET", path, params={param: forged[param]}).json()

    assert as_anonymous["optin_status"] is None
    assert as_anonymous["id"] == thrillconnect_sim.instance_ids["sitewide"]
    assert as_player["optin_status"]["player_id"] == "player_00003"
    assert as_player["id"] == thrillconnect_sim.instance_ids["sitewide"]


@pytest.mark.parametrize(
    "bad_id",
    ["a%2Fb", "%2E%2E", "a..b", "a%3Fb", "a%23b", "a%00b", "a%0Ab", "x" * 129, "a%25b", "a%20b"],
)
@pytest.mark.parametrize(
    "route",
    ["/v1/thrillpots/instances/source/{}", "/v1/thrillpots/instances/{}/ticker"],
)
def test_bad_ids_get_400_and_never_reach_upstream(browser, thrillconnect_sim, bad_id, route):
    before = thrillconnect_sim.stats()["requests"]

    response = browser.api("GET", route.format(bad_id))

    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"] == "bad_request"
    assert thrillconnect_sim.stats()["requests"] == before


def test_an_unknown_route_under_the_prefix_is_a_json_404(browser):
    response = browser.api("GET", "/v1/nothing/here")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/v1/currencies", "GET, HEAD, OPTIONS"),
        ("POST", "/v1/thrillpots/sources", "GET, HEAD, OPTIONS"),
        ("DELETE", "/v1/thrillpots/instances/any-id/ticker", "GET, HEAD, OPTIONS"),
        ("PATCH", "/v1/thrillpots/instances/source/egyptian-gold", "GET, HEAD, OPTIONS"),
        ("GET", "/v1/thrillpots/optin", "OPTIONS, POST"),
        ("PATCH", "/v1/cors", "DELETE, GET, HEAD, OPTIONS, PUT"),
        ("POST", "/health", "GET, HEAD, OPTIONS"),
    ],
)
def test_a_wrong_method_is_a_json_405_with_the_paths_methods(browser, method, path, allow):
    response = browser.api(method, path)

    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert response.headers["Allow"] == allow


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/v1/thrillpots/instances/any-id/ticker", "GET, HEAD, OPTIONS"),
        ("/v1/thrillpots/optin", "OPTIONS, POST"),
        ("/v1/cors", "DELETE, GET, HEAD, OPTIONS, PUT"),
    ],
)
def test_options_lists_only_the_paths_own_methods(browser, path, allow):
    response = browser.api("OPTIONS", path)

    assert response.status_code == 204
    assert response.headers["Allow"] == allow


def test_options_and_wrong_methods_on_an_unknown_path_are_404(browser):
    assert browser.api("OPTIONS", "/v1/nothing").status_code == 404
    assert browser.api("PUT", "/v1/nothing").json()["error"] == "not_found"


def test_a_plain_get_of_the_relay_is_a_json_400(browser):
    response = browser.api("GET", "/v1/events")

    assert response.status_code == 400
    assert "WebSocket" in response.json()["message"]


def test_200_concurrent_misses_make_one_upstream_request(browser, thrillconnect_sim):
    instance_id = thrillconnect_sim.instance_ids["sitewide"]
    path = f"/v1/thrillpots/instances/{instance_id}/ticker"

    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(lambda _: browser.api("GET", path), range(200)))

    assert {response.status_code for response in responses} == {200}
    assert len({response.content for response in responses}) == 1
    assert upstream_requests(thrillconnect_sim, "ticker") == 1


def test_the_service_token_never_reaches_a_response(make_browser, thrillconnect_sim):
    browser = make_browser().login("player_00001")
    browser.get("/admin/login")
    bodies = [
        browser.api("GET", path)
        for path in (
            "/v1/currencies",
            "/v1/thrillpots/sources",
            "/health",
            "/health/detail",
            "/openapi.json",
            "/v1/cors",
            "/v1/thrillpots/instances/source/egyptian-gold",
        )
    ]

    for response in bodies:
        assert thrillconnect_sim.service_token not in response.text
        assert thrillconnect_sim.service_token not in str(response.headers)
        assert thrillconnect_sim.players["player_00001"]["token"] not in response.text
