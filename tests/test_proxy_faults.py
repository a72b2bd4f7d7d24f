"""The proxy when upstream is slow, failing or gone: stale data or a clear JSON error, in time."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.02):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout} s")


@pytest.fixture
def expiring_portal(make_live_portal):
    """Tickers expire at once, so every request after the first finds a stale entry."""
    return make_live_portal(THRILLCONNECT_CACHE_TTL={"ticker": 0}, THRILLCONNECT_TIMEOUT=(0.5, 0.5))


def ticker_path(sim, role: str = "progressive") -> str:
    return f"/v1/thrillpots/instances/{sim.instance_ids[role]}/ticker"


def test_an_expired_entry_is_served_at_once_while_one_refresh_runs(
    expiring_portal, make_browser, thrillconnect_sim
):
    browser = make_browser(expiring_portal)
    path = ticker_path(thrillconnect_sim)
    warm = browser.api("GET", path)
    thrillconnect_sim.faults(rest={"delay": 1.5})

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda _: browser.api("GET", path), range(10)))
    elapsed = time.perf_counter() - started

    assert {answer.headers["X-Cache"] for answer in answers} == {"UPDATING"}
    assert {answer.content for answer in answers} == {warm.content}
    assert elapsed < 1.5, "stale answers must not wait for the slow upstream"
    assert answers[0].headers["Cache-Control"] == "public, max-age=0"
    wait_for(lambda: thrillconnect_sim.stats()["requests"]["ticker"] == 2)


def test_the_refresh_brings_the_new_value(expiring_portal, make_browser, thrillconnect_sim):
    browser = make_browser(expiring_portal)
    path = ticker_path(thrillconnect_sim)
    old = browser.api("GET", path).json()
    thrillconnect_sim.tick(5)

    def refreshed():
        body = browser.api("GET", path).json()
        return body if body["pots"] != old["pots"] else None

    assert wait_for(refreshed)["pots"][0]["current_value"] != old["pots"][0]["current_value"]


def test_upstream_errors_fall_back_to_stale_data(expiring_portal, make_browser, thrillconnect_sim):
    browser = make_browser(expiring_portal)
    path = ticker_path(thrillconnect_sim)
    good = browser.api("GET", path)
    thrillconnect_sim.faults(rest={"status": 503})

    stale = wait_for(lambda: (r := browser.api("GET", path)).headers["X-Cache"] == "STALE" and r)

    assert stale.status_code == 200
    assert stale.content == good.content


def test_a_down_upstream_is_not_hammered_while_stale_data_stands_in(
    expiring_portal, make_browser, thrillconnect_sim
):
    browser = make_browser(expiring_portal)
    path = ticker_path(thrillconnect_sim)
    browser.api("GET", path)
    thrillconnect_sim.faults(rest={"status": 500})
    wait_for(lambda: browser.api("GET", path).headers["X-Cache"] == "STALE")
    before = thrillconnect_sim.stats()["requests"]["ticker"]

    for _ in range(20):
        assert browser.api("GET", path).status_code == 200

    assert thrillconnect_sim.stats()["requests"]["ticker"] - before <= 2


@pytest.mark.parametrize(("upstream_status", "expected"), [(503, 503), (500, 502), (502, 502)])
def test_nothing_cached_and_upstream_failing_is_a_json_error(
    browser, thrillconnect_sim, upstream_status, expected
):
    thrillconnect_sim.faults(rest={"status": upstream_status})

    response = browser.api("GET", ticker_path(thrillconnect_sim))

    assert response.status_code == expected
    assert set(response.json()) == {"error", "message"}


def test_a_hanging_upstream_is_a_504_within_the_timeout(
    expiring_portal, make_browser, thrillconnect_sim
):
    browser = make_browser(expiring_portal)
    thrillconnect_sim.faults(rest={"hang": True})

    started = time.perf_counter()
    response = browser.api("GET", ticker_path(thrillconnect_sim))
    elapsed = time.perf_counter() - started
    thrillconnect_sim.faults()

    assert response.status_code == 504
    assert response.json()["error"]
    # read timeout 0.5 s, retried on nothing but connect errors and 5xx answers
    assert elapsed < 3


def test_an_unreachable_upstream_is_a_502(make_live_portal, make_browser, thrillconnect_sim):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    portal = make_live_portal(THRILLCONNECT_URL=f"http://127.0.0.1:{closed_port}")

    response = make_browser(portal).api("GET", "/v1/currencies")

    assert response.status_code == 502
    assert response.json()["error"]
    assert "Traceback" not in response.text


def test_upstream_credentials_refused_are_a_502_not_a_401(
    make_live_portal, make_browser, thrillconnect_sim
):
    portal = make_live_portal(THRILLCONNECT_SERVICE_TOKEN="not-a-jwt")
    browser = make_browser(portal)
    browser.get("/admin/login")

    response = browser.api("GET", "/v1/cors")

    assert response.status_code == 502
    assert "not-a-jwt" not in response.text
