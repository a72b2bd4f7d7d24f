"""The example portal in Chromium: live widgets, the relay, security, against the simulator.

Real servers on 127.0.0.1 (the portal threaded, the simulator with manual ticks), a fresh
Chromium profile per tab, every wait bounded. Each tab must log no console error
(``open_tab`` checks it after the test).
"""

from __future__ import annotations

import base64
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from babel.numbers import format_currency
from playwright.sync_api import Locator, expect

if TYPE_CHECKING:
    from browser_fixtures import ExamplePortal, Tab

# The fixtures: example_portal, make_example_portal, open_tab, playwright_driver.
pytest_plugins = ("browser_fixtures",)

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
#: How long a test ticks the simulator, one tick at a time, waiting for a ticker to move.
TICK_DEADLINE_SECONDS = 10.0

OpenTab = Callable[..., "Tab"]

# DOM hooks. The portal's: data-portal-game on each game card, .sitewide around the header
# ticker. The widgets' are documented at the top of thrillconnect/widgets.html.
SITEWIDE = ".sitewide"
STALE_TICKER = ".tc-ticker.tc-stale"
FEED_ITEM = "li[data-tc-win]"
JOIN = "Join jackpot"
LEAVE = "Leave jackpot"


def game(tab: Tab, source_id: str) -> Locator:
    return tab.page.locator(f'[data-portal-game="{source_id}"]')


def pot_value(scope: Locator, pot_id: str) -> Locator:
    """The formatted amount of a pot of the (first) ticker in ``scope``."""
    return scope.locator(f'[data-tc-pot="{pot_id}"] [data-tc-amount]').first


def tick_until_changed(tab: Tab, sim: Any, value: Locator) -> None:
    """Tick once, then again while the value has not moved (bounded): the relay's upstream
    stream may subscribe just after the page connected, and a tick before that is not seen."""
    before = value.inner_text()
    deadline = time.monotonic() + TICK_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        sim.tick()
        try:
            expect(value).not_to_have_text(before, timeout=1500)
        except AssertionError:
            continue
        return
    pytest.fail(f"the ticker still shows {before!r} after ticking for {TICK_DEADLINE_SECONDS} s")


# -- tickers ------------------------------------------------------------------------------------


def test_ticker_shows_server_rendered_values_without_javascript(
    example_portal: ExamplePortal, open_tab: OpenTab
) -> None:
    expected = _pot_values_in_euros(example_portal, "progressive")
    tab = open_tab(example_portal, javascript=False).goto("/")

    egyptian = game(tab, "egyptian-gold")
    for pot_id, text in expected.items():
        expect(pot_value(egyptian, pot_id)).to_have_text(text)
    expect(pot_value(tab.page.locator(SITEWIDE), "major")).to_contain_text("€")


def test_ticker_shows_server_rendered_values_before_any_update(
    example_portal: ExamplePortal, open_tab: OpenTab
) -> None:
    expected = _pot_values_in_euros(example_portal, "progressive")
    tab = open_tab(example_portal).goto("/")

    expect(pot_value(game(tab, "egyptian-gold"), "mega")).to_have_text(expected["mega"])


def _pot_values_in_euros(portal: ExamplePortal, role: str) -> dict[str, str]:
    """Pot id → the value ThrillConnect has now, as an anonymous en-US visitor reads it."""
    instance_id = portal.sim.instance_ids[role]
    response = requests.get(
        f"{portal.sim.url}/v1/thrillpots/instances/{instance_id}/ticker", timeout=5
    )
    response.raise_for_status()
    ticker = response.json()
    assert ticker["currency"] == "EUR"
    return {
        pot["id"]: format_currency(Decimal(pot["current_value"]), "EUR", locale="en_US")
        for pot in ticker["pots"]
    }


def test_ticker_changes_after_a_tick(example_portal: ExamplePortal, open_tab: OpenTab) -> None:
    tab = open_tab(example_portal).goto("/")
    tab.wait_until_live()

    tick_until_changed(tab, example_portal.sim, pot_value(game(tab, "egyptian-gold"), "minor"))


def test_gbp_player_sees_gbp(example_portal: ExamplePortal, open_tab: OpenTab) -> None:
    tab = open_tab(example_portal).login("player_00002")  # GBP, GB
    minor = pot_value(game(tab, "egyptian-gold"), "minor")

    expect(minor).to_contain_text("£")
    expect(minor).not_to_contain_text("€")
    tab.wait_until_live()
    tick_until_changed(tab, example_portal.sim, minor)
    expect(minor).to_contain_text("£")


# -- opt-in -------------------------------------------------------------------------------------


def test_opt_in_and_opt_out_round_trip_through_the_widget(
    example_portal: ExamplePortal, open_tab: OpenTab
) -> None:
    tab = open_tab(example_portal).login("player_00001")
    card = game(tab, "egyptian-gold")
    state = card.locator("[data-tc-optin-state]")
    expect(state).to_have_text("You are not in this jackpot.")

    card.get_by_role("button", name=JOIN).click()

    expect(state).to_have_text("You are in this jackpot.")
    expect(card.get_by_role("button", name=LEAVE)).to_be_visible()
    assert _player_jackpot(example_portal, "player_00001", "egyptian-gold")["optin_status"][
        "opted_in"
    ]

    card.get_by_role("button", name=LEAVE).click()

    expect(state).to_have_text("You are not in this jackpot.")
    expect(card.get_by_role("button", name=LEAVE)).to_be_hidden()
    assert not _player_jackpot(example_portal, "player_00001", "egyptian-gold")["optin_status"][
        "opted_in"
    ]


def _player_jackpot(portal: ExamplePortal, player_id: str, source_id: str) -> dict[str, Any]:
    """What ThrillConnect itself says about the player's opt-in (straight from the simulator)."""
    player = portal.sim.players[player_id]
    response = requests.get(
        f"{portal.sim.url}/v1/thrillpots/instances/source/{source_id}/brand/thrilltech:brand1",
        params={"player_id": player_id, "country_code": player["country"]},
        timeout=5,
    )
    response.raise_for_status()
    return response.json()


def test_anonymous_visitor_is_asked_to_log_in_to_join(
    example_portal: ExamplePortal, open_tab: OpenTab
) -> None:
    tab = open_tab(example_portal).goto("/")

    card = game(tab, "egyptian-gold")
    expect(card.get_by_role("link", name="Log in to join this jackpot")).to_have_attribute(
        "href", "/login"
    )
    expect(card.get_by_role("button", name=JOIN)).to_have_count(0)


# -- wins ---------------------------------------------------------------------------------------


def test_a_forced_win_appears_in_the_feed(example_portal: ExamplePortal, open_tab: OpenTab) -> None:
    tab = open_tab(example_portal).goto("/")
    tab.wait_until_live()

    example_portal.sim.win(example_portal.sim.instance_ids["progressive"], player_id="player_00003")

    win = tab.page.locator(FEED_ITEM)
    expect(win).to_have_count(1)
    expect(win).to_contain_text("Egyptian Gold Jackpot")
    expect(win).to_contain_text(re.compile(r"pla\S*003"))
    expect(win).not_to_contain_text("player_00003")  # masked
    expect(tab.page.get_by_role("dialog")).to_have_count(0)  # an anonymous visitor won nothing


def test_the_winner_sees_the_celebration_and_others_do_not(
    example_portal: ExamplePortal, open_tab: OpenTab
) -> None:
    winner = open_tab(example_portal).login("player_00001")
    other = open_tab(example_portal).login("player_00003")
    winner.wait_until_live()
    other.wait_until_live()

    # The portal's own control: "Force a win" makes the logged-in player the winner.
    winner.page.locator('[data-portal-force-win="egyptian-gold"]').click()

    celebration = winner.page.get_by_role("dialog")
    expect(celebration).to_be_visible()
    expect(celebration).to_contain_text(re.compile(r"you won", re.I))
    assert celebration.evaluate("dialog => dialog.contains(document.activeElement)")
    expect(winner.page.locator(FEED_ITEM)).to_contain_text("Egyptian Gold Jackpot")
    expect(other.page.locator(FEED_ITEM)).to_contain_text("Egyptian Gold Jackpot")
    expect(other.page.get_by_role("dialog")).to_have_count(0)

    celebration.get_by_role("button", name="Close").click()
    expect(celebration).to_be_hidden()


# -- the upstream stream failing ---------------------------------------------------------------


def _watch_for_stale(tab: Tab) -> None:
    """Record in the page whether any ticker ever got marked stale, however briefly."""
    tab.page.evaluate(
        """() => {
            window.__portalSawStale = false;
            const seen = () => document.querySelector('.tc-ticker.tc-stale');
            new MutationObserver(() => { if (seen()) { window.__portalSawStale = true; } })
                .observe(document.body, {attributes: true, subtree: true, childList: true});
        }"""
    )


def _stale_tickers(tab: Tab) -> Locator:
    return tab.page.locator(STALE_TICKER)


def test_widget_shows_stale_when_the_stream_drops_then_recovers_by_itself(
    example_portal: ExamplePortal, open_tab: OpenTab
) -> None:
    tab = open_tab(example_portal).goto("/")
    tab.wait_until_live()
    _watch_for_stale(tab)
    connected_before = tab.upstream_statuses("connected")

    example_portal.sim.faults(ws="drop")

    tab.page.wait_for_function("() => window.__portalSawStale === true")
    tab.wait_for_upstream("reconnecting")
    tab.wait_for_upstream("connected", more_than=connected_before)
    expect(_stale_tickers(tab)).to_have_count(0)
    tick_until_changed(tab, example_portal.sim, pot_value(game(tab, "egyptian-gold"), "minor"))


def test_widget_shows_stale_while_the_stream_is_refused_then_recovers_by_itself(
    example_portal: ExamplePortal, open_tab: OpenTab
) -> None:
    example_portal.sim.faults(ws="refuse")
    tab = open_tab(example_portal).goto("/")

    expect(_stale_tickers(tab).first).to_be_attached()
    tab.wait_for_upstream("reconnecting")

    example_portal.sim.faults()

    tab.wait_until_live()
    expect(_stale_tickers(tab)).to_have_count(0, timeout=30_000)
    tick_until_changed(tab, example_portal.sim, pot_value(game(tab, "egyptian-gold"), "minor"))


# -- hygiene: console, tokens, CSP ---------------------------------------------------------------


def test_no_console_errors_on_any_page(example_portal: ExamplePortal, open_tab: OpenTab) -> None:
    tab = open_tab(example_portal)
    for path in ("/", "/login"):
        tab.goto(path)
        tab.page.wait_for_load_state("networkidle")
    tab.login("player_00004", admin=True)  # SEK, sv_SE, vip
    tab.wait_until_live()
    tab.goto("/admin/cors")
    expect(tab.page.locator("[data-cors-pattern]").first).to_be_attached()
    tab.goto("/")
    tab.wait_until_live()

    assert tab.console_errors == []


def test_no_token_reaches_the_browser(example_portal: ExamplePortal, open_tab: OpenTab) -> None:
    sim = example_portal.sim
    tab = open_tab(example_portal).login("player_00001", admin=True)
    tab.wait_until_live()
    game(tab, "egyptian-gold").get_by_role("button", name=JOIN).click()
    expect(game(tab, "egyptian-gold").get_by_role("button", name=LEAVE)).to_be_visible()
    tab.page.locator('[data-portal-force-win="egyptian-gold"]').click()
    expect(tab.page.get_by_role("dialog")).to_be_visible()
    expect(tab.page.locator("[data-async-status]")).to_contain_text("Forced a win")
    tab.goto("/admin/cors")
    expect(tab.page.locator("[data-cors-pattern]").first).to_be_attached()

    secrets = {"the service token": sim.service_token}
    secrets.update({f"the wallet token of {p}": w["token"] for p, w in sim.players.items()})
    seen = _everything_the_browser_saw(tab)
    assert len(seen) > 5
    for name, secret in secrets.items():
        for where, text in seen.items():
            assert secret not in text, f"{name} is in {where}"


def _everything_the_browser_saw(tab: Tab) -> dict[str, str]:
    """Every response body, header and WebSocket frame, the DOM and the decoded cookies."""
    seen: dict[str, str] = {"the DOM": tab.page.content()}
    for response in tab.responses:
        seen[f"{response.where} headers"] = response.headers
        seen[response.where] = response.body
    assert not [r.where for r in tab.responses if r.body.startswith("<unreadable")]
    seen["WebSocket frames"] = "\n".join(tab.frames)
    for cookie in tab.context.cookies():
        seen[f"cookie {cookie['name']}"] = cookie["value"] + _decoded_flask_cookie(cookie["value"])
    return seen


def _decoded_flask_cookie(value: str) -> str:
    """The JSON inside a Flask session cookie (signed, not encrypted: anyone can read it)."""
    payload = value.split(".")[1] if value.startswith(".") else value.split(".")[0]
    data = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    return zlib.decompress(data).decode() if value.startswith(".") else data.decode()


def test_pages_send_a_strict_csp_with_a_fresh_nonce_on_every_script(
    example_portal: ExamplePortal,
) -> None:
    nonces = []
    for _ in range(2):
        response = requests.get(example_portal.url + "/", timeout=10)
        policy = response.headers["Content-Security-Policy"]
        nonce = re.search(r"script-src [^;]*'nonce-([^']+)'", policy).group(1)
        assert "default-src 'self'" in policy
        assert f"style-src 'self' 'nonce-{nonce}'" in policy
        assert "connect-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert "unsafe-eval" not in policy
        scripts = re.findall(r"<script\b[^>]*>", response.text)
        assert scripts, "the page loads scripts"
        assert all(f'nonce="{nonce}"' in tag and "src=" in tag for tag in scripts)
        inline = re.findall(r"<script\b[^>]*>(.*?)</script>", response.text, re.DOTALL)
        assert all(not code.strip() for code in inline), "no inline script"
        assert not re.search(r"\sstyle=", response.text), "no inline style attribute"
        assert not re.search(r"\son[a-z]+=", response.text), "no inline event handler"
        nonces.append(nonce)
    assert nonces[0] != nonces[1]


# -- the portal's own controls --------------------------------------------------------------------


def test_admin_adds_and_removes_a_cors_rule(
    example_portal: ExamplePortal, open_tab: OpenTab
) -> None:
    tab = open_tab(example_portal).login(None, admin=True).goto("/admin/cors")
    rows = tab.page.locator("[data-cors-pattern]")
    expect(tab.page.locator('[data-cors-pattern="http://127.0.0.1:5000"]')).to_be_visible()

    tab.page.get_by_label("Pattern").fill("https://*.casino.example")
    tab.page.get_by_label("Match").select_option("Wildcard")
    tab.page.get_by_role("button", name="Add rule").click()
    added = tab.page.locator('[data-cors-pattern="https://*.casino.example"]')
    expect(added).to_contain_text("Wildcard")
    count = rows.count()

    tab.goto("/admin/cors")  # it was stored upstream, not just drawn
    expect(added).to_be_visible()
    added.get_by_role("button", name="Remove").click()
    expect(added).to_have_count(0)
    expect(rows).to_have_count(count - 1)


def test_cors_page_is_for_administrators_only(example_portal: ExamplePortal) -> None:
    response = requests.get(example_portal.url + "/admin/cors", timeout=10)

    assert response.status_code == 403


def test_force_win_refuses_a_post_without_the_portal_csrf_token(
    example_portal: ExamplePortal,
) -> None:
    with requests.Session() as browser:
        assert browser.get(example_portal.url + "/", timeout=10).status_code == 200
        response = browser.post(
            example_portal.url + "/simulator/win",
            data={"instance_id": example_portal.sim.instance_ids["progressive"]},
            timeout=10,
        )

    assert response.status_code == 403


def test_real_mode_login_asks_for_wallet_details(
    make_example_portal: Callable[..., ExamplePortal], open_tab: OpenTab
) -> None:
    portal = make_example_portal(simulator_mode=False)
    tab = open_tab(portal).goto("/login")
    expect(tab.page.locator("[data-portal-force-win]")).to_have_count(0)

    tab.page.get_by_label("Player id").fill("player_00002")
    tab.page.get_by_label("Wallet token").fill("token_00002")
    tab.page.get_by_label("Currency").fill("GBP")
    tab.page.get_by_label("Country").fill("GB")
    with tab.page.expect_navigation():
        tab.page.get_by_role("button", name="Log in").click()

    expect(tab.page.locator("[data-portal-player]")).to_contain_text("player_00002")
    expect(pot_value(game(tab, "egyptian-gold"), "minor")).to_contain_text("£")
    expect(tab.page.locator("[data-portal-force-win]")).to_have_count(0)


def test_lobby_screenshot_is_saved(example_portal: ExamplePortal, open_tab: OpenTab) -> None:
    tab = open_tab(example_portal).login("player_00001")
    tab.wait_until_live()
    example_portal.sim.win(example_portal.sim.instance_ids["no_gb"], player_id="player_00003")
    expect(tab.page.locator(FEED_ITEM)).to_have_count(1)  # the feed has something to show
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / "lobby.png"

    tab.page.screenshot(path=str(target), full_page=True)

    assert target.read_bytes().startswith(b"\x89PNG")
    assert target.stat().st_size > 10_000


# -- python -m example_portal ----------------------------------------------------------------------


def test_python_m_example_portal_prints_its_url_and_serves_the_lobby() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THRILLCONNECT_")}
    env["PYTHONPATH"] = str(REPO)
    process = subprocess.Popen(
        [sys.executable, "-m", "example_portal", "--host", "127.0.0.1", "--port", "0"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        url = _wait_for_line(process, re.compile(r"Example portal: (http://127\.0\.0\.1:\d+)"))
        response = requests.get(url + "/", timeout=10)
        assert response.status_code == 200
        assert "Force a win" in response.text  # simulator mode
    finally:
        process.send_signal(signal.SIGINT)
        try:
            assert process.wait(timeout=15) == 0
        finally:
            if process.poll() is None:
                process.kill()
            process.stdout.close()


def _wait_for_line(process: subprocess.Popen[str], pattern: re.Pattern[str]) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in process.stdout], daemon=True
    ).start()
    deadline = time.monotonic() + 30
    while True:
        line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        if match := pattern.search(line):
            return match.group(1)
