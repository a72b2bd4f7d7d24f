"""CORS administration, ``/health``, ``/health/detail`` and ``/openapi.json``."""

from __future__ import annotations

import threading
import time

import jsonschema
import pytest
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from relay_clients import RelayClient
from websockets.sync.client import connect
from websockets.typing import Origin

from flask_thrillconnect.health import PROBE_INTERVAL, SLOW_AFTER, RestProbe

RULE = {"pattern": "https://*.casino.example", "match_mode": "Wildcard"}


@pytest.fixture
def admin(make_browser):
    browser = make_browser()
    browser.get("/admin/login")
    return browser


def test_only_admins_may_read_cors_rules(browser, thrillconnect_sim):
    response = browser.api("GET", "/v1/cors")

    assert response.status_code == 403
    assert thrillconnect_sim.stats()["requests"]["cors"] == 0


def test_without_a_service_token_cors_admin_is_404(make_live_portal, make_browser):
    portal = make_live_portal(THRILLCONNECT_SERVICE_TOKEN=None)
    browser = make_browser(portal)
    browser.get("/admin/login")

    response = browser.api("GET", "/v1/cors")

    assert response.status_code == 404
    assert "THRILLCONNECT_SERVICE_TOKEN" in response.json()["message"]


def test_an_admin_adds_lists_and_removes_a_rule(admin):
    token = admin.csrf_token()

    added = admin.api(
        "PUT", "/v1/cors", json={"cors_origin_list": [RULE]}, headers={"X-CSRFToken": token}
    )
    listed = admin.api("GET", "/v1/cors")
    removed = admin.api(
        "DELETE",
        "/v1/cors",
        json={"cors_origin_list": [RULE["pattern"]]},
        headers={"X-CSRFToken": token},
    )

    assert added.status_code == 200
    assert RULE in added.json()["cors_origin_list"]
    assert RULE in listed.json()["cors_origin_list"]
    assert removed.json()["removed"] == 1
    assert RULE not in removed.json()["cors_origin_list"]


def test_changing_rules_needs_the_csrf_token(admin, thrillconnect_sim):
    response = admin.api("PUT", "/v1/cors", json={"cors_origin_list": [RULE]})

    assert response.status_code == 403
    assert thrillconnect_sim.stats()["requests"]["cors"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"cors_origin_list": [{"pattern": "https://a.example", "match_mode": "Glob"}]},
        {"cors_origin_list": [{"pattern": "(", "match_mode": "Regex"}]},
        {"cors_origin_list": []},
        {"cors_origin_list": [{"pattern": "https://a.example"}]},
        {"rules": []},
    ],
)
def test_bad_rules_are_400_before_upstream(admin, thrillconnect_sim, body):
    response = admin.api("PUT", "/v1/cors", json=body, headers={"X-CSRFToken": admin.csrf_token()})

    assert response.status_code == 400
    assert thrillconnect_sim.stats()["requests"]["cors"] == 0


def test_health_detail_reports_upstream_and_cache(admin):
    admin.api("GET", "/v1/currencies")

    health = admin.api("GET", "/health/detail").json()

    assert health["status"] == "ok"
    assert health["problems"] == []
    assert health["upstream"]["rest"]["ok"] is True
    assert health["upstream"]["rest"]["version"]
    assert health["cache"]["entries"] == 1
    assert "browsers" in health["relay"]


def test_public_health_answers_the_status_only(browser):
    browser.api("GET", "/v1/currencies")

    health = browser.api("GET", "/health")

    assert health.status_code == 200
    assert health.json() == {"status": "ok"}


@pytest.mark.parametrize("login", [None, "player_00001"])
def test_health_detail_is_for_admins_only(make_browser, login):
    visitor = make_browser()
    if login:
        visitor.login(login)

    response = visitor.api("GET", "/health/detail")

    assert response.status_code == 403
    assert set(response.json()) == {"error", "message"}
    assert "upstream" not in response.text


def test_health_says_down_when_upstream_fails_and_no_stream_is_up(
    browser, admin, thrillconnect_sim
):
    thrillconnect_sim.faults(rest={"status": 503})

    public = browser.api("GET", "/health")
    detail = admin.api("GET", "/health/detail")

    assert public.status_code == 200
    assert public.json() == {"status": "down"}
    assert detail.json()["status"] == "down"
    assert detail.json()["upstream"]["rest"]["ok"] is False
    assert any("REST" in problem for problem in detail.json()["problems"])


def test_health_says_degraded_when_rest_fails_while_the_stream_is_live(
    portal, browser, admin, thrillconnect_sim
):
    url = portal.url.replace("http://", "ws://") + "/thrillconnect/v1/events"
    with connect(url, origin=Origin(portal.url), open_timeout=5, close_timeout=2) as socket:
        client = RelayClient(socket)
        client.subscribe()
        client.connected()
        thrillconnect_sim.faults(rest={"status": 503})

        public = browser.api("GET", "/health").json()
        detail = admin.api("GET", "/health/detail").json()

    assert public == {"status": "degraded"}
    assert detail["upstream"]["stream"]["state"] == "connected"


def test_without_a_service_token_health_says_the_stream_is_disabled(
    make_live_portal, make_browser
):
    portal = make_live_portal(THRILLCONNECT_SERVICE_TOKEN=None)
    admin = make_browser(portal)
    admin.get("/admin/login")

    public = make_browser(portal).api("GET", "/health").json()
    detail = admin.api("GET", "/health/detail").json()

    assert public == {"status": "degraded"}
    assert detail["upstream"]["stream"]["service"] == "disabled: no service token"
    assert any("THRILLCONNECT_SERVICE_TOKEN" in problem for problem in detail["problems"])


@pytest.fixture
def openapi(browser):
    return browser.api("GET", "/openapi.json").json()


def validate(openapi, response, path, method="get"):
    """Check a real response against the document's schema for that route and status."""
    pointer = "/".join(
        part.replace("~", "~0").replace("/", "~1")
        for part in (
            "paths",
            path,
            method,
            "responses",
            str(response.status_code),
            "content",
            "application/json",
            "schema",
        )
    )
    registry = Registry().with_resource("urn:openapi", DRAFT202012.create_resource(openapi))
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"urn:openapi#/{pointer}"}, registry=registry
    )
    validator.validate(response.json())


def test_openapi_lists_every_route(openapi):
    assert openapi["openapi"].startswith("3.")
    assert set(openapi["paths"]) == {
        "/v1/currencies",
        "/v1/thrillpots/sources",
        "/v1/thrillpots/instances/source/{source_id}",
        "/v1/thrillpots/instances/{instance_id}/ticker",
        "/v1/thrillpots/optin",
        "/v1/cors",
        "/health",
        "/health/detail",
    }


def test_real_responses_match_the_openapi_document(openapi, make_browser, thrillconnect_sim):
    player = make_browser().login("player_00001")
    admin = make_browser()
    admin.get("/admin/login")
    instance = thrillconnect_sim.instance_ids["progressive"]
    token = player.csrf_token()
    checks = [
        (player.api("GET", "/v1/currencies"), "/v1/currencies", "get"),
        (
            player.api("GET", "/v1/thrillpots/instances/source/egyptian-gold"),
            "/v1/thrillpots/instances/source/{source_id}",
            "get",
        ),
        (
            player.api("GET", f"/v1/thrillpots/instances/{instance}/ticker"),
            "/v1/thrillpots/instances/{instance_id}/ticker",
            "get",
        ),
        (
            player.api(
                "POST",
                "/v1/thrillpots/optin",
                json={"instance_id": instance, "opt_in": True},
                headers={"X-CSRFToken": token},
            ),
            "/v1/thrillpots/optin",
            "post",
        ),
        (
            player.api("GET", "/v1/thrillpots/instances/source/nope"),
            "/v1/thrillpots/instances/source/{source_id}",
            "get",
        ),
        (
            player.api("GET", "/v1/thrillpots/instances/a%2Fb/ticker"),
            "/v1/thrillpots/instances/{instance_id}/ticker",
            "get",
        ),
        (admin.api("GET", "/v1/cors"), "/v1/cors", "get"),
        (player.api("GET", "/health"), "/health", "get"),
        (player.api("GET", "/health/detail"), "/health/detail", "get"),
        (admin.api("GET", "/health/detail"), "/health/detail", "get"),
        (player.api("GET", "/v1/thrillpots/sources"), "/v1/thrillpots/sources", "get"),
    ]

    for response, path, method in checks:
        validate(openapi, response, path, method)


@pytest.mark.parametrize("path", ["/health", "/health/detail"])
def test_health_answers_at_once_while_upstream_hangs(admin, thrillconnect_sim, path):
    thrillconnect_sim.faults(rest={"hang": True})  # the portal's read timeout is 2 s, retried
    try:
        started = time.monotonic()
        health = admin.api("GET", path)
        took = time.monotonic() - started
    finally:
        thrillconnect_sim.faults()

    assert health.json()["status"] == "down"
    if path == "/health/detail":
        assert health.json()["upstream"]["rest"]["ok"] is False
    assert took < 1.9  # bounded by the first-probe wait (0.8 s), not by upstream


def test_a_probe_that_stops_answering_turns_health_to_not_ok():
    clock = [100.0]
    answers: list[threading.Event] = []

    def probe() -> dict:
        answered = threading.Event()
        answers.append(answered)
        answered.wait(10)
        return {"ok": True}

    rest = RestProbe(probe, clock=lambda: clock[0])
    first = rest.status()  # still running: not ok
    answers[0].set()
    wait_until(lambda: rest.status() == {"ok": True})
    clock[0] += PROBE_INTERVAL  # the next call starts a probe that hangs
    still = rest.status()
    clock[0] += SLOW_AFTER + 0.1
    late = rest.status()
    answers[-1].set()

    assert first["ok"] is False
    assert still == {"ok": True}  # the last answer stands while the new probe is young
    assert late["ok"] is False
    assert "not answered" in late["message"]
    assert len(answers) == 2


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
