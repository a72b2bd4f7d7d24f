"""The relay's fan-out hub: encode once, routing, conflation, bounds, resume, wake-ups."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from flask_thrillconnect.relay import (
    BROADCAST,
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_TRY_AGAIN_LATER,
    Connection,
    RelayHub,
    audience_player_id,
    player_audience,
)

# Upper bound for anything a test waits on; a passing test never gets near it.
TIMEOUT = 10.0
ALL_THRILLPOTS = [("thrillpots", "*")]
ALICE = player_audience("player_alice")
BOB = player_audience("player_bob")


def jackpot_update(instance_id: str, value: float) -> dict[str, Any]:
    return {
        "msg_type": "Event",
        "source": "thrillpots",
        "msg_name": "JackpotUpdate",
        "operator_id": "thrilltech",
        "brand_id": "brand1",
        "player_id": None,
        "data": {"id": instance_id, "pots": [{"id": "minor", "current_value": value}]},
        "timestamp": 1715355347345,
    }


def win(number: int, player_id: str | None = None) -> dict[str, Any]:
    return {
        "msg_type": "Event",
        "source": "thrillpots",
        "msg_name": "WinEvent",
        "operator_id": "thrilltech",
        "brand_id": "brand1",
        "player_id": player_id,
        "data": {"instance_id": "inst-1", "win_amount": number},
        "timestamp": 1715355347345,
    }


def event(source: str, msg_name: str, player_id: str | None = None) -> dict[str, Any]:
    return {"msg_type": "Event", "source": source, "msg_name": msg_name, "player_id": player_id}


def received(conn: Connection) -> list[dict[str, Any]]:
    return [json.loads(text) for text in conn.drain(max_items=100_000)]


def events_of(conn: Connection) -> list[dict[str, Any]]:
    """What ``conn`` has waiting, relay statuses left out."""
    return [m for m in received(conn) if m["source"] != "relay"]


def subscribed(
    hub: RelayHub, audiences: list[str], events: list[tuple[str, str]] = ALL_THRILLPOTS
) -> Connection:
    """A connection that subscribed to ``events``, its connect-time status drained."""
    conn = hub.connect(audiences)
    conn.subscribe(events)
    conn.drain(max_items=100_000)
    return conn


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Woken:
    """The hub's ``on_ready``, received as the relay's writer receives it: what was reported,
    in order, and a way for a consumer thread to sleep until its connection is."""

    def __init__(self) -> None:
        self.reported: list[Connection] = []
        self._lock = threading.Lock()
        self._events: dict[Connection, threading.Event] = {}

    def __call__(self, conns: Sequence[Connection]) -> None:
        with self._lock:
            self.reported.extend(conns)
        for conn in conns:
            self._event(conn).set()

    def wait(self, conn: Connection, timeout: float) -> bool:
        """``True`` at once while ``conn`` has messages or must close; else sleep until it is
        reported (``True``) or ``timeout`` passes (``False``)."""
        if conn.pending or conn.close_code is not None:
            return True
        event = self._event(conn)
        if not event.wait(timeout):
            return False
        # Cleared after waking: the caller drains next, so no report is lost.
        event.clear()
        return True

    def _event(self, conn: Connection) -> threading.Event:
        with self._lock:
            return self._events.setdefault(conn, threading.Event())


@pytest.fixture
def woken() -> Woken:
    return Woken()


@pytest.fixture
def hub(woken: Woken) -> RelayHub:
    return RelayHub(on_ready=woken)


# -- encoding ----------------------------------------------------------------------------


def test_an_event_is_encoded_once_and_the_same_text_object_reaches_every_connection(
    hub: RelayHub,
) -> None:
    connections = [subscribed(hub, [BROADCAST]) for _ in range(50)]

    hub.publish(win(1), BROADCAST)

    texts = [conn.drain() for conn in connections]
    assert all(len(batch) == 1 for batch in texts)
    first = texts[0][0]
    assert all(batch[0] is first for batch in texts)


def test_the_envelope_is_delivered_with_seq_as_its_first_key(hub: RelayHub) -> None:
    conn = subscribed(hub, [BROADCAST])

    seq = hub.publish(win(7), BROADCAST)

    (message,) = received(conn)
    assert next(iter(message)) == "seq"
    assert message == {"seq": seq, **win(7)}


def test_seq_increases_across_publishes_and_overrides_an_upstream_seq(hub: RelayHub) -> None:
    conn = subscribed(hub, [BROADCAST])

    hub.publish({**win(1), "seq": 999_999}, BROADCAST)
    hub.publish(win(2), BROADCAST)

    seqs = [m["seq"] for m in received(conn)]
    assert seqs[0] < seqs[1] < 999_999


def test_an_envelope_that_cannot_be_encoded_is_rejected_without_consuming_a_seq(
    hub: RelayHub,
) -> None:
    with pytest.raises(TypeError):
        hub.publish({**win(1), "data": object()}, BROADCAST)
    assert hub.last_seq == 0


# -- subscriptions and routing -------------------------------------------------------------


def test_a_connection_receives_only_the_event_types_it_subscribed_to(hub: RelayHub) -> None:
    conn = subscribed(hub, [BROADCAST], [("thrillpots", "WinEvent")])

    hub.publish(jackpot_update("inst-1", 10.0), BROADCAST)
    hub.publish(win(1), BROADCAST)
    hub.publish(event("thrilldrops", "CampaignDropWin"), BROADCAST)

    assert [m["msg_name"] for m in events_of(conn)] == ["WinEvent"]


def test_a_wildcard_subscription_covers_every_event_of_its_source_only(hub: RelayHub) -> None:
    conn = subscribed(hub, [BROADCAST], [("thrillgate", "*")])

    hub.publish(event("thrillgate", "PlayerBonusAdded"), BROADCAST)
    hub.publish(event("thrillgate", "PlayerBonusExpired"), BROADCAST)
    hub.publish(win(1), BROADCAST)

    assert [m["msg_name"] for m in events_of(conn)] == ["PlayerBonusAdded", "PlayerBonusExpired"]


def test_subscriptions_add_up(hub: RelayHub) -> None:
    conn = subscribed(hub, [BROADCAST], [("thrillpots", "WinEvent")])
    conn.subscribe([("thrilldrops", "CampaignDropWin")])

    hub.publish(win(1), BROADCAST)
    hub.publish(event("thrilldrops", "CampaignDropWin"), BROADCAST)

    assert [m["msg_name"] for m in events_of(conn)] == ["WinEvent", "CampaignDropWin"]
    assert conn.subscriptions == {("thrillpots", "WinEvent"), ("thrilldrops", "CampaignDropWin")}


def test_nothing_but_the_connect_status_reaches_a_connection_before_it_subscribes(
    hub: RelayHub,
) -> None:
    conn = hub.connect([BROADCAST])

    hub.publish(win(1), BROADCAST)
    hub.publish({"msg_type": "Message", "msg_name": "PlayerRaffleTicketResponse"}, BROADCAST)

    assert [m["msg_name"] for m in received(conn)] == ["RelayStatus"]


def test_answers_that_are_not_events_bypass_the_subscription_filter(hub: RelayHub) -> None:
    conn = subscribed(hub, [BROADCAST, ALICE], [("thrillpots", "WinEvent")])
    answer = {
        "msg_type": "Error",
        "msg_name": "PlayerOptInRequest",
        "player_id": "player_alice",
        "data": {"code": "not_found", "message": "no such instance"},
    }

    hub.publish(answer, ALICE)

    assert [m["msg_type"] for m in received(conn)] == ["Error"]


def test_a_player_receives_broadcasts_and_its_own_events_but_never_another_players(
    hub: RelayHub,
) -> None:
    alice = subscribed(hub, [BROADCAST, ALICE])
    bob = subscribed(hub, [BROADCAST, BOB])

    hub.publish(win(1), BROADCAST)
    hub.publish(event("thrillpots", "OptInEvent", "player_alice"), ALICE)
    hub.publish(event("thrillpots", "OptInEvent", "player_bob"), BOB)

    assert [(m["msg_name"], m["player_id"]) for m in events_of(alice)] == [
        ("WinEvent", None),
        ("OptInEvent", "player_alice"),
    ]
    assert [(m["msg_name"], m["player_id"]) for m in events_of(bob)] == [
        ("WinEvent", None),
        ("OptInEvent", "player_bob"),
    ]


def test_an_anonymous_visitor_receives_broadcasts_only(hub: RelayHub) -> None:
    anonymous = subscribed(hub, [BROADCAST])

    hub.publish(event("thrillpots", "OptInEvent", "player_alice"), ALICE)
    hub.publish(win(1), BROADCAST)

    assert [m["msg_name"] for m in events_of(anonymous)] == ["WinEvent"]


def test_audience_names_round_trip_and_bad_ones_are_refused(hub: RelayHub) -> None:
    assert audience_player_id(player_audience("p1")) == "p1"
    assert audience_player_id(BROADCAST) is None
    with pytest.raises(ValueError, match="not an audience"):
        hub.connect(["everyone"])
    with pytest.raises(ValueError, match="not an audience"):
        hub.publish(win(1), "player:")


def test_malformed_or_too_many_subscriptions_are_refused() -> None:
    hub = RelayHub(max_subscriptions=2)
    conn = hub.connect([BROADCAST])

    with pytest.raises(ValueError, match="pair"):
        conn.subscribe([("thrillpots",)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="at most 2"):
        conn.subscribe([("thrillpots", "A"), ("thrillpots", "B"), ("thrillpots", "C")])
    assert conn.subscriptions == frozenset()


# -- conflation, ordering and bounds -------------------------------------------------------


def test_a_lagging_connection_gets_only_the_newest_update_of_an_instance(hub: RelayHub) -> None:
    conn = subscribed(hub, [BROADCAST])

    for value in range(100):
        hub.publish(jackpot_update("inst-1", float(value)), BROADCAST)

    (message,) = received(conn)
    assert message["data"]["pots"][0]["current_value"] == 99.0
    assert hub.stats().conflated == 99


def test_updates_of_different_instances_do_not_conflate(hub: RelayHub) -> None:
    conn = subscribed(hub, [BROADCAST])

    hub.publish(jackpot_update("inst-1", 1.0), BROADCAST)
    hub.publish(jackpot_update("inst-2", 2.0), BROADCAST)

    assert [m["data"]["id"] for m in received(conn)] == ["inst-1", "inst-2"]


def test_a_conflated_update_moves_behind_the_messages_published_before_it(
    hub: RelayHub,
) -> None:
    conn = subscribed(hub, [BROADCAST])

    hub.publish(jackpot_update("inst-1", 1.0), BROADCAST)
    hub.publish(jackpot_update("inst-2", 5.0), BROADCAST)
    hub.publish(win(1), BROADCAST)
    hub.publish(jackpot_update("inst-1", 0.5), BROADCAST)  # reseeded after the win

    messages = received(conn)
    assert [(m["msg_name"], m["data"].get("id")) for m in messages] == [
        ("JackpotUpdate", "inst-2"),
        ("WinEvent", None),
        ("JackpotUpdate", "inst-1"),
    ]
    assert messages[2]["data"]["pots"][0]["current_value"] == 0.5
    seqs = [m["seq"] for m in messages]
    assert seqs == sorted(seqs)


def test_drain_takes_at_most_max_items_oldest_first(hub: RelayHub) -> None:
    conn = subscribed(hub, [BROADCAST])
    for number in range(5):
        hub.publish(win(number), BROADCAST)

    first = [json.loads(t)["data"]["win_amount"] for t in conn.drain(max_items=2)]
    rest = [json.loads(t)["data"]["win_amount"] for t in conn.drain(max_items=100)]

    assert (first, rest) == ([0, 1], [2, 3, 4])
    assert conn.pending == 0


def test_a_lagging_connection_below_the_bound_loses_no_win() -> None:
    hub = RelayHub(outbox_limit=20)
    conn = subscribed(hub, [BROADCAST])

    for number in range(20):
        hub.publish(win(number), BROADCAST)
        hub.publish(jackpot_update("inst-1", float(number)), BROADCAST)

    wins = [m["data"]["win_amount"] for m in received(conn) if m["msg_name"] == "WinEvent"]
    assert wins == list(range(20))
    assert conn.close_code is None


def test_overflowing_the_outbox_marks_the_connection_for_closing_with_1013(
    woken: Woken,
) -> None:
    hub = RelayHub(outbox_limit=20, on_ready=woken)
    lagging = subscribed(hub, [BROADCAST])
    keeping_up = subscribed(hub, [BROADCAST])

    for number in range(21):
        hub.publish(win(number), BROADCAST)
        keeping_up.drain()

    assert lagging.close_code == CLOSE_TRY_AGAIN_LATER
    assert lagging.drain() == []
    assert woken.wait(lagging, timeout=0) is True
    assert keeping_up.close_code is None
    assert hub.stats().overflow_closes == 1


def test_a_connection_marked_for_closing_receives_nothing_more() -> None:
    hub = RelayHub(outbox_limit=1)
    conn = subscribed(hub, [BROADCAST])
    hub.publish(win(1), BROADCAST)
    hub.publish(win(2), BROADCAST)

    hub.publish(win(3), BROADCAST)
    hub.publish(jackpot_update("inst-1", 1.0), BROADCAST)

    assert conn.pending == 0
    assert conn.close_code == CLOSE_TRY_AGAIN_LATER


# -- snapshot and since resume -------------------------------------------------------------


def test_a_new_connection_gets_the_latest_update_of_every_instance_when_it_subscribes(
    hub: RelayHub,
) -> None:
    hub.publish(jackpot_update("inst-1", 1.0), BROADCAST)
    hub.publish(jackpot_update("inst-2", 2.0), BROADCAST)
    hub.publish(jackpot_update("inst-1", 3.0), BROADCAST)
    conn = hub.connect([BROADCAST])

    conn.subscribe(ALL_THRILLPOTS)

    updates = [(m["data"]["id"], m["data"]["pots"][0]["current_value"]) for m in events_of(conn)]
    assert updates == [("inst-2", 2.0), ("inst-1", 3.0)]


def test_the_snapshot_respects_the_subscriptions(hub: RelayHub) -> None:
    hub.publish(jackpot_update("inst-1", 1.0), BROADCAST)
    conn = subscribed(hub, [BROADCAST], [("thrillpots", "WinEvent")])
    assert events_of(conn) == []

    conn.subscribe([("thrillpots", "JackpotUpdate")])

    assert [m["msg_name"] for m in events_of(conn)] == ["JackpotUpdate"]


def test_since_replays_exactly_the_missed_wins_in_order_then_the_snapshot(
    hub: RelayHub,
) -> None:
    before = subscribed(hub, [BROADCAST])
    hub.publish(win(1), BROADCAST)
    last_seen = received(before)[-1]["seq"]
    hub.disconnect(before)
    for number in (2, 3, 4):
        hub.publish(win(number), BROADCAST)
    hub.publish(jackpot_update("inst-1", 10.0), BROADCAST)
    hub.publish(jackpot_update("inst-2", 20.0), BROADCAST)

    conn = hub.connect([BROADCAST], since=last_seen, relay_id=hub.relay_id)
    conn.subscribe(ALL_THRILLPOTS)

    status, *messages = received(conn)
    assert conn.resumed is True
    assert status["msg_name"] == "RelayStatus"
    assert status["data"]["resumed"] is True
    assert [
        (m["msg_name"], m["data"].get("win_amount", m["data"].get("id"))) for m in messages
    ] == [
        ("WinEvent", 2),
        ("WinEvent", 3),
        ("WinEvent", 4),
        ("JackpotUpdate", "inst-1"),
        ("JackpotUpdate", "inst-2"),
    ]
    seqs = [m["seq"] for m in messages]
    assert seqs == sorted(seqs)
    assert seqs[0] > last_seen


def test_since_replay_includes_the_players_own_missed_events(hub: RelayHub) -> None:
    last_seen = hub.publish(win(1), BROADCAST)
    assert last_seen is not None
    hub.publish(event("thrillpots", "OptInEvent", "player_alice"), ALICE)
    hub.publish(event("thrillpots", "OptInEvent", "player_bob"), BOB)
    hub.publish(win(2), BROADCAST)

    conn = hub.connect([BROADCAST, ALICE], since=last_seen, relay_id=hub.relay_id)
    conn.subscribe(ALL_THRILLPOTS)

    assert [(m["msg_name"], m["player_id"]) for m in events_of(conn)] == [
        ("OptInEvent", "player_alice"),
        ("WinEvent", None),
    ]


def test_since_replay_respects_the_subscriptions(hub: RelayHub) -> None:
    last_seen = hub.publish(win(1), BROADCAST)
    hub.publish(event("thrilldrops", "CampaignDropWin"), BROADCAST)
    hub.publish(win(2), BROADCAST)

    conn = hub.connect([BROADCAST], since=last_seen, relay_id=hub.relay_id)
    conn.subscribe([("thrillpots", "WinEvent")])

    assert [m["data"]["win_amount"] for m in events_of(conn)] == [2]


def test_since_older_than_the_ring_gives_the_snapshot_and_a_not_resumed_status() -> None:
    hub = RelayHub(replay_limit=3)
    last_seen = hub.publish(win(0), BROADCAST)
    for number in range(1, 6):
        hub.publish(win(number), BROADCAST)
    hub.publish(jackpot_update("inst-1", 10.0), BROADCAST)

    conn = hub.connect([BROADCAST], since=last_seen, relay_id=hub.relay_id)
    conn.subscribe(ALL_THRILLPOTS)

    status, *messages = received(conn)
    assert conn.resumed is False
    assert status["msg_name"] == "RelayStatus"
    assert status["data"] == {
        "upstream": "reconnecting",
        "relay_id": hub.relay_id,
        "resumed": False,
    }
    assert [m["msg_name"] for m in messages] == ["JackpotUpdate"]


def test_since_older_than_the_ring_age_is_not_resumed() -> None:
    clock = FakeClock()
    hub = RelayHub(replay_max_age=120.0, clock=clock)
    last_seen = hub.publish(win(1), BROADCAST)
    hub.publish(win(2), BROADCAST)
    clock.now += 121

    conn = hub.connect([BROADCAST], since=last_seen, relay_id=hub.relay_id)

    assert conn.resumed is False


def test_since_from_another_relay_is_not_resumed(hub: RelayHub) -> None:
    last_seen = hub.publish(win(1), BROADCAST)

    conn = hub.connect([BROADCAST], since=last_seen, relay_id="another-process")

    assert conn.resumed is False
    assert received(conn)[0]["data"]["resumed"] is False


def test_since_in_the_future_is_not_resumed(hub: RelayHub) -> None:
    hub.publish(win(1), BROADCAST)

    conn = hub.connect([BROADCAST], since=50, relay_id=hub.relay_id)

    assert conn.resumed is False
    assert conn.start_seq == hub.last_seq


def test_a_forgotten_player_audience_cannot_be_resumed() -> None:
    hub = RelayHub(max_audiences=2)
    last_seen = hub.publish(win(1), BROADCAST)
    hub.publish(event("thrillpots", "OptInEvent", "player_alice"), ALICE)

    hub.publish(event("thrillpots", "OptInEvent", "player_bob"), BOB)  # forgets Alice's

    conn = hub.connect([BROADCAST, ALICE], since=last_seen, relay_id=hub.relay_id)
    assert conn.resumed is False


def test_events_published_between_connect_and_subscribe_are_not_lost(hub: RelayHub) -> None:
    conn = hub.connect([BROADCAST])
    hub.publish(win(1), BROADCAST)

    conn.subscribe(ALL_THRILLPOTS)
    hub.publish(win(2), BROADCAST)

    assert [m["data"]["win_amount"] for m in events_of(conn)] == [1, 2]


def test_a_fresh_connection_gets_the_relay_id_and_no_resumed_flag(hub: RelayHub) -> None:
    conn = hub.connect([BROADCAST])

    (status,) = received(conn)

    assert status == {
        "seq": 0,
        "msg_type": "Message",
        "source": "relay",
        "msg_name": "RelayStatus",
        "data": {"upstream": "reconnecting", "relay_id": hub.relay_id},
    }
    assert conn.resumed is None


def test_a_connection_that_subscribes_after_its_start_left_the_ring_is_told_of_the_gap() -> None:
    clock = FakeClock()
    hub = RelayHub(replay_max_age=120.0, clock=clock)
    conn = hub.connect([BROADCAST])
    conn.drain()
    hub.publish(win(1), BROADCAST)
    clock.now += 121
    hub.publish(win(2), BROADCAST)

    conn.subscribe(ALL_THRILLPOTS)

    messages = received(conn)
    assert messages[0]["msg_name"] == "RelayStatus"
    assert messages[0]["data"]["resumed"] is False
    assert [m["data"]["win_amount"] for m in messages[1:]] == [2]


# -- relay status --------------------------------------------------------------------------


def test_relay_status_is_delivered_to_every_connection_only_on_change(hub: RelayHub) -> None:
    anonymous = subscribed(hub, [BROADCAST], [("thrillpots", "WinEvent")])
    player = subscribed(hub, [BROADCAST, ALICE], [("thrilldrops", "*")])

    seen: dict[str, list[str]] = {"anonymous": [], "player": []}

    def drain_statuses() -> None:
        for name, conn in (("anonymous", anonymous), ("player", player)):
            for message in received(conn):
                assert (message["source"], message["msg_name"]) == ("relay", "RelayStatus")
                seen[name].append(message["data"]["upstream"])

    assert hub.set_upstream_status("connected") is True
    drain_statuses()
    assert hub.set_upstream_status("connected") is False
    drain_statuses()
    assert hub.set_upstream_status("reconnecting") is True
    drain_statuses()

    assert seen == {
        "anonymous": ["connected", "reconnecting"],
        "player": ["connected", "reconnecting"],
    }


def test_a_waiting_status_is_replaced_by_a_newer_one(hub: RelayHub) -> None:
    conn = subscribed(hub, [BROADCAST])

    hub.set_upstream_status("connected")
    hub.set_upstream_status("reconnecting")

    assert [m["data"]["upstream"] for m in received(conn)] == ["reconnecting"]


def test_a_new_connection_learns_the_current_upstream_status_on_connect(hub: RelayHub) -> None:
    hub.set_upstream_status("connected")

    conn = hub.connect([BROADCAST])

    (status,) = received(conn)
    assert status["data"]["upstream"] == "connected"
    assert hub.upstream_status == "connected"


def test_a_status_change_before_the_first_subscription_arrives_with_it(hub: RelayHub) -> None:
    conn = hub.connect([BROADCAST])
    conn.drain()
    hub.set_upstream_status("connected")
    assert conn.pending == 0

    conn.subscribe(ALL_THRILLPOTS)

    assert [m["data"]["upstream"] for m in received(conn)] == ["connected"]


def test_an_unknown_upstream_status_is_refused(hub: RelayHub) -> None:
    with pytest.raises(ValueError, match="upstream status"):
        hub.set_upstream_status("sleeping")  # type: ignore[arg-type]


# -- waking the sender -----------------------------------------------------------------------


def test_wait_times_out_without_work(hub: RelayHub, woken: Woken) -> None:
    conn = subscribed(hub, [BROADCAST])
    woken.wait(conn, timeout=0)  # the connect-time and subscription reports

    started = time.monotonic()
    assert woken.wait(conn, timeout=0.05) is False
    assert time.monotonic() - started < TIMEOUT


def test_wait_returns_at_once_while_the_outbox_holds_messages(hub: RelayHub, woken: Woken) -> None:
    conn = subscribed(hub, [BROADCAST])
    hub.publish(win(1), BROADCAST)

    assert woken.wait(conn, timeout=TIMEOUT) is True
    assert woken.wait(conn, timeout=TIMEOUT) is True  # still not drained


def test_a_publish_wakes_a_blocked_sender(hub: RelayHub, woken: Woken) -> None:
    conn = subscribed(hub, [BROADCAST])
    woken.wait(conn, timeout=0)
    woke = threading.Event()

    def sender() -> None:
        if woken.wait(conn, timeout=TIMEOUT):
            woke.set()

    thread = threading.Thread(target=sender)
    thread.start()
    hub.publish(win(1), BROADCAST)
    thread.join(TIMEOUT)

    assert woke.is_set()


def test_close_wakes_a_blocked_sender_within_a_bound(hub: RelayHub, woken: Woken) -> None:
    conn = subscribed(hub, [BROADCAST])
    woken.wait(conn, timeout=0)
    waited: list[float] = []

    def sender() -> None:
        started = time.monotonic()
        woken.wait(conn, timeout=TIMEOUT)
        waited.append(time.monotonic() - started)

    thread = threading.Thread(target=sender)
    thread.start()
    hub.close()
    thread.join(TIMEOUT)

    assert not thread.is_alive()
    assert waited[0] < TIMEOUT / 2
    assert conn.close_code == CLOSE_GOING_AWAY


def test_a_closed_hub_ignores_publishes_and_answers_closed_connections(hub: RelayHub) -> None:
    hub.close()

    assert hub.publish(win(1), BROADCAST) is None
    conn = hub.connect([BROADCAST])
    assert conn.close_code == CLOSE_GOING_AWAY
    assert hub.stats().connections == 0


def test_the_consumer_is_told_when_an_outbox_gains_work_not_for_every_message(
    hub: RelayHub, woken: Woken
) -> None:
    conn = hub.connect([BROADCAST])
    assert woken.reported == [conn]  # its connect-time status waits
    conn.subscribe(ALL_THRILLPOTS)
    conn.drain()
    woken.reported.clear()

    hub.publish(win(1), BROADCAST)
    hub.publish(win(2), BROADCAST)
    assert woken.reported == [conn]

    conn.drain()
    hub.publish(win(3), BROADCAST)
    assert woken.reported == [conn, conn]


def test_one_connection_can_be_asked_to_close_with_its_own_code(
    hub: RelayHub, woken: Woken
) -> None:
    flooding = subscribed(hub, [BROADCAST])
    other = subscribed(hub, [BROADCAST])
    hub.publish(win(1), BROADCAST)
    woken.reported.clear()

    hub.close_connection(flooding, 1008)
    hub.close_connection(flooding, 1000)  # the first code wins
    hub.publish(win(2), BROADCAST)

    assert flooding.close_code == 1008
    assert flooding.drain() == []
    assert woken.reported == [flooding]
    assert [m["data"]["win_amount"] for m in events_of(other)] == [1, 2]
    with pytest.raises(ValueError, match="close code"):
        hub.close_connection(other, 999)


# -- connections, callbacks and figures ------------------------------------------------------


def test_a_disconnected_connection_receives_nothing_more(hub: RelayHub) -> None:
    conn = subscribed(hub, [BROADCAST])

    hub.disconnect(conn)
    hub.disconnect(conn)  # idempotent
    hub.publish(win(1), BROADCAST)

    assert conn.pending == 0
    assert conn.close_code == CLOSE_NORMAL
    assert hub.stats().connections == 0


def test_player_audience_callbacks_report_the_first_and_the_last_connection() -> None:
    calls: list[tuple[str, bool]] = []
    hub = RelayHub(on_player_audience=lambda player_id, active: calls.append((player_id, active)))

    first = hub.connect([BROADCAST, ALICE])
    second = hub.connect([BROADCAST, ALICE])
    anonymous = hub.connect([BROADCAST])
    assert calls == [("player_alice", True)]
    assert hub.audience_has_connections(ALICE)

    hub.disconnect(first)
    hub.disconnect(anonymous)
    assert calls == [("player_alice", True)]

    hub.disconnect(second)
    assert calls == [("player_alice", True), ("player_alice", False)]
    assert not hub.audience_has_connections(ALICE)


def test_a_failing_audience_callback_does_not_break_the_hub() -> None:
    def fail(player_id: str, active: bool) -> None:
        raise RuntimeError("supervisor down")

    hub = RelayHub(on_player_audience=fail)

    conn = hub.connect([BROADCAST, ALICE])
    hub.disconnect(conn)

    assert hub.stats().connections == 0


def test_stats_count_connections_and_traffic(hub: RelayHub) -> None:
    anonymous = subscribed(hub, [BROADCAST])
    subscribed(hub, [BROADCAST, ALICE])
    subscribed(hub, [BROADCAST, ALICE])
    hub.connect([BROADCAST, BOB])
    before = hub.stats()

    hub.publish(win(1), BROADCAST)
    hub.publish(jackpot_update("inst-1", 1.0), BROADCAST)
    hub.publish(jackpot_update("inst-1", 2.0), BROADCAST)
    hub.disconnect(anonymous)

    stats = hub.stats()
    assert (stats.connections, stats.player_connections, stats.player_audiences) == (3, 3, 2)
    assert stats.subscribed_connections == 2
    assert stats.published == 3
    assert stats.deliveries - before.deliveries == 3 * 3  # three subscribed connections
    assert stats.conflated == 3
    assert stats.seq == 3
    assert hub.audience_connections(ALICE) == 2


# -- concurrency -----------------------------------------------------------------------------


def test_many_publishers_and_200_draining_connections_deliver_every_win_exactly_once(
    woken: Woken,
) -> None:
    hub = RelayHub(on_ready=woken)
    publishers, wins_each, connection_count = 4, 50, 200
    expected = {(p, n) for p in range(publishers) for n in range(wins_each)}
    connections = [subscribed(hub, [BROADCAST]) for _ in range(connection_count)]
    results: dict[int, list[dict[str, Any]]] = {}
    deadline = time.monotonic() + TIMEOUT

    def drain_until_done(index: int, conn: Connection) -> None:
        got: list[dict[str, Any]] = []
        wins = 0
        while wins < len(expected) and time.monotonic() < deadline:
            woken.wait(conn, timeout=0.5)
            for text in conn.drain(max_items=50):
                message = json.loads(text)
                got.append(message)
                wins += message["msg_name"] == "WinEvent"
        results[index] = got

    def publish(publisher: int) -> None:
        for number in range(wins_each):
            hub.publish({**win(number), "data": {"by": publisher, "n": number}}, BROADCAST)
            hub.publish(jackpot_update(f"inst-{publisher}", float(number)), BROADCAST)

    drainers = [
        threading.Thread(target=drain_until_done, args=(i, conn))
        for i, conn in enumerate(connections)
    ]
    for thread in drainers:
        thread.start()
    feeders = [threading.Thread(target=publish, args=(p,)) for p in range(publishers)]
    for thread in feeders:
        thread.start()
    for thread in feeders + drainers:
        thread.join(max(0.0, deadline - time.monotonic()) + 1)

    assert not any(thread.is_alive() for thread in feeders + drainers)
    for got in results.values():
        wins = [(m["data"]["by"], m["data"]["n"]) for m in got if m["msg_name"] == "WinEvent"]
        assert len(wins) == len(expected)
        assert set(wins) == expected
        seqs = [m["seq"] for m in got]
        assert seqs == sorted(seqs)
    assert len(results) == connection_count
    assert all(conn.close_code is None for conn in connections)


# -- external seq (cluster mode) ------------------------------------------------------------


def test_an_external_seq_is_used_and_an_older_one_ignored(hub: RelayHub) -> None:
    hub.start_epoch("epoch-one", 1000)
    conn = subscribed(hub, [BROADCAST])

    assert hub.publish(win(1), BROADCAST, seq=1005) == 1005
    assert hub.publish(win(2), BROADCAST, seq=1005) is None
    assert hub.publish(win(3), BROADCAST, seq=1003) is None
    assert [(m["seq"], m["data"]["win_amount"]) for m in events_of(conn)] == [(1005, 1)]
    assert hub.relay_id == "epoch-one"


def test_a_new_epoch_closes_connections_with_1012_and_clears_the_rings(hub: RelayHub) -> None:
    hub.publish(win(1), BROADCAST)
    old_id = hub.relay_id
    conn = subscribed(hub, [BROADCAST])

    hub.start_epoch("epoch-two", 5000)
    fresh = hub.connect([BROADCAST], since=1, relay_id=old_id)
    fresh.subscribe(ALL_THRILLPOTS)

    assert conn.close_code == 1012
    assert fresh.resumed is False
    assert events_of(fresh) == []
    assert hub.last_seq == 5000


def test_own_messages_take_the_last_seq_so_no_stream_entry_is_skipped(hub: RelayHub) -> None:
    hub.start_epoch("epoch", 100)
    conn = subscribed(hub, [BROADCAST])
    hub.publish(win(1), BROADCAST, seq=101)
    hub.set_upstream_status("connected")
    hub.publish(win(2), BROADCAST)  # the hub's own message: seq 101 again, not 102
    hub.publish(win(3), BROADCAST, seq=102)

    messages = received(conn)
    assert [m["seq"] for m in messages] == [101, 101, 101, 102]
    assert [m["data"].get("win_amount") for m in messages if m["source"] != "relay"] == [1, 2, 3]


@pytest.mark.parametrize("epoch", [None, "epoch"])
def test_a_status_change_between_connect_and_subscribe_still_reaches_the_browser(
    hub: RelayHub, epoch: str | None
) -> None:
    # In cluster mode (an external epoch) the status takes the last seq: the start itself.
    if epoch is not None:
        hub.start_epoch(epoch, 100)
    conn = hub.connect([BROADCAST])  # told "reconnecting" at connect
    hub.set_upstream_status("connected")
    conn.subscribe(ALL_THRILLPOTS)

    statuses = [m["data"]["upstream"] for m in received(conn) if m["msg_name"] == "RelayStatus"]
    assert statuses == ["reconnecting", "connected"]


def test_a_status_that_came_back_before_the_subscription_is_not_repeated(hub: RelayHub) -> None:
    hub.start_epoch("epoch", 100)
    hub.set_upstream_status("connected")
    conn = hub.connect([BROADCAST])  # told "connected"
    hub.set_upstream_status("reconnecting")
    hub.set_upstream_status("connected")
    conn.subscribe(ALL_THRILLPOTS)

    statuses = [m["data"]["upstream"] for m in received(conn) if m["msg_name"] == "RelayStatus"]
    assert statuses == ["connected"]


def test_a_backfill_completes_a_resume_the_rings_cannot_serve(hub: RelayHub) -> None:
    hub.start_epoch("epoch", 100)
    hub.publish(win(3), BROADCAST, seq=103)
    backfill = (
        102,
        [
            (101, win(1), BROADCAST),
            (101, win(99, "player_bob"), BOB),  # not this browser's audience
            (102, win(2), BROADCAST),
        ],
    )

    assert not hub.can_resume([BROADCAST], 90, "epoch")
    conn = hub.connect([BROADCAST], since=90, relay_id="epoch", backfill=backfill)
    conn.subscribe(ALL_THRILLPOTS)

    status, *messages = received(conn)
    assert status["data"]["resumed"] is True
    assert [(m["seq"], m["data"]["win_amount"]) for m in messages] == [(101, 1), (102, 2), (103, 3)]


def test_a_backfill_that_does_not_reach_the_rings_is_refused(hub: RelayHub) -> None:
    hub.start_epoch("epoch", 100)
    backfill = (99, [(95, win(1), BROADCAST)])

    conn = hub.connect([BROADCAST], since=90, relay_id="epoch", backfill=backfill)

    assert conn.resumed is False
