"""The simulator's WebSockets: admission, subscriptions, routing, event shapes, requests."""

from __future__ import annotations

import json
import logging
import socket
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from flask_thrillconnect.testing import connections, faults, wire

RECV_TIMEOUT = 5.0
# The conftest's client and factory types (conftest is not imported from tests).
WsClient = Any
WsConnect = Any

ENVELOPE_KEYS = {
    "msg_type",
    "source",
    "msg_name",
    "operator_id",
    "brand_id",
    "player_id",
    "data",
    "timestamp",
}
BRAND1_ACTIVE = ["progressive", "egyptian_fallback", "no_gb", "viking_fallback", "vip", "sitewide"]
BRAND1_ACTIVE_ROLES = [*BRAND1_ACTIVE, "raffle"]
BRAND2_ACTIVE_ROLES = ["vip", "sitewide", "brand2"]


def refused_status(url: str) -> int:
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=RECV_TIMEOUT)
    return refused.value.response.status_code


def updates_of_one_tick(sim: Any, client: WsClient, count: int) -> list[dict[str, Any]]:
    sim.tick()
    return [client.recv() for _ in range(count)]


def opt_in_request(sim: Any, role: str = "progressive", **overrides: Any) -> dict[str, Any]:
    body = {
        "instance_id": sim.instance_ids[role],
        "player_id": "player_00001",
        "brand_id": "thrilltech:brand1",
        "player_country": "MT",
        "opt_in": True,
        "contribution_value": 0.3,
    }
    return {"PlayerOptInRequest": {**body, **overrides}}


def optin_status(sim: Any, source_id: str, player_id: str, **params: str) -> dict[str, Any]:
    player = sim.players[player_id]
    response = requests.get(
        f"{sim.url}/v1/thrillpots/instances/source/{source_id}/brand/{player['brand_id']}",
        params={"player_id": player_id, "country_code": player["country"], **params},
        timeout=(3.05, 10),
    )
    return response.json()["optin_status"]


def error_code(client: WsClient, request_name: str) -> str:
    message = client.recv()
    assert message["msg_type"] == "Error"
    assert message["msg_name"] == request_name
    assert set(message["data"]) == {"code", "message"}
    return message["data"]["code"]


# -- admission ---------------------------------------------------------------------------------
@pytest.mark.parametrize("token_kind", ["missing", "garbage", "expired", "other-secret"], ids=str)
def test_service_upgrade_with_bad_credentials_is_refused_with_401(
    thrillconnect_sim: Any, token_kind: str
) -> None:
    sim = thrillconnect_sim
    query = {
        "missing": "",
        "garbage": "?token=abc",
        "expired": "?token=" + sim.make_service_token(expires_in=-60),
        "other-secret": "?token=" + sim.make_service_token(secret="not the simulator's"),
    }[token_kind]

    assert refused_status(sim.ws_url + "/v1/events/service" + query) == 401


def test_service_upgrade_for_another_operator_is_refused_with_403(thrillconnect_sim: Any) -> None:
    token = thrillconnect_sim.make_service_token(org_id="otherop")

    assert refused_status(f"{thrillconnect_sim.ws_url}/v1/events/service?token={token}") == 403


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/v1/events/thrilltech/brand1?token=nobody&currency=EUR", id="unknown-token"),
        pytest.param("/v1/events/thrilltech/brand1?token=token_00005&currency=EUR", id="brand"),
        pytest.param("/v1/events/otherop/brand1?token=token_00001&currency=EUR", id="operator"),
        pytest.param("/v1/events/thrilltech/brand1?token=token_00001", id="no-currency"),
        pytest.param("/v1/events/thrilltech/brand1?currency=EUR", id="no-token"),
    ],
)
def test_player_upgrade_with_bad_credentials_is_refused_with_401(
    thrillconnect_sim: Any, path: str
) -> None:
    assert refused_status(thrillconnect_sim.ws_url + path) == 401


def test_a_refused_upgrade_is_not_counted_as_a_connection(thrillconnect_sim: Any) -> None:
    refused_status(thrillconnect_sim.ws_url + "/v1/events/service?token=abc")

    assert thrillconnect_sim.stats()["connects"] == {"service": 0, "player": 0}


def test_a_plain_get_on_an_event_path_is_a_json_400(thrillconnect_sim: Any) -> None:
    response = requests.get(thrillconnect_sim.url + "/v1/events/service", timeout=(3.05, 10))

    assert response.status_code == 400
    assert set(response.json()) == {"error", "message"}


def test_no_token_reaches_the_logs(thrillconnect_sim: Any, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="flask_thrillconnect")
    other_operator = thrillconnect_sim.make_service_token(org_id="otherop")
    refused_status(f"{thrillconnect_sim.ws_url}/v1/events/service?token={other_operator}")
    refused_status(f"{thrillconnect_sim.ws_url}/v1/events/thrilltech/brand2?token=token_00001")

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "/v1/events/service" in logged
    assert other_operator not in logged
    assert "token_00001" not in logged


@pytest.mark.parametrize("prefix", ["/v1/events", "/events", "/event"])
def test_every_player_path_spelling_connects(player_ws: WsConnect, prefix: str) -> None:
    client = player_ws(prefix=prefix, subscribe=())

    assert client.sync() == []


@pytest.mark.parametrize("path", ["/v1/events/service", "/events/service"])
def test_both_service_path_spellings_connect(service_ws: WsConnect, path: str) -> None:
    client = service_ws(path=path, subscribe=())

    assert client.sync() == []


def test_a_server_answers_pings(player_ws: WsConnect) -> None:
    client = player_ws(subscribe=())

    assert client.connection.ping().wait(RECV_TIMEOUT)


# -- subscriptions -----------------------------------------------------------------------------
def test_nothing_is_delivered_before_a_subscription(
    thrillconnect_sim: Any, player_ws: WsConnect
) -> None:
    client = player_ws(subscribe=())
    thrillconnect_sim.tick()

    assert client.sync() == []


def test_a_subscription_to_one_event_filters_out_the_others(
    thrillconnect_sim: Any, player_ws: WsConnect
) -> None:
    client = player_ws(subscribe=(("thrillpots", "WinEvent"),))
    thrillconnect_sim.tick()
    thrillconnect_sim.win(thrillconnect_sim.instance_ids["sitewide"])

    assert [message["msg_name"] for message in client.sync()] == ["WinEvent"]


def test_subscriptions_add_up(thrillconnect_sim: Any, player_ws: WsConnect) -> None:
    client = player_ws(subscribe=(("thrillpots", "WinEvent"),))
    client.subscribe(("thrillpots", "JackpotUpdate"))
    thrillconnect_sim.tick()
    thrillconnect_sim.win(thrillconnect_sim.instance_ids["sitewide"])

    names = [message["msg_name"] for message in client.sync()]
    assert names == ["JackpotUpdate"] * len(BRAND1_ACTIVE_ROLES) + ["WinEvent"]


def test_a_subscription_to_another_source_gets_no_thrillpots_events(
    thrillconnect_sim: Any, player_ws: WsConnect
) -> None:
    client = player_ws(subscribe=(("thrillgate", "*"), ("thrilldrops", "*")))
    thrillconnect_sim.tick()

    assert client.sync() == []


def test_a_malformed_subscription_is_answered_with_an_error(player_ws: WsConnect) -> None:
    client = player_ws(subscribe=())
    client.send({"SubscribeRequest": {"events": [{"source": "thrillpots"}]}})

    assert error_code(client, "SubscribeRequest") == "invalid_request"


# -- JackpotUpdate and routing -----------------------------------------------------------------
def test_a_tick_sends_one_jackpot_update_per_active_instance_of_the_brand(
    thrillconnect_sim: Any, player_ws: WsConnect
) -> None:
    client = player_ws()
    thrillconnect_sim.tick()

    updates = client.sync()
    ids = thrillconnect_sim.instance_ids
    assert [update["data"]["id"] for update in updates] == [ids[r] for r in BRAND1_ACTIVE_ROLES]
    assert {update["brand_id"] for update in updates} == {"brand1"}


def test_jackpot_update_has_the_documented_envelope_and_data(
    thrillconnect_sim: Any, player_ws: WsConnect
) -> None:
    client = player_ws()
    update = updates_of_one_tick(thrillconnect_sim, client, 1)[0]

    assert set(update) == ENVELOPE_KEYS
    assert update["msg_type"] == "Event"
    assert update["source"] == "thrillpots"
    assert update["msg_name"] == "JackpotUpdate"
    assert update["operator_id"] == "thrilltech"
    assert update["player_id"] is None
    assert isinstance(update["timestamp"], int)
    data = update["data"]
    assert set(data) == {
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
    assert [set(pot) for pot in data["pots"]] == [{"id", "is_progressive", "current_value"}] * 3
    assert all(isinstance(pot["current_value"], float) for pot in data["pots"])


def test_jackpot_update_carries_the_grown_ticker_values(
    thrillconnect_sim: Any, player_ws: WsConnect
) -> None:
    instance_id = thrillconnect_sim.instance_ids["progressive"]
    ticker_url = f"{thrillconnect_sim.url}/v1/thrillpots/instances/{instance_id}/ticker"
    before = requests.get(ticker_url, timeout=(3.05, 10)).json()["pots"][0]["current_value"]
    client = player_ws()

    update = updates_of_one_tick(thrillconnect_sim, client, 1)[0]
    after = requests.get(ticker_url, timeout=(3.05, 10)).json()["pots"][0]["current_value"]

    assert update["data"]["pots"][0]["current_value"] == float(after)
    assert float(after) > float(before)


def test_a_brand2_player_gets_only_brand2_broadcasts(
    thrillconnect_sim: Any, player_ws: WsConnect
) -> None:
    client = player_ws("player_00005")
    thrillconnect_sim.tick()
    thrillconnect_sim.win(thrillconnect_sim.instance_ids["progressive"])

    messages = client.sync()
    ids = thrillconnect_sim.instance_ids
    assert [message["data"]["id"] for message in messages] == [
        ids[role] for role in BRAND2_ACTIVE_ROLES
    ]
    assert {message["brand_id"] for message in messages} == {"brand2"}


def test_a_service_connection_gets_every_brands_broadcasts(
    thrillconnect_sim: Any, service_ws: WsConnect
) -> None:
    client = service_ws()
    thrillconnect_sim.tick()

    messages = client.sync()
    ids = thrillconnect_sim.instance_ids
    per_brand = {
        brand: [m["data"]["id"] for m in messages if m["brand_id"] == brand]
        for brand in ("brand1", "brand2")
    }
    assert per_brand == {
        "brand1": [ids[role] for role in BRAND1_ACTIVE_ROLES],
        "brand2": [ids[role] for role in BRAND2_ACTIVE_ROLES],
    }


def test_one_event_is_serialized_once_for_all_its_connections(
    thrillconnect_sim: Any, player_ws: WsConnect, service_ws: WsConnect, monkeypatch: Any
) -> None:
    clients = [player_ws(), player_ws("player_00003"), service_ws()]
    serialized: list[str] = []

    def counting_dumps(obj: Any, **kwargs: Any) -> str:
        text = json.dumps(obj, **kwargs)
        serialized.append(text)
        return text

    monkeypatch.setattr(wire, "json", SimpleNamespace(dumps=counting_dumps, loads=json.loads))
    thrillconnect_sim.win(thrillconnect_sim.instance_ids["no_gb"], player_id="player_00003")
    received = [client.recv()["data"] for client in clients]

    win_events = [text for text in serialized if '"WinEvent"' in text]
    assert len(win_events) == 1
    assert received == [json.loads(win_events[0])["data"]] * 3


def test_a_connection_whose_outbox_overflows_is_closed_with_1013(monkeypatch: Any) -> None:
    monkeypatch.setattr(connections, "OUTBOX_LIMIT", 3)
    monkeypatch.setattr(connections, "CLOSE_GRACE_SECONDS", 0.01)
    near, far = socket.socketpair()
    with near, far:
        fake_ws = SimpleNamespace(sock=near, ws=object(), connected=True)
        connection = connections.SimConnection(fake_ws, None, faults.Faults())
        for _ in range(3):
            connection.offer("{}")
        assert connection.close_code is None

        connection.offer("{}")

        assert connection.close_code == 1013


# -- opt-in ------------------------------------------------------------------------------------
def test_opt_in_sends_the_player_an_opt_in_event(
    thrillconnect_sim: Any, player_ws: WsConnect
) -> None:
    client = player_ws()
    client.send(opt_in_request(thrillconnect_sim))

    event = client.recv()
    assert set(event) == ENVELOPE_KEYS
    assert (event["msg_type"], event["source"], event["msg_name"]) == (
        "Event",
        "thrillpots",
        "OptInEvent",
    )
    assert (event["brand_id"], event["player_id"]) == ("brand1", "player_00001")
    assert event["data"] == {
        "instance_id": thrillconnect_sim.instance_ids["progressive"],
        "player_id": "player_00001",
        "ext_player_id": "player_00001",
        "player_brand_id": "thrilltech:brand1",
        "preferred_contribution_value": 0.3,
        "contribution_count": 0,
        "contribution_value": 0.0,
        "opted_in": True,
        "last_updated": event["data"]["last_updated"],
    }
    assert isinstance(event["data"]["last_updated"], int)


def test_opt_in_shows_in_the_rest_optin_status(
    thrillconnect_sim: Any, player_ws: WsConnect
) -> None:
    client = player_ws()
    client.send(opt_in_request(thrillconnect_sim))
    client.recv_named("OptInEvent")

    status = optin_status(thrillconnect_sim, "egyptian-gold", "player_00001")
    assert status["opted_in"] is True
    assert status["preferred_contribution_value"] == 0.3
    assert status["contribution_preferences"] == {"EUR": "0.3"}
    assert status["last_updated"] > 0


def test_opt_out_after_opt_in_shows_opted_out(thrillconnect_sim: Any, player_ws: WsConnect) -> None:
    client = player_ws()
    client.send(opt_in_request(thrillconnect_sim))
    client.recv_named("OptInEvent")
    client.send(opt_in_request(thrillconnect_sim, opt_in=False, contribution_value=None))

    assert client.recv_named("OptInEvent")["data"]["opted_in"] is False
    assert optin_status(thrillconnect_sim, "egyptian-gold", "player_00001")["opted_in"] is False


def test_opt_in_without_a_contribution_takes_the_default(
    thrillconnect_sim: Any, player_ws: WsConnect
) -> None:
    client = player_ws()
    request = opt_in_request(thrillconnect_sim)
    del request["PlayerOptInRequest"]["contribution_value"]
    client.send(request)

    assert client.recv_named("OptInEvent")["data"]["preferred_contribution_value"] == 0.1


def test_opted_in_contributions_grow_with_each_tick(
    thrillconnect_sim: Any, player_ws: WsConnect
) -> None:
    client = player_ws()
    client.send(opt_in_request(thrillconnect_sim))
    client.recv_named("OptInEvent")
    thrillconnect_sim.tick(3)

    status = optin_status(thrillconnect_sim, "egyptian-gold", "player_00001")
    assert status["contribution_count"] == 3
    assert status["contribution_value"] == pytest.approx(0.9)
    assert status["pot_contributions"]["minor"]["contribution_count"] == 3
    assert status["pot_contributions"]["minor"]["contribution_value"] == pytest.approx(0.3)


def test_opt_in_v2_by_source_uses_the_selection_rule(
    thrillconnect_sim: Any, player_ws: WsConnect
) -> None:
    client = player_ws("player_00002")
    client.send(
        {
            "PlayerOptInRequestV2": {
                "target": {"type": "source", "id": "viking-runes"},
                "operator_id": "thrilltech",
                "player": {"id": "player_00002", "country": "GB", "brand_id": "brand1"},
                "opt_in": True,
                "contribution_value": 0.05,
                "opt_linked": True,
            }
        }
    )

    data = client.recv_named("OptInEvent")["data"]
    assert data["instance_id"] == thrillconnect_sim.instance_ids["viking_fallback"]
    assert data["preferred_contribution_value"] == 0.05


def test_opt_in_v2_by_instance(thrillconnect_sim: Any, player_ws: WsConnect) -> None:
    client = player_ws()
    client.send(
        {
            "PlayerOptInRequestV2": {
                "target": {"type": "instance", "id": thrillconnect_sim.instance_ids["vip"]},
                "operator_id": "thrilltech",
                "player": {"id": "player_00001", "country": "MT", "brand_id": "brand1"},
                "opt_in": True,
            }
        }
    )

    assert client.recv_named("OptInEvent")["data"]["opted_in"] is True


def test_a_players_opt_in_event_reaches_neither_other_players_nor_other_brands(
    thrillconnect_sim: Any, player_ws: WsConnect
) -> None:
    opting = player_ws()
    same_brand, other_brand = player_ws("player_00003"), player_ws("player_00005")
    opting.send(opt_in_request(thrillconnect_sim))
    opting.recv_named("OptInEvent")

    assert same_brand.sync() == []
    assert other_brand.sync() == []


def test_a_service_connection_gets_player_targeted_events(
    thrillconnect_sim: Any, player_ws: WsConnect, service_ws: WsConnect
) -> None:
    service = service_ws()
    player_ws().send(opt_in_request(thrillconnect_sim))

    event = service.recv_named("OptInEvent")
    assert (event["brand_id"], event["player_id"]) == ("brand1", "player_00001")


# -- request errors ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("player_id", "overrides", "code"),
    [
        pytest.param("player_00001", {"instance_id": "nope"}, "instance_not_found", id="unknown"),
        pytest.param("player_00001", {"role": "brand2"}, "not_eligible", id="other-brand"),
        pytest.param("player_00002", {"role": "no_gb"}, "not_eligible", id="country"),
        pytest.param("player_00003", {"role": "vip"}, "not_eligible", id="segment"),
        pytest.param(
            "player_00001", {"contribution_value": 0.05}, "contribution_out_of_range", id="low"
        ),
        pytest.param(
            "player_00001", {"contribution_value": 1.01}, "contribution_out_of_range", id="high"
        ),
        pytest.param(
            "player_00001",
            {"role": "viking_fallback", "contribution_value": 0.2},
            "contribution_out_of_range",
            id="percentage",
        ),
        pytest.param(
            "player_00001", {"contribution_value": "a lot"}, "invalid_request", id="not-a-number"
        ),
        pytest.param("player_00001", {"player_id": "player_00003"}, "player_mismatch", id="player"),
        pytest.param(
            "player_00001", {"brand_id": "thrilltech:brand2"}, "player_mismatch", id="brand"
        ),
        pytest.param("player_00001", {"opt_in": "yes"}, "invalid_request", id="opt-in-flag"),
    ],
)
def test_a_refused_opt_in_is_answered_with_an_error_and_the_connection_stays_open(
    thrillconnect_sim: Any,
    player_ws: WsConnect,
    player_id: str,
    overrides: dict[str, Any],
    code: str,
) -> None:
    player = thrillconnect_sim.players[player_id]
    client = player_ws(player_id)
    fields = {"player_id": player_id, "brand_id": f"thrilltech:{player['brand_id']}", **overrides}
    role = fields.pop("role", "progressive")
    client.send(opt_in_request(thrillconnect_sim, role, **fields))

    assert error_code(client, "PlayerOptInRequest") == code
    client.send(opt_in_request(thrillconnect_sim, "sitewide", player_id=player_id))
    assert client.recv_named("OptInEvent")["data"]["opted_in"] is True


def test_an_opt_in_on_a_service_connection_is_an_error(
    thrillconnect_sim: Any, service_ws: WsConnect
) -> None:
    client = service_ws()
    client.send(opt_in_request(thrillconnect_sim))

    assert error_code(client, "PlayerOptInRequest") == "player_connection_required"


def test_opt_in_v2_for_an_unknown_source_is_an_error(player_ws: WsConnect) -> None:
    client = player_ws()
    client.send(
        {
            "PlayerOptInRequestV2": {
                "target": {"type": "source", "id": "no-such-source"},
                "operator_id": "thrilltech",
                "player": {"id": "player_00001", "country": "MT", "brand_id": "brand1"},
                "opt_in": True,
            }
        }
    )

    assert error_code(client, "PlayerOptInRequestV2") == "source_not_found"


def test_opt_in_v2_with_a_bad_target_type_is_an_error(player_ws: WsConnect) -> None:
    client = player_ws()
    client.send(
        {
            "PlayerOptInRequestV2": {
                "target": {"type": "game", "id": "egyptian-gold"},
                "operator_id": "thrilltech",
                "player": {"id": "player_00001", "brand_id": "brand1"},
                "opt_in": True,
            }
        }
    )

    assert error_code(client, "PlayerOptInRequestV2") == "invalid_request"


@pytest.mark.parametrize(
    ("raw", "name", "code"),
    [
        pytest.param("{not json", "InvalidMessage", "malformed_request", id="not-json"),
        pytest.param("[1, 2]", "InvalidMessage", "malformed_request", id="not-an-object"),
        pytest.param('{"A": {}, "B": {}}', "InvalidMessage", "malformed_request", id="two-keys"),
        pytest.param('{"DanceRequest": {}}', "DanceRequest", "unknown_request", id="unknown"),
        pytest.param('{"SubscribeRequest": 3}', "SubscribeRequest", "invalid_request", id="body"),
    ],
)
def test_a_bad_message_is_answered_with_an_error_and_the_connection_stays_open(
    player_ws: WsConnect, raw: str, name: str, code: str
) -> None:
    client = player_ws()
    client.connection.send(raw)

    assert error_code(client, name) == code
    assert client.sync() == []


# -- raffle tickets ----------------------------------------------------------------------------
def raffle_tickets(sim: Any, client: WsClient, player_id: str = "player_00001") -> dict[str, Any]:
    client.send(
        {
            "PlayerRaffleTicketsRequest": {
                "player_id": player_id,
                "instance_id": sim.instance_ids["raffle"],
                "brand_id": "thrilltech:brand1",
            }
        }
    )
    return client.recv_named("PlayerRaffleTicketResponse")


def test_raffle_tickets_are_answered_with_a_message(
    thrillconnect_sim: Any, player_ws: WsConnect
) -> None:
    client = player_ws(subscribe=())
    reply = raffle_tickets(thrillconnect_sim, client)

    assert set(reply) == ENVELOPE_KEYS
    assert (reply["msg_type"], reply["source"], reply["player_id"]) == (
        "Message",
        "thrillpots",
        "player_00001",
    )
    data = reply["data"]
    assert set(data) == {
        "instance_id",
        "brand_id",
        "player_id",
        "ext_player_id",
        "ticket_count",
        "accumulated_cost",
        "timestamp_start",
        "timestamp_end",
    }
    assert (data["ticket_count"], data["accumulated_cost"]) == (0, 0.0)
    assert data["brand_id"] == "thrilltech:brand1"


def test_an_opted_in_player_gains_a_raffle_ticket_per_tick(
    thrillconnect_sim: Any, player_ws: WsConnect
) -> None:
    client = player_ws()
    client.send(opt_in_request(thrillconnect_sim, "raffle", contribution_value=None))
    client.recv_named("OptInEvent")
    thrillconnect_sim.tick(4)

    data = raffle_tickets(thrillconnect_sim, client)["data"]
    assert (data["ticket_count"], data["accumulated_cost"]) == (4, 4.0)


def test_raffle_tickets_of_a_jackpot_that_is_not_a_raffle_is_an_error(
    thrillconnect_sim: Any, player_ws: WsConnect
) -> None:
    client = player_ws(subscribe=())
    client.send(
        {
            "PlayerRaffleTicketsRequest": {
                "player_id": "player_00001",
                "instance_id": thrillconnect_sim.instance_ids["progressive"],
                "brand_id": "thrilltech:brand1",
            }
        }
    )

    assert error_code(client, "PlayerRaffleTicketsRequest") == "not_a_raffle"


def test_raffle_tickets_for_another_player_is_an_error(
    thrillconnect_sim: Any, player_ws: WsConnect
) -> None:
    client = player_ws(subscribe=())
    client.send(
        {
            "PlayerRaffleTicketsRequest": {
                "player_id": "player_00003",
                "instance_id": thrillconnect_sim.instance_ids["raffle"],
                "brand_id": "thrilltech:brand1",
            }
        }
    )

    assert error_code(client, "PlayerRaffleTicketsRequest") == "player_mismatch"
