"""The simulator's control routes (tick, win, stats, faults, players) and its life cycle."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from flask_thrillconnect.testing import Simulator, SimulatorControlError
from flask_thrillconnect.testing import faults as sim_faults

TIMEOUT = (3.05, 10)
RECV_TIMEOUT = 5.0
WIN_KEYS = {
    "brand_id",
    "player_id",
    "source_id",
    "instance_id",
    "jackpot_name",
    "jackpot_currency",
    "timestamp",
    "win_pot_id",
    "win_amount",
    "currency_multipliers",
    "win_withheld",
    "community_winners",
    "games_in_jackpot",
    "seed",
    "metadata",
}
RAFFLE_WIN_KEYS = {
    "brand_id",
    "instance_id",
    "jackpot_name",
    "jackpot_currency",
    "currency_multipliers",
    "timestamp",
    "winners",
    "win_withheld",
}


def post(sim: Any, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
    return requests.post(sim.url + path, json=body, timeout=TIMEOUT, **kwargs)


def ticker(sim: Any, role: str) -> dict[str, Any]:
    url = f"{sim.url}/v1/thrillpots/instances/{sim.instance_ids[role]}/ticker"
    return requests.get(url, timeout=TIMEOUT).json()


def pot_values(sim: Any, role: str) -> list[str]:
    return [pot["current_value"] for pot in ticker(sim, role)["pots"]]


def assert_json_error(response: requests.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error", "message"}
    if code is not None:
        assert body["error"] == code


def wait_until(condition: Any, timeout: float = RECV_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def opt_in(sim: Any, client: Any, player_id: str, role: str) -> None:
    player = sim.players[player_id]
    client.send(
        {
            "PlayerOptInRequest": {
                "instance_id": sim.instance_ids[role],
                "player_id": player_id,
                "brand_id": f"thrilltech:{player['brand_id']}",
                "opt_in": True,
            }
        }
    )
    assert client.recv_named("OptInEvent")["data"]["opted_in"] is True


@pytest.fixture
def own_simulator() -> Iterator[Any]:
    """``own_simulator(**options)``: simulators with other options, stopped after the test."""
    started: list[Simulator] = []

    def start(**options: Any) -> Simulator:
        simulator = Simulator(**options).start()
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        simulator.stop()


# -- tick --------------------------------------------------------------------------------------
def test_tick_grows_every_progressive_pot(thrillconnect_sim: Any) -> None:
    before = pot_values(thrillconnect_sim, "progressive")
    response = post(thrillconnect_sim, "/_sim/tick", {"count": 2})

    assert response.json() == {"ticks": 2}
    after = pot_values(thrillconnect_sim, "progressive")
    assert all(float(a) > float(b) for a, b in zip(after, before, strict=True))


def test_tick_without_a_body_ticks_once(thrillconnect_sim: Any) -> None:
    response = requests.post(thrillconnect_sim.url + "/_sim/tick", timeout=TIMEOUT)

    assert response.json() == {"ticks": 1}


def test_pending_and_non_progressive_pots_do_not_grow(thrillconnect_sim: Any) -> None:
    pending, raffle = (
        pot_values(thrillconnect_sim, "pending"),
        pot_values(thrillconnect_sim, "raffle"),
    )
    thrillconnect_sim.tick(3)

    assert pot_values(thrillconnect_sim, "pending") == pending
    assert pot_values(thrillconnect_sim, "raffle") == raffle


@pytest.mark.parametrize(
    "body", [{"count": 0}, {"count": 1001}, {"count": "3"}, {"count": True}, {"n": 1}, [1]]
)
def test_tick_refuses_bad_input_with_a_400(thrillconnect_sim: Any, body: Any) -> None:
    assert_json_error(post(thrillconnect_sim, "/_sim/tick", body), 400)


def test_the_same_seed_gives_the_same_world(own_simulator: Any) -> None:
    first, second = own_simulator(seed=7), own_simulator(seed=7)
    first.tick(5)
    second.tick(5)

    assert first.instance_ids == second.instance_ids
    assert pot_values(first, "progressive") == pot_values(second, "progressive")


def test_another_seed_gives_other_instance_ids(own_simulator: Any) -> None:
    assert own_simulator(seed=1).instance_ids != own_simulator(seed=2).instance_ids


def test_automatic_ticks_follow_the_interval(own_simulator: Any) -> None:
    simulator = own_simulator(tick_interval=0.2)
    first = pot_values(simulator, "sitewide")

    wait_until(lambda: pot_values(simulator, "sitewide") != first)


def test_win_chance_one_makes_every_jackpot_win_on_a_tick(own_simulator: Any) -> None:
    simulator = own_simulator(win_chance=1.0)
    token = simulator.service_token
    with connect(f"{simulator.ws_url}/v1/events/service?token={token}") as service:
        service.send(
            '{"SubscribeRequest": {"events": [{"source": "thrillpots", "event_type": "WinEvent"}]}}'
        )
        service.send('{"Barrier": {}}')
        assert '"Barrier"' in service.recv(timeout=RECV_TIMEOUT)
        simulator.tick()

        # vip and sitewide allow both brands: one WinEvent per brand.
        won = [_data(service.recv(timeout=RECV_TIMEOUT))["instance_id"] for _ in range(9)]
    ids = simulator.instance_ids
    roles = ["progressive", "egyptian_fallback", "no_gb", "viking_fallback"]
    roles += ["vip", "vip", "sitewide", "sitewide", "brand2"]
    assert won == [ids[role] for role in roles]


def _data(text: str | bytes) -> dict[str, Any]:
    return json.loads(text)["data"]


# -- win ---------------------------------------------------------------------------------------
def test_win_answers_the_full_win_event_data(thrillconnect_sim: Any) -> None:
    instance_id = thrillconnect_sim.instance_ids["progressive"]
    mega = ticker(thrillconnect_sim, "progressive")["pots"][2]["current_value"]

    data = thrillconnect_sim.win(instance_id, "mega", "player_00001")

    assert set(data) == WIN_KEYS
    assert data["instance_id"] == instance_id
    assert (data["player_id"], data["brand_id"]) == ("player_00001", "thrilltech:brand1")
    assert (data["win_pot_id"], data["win_amount"]) == ("mega", float(mega))
    assert data["source_id"] == "egyptian-gold"
    assert data["jackpot_name"] == "Egyptian Gold Jackpot"
    assert data["jackpot_currency"] == "EUR"
    assert data["seed"] == 10000.0
    assert data["win_withheld"] is False
    assert data["games_in_jackpot"] == ["egyptian-gold"]
    multipliers = data["currency_multipliers"]
    assert set(multipliers) == {"brand_id", "base_currency", "multipliers"}
    assert multipliers["base_currency"] == "EUR"
    assert multipliers["multipliers"]["SEK"] == 11.6761


def test_a_win_reseeds_the_pot(thrillconnect_sim: Any) -> None:
    thrillconnect_sim.tick()
    thrillconnect_sim.win(thrillconnect_sim.instance_ids["sitewide"], "major")

    assert ticker(thrillconnect_sim, "sitewide")["pots"][1]["current_value"] == "100.00"


def test_a_win_counts_a_new_pot_instance(thrillconnect_sim: Any) -> None:
    jackpot_url = (
        f"{thrillconnect_sim.url}/v1/thrillpots/instances/source/sitewide-casino/brand/brand1"
    )
    thrillconnect_sim.win(thrillconnect_sim.instance_ids["sitewide"], "minor")

    pots = requests.get(jackpot_url, timeout=TIMEOUT).json()["pots"]
    assert [pot["instance_count"] for pot in pots] == [2, 1]


def test_a_win_is_broadcast_to_players_and_the_service(
    thrillconnect_sim: Any, player_ws: Any, service_ws: Any
) -> None:
    player, other_player, service = player_ws(), player_ws("player_00004"), service_ws()
    data = thrillconnect_sim.win(
        thrillconnect_sim.instance_ids["progressive"], "minor", "player_00003"
    )

    for client in (player, other_player, service):
        event = client.recv_named("WinEvent")
        assert (event["brand_id"], event["player_id"]) == ("brand1", None)
        assert event["data"] == data


def test_community_winners_share_the_community_part_in_their_currency(
    thrillconnect_sim: Any, player_ws: Any
) -> None:
    sim = thrillconnect_sim
    for player_id in ("player_00001", "player_00004"):
        opt_in(sim, player_ws(player_id), player_id, "progressive")
    minor = Decimal(ticker(sim, "progressive")["pots"][0]["current_value"])

    data = sim.win(sim.instance_ids["progressive"], "minor", "player_00003")

    cent = Decimal("0.01")
    share = ((minor * Decimal("0.1")).quantize(cent) / 2).quantize(cent)
    in_sek = (share * Decimal("11.6761")).quantize(cent)
    assert data["community_winners"] == [
        {
            "player_id": "player_00001",
            "brand_id": "thrilltech:brand1",
            "currency": "EUR",
            "win_amount": float(share),
        },
        {
            "player_id": "player_00004",
            "brand_id": "thrilltech:brand1",
            "currency": "SEK",
            "win_amount": float(in_sek),
        },
    ]


def test_a_community_payout_error_reaches_only_the_service(
    thrillconnect_sim: Any, player_ws: Any, service_ws: Any
) -> None:
    player, service = player_ws(), service_ws()
    thrillconnect_sim.win(thrillconnect_sim.instance_ids["progressive"], "minor", "player_00003")

    error = service.recv_named("CommunityPayoutErrorEvent")
    assert error["data"]["reason"] == "no_community_members"
    assert [m["msg_name"] for m in player.sync()] == ["WinEvent"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"instance_id": "nope"}, "instance_not_found"),
        ({"instance_id": "ROLE:progressive", "pot_id": "giga"}, "pot_not_found"),
        ({"instance_id": "ROLE:progressive", "player_id": "nobody"}, "player_not_found"),
    ],
)
def test_win_of_an_unknown_thing_is_a_404(
    thrillconnect_sim: Any, body: dict[str, str], code: str
) -> None:
    body = {
        key: thrillconnect_sim.instance_ids[value[5:]] if value.startswith("ROLE:") else value
        for key, value in body.items()
    }

    assert_json_error(post(thrillconnect_sim, "/_sim/win", body), 404, code)


@pytest.mark.parametrize("body", [{}, {"instance_id": 5}, {"instance_id": "x", "extra": 1}, None])
def test_win_refuses_bad_input_with_a_400(thrillconnect_sim: Any, body: Any) -> None:
    assert_json_error(post(thrillconnect_sim, "/_sim/win", body), 400)


def test_win_of_a_pending_jackpot_is_a_409(thrillconnect_sim: Any) -> None:
    response = post(
        thrillconnect_sim, "/_sim/win", {"instance_id": thrillconnect_sim.instance_ids["pending"]}
    )

    assert_json_error(response, 409, "instance_not_active")


def test_the_win_wrapper_raises_on_a_refusal(thrillconnect_sim: Any) -> None:
    with pytest.raises(SimulatorControlError) as refused:
        thrillconnect_sim.win("nope")

    assert (refused.value.status, refused.value.error) == (404, "instance_not_found")


# -- raffle ------------------------------------------------------------------------------------
def test_a_raffle_win_draws_the_given_player(thrillconnect_sim: Any, player_ws: Any) -> None:
    client = player_ws()
    data = thrillconnect_sim.win(thrillconnect_sim.instance_ids["raffle"], player_id="player_00004")

    assert set(data) == RAFFLE_WIN_KEYS
    assert data["winners"] == [
        {
            "player_id": "player_00004",
            "brand_id": "thrilltech:brand1",
            "currency": "SEK",
            "win_amount": 5838.05,
        }
    ]
    assert data["win_withheld"] is False
    assert client.recv_named("RaffleWinEvent")["data"] == data


def test_a_raffle_draw_starts_a_new_period(thrillconnect_sim: Any) -> None:
    before = ticker(thrillconnect_sim, "raffle")
    thrillconnect_sim.win(thrillconnect_sim.instance_ids["raffle"], player_id="player_00001")
    after = ticker(thrillconnect_sim, "raffle")

    assert after["timestamp_start"] >= before["timestamp_start"]
    assert after["timestamp_end"] > after["timestamp_start"]
    assert after["timestamp_end"] >= before["timestamp_end"]


def test_the_raffle_draws_a_ticket_holder_after_twenty_ticks(
    thrillconnect_sim: Any, player_ws: Any
) -> None:
    client = player_ws()
    opt_in(thrillconnect_sim, client, "player_00001", "raffle")
    thrillconnect_sim.tick(19)
    assert [m for m in client.sync() if m["msg_name"] == "RaffleWinEvent"] == []

    thrillconnect_sim.tick()

    winners = client.recv_named("RaffleWinEvent")["data"]["winners"]
    assert [winner["player_id"] for winner in winners] == ["player_00001"]


def test_a_raffle_without_tickets_is_withheld_and_the_service_is_told(
    thrillconnect_sim: Any, service_ws: Any
) -> None:
    service = service_ws()
    data = thrillconnect_sim.win(thrillconnect_sim.instance_ids["raffle"])

    assert (data["winners"], data["win_withheld"]) == ([], True)
    assert service.recv_named("RafflePayoutErrorEvent")["data"]["reason"] == "no_tickets"


# -- stats -------------------------------------------------------------------------------------
def test_stats_count_rest_requests_by_kind(thrillconnect_sim: Any) -> None:
    sim = thrillconnect_sim
    requests.get(sim.url + "/v1/currencies", timeout=TIMEOUT)
    requests.get(sim.url + "/v1/currencies", timeout=TIMEOUT)
    requests.get(sim.url + "/v1/thrillpots/sources", timeout=TIMEOUT)
    requests.get(
        sim.url + "/v1/thrillpots/instances/source/egyptian-gold/brand/brand1", timeout=TIMEOUT
    )
    requests.get(sim.url + "/v1/thrillpots/instances/nope/ticker", timeout=TIMEOUT)
    requests.get(sim.url + "/v1/cors", timeout=TIMEOUT)
    requests.get(sim.url + "/health", timeout=TIMEOUT)

    assert sim.stats()["requests"] == {
        "currencies": 2,
        "sources": 1,
        "jackpot": 1,
        "ticker": 1,
        "cors": 1,
        "health": 1,
    }


def test_stats_count_open_and_accepted_websockets(
    thrillconnect_sim: Any, player_ws: Any, service_ws: Any
) -> None:
    player_ws(subscribe=())
    service_ws(subscribe=())
    second = player_ws("player_00005", subscribe=())

    stats = thrillconnect_sim.stats()
    assert stats["connections"] == {"service": 1, "player": 2}
    assert stats["connects"] == {"service": 1, "player": 2}

    second.connection.close()
    wait_until(lambda: thrillconnect_sim.stats()["connections"]["player"] == 1)
    assert thrillconnect_sim.stats()["connects"]["player"] == 2


# -- REST faults -------------------------------------------------------------------------------
def test_a_status_fault_answers_that_status_with_a_json_error(thrillconnect_sim: Any) -> None:
    thrillconnect_sim.faults(rest={"status": 503})

    assert_json_error(
        requests.get(thrillconnect_sim.url + "/v1/currencies", timeout=TIMEOUT),
        503,
        "service_unavailable",
    )
    assert_json_error(requests.get(thrillconnect_sim.url + "/health", timeout=TIMEOUT), 503)


def test_faulted_requests_are_counted(thrillconnect_sim: Any) -> None:
    thrillconnect_sim.faults(rest={"status": 500})
    requests.get(thrillconnect_sim.url + "/v1/currencies", timeout=TIMEOUT)

    assert thrillconnect_sim.stats()["requests"]["currencies"] == 1


def test_rest_faults_never_touch_the_control_routes(thrillconnect_sim: Any) -> None:
    thrillconnect_sim.faults(rest={"status": 503})

    assert requests.get(thrillconnect_sim.url + "/_sim/stats", timeout=TIMEOUT).status_code == 200
    thrillconnect_sim.tick()


def test_clearing_faults_serves_normally_again(thrillconnect_sim: Any) -> None:
    thrillconnect_sim.faults(rest={"status": 503})
    thrillconnect_sim.faults()

    assert (
        requests.get(thrillconnect_sim.url + "/v1/currencies", timeout=TIMEOUT).status_code == 200
    )


def test_a_delay_fault_delays_then_serves(thrillconnect_sim: Any) -> None:
    thrillconnect_sim.faults(rest={"delay": 0.5})
    started = time.monotonic()
    response = requests.get(thrillconnect_sim.url + "/v1/currencies", timeout=TIMEOUT)

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.5


def test_a_hang_fault_holds_requests_until_cleared(thrillconnect_sim: Any) -> None:
    thrillconnect_sim.faults(rest={"hang": True})
    answers: list[int] = []
    waiter = threading.Thread(
        target=lambda: answers.append(
            requests.get(thrillconnect_sim.url + "/v1/currencies", timeout=TIMEOUT).status_code
        )
    )
    waiter.start()
    wait_until(lambda: thrillconnect_sim.stats()["requests"]["currencies"] == 1)
    assert answers == []

    thrillconnect_sim.faults()
    waiter.join(RECV_TIMEOUT)
    assert answers == [200]


def test_a_hang_fault_gives_up_after_its_limit_with_a_504(
    thrillconnect_sim: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr(sim_faults, "MAX_HANG_SECONDS", 0.2)
    thrillconnect_sim.faults(rest={"hang": True})

    response = requests.get(thrillconnect_sim.url + "/v1/currencies", timeout=TIMEOUT)

    assert_json_error(response, 504, "gateway_timeout")


def test_a_hang_fault_client_times_out(thrillconnect_sim: Any) -> None:
    thrillconnect_sim.faults(rest={"hang": True})

    with pytest.raises(requests.ReadTimeout):
        requests.get(thrillconnect_sim.url + "/v1/currencies", timeout=(3.05, 0.3))


def test_stop_releases_hanging_requests_promptly(own_simulator: Any) -> None:
    simulator = own_simulator()
    simulator.faults(rest={"hang": True})
    answers: list[int] = []
    waiter = threading.Thread(
        target=lambda: answers.append(
            requests.get(simulator.url + "/v1/currencies", timeout=TIMEOUT).status_code
        )
    )
    waiter.start()
    wait_until(lambda: simulator.stats()["requests"]["currencies"] == 1)

    started = time.monotonic()
    simulator.stop()
    waiter.join(RECV_TIMEOUT)

    assert answers == [503]
    assert time.monotonic() - started < 3


# -- fault bodies ------------------------------------------------------------------------------
def faults(sim: Any, body: Any) -> requests.Response:
    return post(sim, "/_sim/faults", body)


def test_a_partial_fault_body_leaves_the_other_key_unchanged(thrillconnect_sim: Any) -> None:
    faults(thrillconnect_sim, {"rest": {"status": 502}})
    answer = faults(thrillconnect_sim, {"ws": "refuse"}).json()

    assert answer == {"rest": {"status": 502}, "ws": "refuse"}
    assert faults(thrillconnect_sim, {}).json() == answer


def test_null_for_both_clears_every_fault(thrillconnect_sim: Any) -> None:
    faults(thrillconnect_sim, {"rest": {"delay": 1}, "ws": "stall"})

    assert faults(thrillconnect_sim, {"rest": None, "ws": None}).json() == {
        "rest": None,
        "ws": None,
    }
    got = requests.get(thrillconnect_sim.url + "/_sim/faults", timeout=TIMEOUT).json()
    assert got == {"rest": None, "ws": None}


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"http": None},
        {"rest": {"status": 200}},
        {"rest": {"status": 600}},
        {"rest": {"status": "503"}},
        {"rest": {"delay": 0}},
        {"rest": {"delay": 61}},
        {"rest": {"hang": False}},
        {"rest": {"status": 503, "delay": 1}},
        {"rest": "503"},
        {"ws": "explode"},
    ],
)
def test_a_bad_fault_body_is_a_400_and_changes_nothing(thrillconnect_sim: Any, body: Any) -> None:
    assert_json_error(faults(thrillconnect_sim, body), 400)
    assert faults(thrillconnect_sim, {}).json() == {"rest": None, "ws": None}


# -- WebSocket faults --------------------------------------------------------------------------
def test_drop_closes_every_websocket_with_1012_once(
    thrillconnect_sim: Any, player_ws: Any, service_ws: Any
) -> None:
    clients = [player_ws(), service_ws()]
    answer = faults(thrillconnect_sim, {"ws": "drop"}).json()

    assert answer["ws"] is None
    for client in clients:
        with pytest.raises(ConnectionClosed) as closed:
            client.connection.recv(timeout=RECV_TIMEOUT)
        assert closed.value.rcvd.code == 1012
    assert thrillconnect_sim.stats()["connections"] == {"service": 0, "player": 0}
    assert player_ws().sync() == []


def test_refuse_answers_new_upgrades_with_503_until_cleared(
    thrillconnect_sim: Any, player_ws: Any
) -> None:
    already_open = player_ws()
    thrillconnect_sim.faults(ws="refuse")
    url = f"{thrillconnect_sim.ws_url}/v1/events/thrilltech/brand1?token=token_00001&currency=EUR"

    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=RECV_TIMEOUT)
    assert refused.value.response.status_code == 503
    assert already_open.sync() == []

    thrillconnect_sim.faults()
    assert player_ws().sync() == []


def test_stall_stops_events_and_pongs_until_cleared(thrillconnect_sim: Any, player_ws: Any) -> None:
    client = player_ws()
    thrillconnect_sim.faults(ws="stall")
    thrillconnect_sim.tick()
    pong = client.connection.ping()

    assert not pong.wait(0.5)
    with pytest.raises(TimeoutError):
        client.connection.recv(timeout=0.3)

    thrillconnect_sim.faults()
    thrillconnect_sim.tick()
    assert client.recv_named("JackpotUpdate")["msg_name"] == "JackpotUpdate"
    assert client.connection.ping().wait(RECV_TIMEOUT)


# -- players -----------------------------------------------------------------------------------
def test_an_added_player_can_connect_with_its_token(thrillconnect_sim: Any, player_ws: Any) -> None:
    thrillconnect_sim.add_player("player_99999", "token_99999", "PLN", "PL", ("vip",), "brand2")

    assert thrillconnect_sim.players["player_99999"] == {
        "id": "player_99999",
        "token": "token_99999",
        "currency": "PLN",
        "country": "PL",
        "segments": ["vip"],
        "operator_id": "thrilltech",
        "brand_id": "brand2",
    }
    client = player_ws("player_99999")
    thrillconnect_sim.tick()
    assert {m["brand_id"] for m in client.sync()} == {"brand2"}


def test_the_player_route_answers_the_profile(thrillconnect_sim: Any) -> None:
    body = {"id": "p1", "token": "t1", "currency": "EUR", "country": "MT", "segments": []}
    response = post(thrillconnect_sim, "/_sim/players", body)

    assert response.status_code == 201
    assert response.json()["brand_id"] == "brand1"


@pytest.mark.parametrize(
    "changes",
    [
        {"id": ""},
        {"id": "a/b"},
        {"token": "has space"},
        {"currency": "XXX"},
        {"currency": ["EUR"]},
        {"country": "gb"},
        {"segments": "vip"},
        {"segments": ["bad segment"]},
        {"brand_id": "brand3"},
        {"extra": True},
        {"id": None},
    ],
)
def test_the_player_route_refuses_bad_fields_with_a_400(
    thrillconnect_sim: Any, changes: dict[str, Any]
) -> None:
    body = {
        "id": "p1",
        "token": "t1",
        "currency": "EUR",
        "country": "MT",
        "segments": [],
        **changes,
    }

    assert_json_error(post(thrillconnect_sim, "/_sim/players", body), 400)


def test_a_token_of_another_player_is_a_409(thrillconnect_sim: Any) -> None:
    body = {"id": "p1", "token": "token_00001", "currency": "EUR", "country": "MT"}

    assert_json_error(post(thrillconnect_sim, "/_sim/players", body), 409, "token_in_use")


# -- life cycle --------------------------------------------------------------------------------
def test_stop_closes_open_websockets_and_returns_promptly(own_simulator: Any) -> None:
    simulator = own_simulator()
    url = f"{simulator.ws_url}/v1/events/thrilltech/brand1?token=token_00001&currency=EUR"
    with connect(url, open_timeout=RECV_TIMEOUT) as client:
        wait_until(lambda: simulator.stats()["connections"]["player"] == 1)
        started = time.monotonic()
        simulator.stop()

        assert time.monotonic() - started < 3
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=RECV_TIMEOUT)
    assert closed.value.rcvd.code == 1001


def test_stop_leaves_no_simulator_thread_behind(own_simulator: Any) -> None:
    before = set(threading.enumerate())
    simulator = own_simulator(tick_interval=0.05)
    url = f"{simulator.ws_url}/v1/events/thrilltech/brand1?token=token_00001&currency=EUR"
    with connect(url, open_timeout=RECV_TIMEOUT):
        wait_until(lambda: simulator.stats()["connections"]["player"] == 1)
        simulator.stop()

    wait_until(lambda: set(threading.enumerate()) <= before)
