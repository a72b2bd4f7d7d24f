"""The simulator's REST API: shapes of the seed page, the selection rule, errors, CORS."""

from __future__ import annotations

from typing import Any

import pytest
import requests

TIMEOUT = (3.05, 10)
BRAND1_SOURCES = [
    "egyptian-gold",
    "book-of-ra",
    "viking-runes",
    "sitewide-casino",
    "sportsbook",
    "deposit-flow",
]
JACKPOT_KEYS = {
    "id",
    "currency",
    "opt_in_required",
    "contribution_type",
    "optin_status",
    "pots",
    "timestamp_start",
    "timestamp_end",
    "status",
}
OPTIN_STATUS_KEYS = {
    "doc_version",
    "instance_id",
    "player_id",
    "ext_player_id",
    "player_brand_id",
    "preferred_contribution_value",
    "preferred_contribution_currency",
    "contribution_preferences",
    "contribution_count",
    "contribution_value",
    "pot_contributions",
    "opted_in",
    "last_updated",
}
TICKER_KEYS = {
    "id",
    "jackpot_type",
    "currency",
    "pots",
    "allowed_brands",
    "allowed_sources",
    "status",
    "timestamp_start",
    "timestamp_end",
    "last_updated",
}


def get(sim: Any, path: str, **params: str) -> requests.Response:
    return requests.get(sim.url + path, params=params, timeout=TIMEOUT)


def jackpot(sim: Any, source_id: str, brand: str = "brand1", **params: str) -> requests.Response:
    return get(sim, f"/v1/thrillpots/instances/source/{source_id}/brand/{brand}", **params)


def assert_error(response: requests.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "message"}
    if code is not None:
        assert body["error"] == code


# -- currencies and health ---------------------------------------------------------------------
def test_currencies_are_the_vendor_example_rates_based_on_eur(thrillconnect_sim: Any) -> None:
    body = get(thrillconnect_sim, "/v1/currencies").json()

    assert set(body) == {"last_updated", "base_currency", "multipliers"}
    assert body["base_currency"] == "EUR"
    assert isinstance(body["last_updated"], int)
    assert body["multipliers"] == {
        "EUR": 1.0,
        "USD": 1.0762,
        "GBP": 0.8592,
        "CAD": 1.4753,
        "PLN": 4.311,
        "NZD": 1.7921,
        "AUD": 1.6303,
        "RON": 4.9753,
        "SGD": 1.4567,
        "SEK": 11.6761,
    }


def test_health_answers_a_version(thrillconnect_sim: Any) -> None:
    body = get(thrillconnect_sim, "/health").json()

    assert set(body) == {"version"}
    assert isinstance(body["version"], str)


# -- sources -----------------------------------------------------------------------------------
def test_sources_of_brand1_list_every_source_with_its_jackpots(thrillconnect_sim: Any) -> None:
    ids = thrillconnect_sim.instance_ids
    body = get(thrillconnect_sim, "/v1/thrillpots/sources", owner_id="thrilltech:brand1").json()

    assert [source["source_id"] for source in body] == BRAND1_SOURCES
    egyptian = body[0]
    assert egyptian == {
        "owner_id": "thrilltech:brand1",
        "source_name": "Egyptian Gold",
        "source_id": "egyptian-gold",
        "jackpots": [
            {"priority": 0, "owner_id": "thrilltech:brand1", "instance_id": ids["progressive"]},
            {
                "priority": 1,
                "owner_id": "thrilltech:brand1",
                "instance_id": ids["egyptian_fallback"],
            },
        ],
    }
    book_of_ra = body[1]
    assert book_of_ra["jackpots"][0]["instance_id"] == ids["egyptian_fallback"]


def test_sources_of_brand2_are_sitewide_casino_and_golden_dragon(thrillconnect_sim: Any) -> None:
    ids = thrillconnect_sim.instance_ids
    body = get(thrillconnect_sim, "/v1/thrillpots/sources", owner_id="thrilltech:brand2").json()

    assert [source["source_id"] for source in body] == ["sitewide-casino", "golden-dragon"]
    assert [j["instance_id"] for j in body[0]["jackpots"]] == [ids["vip"], ids["sitewide"]]
    assert [j["instance_id"] for j in body[1]["jackpots"]] == [ids["brand2"]]


def test_sources_name_filter_is_a_case_insensitive_substring(thrillconnect_sim: Any) -> None:
    body = get(
        thrillconnect_sim, "/v1/thrillpots/sources", owner_id="thrilltech:brand1", name="EGYPT"
    ).json()

    assert [source["source_id"] for source in body] == ["egyptian-gold"]


def test_sources_of_an_unknown_owner_are_an_empty_list(thrillconnect_sim: Any) -> None:
    response = get(thrillconnect_sim, "/v1/thrillpots/sources", owner_id="other:brand9")

    assert response.status_code == 200
    assert response.json() == []


def test_sources_without_owner_id_is_a_400(thrillconnect_sim: Any) -> None:
    assert_error(get(thrillconnect_sim, "/v1/thrillpots/sources"), 400, "owner_id_required")


# -- the jackpot for a source ------------------------------------------------------------------
def test_jackpot_has_the_seed_shape(thrillconnect_sim: Any) -> None:
    body = jackpot(thrillconnect_sim, "egyptian-gold").json()

    assert set(body) == JACKPOT_KEYS
    assert body["id"] == thrillconnect_sim.instance_ids["progressive"]
    assert body["currency"] == "EUR"
    assert body["opt_in_required"] is True
    assert body["contribution_type"] == {"Fixed": 0.1}
    assert body["status"] == "Active"
    assert isinstance(body["timestamp_start"], int)
    assert body["timestamp_end"] is None
    assert [pot["id"] for pot in body["pots"]] == ["minor", "major", "mega"]
    for pot in body["pots"]:
        assert set(pot) == {
            "id",
            "instance_count",
            "is_progressive",
            "current_value",
            "community_split",
        }
        assert isinstance(pot["current_value"], float)
        assert round(pot["current_value"], 2) == pot["current_value"]
    assert [pot["community_split"] for pot in body["pots"]] == [0.1, 0.1, 0.2]


def test_jackpot_without_player_id_has_no_optin_status(thrillconnect_sim: Any) -> None:
    assert jackpot(thrillconnect_sim, "egyptian-gold").json()["optin_status"] is None


def test_jackpot_for_a_player_who_never_chose_is_not_opted_in(thrillconnect_sim: Any) -> None:
    status = jackpot(thrillconnect_sim, "egyptian-gold", player_id="player_00001").json()[
        "optin_status"
    ]

    assert set(status) == OPTIN_STATUS_KEYS
    assert status["opted_in"] is False
    assert status["doc_version"] == "V1"
    assert status["player_id"] == status["ext_player_id"] == "player_00001"
    assert status["player_brand_id"] == "thrilltech:brand1"
    assert status["contribution_count"] == 0
    assert status["contribution_value"] == 0
    assert status["preferred_contribution_value"] == 0.1
    assert status["contribution_preferences"] == {"EUR": "0.1"}
    assert status["pot_contributions"]["mega"] == {
        "contribution_count": 0,
        "contribution_value": 0,
    }


@pytest.mark.parametrize("brand", ["brand1", "thrilltech:brand1"])
def test_jackpot_accepts_both_brand_path_forms(thrillconnect_sim: Any, brand: str) -> None:
    response = jackpot(thrillconnect_sim, "egyptian-gold", brand)

    assert response.json()["id"] == thrillconnect_sim.instance_ids["progressive"]


@pytest.mark.parametrize(
    ("source_id", "brand", "params", "role"),
    [
        pytest.param("viking-runes", "brand1", {"country_code": "GB"}, "viking_fallback", id="gb"),
        pytest.param("viking-runes", "brand1", {"country_code": "DE"}, "no_gb", id="de"),
        pytest.param("viking-runes", "brand1", {}, "no_gb", id="no-country"),
        pytest.param("sitewide-casino", "brand1", {"segments": "new,vip"}, "vip", id="vip"),
        pytest.param("sitewide-casino", "brand1", {"segments": "new"}, "sitewide", id="non-vip"),
        pytest.param("sitewide-casino", "brand2", {}, "sitewide", id="brand2-sitewide"),
        pytest.param("sitewide-casino", "brand2", {"segments": "vip"}, "vip", id="brand2-vip"),
        pytest.param("golden-dragon", "brand2", {}, "brand2", id="brand2-source"),
        pytest.param("book-of-ra", "brand1", {}, "egyptian_fallback", id="shared-instance"),
        pytest.param("sportsbook", "brand1", {}, "raffle", id="raffle"),
        pytest.param("deposit-flow", "brand1", {}, "pending", id="pending"),
    ],
)
def test_jackpot_selection_picks_the_lowest_priority_eligible_instance(
    thrillconnect_sim: Any, source_id: str, brand: str, params: dict[str, str], role: str
) -> None:
    body = jackpot(thrillconnect_sim, source_id, brand, **params).json()

    assert body["id"] == thrillconnect_sim.instance_ids[role]


def test_pending_instance_is_reported_with_its_status(thrillconnect_sim: Any) -> None:
    assert jackpot(thrillconnect_sim, "deposit-flow").json()["status"] == "Pending"


def test_brand2_jackpot_is_in_gbp(thrillconnect_sim: Any) -> None:
    assert jackpot(thrillconnect_sim, "golden-dragon", "brand2").json()["currency"] == "GBP"


def test_viking_fallback_contributes_a_percentage(thrillconnect_sim: Any) -> None:
    body = jackpot(thrillconnect_sim, "viking-runes", country_code="GB").json()

    assert body["contribution_type"] == {"Percentage": 0.01}


@pytest.mark.parametrize(
    ("source_id", "brand"),
    [
        ("golden-dragon", "brand1"),
        ("no-such-source", "brand1"),
        ("egyptian-gold", "brand9"),
        ("egyptian-gold", "otherop:brand1"),
    ],
)
def test_jackpot_for_an_unknown_source_or_brand_is_a_404(
    thrillconnect_sim: Any, source_id: str, brand: str
) -> None:
    assert_error(jackpot(thrillconnect_sim, source_id, brand), 404)


def test_jackpot_with_an_overlong_parameter_is_a_400(thrillconnect_sim: Any) -> None:
    response = jackpot(thrillconnect_sim, "egyptian-gold", player_id="p" * 129)

    assert_error(response, 400, "invalid_parameter")


# -- ticker ------------------------------------------------------------------------------------
def test_ticker_has_the_seed_shape_with_decimal_strings(thrillconnect_sim: Any) -> None:
    instance_id = thrillconnect_sim.instance_ids["progressive"]
    body = get(thrillconnect_sim, f"/v1/thrillpots/instances/{instance_id}/ticker").json()

    assert set(body) == TICKER_KEYS
    assert body["id"] == instance_id
    assert body["jackpot_type"] == "Jackpot"
    assert body["allowed_brands"] == ["thrilltech:brand1"]
    assert body["allowed_sources"] == ["egyptian-gold"]
    minor = body["pots"][0]
    assert set(minor) == {"id", "is_progressive", "current_value", "community_split"}
    assert minor["community_split"] == "0.1"
    assert isinstance(minor["current_value"], str)
    assert minor["current_value"].split(".")[1].isdigit()
    assert len(minor["current_value"].split(".")[1]) == 2


def test_ticker_of_the_raffle_says_raffle_and_has_an_end(thrillconnect_sim: Any) -> None:
    instance_id = thrillconnect_sim.instance_ids["raffle"]
    body = get(thrillconnect_sim, f"/v1/thrillpots/instances/{instance_id}/ticker").json()

    assert body["jackpot_type"] == "Raffle"
    assert body["timestamp_end"] > body["timestamp_start"]


def test_ticker_lists_every_source_of_a_shared_instance(thrillconnect_sim: Any) -> None:
    instance_id = thrillconnect_sim.instance_ids["egyptian_fallback"]
    body = get(thrillconnect_sim, f"/v1/thrillpots/instances/{instance_id}/ticker").json()

    assert body["allowed_sources"] == ["egyptian-gold", "book-of-ra"]


def test_ticker_of_an_unknown_instance_is_a_404(thrillconnect_sim: Any) -> None:
    response = get(thrillconnect_sim, "/v1/thrillpots/instances/nope/ticker")

    assert_error(response, 404, "instance_not_found")


# -- errors are JSON everywhere ----------------------------------------------------------------
def test_an_unknown_route_is_a_json_404(thrillconnect_sim: Any) -> None:
    assert_error(get(thrillconnect_sim, "/v1/nothing/here"), 404, "not_found")


def test_a_wrong_method_is_a_json_405(thrillconnect_sim: Any) -> None:
    response = requests.post(thrillconnect_sim.url + "/v1/currencies", timeout=TIMEOUT)

    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


# -- CORS rules --------------------------------------------------------------------------------
def cors(sim: Any, method: str, token: str | None, body: Any = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return requests.request(
        method, sim.url + "/v1/cors", headers=headers, json=body, timeout=TIMEOUT
    )


def test_cors_list_answers_the_stored_rules(thrillconnect_sim: Any) -> None:
    response = cors(thrillconnect_sim, "GET", thrillconnect_sim.service_token)

    assert response.json() == {
        "cors_origin_list": [
            {"pattern": "http://127.0.0.1:5000", "match_mode": "Exact"},
            {"pattern": "http://localhost:5000", "match_mode": "Exact"},
        ]
    }


def test_cors_put_upserts_by_pattern_and_answers_the_whole_list(thrillconnect_sim: Any) -> None:
    token = thrillconnect_sim.service_token
    rules = [
        {"pattern": "https://*.casino.example", "match_mode": "Wildcard"},
        {"pattern": "http://127.0.0.1:5000", "match_mode": "Regex"},
    ]

    body = cors(thrillconnect_sim, "PUT", token, {"cors_origin_list": rules}).json()

    assert body == {
        "cors_origin_list": [
            {"pattern": "http://127.0.0.1:5000", "match_mode": "Regex"},
            {"pattern": "http://localhost:5000", "match_mode": "Exact"},
            {"pattern": "https://*.casino.example", "match_mode": "Wildcard"},
        ]
    }
    assert cors(thrillconnect_sim, "GET", token).json() == body


def test_cors_delete_removes_patterns_and_answers_what_remains(thrillconnect_sim: Any) -> None:
    token = thrillconnect_sim.service_token
    body = {"cors_origin_list": ["http://localhost:5000", "https://not.stored"]}

    answer = cors(thrillconnect_sim, "DELETE", token, body).json()

    assert answer == {
        "removed": 1,
        "cors_origin_list": [{"pattern": "http://127.0.0.1:5000", "match_mode": "Exact"}],
    }


@pytest.mark.parametrize(
    "rule",
    [
        {"pattern": "https://a.example", "match_mode": "Glob"},
        {"pattern": "https://a.example", "match_mode": "exact"},
        {"pattern": "(unclosed", "match_mode": "Regex"},
        {"pattern": "", "match_mode": "Exact"},
        {"pattern": "https://a.example"},
        {"pattern": 5, "match_mode": "Exact"},
    ],
)
def test_cors_put_refuses_a_bad_rule_with_a_400(thrillconnect_sim: Any, rule: Any) -> None:
    token = thrillconnect_sim.service_token
    response = cors(thrillconnect_sim, "PUT", token, {"cors_origin_list": [rule]})

    assert_error(response, 400)
    assert len(cors(thrillconnect_sim, "GET", token).json()["cors_origin_list"]) == 2


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("PUT", None),
        ("PUT", ["not", "an", "object"]),
        ("PUT", {"cors_origin_list": "x"}),
        ("PUT", {"cors_origin_list": []}),
        ("PUT", {"cors_origin_list": [], "extra": 1}),
        ("DELETE", {"cors_origin_list": [1]}),
        ("DELETE", {}),
    ],
)
def test_cors_refuses_a_bad_body_with_a_400(thrillconnect_sim: Any, method: str, body: Any) -> None:
    response = cors(thrillconnect_sim, method, thrillconnect_sim.service_token, body)

    assert_error(response, 400)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_cors_without_a_token_is_a_401(thrillconnect_sim: Any, method: str) -> None:
    response = cors(thrillconnect_sim, method, None, {"cors_origin_list": []})

    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("kind", ["garbage", "expired", "other-secret"])
def test_cors_with_a_bad_token_is_a_401(thrillconnect_sim: Any, kind: str) -> None:
    token = {
        "garbage": "not.a.jwt",
        "expired": thrillconnect_sim.make_service_token(expires_in=-60),
        "other-secret": thrillconnect_sim.make_service_token(secret="someone else"),
    }[kind]

    assert_error(cors(thrillconnect_sim, "GET", token), 401, "unauthorized")


def test_cors_with_another_operators_token_is_a_403(thrillconnect_sim: Any) -> None:
    token = thrillconnect_sim.make_service_token(org_id="otherop")

    assert_error(cors(thrillconnect_sim, "GET", token), 403, "forbidden")


def test_no_error_message_contains_the_token(thrillconnect_sim: Any) -> None:
    token = thrillconnect_sim.make_service_token(expires_in=-60)

    assert token not in cors(thrillconnect_sim, "GET", token).text


# -- CORS headers on the simulator's own answers -----------------------------------------------
def allowed_origin(sim: Any, origin: str) -> str | None:
    response = get_with_origin(sim, origin)
    assert "Origin" in response.headers.get("Vary", "")
    return response.headers.get("Access-Control-Allow-Origin")


def get_with_origin(sim: Any, origin: str) -> requests.Response:
    return requests.get(sim.url + "/v1/currencies", headers={"Origin": origin}, timeout=TIMEOUT)


def add_rule(sim: Any, pattern: str, mode: str) -> None:
    body = {"cors_origin_list": [{"pattern": pattern, "match_mode": mode}]}
    assert cors(sim, "PUT", sim.service_token, body).status_code == 200


def test_an_exact_rule_allows_exactly_that_origin(thrillconnect_sim: Any) -> None:
    assert allowed_origin(thrillconnect_sim, "http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert allowed_origin(thrillconnect_sim, "http://127.0.0.1:50000") is None
    assert allowed_origin(thrillconnect_sim, "https://evil.example") is None


def test_a_wildcard_matches_within_one_host_label(thrillconnect_sim: Any) -> None:
    add_rule(thrillconnect_sim, "https://*.casino.example", "Wildcard")

    assert allowed_origin(thrillconnect_sim, "https://www.casino.example") is not None
    assert allowed_origin(thrillconnect_sim, "https://a.b.casino.example") is None
    assert allowed_origin(thrillconnect_sim, "https://casino.example") is None
    assert allowed_origin(thrillconnect_sim, "https://www.casino.example.evil") is None


def test_a_regex_rule_must_match_the_whole_origin(thrillconnect_sim: Any) -> None:
    add_rule(thrillconnect_sim, r"https://portal\d\.example", "Regex")

    assert allowed_origin(thrillconnect_sim, "https://portal7.example") is not None
    assert allowed_origin(thrillconnect_sim, "https://portal7.example.evil") is None


def test_a_preflight_of_an_allowed_origin_gets_the_cors_headers(thrillconnect_sim: Any) -> None:
    response = requests.options(
        thrillconnect_sim.url + "/v1/cors",
        headers={
            "Origin": "http://localhost:5000",
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
        timeout=TIMEOUT,
    )

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:5000"
    assert "PUT" in response.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]


def test_a_preflight_of_another_origin_gets_no_cors_headers(thrillconnect_sim: Any) -> None:
    response = requests.options(
        thrillconnect_sim.url + "/v1/cors",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "PUT"},
        timeout=TIMEOUT,
    )

    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Methods" not in response.headers
