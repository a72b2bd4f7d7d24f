"""The page script's JavaScript API in Chromium: events on ``document`` and the methods of
``window.ThrillConnect``, against real servers (the simulator, a portal on 127.0.0.1).

Two portals: the example portal (widgets, strict CSP, its own celebration built on the API),
and a small test portal whose pages carry the script with no widget (``/page/api``) or a win
feed only (``/page/feed``). Every tab records each ``thrillconnect:*`` event from the start
(an init script), and the WebSockets it opens. Every wait is bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import requests
from flask import render_template
from jinja2 import DictLoader
from playwright.sync_api import expect
from portal_fixtures import Browser, LiveServer, make_portal
from test_js_types import DETAIL_FIELDS

from flask_thrillconnect.relay import BROADCAST

if TYPE_CHECKING:
    from browser_fixtures import ExamplePortal, Tab

pytest_plugins = ("browser_fixtures",)

OpenTab = Callable[..., "Tab"]

#: Records every thrillconnect:* event (its detail as JSON) before any page script runs;
#: ``window.__tcCancelMine = true`` makes it cancel the viewer's own wins.
RECORDER = """
(() => {
  window.__tc = [];
  for (const name of ["update", "win", "raffle-win", "optin", "status", "event"]) {
    document.addEventListener("thrillconnect:" + name, (event) => {
      if (window.__tcCancelMine && event.detail.mine) {
        event.preventDefault();
      }
      window.__tc.push({
        name: name,
        cancelable: event.cancelable,
        detail: JSON.parse(JSON.stringify(event.detail)),
      });
    });
  }
})();
"""

API_PAGE = """<!doctype html>
<html lang="en"><head><title>API only</title>{{ thrillconnect.assets() }}</head>
<body><h1>No widget here</h1></body></html>
"""

FEED_PAGE = """<!doctype html>
<html lang="en"><head><title>Feed</title>{{ thrillconnect.assets() }}</head>
<body>{% from "thrillconnect/widgets.html" import win_feed %}{{ win_feed(limit=5) }}</body></html>
"""

PROGRESSIVE = "progressive"
GBP_PLAYER = "player_00002"
EUR_PLAYER = "player_00001"
USD_PLAYER = "player_00003"
MJS = "/thrillconnect/static/thrillconnect/thrillconnect.mjs"


# -- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture
def api_portal(thrillconnect_sim: Any) -> Iterator[ExamplePortal]:
    """A portal whose ``/page/<name>`` pages are ``api`` (no widget) and ``feed``."""
    from browser_fixtures import ExamplePortal

    app = make_portal(thrillconnect_sim)
    app.jinja_loader = DictLoader({"api.html": API_PAGE, "feed.html": FEED_PAGE})

    @app.get("/page/<name>")
    def page(name: str) -> str:
        return render_template(f"{name}.html")

    @app.get("/favicon.ico")
    def favicon() -> tuple[str, int]:
        return "", 204  # Chromium asks on every page; a 404 would count as a console error

    server = LiveServer(app).start()
    yield ExamplePortal(server, thrillconnect_sim)
    server.stop()
    app.extensions["thrillconnect"].close()


def recording(tab: Tab, *, cancel_mine: bool = False) -> Tab:
    """Record the tab's thrillconnect:* events and its WebSockets from the next page on."""
    script = RECORDER + ("window.__tcCancelMine = true;" if cancel_mine else "")
    tab.page.add_init_script(script)
    opened: list[tuple[str, str]] = []
    tab.sockets = opened  # type: ignore[attr-defined]
    tab.page.on("websocket", lambda socket: opened.append((tab.page.url, socket.url)))
    return tab


def sockets(tab: Tab) -> list[str]:
    """The WebSockets the current page opened (not those of the pages before it)."""
    opened: list[tuple[str, str]] = tab.sockets  # type: ignore[attr-defined]
    return [url for page_url, url in opened if page_url == tab.page.url]


def expect_failed_request(tab: Tab, path: str, status: int) -> None:
    """Chromium logs every 4xx a page's fetch() gets as a console error: this one is wanted."""
    tab.page.wait_for_timeout(100)  # lets Playwright deliver the console message
    wanted = [
        error for error in tab.console_errors if f"status of {status}" in error and path in error
    ]
    assert wanted, tab.console_errors
    for error in wanted:
        tab.console_errors.remove(error)


def recorded(tab: Tab, name: str) -> list[dict[str, Any]]:
    """The ``detail`` of every ``thrillconnect:<name>`` so far, oldest first."""
    found: list[dict[str, Any]] = tab.page.evaluate(
        "name => window.__tc.filter(e => e.name === name).map(e => e.detail)", name
    )
    return found


def wait_for_event(tab: Tab, name: str, where: str = "true", arg: Any = None) -> dict[str, Any]:
    """The first ``thrillconnect:<name>`` whose detail ``d`` makes ``where`` true (bounded)."""
    find = f"([name, arg]) => window.__tc.find(e => e.name === name && ((d) => {where})(e.detail))"
    tab.page.wait_for_function(find, arg=[name, arg])
    found: dict[str, Any] = tab.page.evaluate(f"a => ({find})(a).detail", [name, arg])
    return found


def forget_events(tab: Tab) -> None:
    tab.page.evaluate("() => { window.__tc.length = 0; }")


def call(tab: Tab, expression: str, arg: Any = None) -> dict[str, Any]:
    """Await ``expression`` (a function of ``arg`` returning a promise) in the page:
    ``{"ok": value}`` or ``{"error": {name, status, error, message, body}}``."""
    answer: dict[str, Any] = tab.page.evaluate(
        f"""async (arg) => {{
            try {{
                return {{ ok: await ({expression})(arg) }};
            }} catch (e) {{
                return {{ error: {{ name: e.name, status: e.status, error: e.error,
                                    message: e.message, body: e.body }} }};
            }}
        }}""",
        arg,
    )
    return answer


def rates(sim: Any) -> dict[str, float]:
    response = requests.get(f"{sim.url}/v1/currencies", timeout=5)
    response.raise_for_status()
    multipliers: dict[str, float] = response.json()["multipliers"]
    return multipliers


def sim_ticker(sim: Any, role: str) -> dict[str, Any]:
    url = f"{sim.url}/v1/thrillpots/instances/{sim.instance_ids[role]}/ticker"
    response = requests.get(url, timeout=5)
    response.raise_for_status()
    ticker: dict[str, Any] = response.json()
    return ticker


def relay_hub(portal: ExamplePortal) -> Any:
    return portal.server.app.extensions["thrillconnect"].relay.hub


def route_answer(portal: ExamplePortal, player_id: str | None, body: Any) -> requests.Response:
    """What ``POST /v1/thrillpots/optin`` answers this body directly (test portal only)."""
    with Browser(portal.url) as browser:
        if player_id:
            browser.login(player_id)
        token = browser.csrf_token()
        return browser.api(
            "POST", "/v1/thrillpots/optin", json=body, headers={"X-CSRFToken": token}
        )


def assert_fields(detail: dict[str, Any], interface: str) -> None:
    assert set(detail) == DETAIL_FIELDS[interface], interface


# -- thrillconnect:update -----------------------------------------------------------------------


def test_a_tick_dispatches_update_with_converted_and_raw_values(
    example_portal: ExamplePortal, open_tab: OpenTab
) -> None:
    sim = example_portal.sim
    tab = recording(open_tab(example_portal)).login(GBP_PLAYER)
    tab.wait_until_live()

    sim.tick()
    ticker = sim_ticker(sim, PROGRESSIVE)
    minor = next(float(p["current_value"]) for p in ticker["pots"] if p["id"] == "minor")
    update = wait_for_event(
        tab,
        "update",
        "d.via === 'relay' && d.pots.some(p => p.id === 'minor' && p.rawValue === arg)",
        minor,
    )

    assert_fields(update, "UpdateDetail")
    assert update["instanceId"] == sim.instance_ids[PROGRESSIVE]
    assert (update["currency"], update["rawCurrency"], update["status"]) == ("GBP", "EUR", "Active")
    assert update["data"]["id"] == update["instanceId"]
    multipliers = rates(sim)
    for pot in update["pots"]:
        assert_fields(pot, "PotValue")
        expected = next(float(p["current_value"]) for p in ticker["pots"] if p["id"] == pot["id"])
        assert pot["rawValue"] == expected
        assert pot["value"] == pytest.approx(expected / multipliers["EUR"] * multipliers["GBP"])
        assert pot["formatted"].startswith("£")


# -- thrillconnect:win and the celebration --------------------------------------------------------


def test_a_win_of_this_player_says_mine_and_the_portal_celebrates_its_own_way(
    example_portal: ExamplePortal, open_tab: OpenTab
) -> None:
    sim = example_portal.sim
    tab = recording(open_tab(example_portal)).login(EUR_PLAYER)
    tab.wait_until_live()

    data = sim.win(sim.instance_ids[PROGRESSIVE], pot_id="mega", player_id=EUR_PLAYER)

    win = wait_for_event(tab, "win")
    assert_fields(win, "WinDetail")
    assert win["mine"] is True
    assert win["playerId"] == EUR_PLAYER
    assert (win["instanceId"], win["potId"]) == (sim.instance_ids[PROGRESSIVE], "mega")
    assert win["jackpotName"] == "Egyptian Gold Jackpot"
    assert win["rawAmount"] == data["win_amount"]
    assert (win["currency"], win["rawCurrency"]) == ("EUR", "EUR")
    assert win["amount"] == data["win_amount"]
    assert win["formatted"].startswith("€")
    assert win["timestamp"] == data["timestamp"]
    assert tab.page.evaluate("() => window.__tc.find(e => e.name === 'win').cancelable")
    # example_portal/static/celebration.js cancelled the built-in dialog and shows its own.
    banner = tab.page.locator("[data-portal-celebration]")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text(f"You won {win['formatted']} in Egyptian Gold Jackpot!")
    expect(tab.page.locator("[data-tc-celebration]")).to_be_hidden()
    expect(tab.page.get_by_role("dialog")).to_have_count(1)
    banner.get_by_role("button", name="Close").click()
    expect(banner).to_be_hidden()


def test_a_win_of_another_player_is_not_mine_and_converted(
    example_portal: ExamplePortal, open_tab: OpenTab
) -> None:
    sim = example_portal.sim
    tab = recording(open_tab(example_portal)).login(GBP_PLAYER)
    tab.wait_until_live()

    data = sim.win(sim.instance_ids[PROGRESSIVE], player_id=USD_PLAYER)

    win = wait_for_event(tab, "win")
    assert_fields(win, "WinDetail")
    assert (win["mine"], win["playerId"]) == (False, USD_PLAYER)
    assert (win["currency"], win["rawCurrency"]) == ("GBP", "EUR")
    multipliers = data["currency_multipliers"]["multipliers"]
    assert win["amount"] == pytest.approx(
        data["win_amount"] / multipliers["EUR"] * multipliers["GBP"]
    )
    assert win["formatted"].startswith("£")
    expect(tab.page.locator("li[data-tc-win]")).to_have_count(1)
    expect(tab.page.get_by_role("dialog")).to_have_count(0)


def test_without_prevent_default_the_built_in_celebration_shows(
    api_portal: ExamplePortal, open_tab: OpenTab
) -> None:
    sim = api_portal.sim
    tab = recording(open_tab(api_portal)).goto(f"/login/{EUR_PLAYER}").goto("/page/feed")
    wait_for_event(tab, "status", "d.upstream === 'connected'")

    _win_until_seen(tab, sim)

    dialog = tab.page.locator("[data-tc-celebration]")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("You won")


def test_prevent_default_on_the_win_event_suppresses_the_built_in_celebration(
    api_portal: ExamplePortal, open_tab: OpenTab
) -> None:
    sim = api_portal.sim
    tab = recording(open_tab(api_portal), cancel_mine=True)
    tab.goto(f"/login/{EUR_PLAYER}").goto("/page/feed")
    wait_for_event(tab, "status", "d.upstream === 'connected'")

    _win_until_seen(tab, sim)

    # The win was handled (the feed shows it) but the dialog never opened.
    expect(tab.page.locator("li[data-tc-win].tc-win--mine")).to_have_count(1)
    expect(tab.page.locator("[data-tc-celebration]")).to_be_hidden()


def _win_until_seen(tab: Tab, sim: Any) -> None:
    """Force this player's win until the page hears one: the relay's upstream subscription may
    be a moment behind its ``connected`` status (ThrillConnect does not acknowledge it)."""
    deadline = time.monotonic() + 10
    while True:
        sim.win(sim.instance_ids[PROGRESSIVE], player_id=EUR_PLAYER)
        try:
            tab.page.wait_for_function(
                "() => window.__tc.some(e => e.name === 'win')", timeout=1500
            )
            return
        except Exception:
            assert time.monotonic() < deadline, "no win reached the page"


# -- thrillconnect:raffle-win ---------------------------------------------------------------------


def test_a_raffle_draw_dispatches_raffle_win(
    example_portal: ExamplePortal, open_tab: OpenTab
) -> None:
    sim = example_portal.sim
    tab = recording(open_tab(example_portal)).login(GBP_PLAYER)
    tab.wait_until_live()

    data = sim.win(sim.instance_ids["raffle"], player_id=GBP_PLAYER)

    draw = wait_for_event(tab, "raffle-win")
    assert_fields(draw, "RaffleWinDetail")
    assert (draw["instanceId"], draw["mine"]) == (sim.instance_ids["raffle"], True)
    assert draw["jackpotName"] == "Sportsbook Raffle"
    (winner,) = draw["winners"]
    assert_fields(winner, "RaffleWinner")
    assert (winner["playerId"], winner["mine"]) == (GBP_PLAYER, True)
    assert (winner["rawCurrency"], winner["currency"]) == ("GBP", "GBP")
    assert winner["rawAmount"] == data["winners"][0]["win_amount"]
    assert tab.page.evaluate("() => window.__tc.find(e => e.name === 'raffle-win').cancelable")
    banner = tab.page.locator("[data-portal-celebration]")
    expect(banner).to_contain_text(f"You won {winner['formatted']} in the Sportsbook Raffle draw!")
    expect(tab.page.locator("[data-tc-celebration]")).to_be_hidden()


# -- optIn() and thrillconnect:optin -------------------------------------------------------------


def test_opt_in_and_out_through_the_api_dispatch_optin_and_update_the_widget(
    example_portal: ExamplePortal, open_tab: OpenTab
) -> None:
    sim = example_portal.sim
    instance_id = sim.instance_ids[PROGRESSIVE]
    tab = recording(open_tab(example_portal)).login(EUR_PLAYER)
    tab.wait_until_live()
    state = tab.page.locator('[data-portal-game="egyptian-gold"] [data-tc-optin-state]')
    expect(state).to_have_text("You are not in this jackpot.")

    joined = call(tab, "a => ThrillConnect.optIn(a)", {"sourceId": "egyptian-gold", "optIn": True})

    assert "ok" in joined, joined
    assert_fields(joined["ok"], "OptInDetail")
    assert joined["ok"]["instanceId"] == instance_id
    assert (joined["ok"]["optedIn"], joined["ok"]["playerId"]) == (True, EUR_PLAYER)
    expect(state).to_have_text("You are in this jackpot.")
    event = wait_for_event(tab, "optin", "d.optedIn === true")
    assert_fields(event, "OptInDetail")
    assert (event["instanceId"], event["playerId"]) == (instance_id, EUR_PLAYER)
    assert event["contribution"] == joined["ok"]["contribution"]

    left = call(tab, "a => ThrillConnect.optIn(a)", {"instanceId": instance_id, "optIn": False})

    assert left["ok"]["optedIn"] is False
    wait_for_event(tab, "optin", "d.optedIn === false")
    expect(state).to_have_text("You are not in this jackpot.")


def test_opt_in_from_a_page_without_widgets_uses_the_script_tags_csrf_token(
    api_portal: ExamplePortal, open_tab: OpenTab
) -> None:
    tab = open_tab(api_portal).goto(f"/login/{GBP_PLAYER}").goto("/page/api")

    joined = call(
        tab,
        "a => ThrillConnect.optIn(a)",
        {"sourceId": "egyptian-gold", "optIn": True, "contribution": 0.2},
    )

    assert joined["ok"]["optedIn"] is True, joined
    assert joined["ok"]["contribution"] == 0.2
    with Browser(api_portal.url) as browser:
        jackpot = browser.login(GBP_PLAYER).api(
            "GET", "/v1/thrillpots/instances/source/egyptian-gold"
        )
    assert jackpot.json()["optin_status"]["opted_in"] is True


def test_opt_in_logged_out_rejects_with_the_routes_401(
    api_portal: ExamplePortal, open_tab: OpenTab
) -> None:
    tab = open_tab(api_portal).goto("/page/api")
    body = {"source_id": "egyptian-gold", "opt_in": True}

    answer = call(tab, "a => ThrillConnect.optIn(a)", {"sourceId": "egyptian-gold", "optIn": True})

    expect_failed_request(tab, "/thrillconnect/v1/thrillpots/optin", 401)
    direct = route_answer(api_portal, None, body)
    assert direct.status_code == 401
    assert answer["error"]["name"] == "ThrillConnectError"
    assert answer["error"]["status"] == 401
    assert answer["error"]["body"] == direct.json()
    assert answer["error"]["error"] == direct.json()["error"]
    assert answer["error"]["message"] == direct.json()["message"]


@pytest.mark.parametrize(
    ("options", "body"),
    [
        (
            {"sourceId": "egyptian-gold", "optIn": "yes"},
            {"source_id": "egyptian-gold", "opt_in": "yes"},
        ),
        (
            {"sourceId": "egyptian-gold", "instanceId": "x", "optIn": True},
            {"source_id": "egyptian-gold", "instance_id": "x", "opt_in": True},
        ),
        (
            {"instanceId": "../admin", "optIn": True},
            {"instance_id": "../admin", "opt_in": True},
        ),
    ],
    ids=["not-a-boolean", "both-targets", "bad-identifier"],
)
def test_opt_in_with_bad_input_rejects_with_the_routes_400(
    api_portal: ExamplePortal, open_tab: OpenTab, options: dict[str, Any], body: dict[str, Any]
) -> None:
    tab = open_tab(api_portal).goto(f"/login/{EUR_PLAYER}").goto("/page/api")

    answer = call(tab, "a => ThrillConnect.optIn(a)", options)

    expect_failed_request(tab, "/thrillconnect/v1/thrillpots/optin", 400)
    direct = route_answer(api_portal, EUR_PLAYER, body)
    assert direct.status_code == 400
    assert answer["error"]["status"] == 400, answer
    assert answer["error"]["body"] == direct.json()


# -- refresh() ----------------------------------------------------------------------------------


def test_refresh_rereads_the_ticker_and_dispatches_update(
    api_portal: ExamplePortal, open_tab: OpenTab
) -> None:
    sim = api_portal.sim
    instance_id = sim.instance_ids["sitewide"]
    tab = recording(open_tab(api_portal)).goto("/page/api")

    answer = call(tab, "id => ThrillConnect.refresh(id)", instance_id)

    detail = answer["ok"]
    assert_fields(detail, "UpdateDetail")
    assert (detail["instanceId"], detail["via"], detail["currency"]) == (
        instance_id,
        "refresh",
        "EUR",
    )
    expected = {p["id"]: float(p["current_value"]) for p in sim_ticker(sim, "sitewide")["pots"]}
    assert {pot["id"]: pot["rawValue"] for pot in detail["pots"]} == expected
    assert all(pot["formatted"].startswith("€") for pot in detail["pots"])
    event = wait_for_event(tab, "update", "d.via === 'refresh'")
    assert event == detail


def test_refresh_of_an_unknown_instance_rejects_with_the_routes_error(
    api_portal: ExamplePortal, open_tab: OpenTab
) -> None:
    tab = open_tab(api_portal).goto("/page/api")

    answer = call(tab, "id => ThrillConnect.refresh(id)", "no-such-instance")
    expect_failed_request(tab, "/no-such-instance/ticker", 404)

    with Browser(api_portal.url) as browser:
        direct = browser.api("GET", "/v1/thrillpots/instances/no-such-instance/ticker")
    assert direct.status_code == 404
    assert (answer["error"]["status"], answer["error"]["body"]) == (404, direct.json())


# -- subscribe() and thrillconnect:event ----------------------------------------------------------


def _bonus(bonus_id: str) -> dict[str, Any]:
    return {
        "msg_type": "Event",
        "source": "thrillgate",
        "msg_name": "PlayerBonusAdded",
        "operator_id": "thrilltech",
        "brand_id": "brand1",
        "player_id": None,
        "data": {"bonus_id": bonus_id},
        "timestamp": int(time.time() * 1000),
    }


def test_subscribe_adds_events_over_the_same_socket(
    api_portal: ExamplePortal, open_tab: OpenTab
) -> None:
    tab = recording(open_tab(api_portal)).goto("/page/api")
    first = call(tab, "() => ThrillConnect.subscribe()")
    assert first["ok"] == ["thrillpots:*"]
    hub = relay_hub(api_portal)
    hub.publish(_bonus("before"), BROADCAST)  # not subscribed yet: never delivered
    wait_for_event(tab, "status", "d.upstream !== null")

    answer = call(
        tab, "e => ThrillConnect.subscribe(e)", ["thrillgate", "thrillgate:PlayerBonusAdded"]
    )

    assert answer["ok"] == ["thrillpots:*", "thrillgate:*"]
    deadline = time.monotonic() + 10
    while not recorded(tab, "event") or recorded(tab, "event")[-1]["source"] != "thrillgate":
        # The relay does not acknowledge a subscription: publish until it is in effect.
        hub.publish(_bonus("after"), BROADCAST)
        assert time.monotonic() < deadline, "no thrillgate event reached the page"
        tab.page.wait_for_timeout(100)
    event = wait_for_event(tab, "event", "d.source === 'thrillgate'")
    assert_fields(event, "RelayEventDetail")
    assert (event["name"], event["data"], event["playerId"]) == (
        "PlayerBonusAdded",
        {"bonus_id": "after"},
        None,
    )
    assert isinstance(event["seq"], int)
    assert all(e["data"].get("bonus_id") != "before" for e in recorded(tab, "event"))
    assert len(sockets(tab)) == 1


def test_subscribe_refuses_what_the_relay_would(
    api_portal: ExamplePortal, open_tab: OpenTab
) -> None:
    tab = recording(open_tab(api_portal)).goto("/page/api")

    answer = call(tab, "e => ThrillConnect.subscribe(e)", ["thrillbits"])

    assert answer["error"]["name"] == "TypeError"
    assert tab.page.evaluate("() => ThrillConnect.state") == "idle"  # nothing was sent


# -- thrillconnect:status -------------------------------------------------------------------------


def test_status_events_follow_the_relay_dropping_and_returning(
    api_portal: ExamplePortal, open_tab: OpenTab
) -> None:
    sim = api_portal.sim
    tab = recording(open_tab(api_portal)).goto("/page/api")
    call(tab, "() => ThrillConnect.subscribe()")
    wait_for_event(tab, "status", "d.state === 'open' && d.upstream === 'connected'")
    forget_events(tab)

    sim.faults(ws="drop")  # ThrillConnect drops the relay's upstream stream once

    down = wait_for_event(tab, "status", "d.upstream === 'reconnecting'")
    back = wait_for_event(tab, "status", "d.upstream === 'connected'")
    assert_fields(down, "StatusDetail")
    assert down["state"] == back["state"] == "open"
    assert back["relayId"] == tab.page.evaluate("() => ThrillConnect.relayId")
    statuses = [(d["state"], d["upstream"]) for d in recorded(tab, "status")]
    assert statuses.index(("open", "reconnecting")) < statuses.index(("open", "connected"))
    assert len(sockets(tab)) == 1  # the page's own socket stayed up


def test_status_events_follow_the_page_socket_closing_and_reopening(
    api_portal: ExamplePortal, open_tab: OpenTab
) -> None:
    tab = recording(open_tab(api_portal)).goto("/page/api")
    call(tab, "() => ThrillConnect.subscribe()")
    wait_for_event(tab, "status", "d.state === 'open' && d.upstream === 'connected'")
    seen = [(d["state"], d["upstream"]) for d in recorded(tab, "status")]
    assert seen[:2] == [("connecting", None), ("open", None)]

    forget_events(tab)
    # The relay closes the browser's connection: "fell behind", reconnect and resume (1013).
    hub = relay_hub(api_portal)
    for connection in list(hub._subscribed):
        hub.close_connection(connection, 1013)

    closed = wait_for_event(tab, "status", "d.state === 'closed'")
    assert closed["upstream"] == "connected"
    wait_for_event(tab, "status", "d.state === 'open'")
    states = [d["state"] for d in recorded(tab, "status")]
    assert states[:3] == ["closed", "connecting", "open"]
    assert len(sockets(tab)) == 2  # one at a time: the second after the first closed


# -- one socket, lazily ---------------------------------------------------------------------------


def test_a_page_without_widgets_connects_on_the_first_method_call_only(
    api_portal: ExamplePortal, open_tab: OpenTab
) -> None:
    tab = recording(open_tab(api_portal)).goto("/page/api")
    tab.page.wait_for_load_state("networkidle")
    tab.page.wait_for_timeout(300)  # a socket would have opened by now

    assert tab.page.evaluate("() => ThrillConnect.state") == "idle"
    assert sockets(tab) == []
    assert api_portal.sim.stats()["connections"]["player"] == 0

    call(tab, "id => ThrillConnect.refresh(id)", api_portal.sim.instance_ids["sitewide"])

    wait_for_event(tab, "status", "d.state === 'open'")
    assert len(sockets(tab)) == 1
    assert sockets(tab)[0].startswith(
        api_portal.url.replace("http", "ws") + "/thrillconnect/v1/events"
    )


def test_one_socket_per_page_whatever_is_used(
    example_portal: ExamplePortal, open_tab: OpenTab
) -> None:
    sim = example_portal.sim
    tab = recording(open_tab(example_portal)).login(EUR_PLAYER)
    tab.wait_until_live()

    call(tab, "() => ThrillConnect.subscribe(['thrillgate', 'thrilldrops'])")
    call(tab, "id => ThrillConnect.refresh(id)", sim.instance_ids["sitewide"])
    call(tab, "a => ThrillConnect.optIn(a)", {"sourceId": "egyptian-gold", "optIn": True})
    sim.win(sim.instance_ids[PROGRESSIVE], player_id=EUR_PLAYER)
    wait_for_event(tab, "win")

    assert len(sockets(tab)) == 1
    assert tab.page.evaluate("() => ThrillConnect.state") == "open"


def test_the_es_module_is_the_same_single_instance(
    api_portal: ExamplePortal, open_tab: OpenTab
) -> None:
    tab = recording(open_tab(api_portal)).goto("/page/api")

    same = tab.page.evaluate(
        """async (url) => {
            const module = await import(url);
            await module.default.subscribe();
            return module.default === window.ThrillConnect
                && module.ThrillConnect === module.default;
        }""",
        MJS,
    )

    assert same is True
    assert len(sockets(tab)) == 1
    assert tab.page.evaluate("() => Object.isFrozen(window.ThrillConnect)")


def test_state_properties_stay_read_only(api_portal: ExamplePortal, open_tab: OpenTab) -> None:
    tab = open_tab(api_portal).goto("/page/api")

    kept = tab.page.evaluate(
        """() => {
            'use strict';
            try { window.ThrillConnect.state = 'open'; } catch (e) { /* frozen */ }
            return [ThrillConnect.state, ThrillConnect.lastSeq, ThrillConnect.relayId,
                    ThrillConnect.upstream];
        }"""
    )

    assert kept == ["idle", None, None, None]
