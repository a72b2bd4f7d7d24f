"""Server-side rendering of the Jinja widgets and the ``thrillconnect`` global.

A small portal (``portal_fixtures.make_portal``) with a lobby template that uses the macros is
served on a real loopback socket against the simulator; the pages are fetched like a browser
without JavaScript would and read with the standard library's HTML parser.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest
import requests
from flask import render_template, request, session
from jinja2 import DictLoader
from portal_fixtures import Browser, LiveServer, make_portal

from flask_thrillconnect import Player

LOBBY = """<!doctype html>
<html lang="en"><head><title>Lobby</title>{{ thrillconnect.assets(nonce=nonce) }}</head>
<body>
{% from "thrillconnect/widgets.html" import jackpot_ticker, optin_widget, win_feed %}
{% for source_id in source_ids %}
  {{ jackpot_ticker(source_id=source_id) }}
  {{ optin_widget(source_id=source_id, login_url=login_url) }}
{% endfor %}
{% for instance_id in instance_ids %}
  {{ jackpot_ticker(instance_id=instance_id) }}
  {{ optin_widget(instance_id=instance_id) }}
{% endfor %}
{{ win_feed(limit=limit) }}
</body></html>
"""

# --------------------------------------------------------------------------------------------
# A small DOM: enough of one to find widgets by their data- hooks
# --------------------------------------------------------------------------------------------

_VOID_TAGS = frozenset({"link", "meta", "input", "br", "img", "hr", "source", "wbr"})


@dataclass
class Element:
    tag: str
    attrs: dict[str, str | None]
    text: str = ""
    children: list[Element] = field(default_factory=list)

    def has(self, name: str, value: str | None = None) -> bool:
        return name in self.attrs and (value is None or self.attrs[name] == value)

    def find_all(self, name: str, value: str | None = None) -> list[Element]:
        found = []
        for child in self.children:
            if child.has(name, value):
                found.append(child)
            found.extend(child.find_all(name, value))
        return found

    def find(self, name: str, value: str | None = None) -> Element:
        found = self.find_all(name, value)
        assert found, f"no element with {name}={value!r} in <{self.tag}>"
        return found[0]

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    @property
    def words(self) -> str:
        """The text with whitespace (also non-breaking) collapsed to single spaces."""
        return " ".join(self.text.split())


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self._open = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, dict(attrs))
        self._open[-1].children.append(element)
        if tag not in _VOID_TAGS:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open[-1].children.append(Element(tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self._open) - 1, 0, -1):
            if self._open[depth].tag == tag:
                del self._open[depth:]
                return

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text += data


def parse(html: str) -> Element:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture
def make_widget_portal(thrillconnect_sim: Any) -> Iterator[Callable[..., LiveServer]]:
    """``make_widget_portal(locales=…, templates=…, **config)``: the test portal plus a
    ``/lobby`` page (query: ``source``…, ``instance``…, ``nonce``, ``login_url``, ``limit``).

    :param locales: player id → ``Player.locale``.
    :param templates: extra app templates by path (an override of the widgets, a page).
    """
    servers: list[LiveServer] = []

    def make(
        *,
        locales: dict[str, str] | None = None,
        templates: dict[str, str] | None = None,
        **config: Any,
    ) -> LiveServer:
        app = make_portal(thrillconnect_sim, **config)
        # The app's loader is searched before the blueprint's: this is how portals override.
        app.jinja_loader = DictLoader({"lobby.html": LOBBY, **(templates or {})})
        tc = app.extensions["test_tc"]
        player_locales = locales or {}

        @tc.player_loader
        def load_player() -> Player | None:
            player_id = session.get("player_id")
            if player_id not in thrillconnect_sim.players:
                return None
            return thrillconnect_sim.player(player_id, locale=player_locales.get(player_id))

        @app.get("/lobby")
        def lobby() -> str:
            return render_template(
                "lobby.html",
                source_ids=request.args.getlist("source"),
                instance_ids=request.args.getlist("instance"),
                nonce=request.args.get("nonce"),
                login_url=request.args.get("login_url"),
                limit=request.args.get("limit", 10),
            )

        @app.get("/page/<name>")
        def page(name: str) -> str:
            return render_template(f"{name}.html")

        server = LiveServer(app).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
        server.app.extensions["thrillconnect"].close()


@pytest.fixture
def widget_portal(make_widget_portal: Callable[..., LiveServer]) -> LiveServer:
    return make_widget_portal(locales={"player_00004": "sv_SE", "player_00001": "de_DE"})


@pytest.fixture
def open_browser(widget_portal: LiveServer) -> Iterator[Callable[..., Browser]]:
    """``open_browser(player_id=None, server=None)``: a cookie-keeping client, logged in."""
    opened: list[Browser] = []

    def make(player_id: str | None = None, server: LiveServer | None = None) -> Browser:
        browser = Browser((server or widget_portal).url)
        opened.append(browser)
        return browser.login(player_id) if player_id else browser

    yield make
    for browser in opened:
        browser.close()


def lobby(browser: Browser, **query: Any) -> Element:
    """GET the lobby (``source=…``, ``instance=…``, ``headers=…``), assert 200, parse it."""
    headers = query.pop("headers", None)
    response = browser.get("/lobby", params=query, headers=headers)
    assert response.status_code == 200, response.text[:500]
    return parse(response.text)


def sim_pot_values(sim: Any, role: str) -> dict[str, Decimal]:
    """The pots of a simulator instance, straight from its REST ticker."""
    instance_id = sim.instance_ids[role]
    response = requests.get(f"{sim.url}/v1/thrillpots/instances/{instance_id}/ticker", timeout=5)
    return {pot["id"]: Decimal(pot["current_value"]) for pot in response.json()["pots"]}


def ticker_amounts(page: Element, index: int = 0) -> dict[str, str]:
    ticker = page.find_all("data-tc-widget", "ticker")[index]
    return {pot.attrs["data-tc-pot"]: pot.find("data-tc-amount").words for pot in _pots(ticker)}


def _pots(ticker: Element) -> list[Element]:
    return ticker.find_all("data-tc-pot")


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"))


def english(value: Decimal, symbol: str) -> str:
    return f"{symbol}{cents(value):,}"


def swedish(value: Decimal, unit: str = "kr") -> str:
    grouped = f"{cents(value):,}".replace(",", " ").replace(".", ",")
    return f"{grouped} {unit}"


def german(value: Decimal, unit: str = "€") -> str:
    grouped = f"{cents(value):,}".replace(",", "_").replace(".", ",").replace("_", ".")
    return f"{grouped} {unit}"


GBP_PER_EUR = Decimal("0.8592")
SEK_PER_EUR = Decimal("11.6761")


# --------------------------------------------------------------------------------------------
# The jackpot ticker: values, currency, locale
# --------------------------------------------------------------------------------------------


def test_anonymous_visitor_sees_each_pot_in_the_jackpot_currency(
    open_browser: Callable[..., Browser], thrillconnect_sim: Any
) -> None:
    values = sim_pot_values(thrillconnect_sim, "progressive")

    amounts = ticker_amounts(lobby(open_browser(), source="egyptian-gold"))

    assert amounts == {pot: english(value, "€") for pot, value in values.items()}


def test_gbp_player_sees_the_pots_converted_to_pounds(
    open_browser: Callable[..., Browser], thrillconnect_sim: Any
) -> None:
    values = sim_pot_values(thrillconnect_sim, "progressive")

    page = lobby(open_browser("player_00002"), source="egyptian-gold")

    assert ticker_amounts(page) == {
        pot: english(value * GBP_PER_EUR, "£") for pot, value in values.items()
    }
    ticker = page.find("data-tc-widget", "ticker")
    assert ticker.attrs["data-tc-currency"] == "EUR"
    assert ticker.attrs["data-tc-display-currency"] == "GBP"


def test_swedish_player_sees_kronor_formatted_the_swedish_way(
    open_browser: Callable[..., Browser], thrillconnect_sim: Any
) -> None:
    values = sim_pot_values(thrillconnect_sim, "progressive")

    page = lobby(open_browser("player_00004"), source="egyptian-gold")

    assert ticker_amounts(page) == {
        pot: swedish(value * SEK_PER_EUR) for pot, value in values.items()
    }


def test_accept_language_picks_the_locale_when_the_player_names_none(
    make_widget_portal: Callable[..., LiveServer],
    open_browser: Callable[..., Browser],
    thrillconnect_sim: Any,
) -> None:
    server = make_widget_portal()  # no Player.locale for anyone
    values = sim_pot_values(thrillconnect_sim, "progressive")

    page = lobby(
        open_browser("player_00004", server=server),
        source="egyptian-gold",
        headers={"Accept-Language": "xx-YY, sv-SE;q=0.9, en;q=0.5"},
    )

    assert ticker_amounts(page) == {
        pot: swedish(value * SEK_PER_EUR) for pot, value in values.items()
    }


def test_player_locale_wins_over_accept_language(
    open_browser: Callable[..., Browser], thrillconnect_sim: Any
) -> None:
    values = sim_pot_values(thrillconnect_sim, "progressive")

    page = lobby(
        open_browser("player_00001"),  # EUR, Player.locale de_DE
        source="egyptian-gold",
        headers={"Accept-Language": "en-US"},
    )

    assert ticker_amounts(page) == {pot: german(value) for pot, value in values.items()}


def test_anonymous_visitor_gets_amounts_in_their_browser_language(
    open_browser: Callable[..., Browser], thrillconnect_sim: Any
) -> None:
    values = sim_pot_values(thrillconnect_sim, "progressive")

    page = lobby(open_browser(), source="egyptian-gold", headers={"Accept-Language": "de"})

    assert ticker_amounts(page) == {pot: german(value) for pot, value in values.items()}


def test_ticker_is_a_labelled_group_with_quiet_values_and_data_hooks(
    open_browser: Callable[..., Browser], thrillconnect_sim: Any
) -> None:
    values = sim_pot_values(thrillconnect_sim, "progressive")

    ticker = lobby(open_browser(), source="egyptian-gold").find("data-tc-widget", "ticker")

    assert ticker.attrs["role"] == "group"
    assert ticker.find("id", ticker.attrs["aria-labelledby"]).words == "Egyptian Gold"
    assert ticker.find("data-tc-pots").attrs["aria-live"] == "off"
    assert ticker.attrs["data-tc-state"] == "live"
    assert "tc-stale" not in ticker.classes
    assert ticker.attrs["data-tc-source"] == "egyptian-gold"
    assert ticker.attrs["data-tc-instance"] == thrillconnect_sim.instance_ids["progressive"]
    assert ticker.attrs["data-tc-status"] == "Active"
    assert {
        pot.attrs["data-tc-pot"]: Decimal(pot.attrs["data-tc-value"] or "") for pot in _pots(ticker)
    } == values


def test_ticker_by_instance_id_shows_that_instance_named_after_its_source(
    open_browser: Callable[..., Browser], thrillconnect_sim: Any
) -> None:
    values = sim_pot_values(thrillconnect_sim, "sitewide")

    page = lobby(open_browser(), instance=thrillconnect_sim.instance_ids["sitewide"])

    ticker = page.find("data-tc-widget", "ticker")
    assert ticker.attrs["data-tc-instance"] == thrillconnect_sim.instance_ids["sitewide"]
    assert ticker.find("id", ticker.attrs["aria-labelledby"]).words == "Sitewide Casino"
    assert ticker_amounts(page) == {pot: english(value, "€") for pot, value in values.items()}


def test_pending_jackpot_says_it_has_not_started(open_browser: Callable[..., Browser]) -> None:
    ticker = lobby(open_browser(), source="deposit-flow").find("data-tc-widget", "ticker")

    assert ticker.attrs["data-tc-status"] == "Pending"
    note = ticker.find("data-tc-status-note")
    assert "hidden" not in note.attrs
    assert note.words == "Starts soon"


# --------------------------------------------------------------------------------------------
# The opt-in widget
# --------------------------------------------------------------------------------------------


def test_optin_widget_shows_a_player_not_opted_in_and_controls_disabled_without_js(
    open_browser: Callable[..., Browser],
) -> None:
    widget = lobby(open_browser("player_00001"), source="egyptian-gold").find(
        "data-tc-widget", "optin"
    )

    assert widget.attrs["data-tc-opted-in"] == "false"
    # player_00001 reads de_DE: the texts too (tests/test_i18n.py).
    assert widget.find("data-tc-optin-state").words == "Du nimmst nicht an diesem Jackpot teil."
    form = widget.find("data-tc-optin-form")
    assert form.tag == "form"
    assert "disabled" in form.find("data-tc-contribution").attrs
    assert "disabled" in form.find("data-tc-optin-join").attrs
    assert "hidden" in form.find("data-tc-optin-leave").attrs
    assert "JavaScript" in form.find_all("class", "tc-note")[0].words


def test_optin_widget_offers_the_allowed_fixed_contributions(
    open_browser: Callable[..., Browser],
) -> None:
    widget = lobby(open_browser("player_00001"), source="egyptian-gold").find(
        "data-tc-widget", "optin"
    )

    options = [o for o in widget.find("data-tc-contribution").children if o.tag == "option"]
    # Fixed 0.1 allows 0.1 … 1.0 (contribution_range), labelled in the jackpot's currency.
    assert [Decimal(o.attrs["value"] or "") for o in options] == [
        Decimal("0.1") * step for step in range(1, 11)
    ]
    assert [o.words for o in options][:2] == ["0,10 €", "0,20 €"]  # player_00001 reads de_DE
    assert [o.has("selected") for o in options] == [True] + [False] * 9


def test_optin_widget_offers_percentages_for_a_percentage_jackpot(
    open_browser: Callable[..., Browser],
) -> None:
    # A GB player cannot play the Viking Runes jackpot: the source falls back to a Percentage one.
    widget = lobby(open_browser("player_00002"), source="viking-runes").find(
        "data-tc-widget", "optin"
    )

    options = [o for o in widget.find("data-tc-contribution").children if o.tag == "option"]
    assert [o.words for o in options] == [f"{n}%" for n in range(1, 11)]


def test_optin_widget_shows_the_new_state_after_opting_in(
    open_browser: Callable[..., Browser],
) -> None:
    browser = open_browser("player_00001")
    widget = lobby(browser, source="egyptian-gold").find("data-tc-widget", "optin")

    # The token the widget carries for the script is the one the opt-in route accepts.
    answer = browser.api(
        "POST",
        "/v1/thrillpots/optin",
        json={
            "instance_id": widget.attrs["data-tc-instance"],
            "opt_in": True,
            "contribution_value": 0.3,
        },
        headers={"X-CSRFToken": widget.attrs["data-tc-csrf"] or ""},
    )
    assert answer.status_code == 200, answer.text

    widget = lobby(browser, source="egyptian-gold").find("data-tc-widget", "optin")
    assert widget.attrs["data-tc-opted-in"] == "true"
    assert widget.find("data-tc-optin-state").words == "Du nimmst an diesem Jackpot teil."
    selected = [o for o in widget.find("data-tc-contribution").children if o.has("selected")]
    assert [Decimal(o.attrs["value"] or "") for o in selected] == [Decimal("0.3")]
    assert "hidden" not in widget.find("data-tc-optin-leave").attrs


def test_optin_widget_by_instance_id_finds_the_players_state(
    open_browser: Callable[..., Browser], thrillconnect_sim: Any
) -> None:
    instance_id = thrillconnect_sim.instance_ids["progressive"]

    widget = lobby(open_browser("player_00002"), instance=instance_id).find(
        "data-tc-widget", "optin"
    )

    assert widget.attrs["data-tc-state"] == "live"
    assert widget.attrs["data-tc-instance"] == instance_id
    assert widget.attrs["data-tc-opted-in"] == "false"


def test_anonymous_visitor_gets_a_login_link_and_no_form(
    open_browser: Callable[..., Browser],
) -> None:
    widget = lobby(open_browser(), source="egyptian-gold", login_url="/login/here").find(
        "data-tc-widget", "optin"
    )

    assert widget.attrs["data-tc-state"] == "anonymous"
    note = widget.find("data-tc-login-note")
    link = note.find("href")
    assert (link.tag, link.attrs["href"], link.words) == (
        "a",
        "/login/here",
        "Log in to join this jackpot",
    )
    assert widget.find_all("data-tc-optin-form") == []
    assert [e for e in widget.children if e.tag == "form"] == []
    assert "data-tc-csrf" not in widget.attrs


def test_anonymous_visitor_without_login_url_gets_a_plain_message(
    open_browser: Callable[..., Browser],
) -> None:
    widget = lobby(open_browser(), source="egyptian-gold").find("data-tc-widget", "optin")

    note = widget.find("data-tc-login-note")
    assert note.words == "Log in to join this jackpot."
    assert note.find_all("href") == []


# --------------------------------------------------------------------------------------------
# The win feed
# --------------------------------------------------------------------------------------------


def test_win_feed_starts_with_no_wins_in_a_polite_live_list(
    open_browser: Callable[..., Browser],
) -> None:
    feed = lobby(open_browser(), limit=5).find("data-tc-widget", "win-feed")

    assert feed.attrs["data-tc-limit"] == "5"
    listing = feed.find("data-tc-feed-list")
    assert (listing.tag, listing.attrs["aria-live"]) == ("ol", "polite")
    assert listing.find("data-tc-feed-empty").words == "No wins yet."
    celebration = feed.find("data-tc-celebration")
    assert celebration.attrs["role"] == "dialog"
    assert "hidden" in celebration.attrs


@pytest.mark.parametrize(("asked", "kept"), [("100000", "100"), ("0", "1"), ("many", "10")])
def test_win_feed_limit_is_bounded(
    open_browser: Callable[..., Browser], asked: str, kept: str
) -> None:
    feed = lobby(open_browser(), limit=asked).find("data-tc-widget", "win-feed")

    assert feed.attrs["data-tc-limit"] == kept


# --------------------------------------------------------------------------------------------
# When ThrillConnect fails
# --------------------------------------------------------------------------------------------


def test_widgets_render_unavailable_when_upstream_fails_with_nothing_cached(
    open_browser: Callable[..., Browser], thrillconnect_sim: Any
) -> None:
    thrillconnect_sim.faults(rest={"status": 503})

    page = lobby(open_browser("player_00002"), source="egyptian-gold")

    ticker = page.find("data-tc-widget", "ticker")
    assert ticker.attrs["data-tc-state"] == "unavailable"
    assert {"tc-stale", "tc-unavailable"} <= ticker.classes
    assert _pots(ticker) == []
    assert "hidden" not in ticker.find("data-tc-unavailable-note").attrs
    optin = page.find("data-tc-widget", "optin")
    assert optin.attrs["data-tc-state"] == "unavailable"
    assert optin.find_all("data-tc-optin-form") == []
    script = next(e for e in page.find_all("data-tc-config") if e.tag == "script")
    assert "data-tc-rates" not in script.attrs  # the script converts nothing


def test_a_failing_upstream_is_asked_once_per_page_not_once_per_widget(
    open_browser: Callable[..., Browser], thrillconnect_sim: Any
) -> None:
    thrillconnect_sim.faults(rest={"status": 503})

    lobby(open_browser(), source=["egyptian-gold", "book-of-ra", "viking-runes"])

    requests_made = thrillconnect_sim.stats()["requests"]
    assert requests_made["currencies"] >= 1  # the first lookup of the page: assets()
    assert (requests_made["jackpot"], requests_made["sources"]) == (0, 0)


def test_ticker_is_marked_stale_while_an_older_copy_stands_in(
    make_widget_portal: Callable[..., LiveServer],
    open_browser: Callable[..., Browser],
    thrillconnect_sim: Any,
) -> None:
    server = make_widget_portal(THRILLCONNECT_CACHE_TTL={"jackpot": 0})
    browser = open_browser(server=server)
    values = sim_pot_values(thrillconnect_sim, "progressive")
    assert lobby(browser, source="egyptian-gold").find("data-tc-widget", "ticker").attrs[
        "data-tc-state"
    ] == ("live")
    thrillconnect_sim.faults(rest={"status": 503})

    # The expired copy is first served while a background refresh fails; then it stands in.
    deadline = time.monotonic() + 10
    while True:
        page = lobby(browser, source="egyptian-gold")
        ticker = page.find("data-tc-widget", "ticker")
        if ticker.attrs["data-tc-state"] == "stale" or time.monotonic() > deadline:
            break
    assert ticker.attrs["data-tc-state"] == "stale"
    assert "tc-stale" in ticker.classes
    assert "hidden" not in ticker.find("data-tc-stale-note").attrs
    assert ticker_amounts(page) == {pot: english(value, "€") for pot, value in values.items()}


@pytest.mark.parametrize("source_id", ["no-such-source", "bad/source?id"])
def test_unknown_or_invalid_source_renders_unavailable_not_an_error(
    open_browser: Callable[..., Browser], source_id: str
) -> None:
    page = lobby(open_browser("player_00001"), source=source_id)

    assert page.find("data-tc-widget", "ticker").attrs["data-tc-state"] == "unavailable"
    assert page.find("data-tc-widget", "optin").attrs["data-tc-state"] == "unavailable"


def test_macro_given_neither_source_nor_instance_renders_unavailable(
    make_widget_portal: Callable[..., LiveServer], open_browser: Callable[..., Browser]
) -> None:
    page_template = (
        '{% from "thrillconnect/widgets.html" import jackpot_ticker %}{{ jackpot_ticker() }}'
    )
    server = make_widget_portal(templates={"bare.html": page_template})

    response = open_browser(server=server).get("/page/bare")

    assert response.status_code == 200
    ticker = parse(response.text).find("data-tc-widget", "ticker")
    assert ticker.attrs["data-tc-state"] == "unavailable"


# --------------------------------------------------------------------------------------------
# assets(), csrf_token(), secrets, overrides
# --------------------------------------------------------------------------------------------


def test_assets_put_the_nonce_on_both_the_stylesheet_and_the_script(
    open_browser: Callable[..., Browser],
) -> None:
    browser = open_browser()
    page = lobby(browser, nonce="r4nd0m-n0nce")

    (link,) = page.find_all("rel", "stylesheet")
    (script,) = page.find_all("data-tc-config")
    assert link.attrs["nonce"] == script.attrs["nonce"] == "r4nd0m-n0nce"
    assert script.tag == "script"
    assert "defer" in script.attrs
    assert script.text == ""  # configuration in data- attributes, no inline JavaScript
    stylesheet = browser.get(link.attrs["href"] or "")
    assert stylesheet.status_code == 200
    assert stylesheet.headers["Content-Type"].startswith("text/css")
    code = browser.get(script.attrs["src"] or "")
    assert code.status_code == 200
    assert "javascript" in code.headers["Content-Type"]


def test_assets_without_a_nonce_carry_no_nonce_attribute(
    open_browser: Callable[..., Browser],
) -> None:
    page = lobby(open_browser())

    assert "nonce" not in page.find("rel", "stylesheet").attrs
    assert "nonce" not in page.find("data-tc-config").attrs


def test_assets_configure_the_script_for_a_player(
    open_browser: Callable[..., Browser],
) -> None:
    script = lobby(open_browser("player_00002")).find("data-tc-config")

    assert script.attrs["data-tc-base"] == "/thrillconnect"
    assert script.attrs["data-tc-events"] == "/thrillconnect/v1/events"
    assert script.attrs["data-tc-player"] == "player_00002"
    assert script.attrs["data-tc-currency"] == "GBP"
    assert script.attrs["data-tc-locale"] == "en"
    rates = json.loads(script.attrs["data-tc-rates"] or "")
    assert rates["base_currency"] == "EUR"
    assert rates["multipliers"]["GBP"] == 0.8592


def test_assets_for_an_anonymous_visitor_name_no_player_or_currency(
    open_browser: Callable[..., Browser],
) -> None:
    script = lobby(open_browser(), headers={"Accept-Language": "sv-SE"}).find("data-tc-config")

    assert "data-tc-player" not in script.attrs
    assert "data-tc-currency" not in script.attrs
    assert script.attrs["data-tc-locale"] == "sv-SE"


def test_assets_follow_the_configured_url_prefix(
    make_widget_portal: Callable[..., LiveServer], open_browser: Callable[..., Browser]
) -> None:
    server = make_widget_portal(THRILLCONNECT_URL_PREFIX="/casino/tc")
    browser = open_browser(server=server)

    script = lobby(browser).find("data-tc-config")

    assert (script.attrs["src"] or "").startswith("/casino/tc/static/thrillconnect/")
    assert script.attrs["data-tc-events"] == "/casino/tc/v1/events"
    assert browser.get(script.attrs["src"] or "").status_code == 200


def test_csrf_token_global_is_accepted_by_the_opt_in_route(
    make_widget_portal: Callable[..., LiveServer], open_browser: Callable[..., Browser]
) -> None:
    server = make_widget_portal(templates={"csrf.html": "{{ thrillconnect.csrf_token() }}"})
    browser = open_browser("player_00001", server=server)
    token = browser.get("/page/csrf").text.strip()

    answer = browser.api(
        "POST",
        "/v1/thrillpots/optin",
        json={"source_id": "egyptian-gold", "opt_in": True},
        headers={"X-CSRFToken": token},
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["opted_in"] is True


def test_no_service_or_wallet_token_reaches_the_page(
    open_browser: Callable[..., Browser], thrillconnect_sim: Any
) -> None:
    browser = open_browser("player_00001")
    html = browser.get(
        "/lobby",
        params={
            "source": ["egyptian-gold", "sitewide-casino"],
            "instance": thrillconnect_sim.instance_ids["sitewide"],
        },
    ).text
    page = parse(html)
    assets = [
        browser.get(page.find("rel", "stylesheet").attrs["href"] or "").text,
        browser.get(page.find("data-tc-config").attrs["src"] or "").text,
    ]

    wallet_token = thrillconnect_sim.players["player_00001"]["token"]
    for text in (html, *assets):
        assert wallet_token not in text
        assert thrillconnect_sim.service_token not in text
    assert "player_00001" in html  # the id is on the page; only the secrets are not


def test_the_script_sets_no_inline_styles_handlers_or_html(
    open_browser: Callable[..., Browser],
) -> None:
    browser = open_browser()
    code = browser.get(lobby(browser).find("data-tc-config").attrs["src"] or "").text

    for forbidden in ("innerHTML", "outerHTML", "eval(", "new Function", ".style.", "console."):
        assert forbidden not in code


def test_portal_overrides_the_widgets_template_at_the_same_path(
    make_widget_portal: Callable[..., LiveServer], open_browser: Callable[..., Browser]
) -> None:
    override = """
{% macro jackpot_ticker(source_id=None, instance_id=None, title=None) -%}
<p data-portal-ticker>{{ thrillconnect.jackpot_view(source_id=source_id).title }} by the portal</p>
{%- endmacro %}
{% macro optin_widget(source_id=None, instance_id=None, login_url=None) %}{% endmacro %}
{% macro win_feed(limit=10) %}<p data-portal-feed></p>{% endmacro %}
"""
    server = make_widget_portal(templates={"thrillconnect/widgets.html": override})

    page = lobby(open_browser(server=server), source="egyptian-gold")

    assert page.find("data-portal-ticker").words == "Egyptian Gold by the portal"
    assert page.find_all("data-portal-feed") != []
    assert page.find_all("data-tc-widget") == []
