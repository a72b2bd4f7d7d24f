"""The package's own texts in the page's language: gettext catalogues shipped with the package.

The widgets' texts (``thrillconnect/widgets.html``, the view models, the page script's texts
that :meth:`~flask_thrillconnect.jinja.TemplateGlobal.assets` hands to the script) are looked up
in the ``thrillconnect`` domain of ``flask_thrillconnect/translations``, never in the portal's
own catalogues, so a portal's ``messages`` domain neither hides nor needs them:

- when the portal uses Flask-Babel (``app.extensions["babel"]``), in the locale Flask-Babel
  selected for the request (``flask_babel.get_locale()``), through a
  :class:`flask_babel.Domain` of their own;
- otherwise with :class:`babel.support.Translations`, in the locale the widgets format money
  in (``Player.locale``, else the browser's ``Accept-Language``, else English).

A text without a translation stays English. Re-extracting and compiling the catalogues is
described in ``docs/translations.rst``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from babel import Locale
from babel.support import NullTranslations, Translations
from flask import current_app

__all__ = [
    "DOMAIN",
    "JS_TEXTS",
    "N_",
    "STATUS_NOTES",
    "TRANSLATIONS_DIR",
    "catalogue",
    "page_translations",
    "translate",
]

#: The gettext domain of the package's catalogues (``thrillconnect.po``/``.mo``).
DOMAIN = "thrillconnect"
#: ``<locale>/LC_MESSAGES/thrillconnect.mo`` files, shipped in the wheel.
TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"


def N_(message: str) -> str:
    """Mark ``message`` for extraction (``N_`` is one of pybabel's default keywords); it is
    translated where it is shown."""
    return message


#: A jackpot's status note (a jackpot that is not ``Active``), by status.
STATUS_NOTES: dict[str, str] = {
    "Pending": N_("Starts soon"),
    "Paused": N_("Paused"),
    "Terminated": N_("Ended"),
}

#: The page script's texts: key → English text (the msgid). ``assets()`` renders those that
#: differ in the page's language as ``data-tc-texts``; the script carries the same English
#: texts as its defaults (``TEXTS`` in thrillconnect.js; a test keeps the two equal).
#: ``%(name)s`` placeholders are filled in by the script.
JS_TEXTS: dict[str, str] = {
    "statusPending": STATUS_NOTES["Pending"],
    "statusPaused": STATUS_NOTES["Paused"],
    "statusTerminated": STATUS_NOTES["Terminated"],
    "optinError400": N_(
        "That choice was not accepted. Please pick another contribution and try again."
    ),
    "optinError401": N_("Your session has ended. Please log in again to join."),
    "optinError403": N_(
        "You cannot join this jackpot, or this page is out of date. Reload the page and try again."
    ),
    "optinError404": N_(
        "This jackpot is no longer available. Reload the page to see the current jackpots."
    ),
    "optinError503": N_(
        "The jackpot service is unavailable right now. Please try again in a moment."
    ),
    "optinError504": N_(
        "The jackpot service took too long to answer. Please try again in a moment."
    ),
    "optinErrorNetwork": N_("Could not reach the server. Check your connection and try again."),
    "optinErrorOther": N_("Something went wrong. Please try again."),
    "optinSaving": N_("Saving…"),
    "optinSaved": N_("Your contribution is saved."),
    "optinJoined": N_("You joined the jackpot."),
    "optinLeft": N_("You left the jackpot."),
    "optinIn": N_("You are in this jackpot."),
    "optinOut": N_("You are not in this jackpot."),
    "optinJoin": N_("Join jackpot"),
    "optinSave": N_("Save contribution"),
    "optinLeave": N_("Leave jackpot"),
    "jackpot": N_("Jackpot"),
    "winnerYou": N_("You"),
    "wonIn": N_("You won %(amount)s in %(jackpot)s."),
    "won": N_("You won %(amount)s."),
}


def page_translations(default_locale: Callable[[], Locale]) -> NullTranslations:
    """The package's catalogue for the current request.

    :param default_locale: the widgets' locale, asked only when the portal does not use
        Flask-Babel (or Flask-Babel names no locale).
    """
    if "babel" in current_app.extensions:
        import flask_babel

        if flask_babel.get_locale() is not None:
            translations: NullTranslations = _flask_babel_domain().get_translations()
            return translations
    return catalogue(default_locale())


def catalogue(locale: Locale | str) -> NullTranslations:
    """The package's catalogue for ``locale`` (``de_DE`` falls back to ``de``); English texts
    (a :class:`~babel.support.NullTranslations`) when there is none."""
    return _catalogue(str(locale))


@cache
def _catalogue(locale: str) -> NullTranslations:
    # Bounded: Locale.parse only accepts locales Babel knows.
    translations: NullTranslations = Translations.load(TRANSLATIONS_DIR, [locale], DOMAIN)
    return translations


@cache
def _flask_babel_domain() -> Any:
    """One :class:`flask_babel.Domain` for the process (it caches catalogues per locale)."""
    import flask_babel

    return flask_babel.Domain(translation_directories=str(TRANSLATIONS_DIR), domain=DOMAIN)


def translate(translations: NullTranslations, message: str, **variables: Any) -> str:
    """``message`` from ``translations``, its ``%(name)s`` placeholders filled from
    ``variables``."""
    text: str = translations.gettext(message)
    return text % variables if variables else text
