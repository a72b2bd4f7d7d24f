"""A German page in Chromium (issue 11): a portal whose Flask-Babel selects German renders the
widgets' texts in German, and the page script's live texts (the stale note after a relay drop,
the opt-in messages, the celebration after a forced win) are German too; the same under a
strict CSP. And, without a service token, an anonymous visitor is told plainly that live
updates are not available instead of "reconnecting" forever.

Real servers on 127.0.0.1 against the simulator; every wait is bounded.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask, render_template
from flask_babel import Babel
from jinja2 import DictLoader
from playwright.sync_api import expect
from portal_fixtures import LiveServer, make_portal

if TYPE_CHECKING:
    from browser_fixtures import ExamplePortal, Tab

pytest_plugins = ("browser_fixtures",)

PLAYER = "player_00001"  # EUR
PROGRESSIVE = "progressive"

PAGE = """<!doctype html>
<html lang="{{ lang }}"><head><title>Lobby</title>{{ thrillconnect.assets() }}</head><body>
{% from "thrillconnect/widgets.html" import jackpot_ticker, optin_widget, win_feed %}
{{ jackpot_ticker(source_id="egyptian-gold") }}
{{ optin_widget(source_id="egyptian-gold", login_url="/login") }}
{{ win_feed(limit=5) }}
</body></html>
"""

#: Records, before any page script runs, each text a stale or live-off note showed.
NOTE_RECORDER = """
window.__notes = [];
document.addEventListener("DOMContentLoaded", () => {
    const record = () => document.querySelectorAll("[data-tc-stale-note], [data-tc-live-off-note]")
        .forEach((note) => {
            if (!note.hidden && !window.__notes.includes(note.textContent)) {
                window.__notes.push(note.textContent);
            }
        });
    new MutationObserver(record).observe(document.body, {attributes: true, subtree: true});
});
"""


def page_portal(sim: Any, *, babel_locale: str | None, **config: Any) -> Flask:
    """The test portal (``/login/<id>``) with the widgets at ``/``; with Flask-Babel selecting
    ``babel_locale`` unless it is None."""
    app = make_portal(sim, **config)
    app.jinja_loader = DictLoader({"page.html": PAGE})
    if babel_locale is not None:
        Babel(app, locale_selector=lambda: babel_locale)

    @app.get("/")
    def page() -> str:
        return render_template("page.html", lang=babel_locale or "en")

    @app.get("/favicon.ico")
    def favicon() -> tuple[str, int]:
        return "", 204  # Chromium asks on every page; a 404 would count as a console error

    return app


@pytest.fixture
def make_page_portal(thrillconnect_sim: Any) -> Iterator[Callable[..., ExamplePortal]]:
    from browser_fixtures import ExamplePortal

    servers: list[LiveServer] = []

    def make(*, babel_locale: str | None = "de", **config: Any) -> ExamplePortal:
        app = page_portal(thrillconnect_sim, babel_locale=babel_locale, **config)
        servers.append(LiveServer(app).start())
        return ExamplePortal(servers[-1], thrillconnect_sim)

    yield make
    for server in servers:
        server.stop()
        server.app.extensions["thrillconnect"].close()


def win_until_celebrated(tab: Tab, sim: Any) -> None:
    """Force this player's win until the page celebrates one: the relay's upstream subscription
    may be a moment behind its ``connected`` status (ThrillConnect does not acknowledge it)."""
    dialog = tab.page.locator("[data-tc-celebration]")
    deadline = time.monotonic() + 10
    while True:
        sim.win(sim.instance_ids[PROGRESSIVE], player_id=PLAYER)
        try:
            expect(dialog).to_be_visible(timeout=1500)
            return
        except AssertionError:
            assert time.monotonic() < deadline, "no win reached the page"


def test_a_german_page_renders_and_updates_its_texts_in_german(
    make_page_portal: Callable[..., ExamplePortal], open_tab: Callable[..., Tab]
) -> None:
    portal = make_page_portal(babel_locale="de")
    # The browser speaks English: the portal's Flask-Babel decides the texts.
    tab = open_tab(portal, locale="en-US")
    tab.page.add_init_script(NOTE_RECORDER)
    page = tab.page

    # Anonymous: rendered in German on the server.
    tab.goto("/")
    expect(
        page.get_by_role("link", name="Melde dich an, um an diesem Jackpot teilzunehmen")
    ).to_be_visible()
    expect(page.get_by_role("heading", name="Letzte Gewinne")).to_be_visible()
    expect(page.locator("[data-tc-feed-empty]")).to_have_text("Noch keine Gewinne.")

    # A player: the opt-in widget, then its answers from the script.
    tab.goto(f"/login/{PLAYER}").goto("/")
    optin = page.locator('[data-tc-widget="optin"]')
    expect(optin.locator("[data-tc-optin-state]")).to_have_text(
        "Du nimmst nicht an diesem Jackpot teil."
    )
    expect(optin.get_by_text("Beitrag pro Einsatz")).to_be_visible()
    tab.wait_until_live()

    optin.get_by_role("button", name="Am Jackpot teilnehmen").click()

    expect(optin.locator("[data-tc-optin-message]")).to_have_text(
        "Du nimmst jetzt am Jackpot teil."
    )
    expect(optin.locator("[data-tc-optin-state]")).to_have_text("Du nimmst an diesem Jackpot teil.")
    expect(optin.get_by_role("button", name="Beitrag speichern")).to_be_enabled()
    expect(optin.get_by_role("button", name="Teilnahme beenden")).to_be_visible()

    # The relay's upstream drops: the stale note the script shows is German.
    connected_before = tab.upstream_statuses("connected")
    portal.sim.faults(ws="drop")
    page.wait_for_function("() => window.__notes.length > 0")
    tab.wait_for_upstream("connected", more_than=connected_before)
    assert page.evaluate("() => window.__notes") == [
        "Nicht live: Verbindung wird wiederhergestellt…"
    ]
    expect(page.locator(".tc-ticker.tc-stale")).to_have_count(0)

    # A forced win: the celebration and the feed speak German, money in the browser's format.
    tab.wait_until_live()
    win_until_celebrated(tab, portal.sim)

    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Herzlichen Glückwunsch, du hast gewonnen!")
    expect(page.locator("[data-tc-celebration-text]")).to_have_text(
        re.compile(r"^Du hast €[\d,.]+ bei Egyptian Gold Jackpot gewonnen\.$")
    )
    mine = page.locator("li[data-tc-win].tc-win--mine").first
    expect(mine.locator(".tc-win__player")).to_have_text("Du")
    dialog.get_by_role("button", name="Schließen").click()
    expect(page.locator("[data-tc-celebration]")).to_be_hidden()


def test_a_swedish_browser_reads_swedish_without_flask_babel(
    make_page_portal: Callable[..., ExamplePortal], open_tab: Callable[..., Tab]
) -> None:
    portal = make_page_portal(babel_locale=None)
    tab = open_tab(portal, locale="sv-SE")  # Accept-Language: sv-SE

    tab.goto("/")

    page = tab.page
    expect(
        page.get_by_role("link", name="Logga in för att delta i den här jackpotten")
    ).to_be_visible()
    expect(page.get_by_role("heading", name="Senaste vinster")).to_be_visible()
    expect(page.locator("[data-tc-feed-empty]")).to_have_text("Inga vinster än.")
    tab.wait_until_live()
    expect(page.locator('[data-tc-widget="ticker"]')).to_have_attribute("data-tc-state", "live")
    # Swedish money format from Intl, as on the server.
    expect(page.locator("[data-tc-amount]").first).to_have_text(re.compile(r"^[\d\s]+,\d{2}\s€$"))


def test_an_anonymous_visitor_without_a_service_token_is_told_there_are_no_live_updates(
    make_page_portal: Callable[..., ExamplePortal], open_tab: Callable[..., Tab]
) -> None:
    portal = make_page_portal(babel_locale=None, THRILLCONNECT_SERVICE_TOKEN=None)
    german = open_tab(portal, locale="de-DE")
    english = open_tab(portal, locale="en-US")

    for tab in (german, english):
        tab.goto("/")
        tab.wait_for_upstream("reconnecting")  # no service stream to share with visitors

    for tab, text in (
        (
            german,
            "Live-Aktualisierungen sind nicht verfügbar. Lade die Seite neu, um die "
            "aktuellen Beträge zu sehen.",
        ),
        (english, "Live updates are not available. Reload the page for the latest values."),
    ):
        ticker = tab.page.locator('[data-tc-widget="ticker"]')
        expect(ticker).to_have_attribute("data-tc-state", "stale")
        expect(ticker.locator("[data-tc-live-off-note]")).to_have_text(text)
        expect(ticker.locator("[data-tc-live-off-note]")).to_be_visible()
        expect(ticker.locator("[data-tc-stale-note]")).to_be_hidden()
        expect(ticker).not_to_contain_text("reconnecting", use_inner_text=True)
        expect(ticker).not_to_contain_text("Verbindung", use_inner_text=True)


def test_a_player_without_a_service_token_still_goes_live(
    make_page_portal: Callable[..., ExamplePortal], open_tab: Callable[..., Tab]
) -> None:
    portal = make_page_portal(babel_locale=None, THRILLCONNECT_SERVICE_TOKEN=None)
    tab = open_tab(portal)

    tab.goto(f"/login/{PLAYER}").goto("/")
    tab.wait_until_live()  # the player's own stream

    ticker = tab.page.locator('[data-tc-widget="ticker"]')
    expect(ticker).to_have_attribute("data-tc-state", "live")
    expect(ticker.locator("[data-tc-live-off-note]")).to_be_hidden()


def test_a_german_page_under_a_strict_csp_has_no_violation(
    thrillconnect_sim: Any, open_tab: Callable[..., Tab]
) -> None:
    from browser_fixtures import ExamplePortal
    from test_coexistence_csp import COLLECT_VIOLATIONS, talisman_portal, violations

    app = talisman_portal(thrillconnect_sim)
    Babel(app, locale_selector=lambda: "de")
    server = LiveServer(app).start()
    try:
        tab = open_tab(ExamplePortal(server, thrillconnect_sim))
        tab.page.add_init_script(COLLECT_VIOLATIONS)
        tab.goto(f"/login/{PLAYER}")
        tab.wait_until_live()

        win_until_celebrated(tab, thrillconnect_sim)

        expect(tab.page.locator("[data-tc-celebration-text]")).to_contain_text("Du hast")
        assert violations(tab) == []
    finally:
        server.stop()
        app.extensions["thrillconnect"].close()
