"""Players in their own language (issue 11): the package's catalogues and the server-rendered
widget texts.

The catalogues: the template (``.pot``) holds every text of the sources, each language
translates every one of them (placeholders intact), the compiled ``.mo`` files are those of the
``.po`` files, and the page script's English texts are the catalogues' msgids.

The pages: without Flask-Babel the texts follow the widgets' locale (``Player.locale``, else
``Accept-Language``); with Flask-Babel, its locale, from the package's own catalogues even when
the portal has catalogues of its own.
"""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.frontend import CommandLineInterface
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask, render_template, session
from jinja2 import DictLoader
from portal_fixtures import make_portal
from test_widgets import Element, parse

from flask_thrillconnect import Player, i18n
from flask_thrillconnect.jinja import TemplateGlobal
from flask_thrillconnect.widget_views import JackpotView

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "flask_thrillconnect" / "translations"
TEMPLATE = TRANSLATIONS / "thrillconnect.pot"
LANGUAGES = ("de", "sv")
SCRIPT = ROOT / "flask_thrillconnect" / "static" / "thrillconnect" / "thrillconnect.js"

PAGE = """<!doctype html>
<html><head><title>Page</title>{{ thrillconnect.assets() }}</head><body>
<h1 data-page-title>{{ page_title }}</h1>
{% from "thrillconnect/widgets.html" import jackpot_ticker, optin_widget, win_feed %}
{{ jackpot_ticker(source_id="egyptian-gold") }}
{{ optin_widget(source_id="egyptian-gold", login_url="/login") }}
{{ win_feed(limit=5) }}
</body></html>
"""


def read_catalogue(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as file:
        return read_po(file, locale=locale)


def msgids(catalogue: Catalog) -> set[str]:
    return {message.id for message in catalogue if message.id and isinstance(message.id, str)}


# --------------------------------------------------------------------------------------------
# The catalogues
# --------------------------------------------------------------------------------------------


def test_the_template_holds_every_text_of_the_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What docs/translations.rst tells a maintainer to run, into a temporary file.
    extracted = tmp_path / "extracted.pot"
    monkeypatch.chdir(ROOT)
    CommandLineInterface().run(
        ["pybabel", "-q", "extract", "-F", "babel.cfg", "-o", str(extracted), "."]
    )

    assert msgids(read_catalogue(extracted)) == msgids(read_catalogue(TEMPLATE))
    assert "Log in to join this jackpot" in msgids(read_catalogue(TEMPLATE))


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_catalogue_translates_every_text_of_the_template(language: str) -> None:
    template = read_catalogue(TEMPLATE)
    catalogue = read_catalogue(TRANSLATIONS / language / "LC_MESSAGES" / "thrillconnect.po")

    missing = [
        message_id
        for message_id in msgids(template)
        if message_id not in catalogue
        or not catalogue[message_id].string
        or catalogue[message_id].fuzzy
    ]
    assert missing == [], f"{language}: untranslated or fuzzy"
    assert msgids(catalogue) == msgids(template), f"{language}: obsolete texts"
    assert not catalogue.obsolete
    # Babel's checkers: the %(name)s placeholders of a translation are those of its msgid.
    problems = [(message.id, [str(e) for e in errors]) for message, errors in catalogue.check()]
    assert problems == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_compiled_catalogues_are_those_of_the_po_files(language: str) -> None:
    folder = TRANSLATIONS / language / "LC_MESSAGES"
    compiled = io.BytesIO()
    # What `pybabel compile` does (without --use-fuzzy).
    write_mo(compiled, read_catalogue(folder / "thrillconnect.po", language))

    assert compiled.getvalue() == (folder / "thrillconnect.mo").read_bytes(), (
        f"{language}: run pybabel compile -D thrillconnect -d flask_thrillconnect/translations"
    )


def test_the_scripts_english_texts_are_the_catalogues_msgids() -> None:
    code = SCRIPT.read_text(encoding="utf-8")
    block = re.search(r"\n  var TEXTS = (\{\n.*?\n  \});\n", code, re.DOTALL)
    assert block is not None, "var TEXTS = {…}; in thrillconnect.js"

    assert json.loads(block.group(1)) == i18n.JS_TEXTS
    assert set(i18n.JS_TEXTS.values()) <= msgids(read_catalogue(TEMPLATE))


def test_a_locale_without_a_catalogue_reads_english() -> None:
    assert i18n.catalogue("fr_FR").gettext("Recent wins") == "Recent wins"
    assert i18n.catalogue("de_AT").gettext("Recent wins") == "Letzte Gewinne"
    assert i18n.catalogue("sv").gettext("Recent wins") == "Senaste vinster"


# --------------------------------------------------------------------------------------------
# Pages without Flask-Babel: the widgets' locale
# --------------------------------------------------------------------------------------------


@pytest.fixture
def make_page_app(thrillconnect_sim: Any) -> Iterator[Callable[..., Flask]]:
    """``make_page_app(locales=…, babel=…, **config)``: the test portal with a page at ``/``.

    :param locales: player id → ``Player.locale``.
    :param babel: keyword arguments for ``flask_babel.Babel(app, …)``; no Flask-Babel if None.
    """
    apps: list[Flask] = []

    def make(
        *, locales: dict[str, str] | None = None, babel: dict[str, Any] | None = None, **config: Any
    ) -> Flask:
        app = make_portal(thrillconnect_sim, **config)
        app.jinja_loader = DictLoader({"page.html": PAGE})
        tc = app.extensions["test_tc"]

        @tc.player_loader
        def load_player() -> Player | None:
            player_id = session.get("player_id")
            if player_id not in thrillconnect_sim.players:
                return None
            return thrillconnect_sim.player(player_id, locale=(locales or {}).get(player_id))

        @app.get("/")
        def page() -> str:
            return render_template("page.html", page_title="Lobby")

        if babel is not None:
            from flask_babel import Babel, gettext

            Babel(app, **babel)

            @app.get("/translated")
            def translated() -> str:
                # The portal's own texts from its own catalogue, beside the widgets.
                return render_template("page.html", page_title=gettext("Lobby"))

        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["thrillconnect"].close()


def get_page(app: Flask, path: str = "/", player_id: str | None = None, **headers: str) -> Element:
    client = app.test_client()
    if player_id:
        assert client.get(f"/login/{player_id}").status_code == 200
    response = client.get(path, headers=headers)
    assert response.status_code == 200, response.text[:500]
    return parse(response.get_data(as_text=True))


def widget(page: Element, kind: str) -> Element:
    return page.find("data-tc-widget", kind)


def script_texts(page: Element) -> dict[str, str]:
    found: dict[str, str] = json.loads(page.find("data-tc-config").attrs["data-tc-texts"] or "")
    return found


def test_an_anonymous_swedish_visitor_reads_swedish(make_page_app: Callable[..., Flask]) -> None:
    page = get_page(make_page_app(), **{"Accept-Language": "sv-SE,sv;q=0.9,en;q=0.5"})

    ticker, optin, feed = widget(page, "ticker"), widget(page, "optin"), widget(page, "win-feed")
    assert ticker.find("data-tc-stale-note").words == "Inte live: återansluter…"
    assert ticker.find("data-tc-unavailable-note").words == (
        "Jackpottbeloppen är inte tillgängliga just nu."
    )
    assert optin.find("data-tc-login-note").words == "Logga in för att delta i den här jackpotten"
    assert optin.find("class", "tc-optin__title").words == "Ditt jackpottdeltagande"
    assert feed.find("class", "tc-win-feed__title").words == "Senaste vinster"
    assert feed.find("data-tc-feed-empty").words == "Inga vinster än."
    assert feed.find("data-tc-celebration-close").words == "Stäng"
    # The script's texts travel with it, in Swedish.
    script = page.find("data-tc-config")
    assert script.attrs["data-tc-locale"] == "sv-SE"
    texts = script_texts(page)
    assert texts["wonIn"] == "Du vann %(amount)s i %(jackpot)s."
    assert texts["optinErrorNetwork"].startswith("Det gick inte att nå servern")
    assert set(texts) == set(i18n.JS_TEXTS)


def test_a_player_reads_the_texts_in_their_own_locale(make_page_app: Callable[..., Flask]) -> None:
    app = make_page_app(locales={"player_00001": "de_DE"})

    # The player's locale wins over the browser's, as for money.
    page = get_page(app, player_id="player_00001", **{"Accept-Language": "en-GB"})

    optin = widget(page, "optin")
    assert optin.find("data-tc-optin-state").words == "Du nimmst nicht an diesem Jackpot teil."
    assert optin.find("data-tc-optin-join").words == "Am Jackpot teilnehmen"
    assert optin.find("data-tc-optin-leave").words == "Teilnahme beenden"
    assert optin.attrs["data-tc-text-in"] == "Du nimmst an diesem Jackpot teil."
    assert optin.attrs["data-tc-text-save"] == "Beitrag speichern"
    assert optin.find("for", optin.find("data-tc-contribution").attrs["id"]).words == (
        "Beitrag pro Einsatz"
    )
    assert optin.find("data-tc-contribution").children[0].words == "0,10 €"
    assert widget(page, "win-feed").find("class", "tc-celebration__title").words == (
        "Herzlichen Glückwunsch, du hast gewonnen!"
    )


def test_an_english_page_carries_no_texts_for_the_script(
    make_page_app: Callable[..., Flask],
) -> None:
    page = get_page(make_page_app(), **{"Accept-Language": "en-US"})

    assert "data-tc-texts" not in page.find("data-tc-config").attrs
    assert widget(page, "optin").find("data-tc-login-note").words == "Log in to join this jackpot"
    assert widget(page, "win-feed").find("class", "tc-win-feed__title").words == "Recent wins"


def test_a_language_without_a_catalogue_reads_english_with_its_money_format(
    make_page_app: Callable[..., Flask],
) -> None:
    page = get_page(make_page_app(), **{"Accept-Language": "fr-FR"})

    assert page.find("data-tc-config").attrs["data-tc-locale"] == "fr-FR"
    assert "data-tc-texts" not in page.find("data-tc-config").attrs
    assert widget(page, "win-feed").find("data-tc-feed-empty").words == "No wins yet."


def test_the_texts_need_no_flask_babel(
    make_page_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "flask_babel", None)  # `import flask_babel` fails

    page = get_page(make_page_app(), **{"Accept-Language": "de-DE"})

    assert widget(page, "win-feed").find("class", "tc-win-feed__title").words == "Letzte Gewinne"


# --------------------------------------------------------------------------------------------
# Pages of a portal with Flask-Babel: its locale, the package's catalogues
# --------------------------------------------------------------------------------------------


@pytest.fixture
def portal_catalogues(tmp_path: Path) -> Path:
    """The portal's own ``messages`` catalogue: German for "Lobby" (and for a text of ours,
    which must not leak into the widgets)."""
    catalogue = Catalog(locale="de", domain="messages")
    catalogue.add("Lobby", "Spielhalle")
    catalogue.add("Recent wins", "NICHT AUS DEM PORTAL")
    folder = tmp_path / "translations" / "de" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    with (folder / "messages.mo").open("wb") as file:
        write_mo(file, catalogue)
    return tmp_path / "translations"


def test_flask_babels_locale_picks_the_widgets_language(
    make_page_app: Callable[..., Flask], portal_catalogues: Path
) -> None:
    app = make_page_app(
        babel={"locale_selector": lambda: "de"},
        BABEL_TRANSLATION_DIRECTORIES=str(portal_catalogues),
    )

    # The browser asks for Swedish; the portal's Flask-Babel says German.
    page = get_page(app, "/translated", **{"Accept-Language": "sv-SE"})

    assert page.find("data-page-title").words == "Spielhalle"  # the portal's own catalogue
    feed = widget(page, "win-feed")
    assert feed.find("class", "tc-win-feed__title").words == "Letzte Gewinne"  # ours
    assert feed.find("data-tc-feed-empty").words == "Noch keine Gewinne."
    ticker = widget(page, "ticker")
    assert ticker.find("data-tc-stale-note").words == (
        "Nicht live: Verbindung wird wiederhergestellt…"
    )
    assert widget(page, "optin").find("data-tc-login-note").words == (
        "Melde dich an, um an diesem Jackpot teilzunehmen"
    )
    assert script_texts(page)["won"] == "Du hast %(amount)s gewonnen."
    # Money keeps the widgets' own locale (the visitor's Swedish).
    assert page.find("data-tc-config").attrs["data-tc-locale"] == "sv-SE"


def test_flask_babel_without_a_selection_means_its_default_locale(
    make_page_app: Callable[..., Flask],
) -> None:
    app = make_page_app(babel={}, locales={"player_00001": "de_DE"})

    page = get_page(app, player_id="player_00001")

    optin = widget(page, "optin")
    assert optin.find("data-tc-optin-state").words == "You are not in this jackpot."
    assert "data-tc-texts" not in page.find("data-tc-config").attrs


def test_flask_babels_default_locale_setting_counts(make_page_app: Callable[..., Flask]) -> None:
    app = make_page_app(babel={}, BABEL_DEFAULT_LOCALE="sv")

    page = get_page(app, **{"Accept-Language": "de-DE"})

    assert widget(page, "win-feed").find("data-tc-feed-empty").words == "Inga vinster än."


# --------------------------------------------------------------------------------------------
# No service token: anonymous visitors are told that there are no live updates
# --------------------------------------------------------------------------------------------


def test_without_a_service_token_an_anonymous_page_is_marked_live_off(
    make_page_app: Callable[..., Flask],
) -> None:
    app = make_page_app(THRILLCONNECT_SERVICE_TOKEN=None)

    anonymous = get_page(app, **{"Accept-Language": "de-DE"})
    player = get_page(app, player_id="player_00001")

    assert anonymous.find("data-tc-config").attrs["data-tc-live"] == "off"
    note = widget(anonymous, "ticker").find("data-tc-live-off-note")
    assert "hidden" in note.attrs  # the script shows it once the relay says it is not live
    assert note.words.startswith("Live-Aktualisierungen sind nicht verfügbar.")
    # A player has a stream of their own.
    assert "data-tc-live" not in player.find("data-tc-config").attrs


def test_without_a_service_token_a_stale_anonymous_ticker_says_no_live_updates(
    make_page_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    # An older copy stands in for a failing upstream.
    stale = JackpotView("stale", "egyptian-gold", "instance-1", "Egyptian Gold", currency="EUR")
    monkeypatch.setattr(TemplateGlobal, "jackpot_view", lambda self, **_: stale)
    app = make_page_app(THRILLCONNECT_SERVICE_TOKEN=None)

    ticker = widget(get_page(app), "ticker")

    assert ticker.attrs["data-tc-state"] == "stale"
    assert "hidden" in ticker.find("data-tc-stale-note").attrs
    assert "hidden" not in ticker.find("data-tc-live-off-note").attrs
    assert ticker.find("data-tc-live-off-note").words == (
        "Live updates are not available. Reload the page for the latest values."
    )


def test_with_a_service_token_no_page_is_marked_live_off(
    make_page_app: Callable[..., Flask],
) -> None:
    page = get_page(make_page_app())

    assert "data-tc-live" not in page.find("data-tc-config").attrs
