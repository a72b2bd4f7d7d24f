"""What stands between a browser and an upstream call: known ids, remembered 404s and each
browser's budget of misses (issue 8: a bot must not make the portal hammer ThrillConnect)."""

from __future__ import annotations

import uuid

import pytest

from flask_thrillconnect.errors import RateLimited, ThrillConnectError
from flask_thrillconnect.upstream_guard import (
    KNOWN_IDS_REFRESH_INTERVAL,
    MISS_BURST,
    MISS_PER_SECOND,
    NOT_FOUND_TTL,
    KnownIds,
    MissLimiter,
    NotFoundMemory,
)

TICKER = "/v1/thrillpots/instances/{}/ticker"
JACKPOT = "/v1/thrillpots/instances/source/{}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def upstream_calls(sim) -> int:
    return sum(sim.stats()["requests"].values())


# -- through the portal, against the simulator -------------------------------------------------


@pytest.mark.parametrize("route", [TICKER, JACKPOT])
def test_random_ids_cost_one_sources_call_and_repeating_them_costs_none(
    browser, thrillconnect_sim, route
):
    ids = [str(uuid.uuid4()) for _ in range(MISS_BURST - 5)]
    before = upstream_calls(thrillconnect_sim)

    first = [browser.api("GET", route.format(id_)).status_code for id_ in ids]
    after_first = upstream_calls(thrillconnect_sim)
    again = [browser.api("GET", route.format(id_)).status_code for id_ in ids]

    assert set(first) == set(again) == {404}
    assert after_first - before <= 2  # the sources list, and at most one forced refresh
    assert upstream_calls(thrillconnect_sim) == after_first


def test_300_random_ids_cost_a_handful_of_upstream_calls_and_no_budget(browser, thrillconnect_sim):
    before = upstream_calls(thrillconnect_sim)

    statuses = [browser.api("GET", TICKER.format(uuid.uuid4())).status_code for _ in range(300)]
    statuses += [browser.api("GET", JACKPOT.format(uuid.uuid4())).status_code for _ in range(300)]

    assert set(statuses) == {404}
    assert upstream_calls(thrillconnect_sim) - before <= 3


def names(count: int) -> list[str]:
    return [f"no-such-name-{uuid.uuid4().hex[:8]}" for _ in range(count)]


def test_misses_past_a_browsers_budget_are_a_json_429_with_retry_after(
    make_browser, thrillconnect_sim
):
    bot, player = make_browser(), make_browser().login("player_00001")
    assert bot.api("GET", "/v1/thrillpots/sources").status_code == 200
    before = upstream_calls(thrillconnect_sim)

    statuses = [
        bot.api("GET", "/v1/thrillpots/sources", params={"name": name}).status_code
        for name in names(MISS_BURST + 40)
    ]
    limited = bot.api("GET", "/v1/thrillpots/sources", params={"name": names(1)[0]})

    assert statuses[: MISS_BURST - 1] == [200] * (MISS_BURST - 1)  # one went on the listing
    assert statuses.count(429) >= 30  # the budget refills slowly meanwhile
    assert upstream_calls(thrillconnect_sim) - before == statuses.count(200)
    assert limited.status_code == 429
    assert limited.json()["error"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    # Cached answers cost no budget, and another browser has a budget of its own.
    assert bot.api("GET", "/v1/thrillpots/sources").status_code == 200
    assert player.api("GET", "/v1/thrillpots/sources", params={"name": "gold"}).status_code == 200


def test_known_ids_are_still_served(browser, thrillconnect_sim):
    for name, instance_id in thrillconnect_sim.instance_ids.items():
        if name == "brand2":  # another brand's instance: not this portal's
            assert browser.api("GET", TICKER.format(instance_id)).status_code == 404
        else:
            assert browser.api("GET", TICKER.format(instance_id)).status_code == 200, name
    assert browser.api("GET", JACKPOT.format("egyptian-gold")).status_code == 200


def test_an_upstream_404_is_remembered(browser, thrillconnect_sim):
    instance_id = thrillconnect_sim.instance_ids["raffle"]
    browser.api("GET", "/v1/thrillpots/sources")  # the brand's ids, before upstream says 404
    thrillconnect_sim.faults(rest={"status": 404})
    try:
        assert browser.api("GET", TICKER.format(instance_id)).status_code == 404
    finally:
        thrillconnect_sim.faults()
    before = upstream_calls(thrillconnect_sim)

    again = browser.api("GET", TICKER.format(instance_id))

    assert again.status_code == 404
    assert again.json()["error"] == "not_found"
    assert upstream_calls(thrillconnect_sim) == before


def test_an_opt_in_for_an_unknown_instance_is_404_without_asking_upstream(
    make_browser, thrillconnect_sim
):
    player = make_browser().login("player_00001")
    player.api("GET", "/v1/thrillpots/sources")
    before = upstream_calls(thrillconnect_sim)

    response = player.api(
        "POST",
        "/v1/thrillpots/optin",
        json={"instance_id": str(uuid.uuid4()), "opt_in": True},
        headers={"X-CSRFToken": player.csrf_token()},
    )

    assert response.status_code == 404
    assert upstream_calls(thrillconnect_sim) - before <= 1  # at most the forced refresh


# -- the parts, on a fake clock --------------------------------------------------------------


def _sources(*pairs: tuple[str, str]) -> bytes:
    import json

    return json.dumps(
        [{"source_id": s, "jackpots": [{"instance_id": i}]} for s, i in pairs]
    ).encode()


def test_known_ids_refresh_once_per_interval_for_new_ids():
    clock = FakeClock()
    upstream = {"body": _sources(("game", "i1"))}
    cached = {"body": upstream["body"], "forced": 0}

    def read(force: bool) -> tuple[bytes, str]:  # the cache: fetches only when forced
        if force:
            cached["body"] = upstream["body"]
            cached["forced"] += 1
        return cached["body"], str(hash(cached["body"]))

    known = KnownIds(read, clock=clock)
    assert known.is_instance("i1")
    assert known.is_source("game")
    assert not known.is_instance("i2")
    assert not known.is_instance("i3")
    assert cached["forced"] == 1

    upstream["body"] = _sources(("game", "i1"), ("new-game", "i2"))
    assert not known.is_instance("i2")  # within the interval: no second refresh
    clock.now += KNOWN_IDS_REFRESH_INTERVAL
    assert known.is_instance("i2")
    assert known.is_source("new-game")
    assert cached["forced"] == 2


def test_known_ids_let_everything_through_without_a_sources_list():
    def read(force: bool) -> tuple[bytes, str]:
        raise ThrillConnectError("upstream down")

    assert KnownIds(read, clock=FakeClock()).is_instance("anything")


def test_a_remembered_404_expires():
    clock = FakeClock()
    memory = NotFoundMemory(clock=clock)
    memory.remember("s:ticker:x")

    assert memory.knows("s:ticker:x")
    assert not memory.knows("s:ticker:y")
    clock.now += NOT_FOUND_TTL
    assert not memory.knows("s:ticker:x")


def test_the_miss_budget_refills_over_time_per_browser():
    clock = FakeClock()
    limiter = MissLimiter(clock=clock)
    for _ in range(MISS_BURST):
        limiter.take("addr:1")

    with pytest.raises(RateLimited) as refused:
        limiter.take("addr:1")
    limiter.take("addr:2")  # another browser's budget is its own
    clock.now += 1 / MISS_PER_SECOND
    limiter.take("addr:1")

    assert refused.value.code == 429
    assert refused.value.retry_after >= 1
