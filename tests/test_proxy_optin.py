"""``POST /v1/thrillpots/optin``: who may, with what proof, and what it changes."""

from __future__ import annotations

import pytest

OPTIN = "/v1/thrillpots/optin"
JACKPOT = "/v1/thrillpots/instances/source/egyptian-gold"


@pytest.fixture
def player(make_browser):
    return make_browser().login("player_00001")


def post_optin(browser, body, *, token=None, **kwargs):
    headers = kwargs.pop("headers", {})
    if token is not None:
        headers["X-CSRFToken"] = token
    return browser.api("POST", OPTIN, json=body, headers=headers, **kwargs)


def test_a_player_opts_in_by_source_and_sees_it(player, thrillconnect_sim):
    response = post_optin(
        player,
        {"source_id": "egyptian-gold", "opt_in": True, "contribution_value": 0.3},
        token=player.csrf_token(),
    )

    assert response.status_code == 200
    status = response.json()
    assert status["opted_in"] is True
    assert status["instance_id"] == thrillconnect_sim.instance_ids["progressive"]
    assert status["player_id"] == "player_00001"
    assert status["preferred_contribution_value"] == 0.3
    assert response.headers["Cache-Control"] == "private, no-store"


def test_opting_in_invalidates_the_players_cached_jackpot(player):
    before = player.api("GET", JACKPOT).json()["optin_status"]
    post_optin(player, {"source_id": "egyptian-gold", "opt_in": True}, token=player.csrf_token())

    after = player.api("GET", JACKPOT)

    assert before["opted_in"] is False
    assert after.headers["X-Cache"] == "MISS"
    assert after.json()["optin_status"]["opted_in"] is True


def test_a_player_opts_out_by_instance(player, thrillconnect_sim):
    instance_id = thrillconnect_sim.instance_ids["progressive"]
    token = player.csrf_token()
    post_optin(player, {"instance_id": instance_id, "opt_in": True}, token=token)

    response = post_optin(player, {"instance_id": instance_id, "opt_in": False}, token=token)

    assert response.status_code == 200
    assert response.json()["opted_in"] is False
    assert player.api("GET", JACKPOT).json()["optin_status"]["opted_in"] is False


def test_anonymous_visitors_get_401(browser):
    response = post_optin(browser, {"source_id": "egyptian-gold", "opt_in": True}, token="x")

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_without_the_csrf_header_it_is_403(player):
    response = post_optin(player, {"source_id": "egyptian-gold", "opt_in": True})

    assert response.status_code == 403
    assert "X-CSRFToken" in response.json()["message"]


def test_a_forged_csrf_token_is_403(player):
    token = player.csrf_token()

    response = post_optin(
        player, {"source_id": "egyptian-gold", "opt_in": True}, token=token[:-2] + "xx"
    )

    assert response.status_code == 403


def test_another_players_csrf_token_is_403(player, make_browser):
    other = make_browser().login("player_00003")

    response = post_optin(
        player, {"source_id": "egyptian-gold", "opt_in": True}, token=other.csrf_token()
    )

    assert response.status_code == 403


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://127.0.0.1:1"])
def test_a_foreign_origin_is_403_and_changes_nothing(player, origin):
    response = post_optin(
        player,
        {"source_id": "egyptian-gold", "opt_in": True},
        token=player.csrf_token(),
        headers={"Origin": origin},
    )

    assert response.status_code == 403
    assert player.api("GET", JACKPOT).json()["optin_status"]["opted_in"] is False


def test_configured_origins_replace_the_portals_own(make_live_portal, make_browser):
    portal = make_live_portal(THRILLCONNECT_ALLOWED_ORIGINS=["https://casino.example"])
    player = make_browser(portal).login("player_00001")
    body = {"source_id": "egyptian-gold", "opt_in": True}

    own = post_optin(player, body, token=player.csrf_token())
    listed = post_optin(
        player, body, token=player.csrf_token(), headers={"Origin": "https://casino.example"}
    )

    assert own.status_code == 403
    assert listed.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"source_id": "egyptian-gold", "opt_in": True, "player_id": "player_00002"},
        {"source_id": "egyptian-gold", "instance_id": "x", "opt_in": True},
        {"opt_in": True},
        {"source_id": "egyptian-gold", "opt_in": "yes"},
        {"source_id": "egyptian-gold"},
        {"source_id": "a/b", "opt_in": True},
        {"source_id": "egyptian-gold", "opt_in": True, "contribution_value": -1},
        {"source_id": "egyptian-gold", "opt_in": True, "contribution_value": "NaN"},
        ["not", "an", "object"],
    ],
)
def test_bad_bodies_are_400_and_change_nothing(player, body):
    response = post_optin(player, body, token=player.csrf_token())

    assert response.status_code == 400
    assert set(response.json()) == {"error", "message"}
    assert player.api("GET", JACKPOT).json()["optin_status"]["opted_in"] is False


def test_a_contribution_out_of_range_is_refused_upstream_with_a_clear_400(player):
    response = post_optin(
        player,
        {"source_id": "egyptian-gold", "opt_in": True, "contribution_value": 50},
        token=player.csrf_token(),
    )

    assert response.status_code == 400
    assert response.json()["error"] == "contribution_out_of_range"


def test_an_ineligible_instance_is_403(make_browser, thrillconnect_sim):
    british = make_browser().login("player_00002")

    response = post_optin(
        british,
        {"instance_id": thrillconnect_sim.instance_ids["no_gb"], "opt_in": True},
        token=british.csrf_token(),
    )

    assert response.status_code == 403
    assert response.json()["error"] == "not_eligible"


def test_an_unknown_instance_is_404(player):
    response = post_optin(
        player,
        {"instance_id": "00000000-0000-0000-0000-000000000000", "opt_in": True},
        token=player.csrf_token(),
    )

    assert response.status_code == 404


def test_a_silent_upstream_is_a_504_within_the_optin_timeout(
    make_live_portal, make_browser, thrillconnect_sim
):
    portal = make_live_portal(THRILLCONNECT_OPTIN_TIMEOUT=0.5)
    player = make_browser(portal).login("player_00001")
    thrillconnect_sim.faults(ws="stall")

    response = post_optin(
        player,
        {"instance_id": thrillconnect_sim.instance_ids["progressive"], "opt_in": True},
        token=player.csrf_token(),
    )

    assert response.status_code == 504


def test_a_refused_stream_is_a_502(player, thrillconnect_sim):
    thrillconnect_sim.faults(ws="refuse")

    response = post_optin(
        player,
        {"instance_id": thrillconnect_sim.instance_ids["progressive"], "opt_in": True},
        token=player.csrf_token(),
    )

    assert response.status_code in (502, 503)
    assert thrillconnect_sim.players["player_00001"]["token"] not in response.text


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("[" * 1000 + "]" * 1000, "application/json"),  # RecursionError in the JSON parser
        ('{"a":' * 2000 + "1" + "}" * 2000, "application/json"),
        ('{"source_id": "egyptian-gold", "opt_in": true}', "text/plain"),
        (b'{"source_id": "\xff", "opt_in": true}', "application/json"),  # not UTF-8
        ('{"source_id": "egyptian-gold", "opt_in": NaN}', "application/json"),
        ('{"source_id": "' + "x" * 70_000 + '", "opt_in": true}', "application/json"),
    ],
    ids=["nested-arrays", "nested-objects", "not-json-type", "not-utf8", "nan", "too-large"],
)
def test_unparseable_bodies_are_400_and_not_logged_as_errors(player, caplog, data, content_type):
    response = post_optin(
        player, None, data=data, token=player.csrf_token(), headers={"Content-Type": content_type}
    )

    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert not [record for record in caplog.records if record.levelname in ("ERROR", "CRITICAL")]
    assert player.api("GET", JACKPOT).json()["optin_status"]["opted_in"] is False


def test_a_made_up_field_name_is_not_echoed_in_the_error(player):
    name = "\u0007<b>" + "A" * 3000
    response = post_optin(
        player, {"instance_id": "x", "opt_in": True, name: 1}, token=player.csrf_token()
    )

    assert response.status_code == 400
    message = response.json()["message"]
    assert "AAAA" not in message
    assert "<b>" not in message
    assert len(message) < 200
